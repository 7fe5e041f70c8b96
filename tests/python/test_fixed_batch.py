"""Models that fix their batch size (input [1, 3, 8, 8] and a Reshape to the constant [1, 8], as
exporters write them): sensitivity, mixed precision with GPTQ, the asymmetric rounding objective,
bias correction, allocation refinement and `onnxq eval` run them in parts of their batch size, and
give what the same model with a free batch dimension gives. ONNX Runtime is the reference for the
float function and for the exported files."""

import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402


def _model(path, fixed):
    rng = np.random.default_rng(1)
    init = {
        "w1": rng.normal(0, 0.4, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.4, (8, 8, 1, 1)), "b2": rng.normal(0, 0.1, 8),
        "wf": rng.normal(0, 1.0, (8, 6)), "bf": rng.normal(0, 0.1, 6),
    }
    tensors = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()]
    tensors.append(numpy_helper.from_array(np.array([1 if fixed else -1, 8], np.int64), "shape"))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Reshape", ["g", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc"),
    ]
    batch = 1 if fixed else "N"
    graph = helper.make_graph(nodes, "fixed_batch" if fixed else "free_batch",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6])], tensors)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _samples(n, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (n, 1, 3, 4, 4))
    x = np.repeat(np.repeat(base, 2, axis=3), 2, axis=4)
    return list((x + 0.05 * rng.normal(size=x.shape)).astype(np.float32))


def _ort(path, xs):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": x})[0] for x in xs])


@pytest.fixture()
def models(tmp_path):
    return _model(tmp_path / "fixed.onnx", True), _model(tmp_path / "free.onnx", False)


def test_the_fixed_model_really_fixes_its_batch(models):
    fixed, free = models
    xs = _samples(4)
    np.testing.assert_allclose(_ort(fixed, xs), _ort(free, xs), rtol=1e-6, atol=1e-6)
    with pytest.raises(Exception):
        ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"]).run(None, {"x": np.concatenate(xs)})


@pytest.mark.parametrize("rounding", ["nearest", "gptq"])
def test_sensitivity_equals_the_free_batch_model(models, rounding):
    fixed, free = models
    cfg = {"rounding": rounding, "candidate_bits": [2, 4, 8], "sensitivity_samples": 12, "rounding_samples": 20}
    xs = _samples(32)
    a = onnxq.sensitivity(str(fixed), xs, cfg)
    b = onnxq.sensitivity(str(free), xs, cfg)
    for node in ("conv1", "conv2", "fc"):
        da, db = a.damage(node), b.damage(node)
        assert set(da) == {2, 4, 8}
        assert da[2] > 0
        for bits in da:
            assert da[bits] == pytest.approx(db[bits], rel=1e-5, abs=1e-9), (node, bits)


def test_mixed_precision_export_equals_the_free_batch_model(tmp_path, models):
    fixed, free = models
    xs = _samples(40)
    cfg = {"weight_bits_avg": 4.0, "rounding": "gptq", "rounding_objective": "asymmetric",
           "sensitivity_samples": 16, "rounding_samples": 24, "bias_correction": "on", "allocation_refine": 1}
    outs = []
    for src in (fixed, free):
        r = onnxq.quantize(str(src), xs, cfg)
        path = tmp_path / ("q_" + src.name)
        onnxq.save(r.model, str(path))
        outs.append(path)
    inits = [{t.name: numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer} for p in outs]
    weights = [k for k in inits[1] if inits[1][k].dtype == np.int8]
    assert weights, "the export has no int8 weights"
    for k in inits[1]:
        if k == "shape":
            continue
        np.testing.assert_allclose(inits[0][k], inits[1][k], rtol=1e-6, atol=0, err_msg=k)
    test = _samples(6, seed=5)
    np.testing.assert_allclose(_ort(outs[0], test), _ort(outs[1], test), rtol=1e-5, atol=1e-6)


