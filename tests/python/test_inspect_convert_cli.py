"""`onnxq inspect` and `onnxq convert`: output, exit codes, --help, argument errors, limits."""
import json
import subprocess

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def run(cli, *args):
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=120)


def small_model(path, dims=(3,)):
    w = numpy_helper.from_array(np.arange(np.prod(dims), dtype=np.float32).reshape(dims), "w")
    b = numpy_helper.from_array(np.array([1, 2], np.int64), "b")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add"),
         helper.make_node("Relu", ["y"], ["z"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *dims[1:]] if len(dims) > 1 else [3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8,
                              producer_name="pytest")
    helper.set_model_props(model, {"license": "test", "note": "quote \" and newline \n"})
    onnx.save(model, str(path))
    return model


def test_inspect_mobilenetv2_json(onnxq_cli, mobilenetv2_path):
    proc = run(onnxq_cli, "inspect", mobilenetv2_path, "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["parameter_count"] == 3487886
    assert s["op_counts"] == {"Conv": 53, "Clip": 35, "Add": 10, "GlobalAveragePool": 1,
                              "Flatten": 1, "Identity": 1}
    assert s["num_nodes"] == 101
    assert s["opsets"] == [{"domain": "", "version": 13}]
    assert s["ir_version"] == 7
    assert s["params_by_dtype"] == {"float32": 3487886}
    assert s["bytes_by_dtype"] == {"float32": 4 * 3487886}
    assert s["inputs"] == [{"name": "input", "dtype": "float32", "shape": "[N,3,224,224]"}]
    assert s["outputs"] == [{"name": "logits", "dtype": "float32", "shape": "[N,1000]"}]
    assert s["path"] == str(mobilenetv2_path)
    # The independent count from the onnx package agrees.
    m = onnx.load(str(mobilenetv2_path))
    assert sum(int(np.prod(t.dims)) for t in m.graph.initializer) == s["parameter_count"]


def test_inspect_text_and_json_keys(onnxq_cli, tmp_path):
    path = tmp_path / "m.onnx"
    small_model(path)
    proc = run(onnxq_cli, "inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert list(s) == ["path", "ir_version", "opsets", "producer", "num_nodes", "op_counts",
                       "parameter_count", "bytes_by_dtype", "params_by_dtype", "inputs", "outputs",
                       "metadata", "unsupported_ops"]
    assert s["unsupported_ops"] == []
    assert s["parameter_count"] == 5
    assert s["bytes_by_dtype"] == {"float32": 12, "int64": 16}
    assert s["metadata"] == {"license": "test", "note": "quote \" and newline \n"}
    assert s["producer"] == "pytest"
    # z has no declared shape; shape inference fills it in.
    assert s["outputs"] == [{"name": "z", "dtype": "float32", "shape": "[3]"}]
    text = run(onnxq_cli, "inspect", path)
    assert text.returncode == 0
    assert "parameters: 5" in text.stdout
    assert "Relu" in text.stdout and "x: float32 [3]" in text.stdout
    assert "executor:   every operator is supported" in text.stdout


def test_inspect_and_quantize_name_every_unsupported_operator(onnxq_cli, tmp_path):
    nodes = [helper.make_node("Hardmax", ["x"], ["h1"], name="hm1"),
             helper.make_node("Hardmax", ["h1"], ["h2"], name="hm2"),
             helper.make_node("NonZero", ["h2"], ["nz"], name="nz"),
             helper.make_node("Relu", ["x"], ["r"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("nz", TensorProto.INT64, None),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "u.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    s = json.loads(run(onnxq_cli, "inspect", path, "--json").stdout)
    assert s["unsupported_ops"] == [{"op": "Hardmax", "nodes": 2}, {"op": "NonZero", "nodes": 1}]
    text = run(onnxq_cli, "inspect", path).stdout
    assert "unsupported: Hardmax (2 nodes) NonZero (1 node)" in text
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    q = run(onnxq_cli, "quantize", path, "-o", tmp_path / "q.onnx", "--calib", tmp_path / "x.npy")
    assert q.returncode != 0
    assert ("unsupported operator Hardmax (opset 13) at node 'hm1' (2 nodes); "
            "also unsupported: NonZero (1 node)") in q.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_convert_round_trip(onnxq_cli, tmp_path):
    src = tmp_path / "m.onnx"
    model = small_model(src, dims=(2, 3))
    out = tmp_path / "out.onnx"
    proc = run(onnxq_cli, "convert", src, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    got = onnx.load(str(out))
    onnx.checker.check_model(got)
    assert got.graph.node == model.graph.node
    assert got.metadata_props == model.metadata_props
    for a, b in zip(model.graph.initializer, got.graph.initializer):
        assert a.name == b.name
        assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes()
    # --output= form and an existing output are fine; the result is identical.
    out2 = tmp_path / "out2.onnx"
    out2.write_bytes(b"old")
    assert run(onnxq_cli, "convert", src, f"--output={out2}").returncode == 0
    assert out2.read_bytes() == out.read_bytes()


def test_convert_external_data_flag(onnxq_cli, tmp_path):
    src = tmp_path / "m.onnx"
    small_model(src, dims=(64, 64))
    out = tmp_path / "ext.onnx"
    proc = run(onnxq_cli, "convert", src, "-o", out, "--external-data-threshold", "1K")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ext.onnx.data").is_file()
    got = onnx.load(str(out))  # the onnx package resolves the external data itself
    w = [t for t in got.graph.initializer if t.name == "w"][0]
    assert numpy_helper.to_array(w).tobytes() == np.arange(64 * 64, dtype=np.float32).tobytes()


def test_help_and_usage_errors(onnxq_cli, tmp_path):
    for cmd in ("inspect", "convert"):
        h = run(onnxq_cli, cmd, "--help")
        assert h.returncode == 0
        assert h.stdout.startswith(f"usage: onnxq {cmd}")
        assert "--max-tensor-elements" in h.stdout
    path = tmp_path / "m.onnx"
    small_model(path)
    for args in (["convert", path],                      # missing -o
                 ["convert", path, "-o"],                # -o without value
                 ["convert", path, "-o", tmp_path / "o.onnx", "--bogus"],
                 ["inspect"],                            # missing MODEL
                 ["inspect", path, path],                # extra positional
                 ["inspect", path, "--max-tensor-elements", "lots"]):
        proc = run(onnxq_cli, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("onnxq: error: "), proc.stderr
    assert not (tmp_path / "o.onnx").exists()
    missing = run(onnxq_cli, "inspect", tmp_path / "missing.onnx")
    assert missing.returncode == 1
    assert "missing.onnx" in missing.stderr and "does not exist" in missing.stderr


def test_limits_are_configurable_from_the_cli(onnxq_cli, tmp_path):
    path = tmp_path / "m.onnx"
    small_model(path, dims=(10, 10))
    out = tmp_path / "o.onnx"
    ok = run(onnxq_cli, "convert", path, "-o", out, "--max-tensor-elements", "100")
    assert ok.returncode == 0, ok.stderr
    out.unlink()
    refused = run(onnxq_cli, "convert", path, "-o", out, "--max-tensor-elements", "99")
    assert refused.returncode == 1
    assert "initializer 'w'" in refused.stderr and "limit of 99 elements" in refused.stderr
    refused = run(onnxq_cli, "inspect", path, "--max-model-bytes", "100")
    assert refused.returncode == 1 and "--max-model-bytes" in refused.stderr
    assert run(onnxq_cli, "inspect", path, "--max-model-bytes", "1M").returncode == 0
    assert not out.exists()
