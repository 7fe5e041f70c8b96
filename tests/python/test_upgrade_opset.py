"""The upgrade-opset pass (opset 7-12 -> 13) checked by ONNX Runtime: the upgraded model must
compute what the original computes. Hand-built models cover every rewrite (attributes that became
inputs, Softmax's coerce-to-2-D semantics, Upsample and Resize-10); the ONNX backend test models
importing opsets 7-12 are upgraded and run against their expected outputs."""

import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402

BACKEND = pathlib.Path("/usr/share/libonnx-testdata/data")


def _model(nodes, opset, x_shape, inits=(), out_shape=None, inputs=None):
    ins = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    g = helper.make_graph(nodes, "t", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def _upgrade(m):
    model = onnxq.load_bytes(m.SerializeToString())
    up = onnxq.optimize(model, "upgrade-opset")
    return onnx.load_from_string(_save(up))


def _save(model):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "m.onnx"
        onnxq.save(model, str(p))
        return p.read_bytes()


def _run(m, feeds):
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _check(m, feeds, rtol=1e-5, atol=1e-6):
    up = _upgrade(m)
    assert {o.version for o in up.opset_import if o.domain in ("", "ai.onnx")} == {13}
    onnx.checker.check_model(up, full_check=True)
    for a, b in zip(_run(m, feeds), _run(up, feeds)):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol)
    return up


rng = np.random.default_rng(0)
X4 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1])
def test_softmax_family_keeps_coerce_to_2d_semantics(op, axis):
    attrs = {} if axis is None else {"axis": axis}
    up = _check(_model([helper.make_node(op, ["x"], ["y"], **attrs)], 11, X4.shape), {"x": X4})
    ops = [n.op_type for n in up.graph.node]
    # Only the last axis keeps a lone node; every other axis needs Flatten -> op -> Reshape.
    assert ops == [op] if axis == -1 else ops == ["Shape", "Flatten", op, "Reshape"], ops


def test_attributes_that_became_inputs():
    x = rng.standard_normal((2, 1, 3, 1)).astype(np.float32)
    nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[1, 3]),
             helper.make_node("Unsqueeze", ["s"], ["u"], axes=[0]),
             helper.make_node("ReduceSum", ["u"], ["r"], axes=[2], keepdims=1),
             helper.make_node("Split", ["u"], ["a", "b"], axis=2, split=[1, 2]),
             helper.make_node("Concat", ["a", "b", "r"], ["c"], axis=2),
             helper.make_node("Clip", ["c"], ["y"], min=-0.5, max=0.7)]
    _check(_model(nodes, 10, x.shape), {"x": x})
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="constant", value=1.5),
             helper.make_node("Dropout", ["p"], ["y"], ratio=0.3)]
    _check(_model(nodes, 9, X4.shape), {"x": X4})
    nodes = [helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="reflect")]
    _check(_model(nodes, 10, X4.shape), {"x": X4})


def test_slice_opset9_attributes():
    nodes = [helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[3, 100], axes=[2, 3])]
    _check(_model(nodes, 9, X4.shape), {"x": X4})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_and_resize10(mode):
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    scales = np.array([1, 1, 2, 1.5], np.float32)
    _check(_model([helper.make_node("Upsample", ["x"], ["y"], mode=mode, scales=scales.tolist())], 7, x.shape),
           {"x": x})
    _check(_model([helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)], 9, x.shape, inits=[("s", scales)]),
           {"x": x})
    up = _check(_model([helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)], 10, x.shape,
                       inits=[("s", scales)]), {"x": x})
    attrs = {a.name: a.s.decode() for n in up.graph.node for a in n.attribute if a.type == onnx.AttributeProto.STRING}
    assert attrs["coordinate_transformation_mode"] == "asymmetric"