# Files holding one sample ([3, 8, 8]) or the model's whole batch-1 input ([1, 3, 8, 8]): the
# model's declared input shape says which is which.
@pytest.mark.parametrize("full_shape", [False, True])
def test_cli_eval_runs_the_fixed_model_per_sample(tmp_path, models, onnxq_cli, full_shape):
    fixed, free = models
    data = tmp_path / "data"
    data.mkdir()
    xs = _samples(10, seed=3)
    for i, x in enumerate(xs):
        np.save(data / f"{i:02d}.npy", x if full_shape else x[0])
    if full_shape:  # the Python API reads the folder the same way
        r = onnxq.quantize(str(fixed), str(data), {})
        assert r.report["calibration_samples"] == 10
    q = tmp_path / "q.onnx"
    p = subprocess.run([str(onnxq_cli), "quantize", str(fixed), "-o", str(q), "--calib", str(data)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(onnxq_cli), "eval", str(q), "--data", str(data), "--reference", str(fixed), "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    import json
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["count"] == 10
    ref, got = _ort(fixed, xs), _ort(q, xs)

    def lsm(v):
        v = v.astype(np.float64)
        v = v - v.max(1, keepdims=True)
        return v - np.log(np.exp(v).sum(1, keepdims=True))

    kl = (np.exp(lsm(ref)) * (lsm(ref) - lsm(got))).sum(1).mean()
    assert res["mean_kl"] == pytest.approx(kl, rel=0.05, abs=1e-6)
    assert res["top1_agreement"] == pytest.approx((ref.argmax(1) == got.argmax(1)).mean())


# An attention-like block: shape arithmetic (Shape -> Gather -> Concat, folded at plan time) feeds
# Reshapes after the weighted layers, and the middle runs with the batch in the second dimension
# ([L, N, ...]), as exported transformers do. `fixed`: input [1, 4, 8] and the last Reshape to the
# constant [1, 32].
def _attention_like(path, fixed):
    rng = np.random.default_rng(2)
    init = {"w1": rng.normal(0, 0.5, (8, 8)), "w2": rng.normal(0, 0.5, (8, 8)), "w3": rng.normal(0, 0.5, (32, 5)),
            "b3": rng.normal(0, 0.1, 5)}
    tensors = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()]
    tensors += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
                {"zero": 0, "tail1": [4, 2, 4], "tail2": [4, 8], "tail3": [32], "const3": [1, 32]}.items()]
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["nb"], axis=0),
        helper.make_node("Unsqueeze", ["nb"], ["nb1"], axes=[0]),
        helper.make_node("Concat", ["nb1", "tail1"], ["shp1"], axis=0),
        helper.make_node("Concat", ["nb1", "tail2"], ["shp2"], axis=0),
        helper.make_node("Concat", ["nb1", "tail3"], ["shp3"], axis=0),
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Reshape", ["h1", "shp1"], ["h2"]),
        helper.make_node("Transpose", ["h2"], ["h3"], perm=[1, 0, 2, 3]),
        helper.make_node("Relu", ["h3"], ["h4"]),
        helper.make_node("Transpose", ["h4"], ["h5"], perm=[1, 0, 2, 3]),
        helper.make_node("Reshape", ["h5", "shp2"], ["h6"]),
        helper.make_node("MatMul", ["h6", "w2"], ["h7"], name="mm2"),
        helper.make_node("Reshape", ["h7", "const3" if fixed else "shp3"], ["h8"]),
        helper.make_node("Gemm", ["h8", "w3", "b3"], ["y"], name="fc"),
    ]
    opset = [helper.make_opsetid("", 11)]  # Unsqueeze with the axes attribute
    batch = 1 if fixed else "N"
    graph = helper.make_graph(nodes, "attention_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], tensors)
    m = helper.make_model(graph, opset_imports=opset)
    m.ir_version = 7
    onnx.save(m, str(path))
    return path


def _kl(p, q):
    def lsm(v):
        v = v.astype(np.float64)
        v = v - v.max(1, keepdims=True)
        return v - np.log(np.exp(v).sum(1, keepdims=True))
    return float((np.exp(lsm(p)) * (lsm(p) - lsm(q))).sum(1).mean())


def _ort_with(path, x, name, w):
    m = onnx.load(str(path))
    for t in m.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(w, name))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_sensitivity_of_an_attention_like_block(tmp_path):
    free = _attention_like(tmp_path / "free.onnx", False)
    fixed = _attention_like(tmp_path / "fixed.onnx", True)
    rng = np.random.default_rng(4)
    xs = list(rng.normal(0, 1, (12, 1, 4, 8)).astype(np.float32))
    cfg = {"candidate_bits": [2, 4, 8], "sensitivity_samples": 8, "weight_grid": "narrow"}
    a = onnxq.sensitivity(str(fixed), xs, cfg)
    b = onnxq.sensitivity(str(free), xs, cfg)
    # Reference: ONNX Runtime on the last 8 samples with one weight quantized by numpy (per output
    # channel, symmetric max-abs, narrow range; MatMul/Gemm weights [K, N]: channel axis 1).
    x = np.concatenate(xs[-8:])
    ref = ort.InferenceSession(str(free), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(free)).graph.initializer}
    for node, wname in (("mm1", "w1"), ("mm2", "w2"), ("fc", "w3")):
        for bits in (2, 4, 8):
            w = init[wname]
            lim = 2 ** (bits - 1) - 1
            s = (np.abs(w).max(axis=0, keepdims=True) / np.float32(lim)).astype(np.float32)
            wq = (np.clip(np.rint(w / s), -lim, lim) * s).astype(np.float32)
            expect = _kl(ref, _ort_with(free, x, wname, wq))
            assert b.damage(node)[bits] == pytest.approx(expect, rel=1e-3, abs=1e-9), (node, bits)
            assert a.damage(node)[bits] == pytest.approx(b.damage(node)[bits], rel=1e-5, abs=1e-9), (node, bits)
        assert b.damage(node)[2] > b.damage(node)[8] > 0
