"""Round trip of every ONNX backend test model through `onnxq convert`.

Each model either comes back as a model that onnx.checker accepts and that is equivalent to the
input (same nodes, attributes, initializer bytes, inputs, outputs, opsets, metadata; compared with
the onnx package, an implementation independent of onnxq), or is refused with one clear error line,
non-zero exit and no output file. At least 95 % of the `node` models must round-trip.
"""
import concurrent.futures
import math
import os
import pathlib
import re
import subprocess
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper

FOLDERS = ["node", "simple", "pytorch-converted", "pytorch-operator"]

# What onnxq refuses on purpose today; any other refusal of a backend model is a bug.
EXPECTED_REFUSALS = re.compile(
    r"has a sequence type|has an optional type|has a map type|is a sparse tensor|"
    r"subgraph attribute '\w+' of node \w+ .* is not supported yet|sparse"
)


def same_float(a, b):
    return np.float32(a).tobytes() == np.float32(b).tobytes() or (math.isnan(a) and math.isnan(b))


def tensor_equal(a, b):
    if a.data_type != b.data_type or list(a.dims) != list(b.dims):
        return False
    x, y = numpy_helper.to_array(a), numpy_helper.to_array(b)
    if x.dtype == object:
        return x.tolist() == y.tolist()
    return x.tobytes() == y.tobytes()


def attr_equal(a, b):
    if a.name != b.name:
        return f"attribute name {a.name} != {b.name}"
    va, vb = helper.get_attribute_value(a), helper.get_attribute_value(b)
    if a.type != b.type:
        return f"attribute {a.name}: type {a.type} != {b.type}"
    if a.type == onnx.AttributeProto.FLOAT:
        ok = same_float(va, vb)
    elif a.type == onnx.AttributeProto.FLOATS:
        ok = len(va) == len(vb) and all(same_float(p, q) for p, q in zip(va, vb))
    elif a.type == onnx.AttributeProto.TENSOR:
        ok = tensor_equal(va, vb)
    elif a.type == onnx.AttributeProto.TENSORS:
        ok = len(va) == len(vb) and all(tensor_equal(p, q) for p, q in zip(va, vb))
    else:
        ok = va == vb
    return None if ok else f"attribute {a.name}: {va!r} != {vb!r}"


def value_info_equal(a, b):
    return a.name == b.name and a.type == b.type


def differences(src, out):
    """Returns a description of the first difference, or None if equivalent."""
    if src.ir_version != out.ir_version:
        return "ir_version"
    if [(o.domain, o.version) for o in src.opset_import] != [
        (o.domain, o.version) for o in out.opset_import
    ]:
        return "opset_import"
    if [(p.key, p.value) for p in src.metadata_props] != [(p.key, p.value) for p in out.metadata_props]:
        return "metadata_props"
    gs, go = src.graph, out.graph
    if len(gs.node) != len(go.node):
        return f"{len(gs.node)} nodes became {len(go.node)}"
    for k, (a, b) in enumerate(zip(gs.node, go.node)):
        if (a.op_type, a.domain, a.name, list(a.input), list(a.output)) != (
            b.op_type, b.domain, b.name, list(b.input), list(b.output)
        ):
            return f"node #{k} ({a.op_type}) differs"
        if len(a.attribute) != len(b.attribute):
            return f"node #{k} ({a.op_type}): attribute count"
        for x, y in zip(a.attribute, b.attribute):
            d = attr_equal(x, y)
            if d:
                return f"node #{k} ({a.op_type}): {d}"
    if [t.name for t in gs.initializer] != [t.name for t in go.initializer]:
        return "initializer names/order"
    for a, b in zip(gs.initializer, go.initializer):
        if not tensor_equal(a, b):
            return f"initializer {a.name} bytes"
    for what, xs, ys in (("input", gs.input, go.input), ("output", gs.output, go.output)):
        if len(xs) != len(ys) or not all(value_info_equal(x, y) for x, y in zip(xs, ys)):
            return f"graph {what}s differ"
    declared = {v.name: v for v in gs.value_info}
    for v in go.value_info:
        if v.name not in declared or not value_info_equal(v, declared[v.name]):
            return f"value_info {v.name} was not declared by the source (or changed)"
    return None


def check_one(cli, model_path, workdir):
    out = pathlib.Path(workdir) / (model_path.parent.name + ".onnx")
    proc = subprocess.run(
        [str(cli), "convert", str(model_path), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        problems = []
        if len(lines) != 1 or not lines[0].startswith("onnxq: error: "):
            problems.append(f"stderr is not one error line: {proc.stderr!r}")
        elif str(model_path) not in lines[0]:
            problems.append(f"error does not name the model: {lines[0]}")
        elif not EXPECTED_REFUSALS.search(lines[0]):
            problems.append(f"unexpected refusal: {lines[0]}")
        if out.exists():
            problems.append("an output file was left behind")
        return ("refused", lines[0] if lines else "", problems)
    problems = []
    if proc.stderr:
        problems.append(f"stderr on success: {proc.stderr!r}")
    src = onnx.load(str(model_path))
    got = onnx.load(str(out))
    diff = differences(src, got)
    if diff:
        problems.append(diff)
    try:
        onnx.checker.check_model(got)
    except onnx.checker.ValidationError as e:
        # Only acceptable if the source itself fails the same check (old test data).
        try:
            onnx.checker.check_model(src)
            problems.append(f"checker rejects the output but not the input: {e}")
        except onnx.checker.ValidationError:
            pass
    out.unlink()
    return ("ok", "", problems)


def test_backend_models_round_trip(onnxq_cli, backend_data):
    failures = []
    counts = {}
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for folder in FOLDERS:
            models = sorted((backend_data / folder).glob("*/model.onnx"))
            results = list(pool.map(lambda m: check_one(onnxq_cli, m, tmp), models))
            ok = sum(r[0] == "ok" for r in results)
            counts[folder] = (ok, len(models) - ok)
            for m, (status, msg, problems) in zip(models, results):
                for p in problems:
                    failures.append(f"{folder}/{m.parent.name} ({status}): {p}")
        assert not os.listdir(tmp), f"files left behind: {os.listdir(tmp)}"
    for folder, (ok, refused) in counts.items():
        print(f"{folder}: {ok} round-tripped, {refused} refused")
    assert not failures, "\n".join(failures[:40])
    ok, refused = counts["node"]
    assert ok + refused > 0
    assert ok / (ok + refused) >= 0.95, f"only {ok} of {ok + refused} node models round-trip"