def test_batchnorm_opset7_spatial_and_onnxq_runs_the_result():
    c = 3
    inits = [(n, rng.uniform(0.5, 1.5, c).astype(np.float32)) for n in ("sc", "b", "m", "v")]
    m = _model([helper.make_node("BatchNormalization", ["x", "sc", "b", "m", "v"], ["y"], spatial=1)], 7,
               X4.shape, inits=inits)
    up = _check(m, {"x": X4})
    got = onnxq.Session(onnxq.load_bytes(up.SerializeToString()), threads=1).run({"x": X4})["y"]
    np.testing.assert_allclose(got, _run(m, {"x": X4})[0], rtol=1e-5, atol=1e-6)


def test_unknown_operator_leaves_the_model_alone():
    # Unique is not known to the pass: the model keeps opset 11 and the report says why.
    m = _model([helper.make_node("Relu", ["x"], ["r"]),
                helper.make_node("Unique", ["r"], ["y"])], 11, [4])
    model = onnxq.load_bytes(m.SerializeToString())
    up, report = onnxq.optimize(model, "upgrade-opset", return_report=True)
    assert onnx.load_from_string(_save(up)).opset_import[0].version == 11
    (p,) = report
    assert not p["changed"] and p["counters"] == {"kept": 1}
    assert "Unique" in p["notes"][0] and "opset 11" in p["notes"][0], p["notes"]


def _backend_models():
    if not BACKEND.exists():
        return []
    out = []
    for suite in ["node", "simple", "pytorch-converted", "pytorch-operator"]:
        for d in sorted((BACKEND / suite).glob("*")):
            if (d / "model.onnx").exists():
                out.append(d)
    return out


def test_backend_models_with_old_opsets_keep_their_outputs_in_ort():
    dirs = _backend_models()
    if not dirs:
        pytest.skip(f"ONNX backend test data not found at {BACKEND}")
    upgraded, verified, failures = 0, 0, []
    for d in dirs:
        m = onnx.load(str(d / "model.onnx"))
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
        if opset is None or not 7 <= opset < 13 or any(n.domain not in ("", "ai.onnx") for n in m.graph.node):
            continue
        try:
            model = onnxq.load(str(d / "model.onnx"))
        except Exception:
            continue
        up_model, report = onnxq.optimize(model, "upgrade-opset", return_report=True)
        up = onnx.load_from_string(_save(up_model))
        if all(o.version != 13 for o in up.opset_import if o.domain in ("", "ai.onnx")):
            continue  # kept (an operator the pass does not know)
        upgraded += 1
        sets = sorted(d.glob("test_data_set_*"))
        init = {i.name for i in up.graph.initializer}
        names = [i.name for i in up.graph.input if i.name not in init]
        feeds = {}
        for k, name in enumerate(names):
            t = onnx.TensorProto()
            t.ParseFromString((sets[0] / f"input_{k}.pb").read_bytes())
            feeds[name] = numpy_helper.to_array(t)
        wants = []
        for k in range(len(up.graph.output)):
            p = sets[0] / f"output_{k}.pb"
            t = onnx.TensorProto()
            if p.exists():
                t.ParseFromString(p.read_bytes())
            wants.append(numpy_helper.to_array(t) if p.exists() else None)

        def matches(outs):
            return all(w is None or (o.shape == w.shape and np.allclose(o, w, rtol=1e-3, atol=1e-4, equal_nan=True))
                       for o, w in zip(outs, wants))
        try:
            orig = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
            if not matches(orig.run(None, feeds)):
                continue  # ONNX Runtime gets the original wrong already (e.g. MaxUnpool): no reference
        except Exception:
            continue  # ONNX Runtime cannot run the original: no reference
        try:
            got = ort.InferenceSession(up.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{d.name}: upgraded model does not run in ORT: {str(e)[:200]}")
            continue
        if matches(got):
            verified += 1
        else:
            failures.append(f"{d.name}: outputs differ after the upgrade")
    print(f"upgraded {upgraded} backend models (opset 7-12), {verified} verified in ONNX Runtime")
    assert not failures, failures
    assert verified > 40, (upgraded, verified)
