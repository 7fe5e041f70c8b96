"""Dynamic-range quantization (onnxq.quantize_dynamic), checked against independent references:
ONNX Runtime running the exported file, ONNX Runtime's own quantize_dynamic (same graph pattern and,
for per-tensor weights, the same integers), onnx.checker, and numpy.

Run as a script for the full measurement of docs/dynamic.md (400 evaluation images, both runtimes,
latency): PYTHONPATH=build/python .venv/bin/python tests/python/test_quantize_dynamic.py
"""

import collections
import json
import os
import pathlib
import sys
import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402

SHARED = pathlib.Path(os.environ.get("ONNXQ_SHARED") or pathlib.Path(__file__).resolve().parents[2].parent / "shared")


def _ort_session(path, threads=1):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _per_image(run, x):
    return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])


def _log_softmax(a):
    a = a.astype(np.float64)
    m = a.max(1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(1, keepdims=True))


def _kl(p, q):
    lp, lq = _log_softmax(p), _log_softmax(q)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


# ------------------------------------------------------------------ small model, no shared data

def _small_model(path):
    """x[3,6] -> MatMul(W[6,5]) -> Gemm(transB, alpha, beta, C) -> y[3,4], as the onnx package writes it."""
    rng = np.random.default_rng(3)
    wm = rng.uniform(-1, 1, (6, 5)).astype(np.float32)
    wg = rng.uniform(-1, 1, (4, 5)).astype(np.float32)
    c = rng.uniform(-1, 1, (4,)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wm"], ["h"], name="mm"),
         helper.make_node("Gemm", ["h", "wg", "c"], ["y"], name="fc", transB=1, alpha=0.75, beta=1.5)],
        "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        [numpy_helper.from_array(wm, "wm"), numpy_helper.from_array(wg, "wg"), numpy_helper.from_array(c, "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return wm, wg, c


def test_small_matmul_gemm_model_runs_in_ort_like_onnxq(tmp_path):
    src, out = tmp_path / "small.onnx", tmp_path / "small_dyn.onnx"
    wm, wg, c = _small_model(src)
    r = onnxq.quantize_dynamic(str(src), {"threads": 1})
    assert r.quantized_nodes == 2
    onnxq.save(r.model, str(out))
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["MatMulInteger"] == 2 and ops["DynamicQuantizeLinear"] == 2
    assert ops["MatMul"] == 0 and ops["Gemm"] == 0
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    mmi = [n for n in m.graph.node if n.op_type == "MatMulInteger"]
    # The MatMul weight: per-column symmetric int8 (numpy recipe), zero points a vector of zeros.
    wq, wz = inits[mmi[0].input[1]], inits[mmi[0].input[3]]
    scale = np.abs(wm).max(0) / np.float32(127)
    np.testing.assert_array_equal(wq, np.round(wm / scale).astype(np.int8))
    assert wz.dtype == np.int8 and wz.shape == (5,) and not wz.any()
    # Gemm's transB weight is stored as [K, N].
    assert inits[mmi[1].input[1]].shape == (5, 4)

    x = np.random.default_rng(4).uniform(-2, 1, (3, 6)).astype(np.float32)
    y_ort = _ort_session(out).run(None, {"x": x})[0]
    y_oq = onnxq.Session(r.model, threads=1).run({"x": x})["y"]
    np.testing.assert_allclose(y_oq, y_ort, rtol=1e-6, atol=1e-6)
    # Against float (numpy): each layer is off by a few quantization steps at most.
    ref = 0.75 * (x @ wm) @ wg.T + 1.5 * c
    assert np.abs(y_ort - ref).max() < 0.02 * np.abs(ref).max()
    assert np.abs(y_ort - ref).max() > 0  # it is quantized


# ------------------------------------------------------------------ MobileNetV2

@pytest.fixture(scope="module")
def mnv2(tmp_path_factory):
    model = SHARED / "models" / "mobilenetv2-1.0.onnx"
    data = SHARED / "data" / "imagenet-sample"
    if not model.is_file() or not (data / "labels.tsv").is_file():
        pytest.skip(f"MobileNetV2 or the image sample missing under {SHARED} (set ONNXQ_SHARED)")
    out = tmp_path_factory.mktemp("dyn")
    r = onnxq.quantize_dynamic(str(model), {"threads": 2})
    path = out / "mnv2_dynamic.onnx"
    onnxq.save(r.model, str(path))
    ds = onnxq.calib.Dataset(str(data), preset="imagenet-tf", skip=100, count=12)
    x = ds.load_batch(0, len(ds), threads=2)
    return {"model": model, "data": data, "path": path, "result": r, "x": x, "out": out}


def test_mobilenetv2_dynamic_graph(mnv2):
    m = onnx.load(str(mnv2["path"]))
    onnx.checker.check_model(m, full_check=True)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert ops["ConvInteger"] == 53 and ops["DynamicQuantizeLinear"] == 53 and ops["Cast"] == 53
    assert ops["Conv"] == 0
    assert ops["Mul"] == 106 and ops["Add"] == 53 + 10  # scales x2 per conv; biases + residuals
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "ConvInteger":
            assert inits[n.input[1]].data_type == TensorProto.INT8
            zp = numpy_helper.to_array(inits[n.input[3]])
            assert zp.shape == () and zp == 0  # ORT's ConvInteger accepts only a scalar
    rep = mnv2["result"].report
    assert rep["quantized_nodes"] == {"Conv": 53}
    assert rep["sizes"]["quantized_initializer_bytes"] < 0.3 * rep["sizes"]["float_initializer_bytes"]
    assert len(rep["weights"]) == 53 and all(w["axis"] == 0 for w in rep["weights"])


def test_mobilenetv2_dynamic_ort_and_onnxq_agree(mnv2):
    x = mnv2["x"]
    s = _ort_session(mnv2["path"])
    y_ort = _per_image(lambda b: s.run(None, {"input": b})[0], x)
    q = onnxq.Session(str(mnv2["path"]), threads=1)
    y_oq = _per_image(lambda b: q.run({"input": b})["logits"], x)
    # Measured on 400 images: same top-1 everywhere, max |difference| 0.0021 (logits up to ~16): the
    # integer path is bit-identical up to GlobalAveragePool, whose float summation order differs.
    np.testing.assert_array_equal(y_oq.argmax(1), y_ort.argmax(1))
    assert np.abs(y_oq - y_ort).max() < 0.01
    # And close to the float model (ONNX Runtime): 98.25 % top-1 agreement on 400 images.
    fs = _ort_session(mnv2["model"])
    y_f = _per_image(lambda b: fs.run(None, {"input": b})[0], x)
    assert (y_ort.argmax(1) == y_f.argmax(1)).mean() >= 10 / 12
    assert _kl(y_f, y_ort) < 0.02


def test_mobilenetv2_per_tensor_weights_equal_ort_quantize_dynamic(mnv2):
    """onnxq per-tensor = ONNX Runtime's quantize_dynamic recipe for Conv: same int8 weights and scales."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ort_path, oq_path = mnv2["out"] / "ort_dynamic.onnx", mnv2["out"] / "oq_dynamic_pt.onnx"
    quantize_dynamic(str(mnv2["model"]), str(ort_path), weight_type=QuantType.QInt8)
    r = onnxq.quantize_dynamic(str(mnv2["model"]), {"weight_granularity": "per-tensor", "threads": 2})
    onnxq.save(r.model, str(oq_path))

    def conv_weights(path):
        m = onnx.load(str(path))
        inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
        producers = {o: n for n in m.graph.node for o in n.output}
        out = {}
        for n in m.graph.node:
            if n.op_type == "ConvInteger":
                # Scale: the Mul(x_scale, w_scale) that multiplies this ConvInteger's Cast output.
                cast = next(c for c in m.graph.node if c.op_type == "Cast" and c.input[0] == n.output[0])
                mul = next(u for u in m.graph.node if u.op_type == "Mul" and cast.output[0] in u.input)
                scales_mul = producers[[i for i in mul.input if i != cast.output[0]][0]]
                out[n.output[0]] = (inits[n.input[1]], float(inits[scales_mul.input[1]]))
        return out

    a, b = conv_weights(oq_path), conv_weights(ort_path)
    assert a.keys() == b.keys() and len(a) == 53
    for k in a:
        np.testing.assert_array_equal(a[k][0], b[k][0], err_msg=k)
        assert a[k][1] == pytest.approx(b[k][1], rel=1e-6), k


def test_mobilenetv2_report_evaluation_matches_ort(mnv2):
    r = onnxq.quantize_dynamic(str(mnv2["model"]), {
        "threads": 2, "eval_data": str(mnv2["data"]), "preprocess": "imagenet-tf", "eval_skip": 100,
        "eval_count": 12})
    ev = r.report["evaluation"]
    assert ev["count"] == 12 and ev["batch_size"] == 1
    x = mnv2["x"]
    labels = np.array([onnxq.calib.Dataset(str(mnv2["data"]), preset="imagenet-tf", skip=100, count=12).label(i)
                       for i in range(12)])
    s = _ort_session(mnv2["path"])
    y = _per_image(lambda b: s.run(None, {"input": b})[0], x)
    fs = _ort_session(mnv2["model"])
    y_f = _per_image(lambda b: fs.run(None, {"input": b})[0], x)
    assert ev["top1"] == pytest.approx((y.argmax(1) == labels).mean())
    assert ev["reference_top1"] == pytest.approx((y_f.argmax(1) == labels).mean())
    assert ev["top1_agreement"] == pytest.approx((y.argmax(1) == y_f.argmax(1)).mean())
    assert ev["mean_kl"] == pytest.approx(_kl(y_f, y), rel=0.05, abs=1e-4)


# ------------------------------------------------------------------ measurement (script mode)

def _measure(threads_list=(1, 2), reps=30):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ONNXQ_BENCH_SMOKE=1 (the docs test): 8 images, 2 timed runs, same JSON layout; numbers meaningless.
    smoke = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"
    count = 8 if smoke else None
    reps = 2 if smoke else reps
    model, data = SHARED / "models" / "mobilenetv2-1.0.onnx", SHARED / "data" / "imagenet-sample"
    out = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "onnxq_dynamic_measure"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    eval_cfg = {"eval_data": str(data), "preprocess": "imagenet-tf", "eval_skip": 100, "threads": 2}
    if count:
        eval_cfg["eval_count"] = count
    r = onnxq.quantize_dynamic(str(model), eval_cfg)
    res = {"quantize_and_onnxq_eval_s": time.perf_counter() - t0, "onnxq_report": r.report["evaluation"],
           "sizes": r.report["sizes"], "quantize_ms": r.report["timings_ms"]["quantize"]}
    path = out / "mnv2_dynamic.onnx"
    onnxq.save(r.model, str(path))
    ort_path = out / "ort_quantize_dynamic.onnx"
    quantize_dynamic(str(model), str(ort_path), weight_type=QuantType.QInt8)

    ds = onnxq.calib.Dataset(str(data), preset="imagenet-tf", skip=100, **({"count": count} if count else {}))
    x = ds.load_batch(0, len(ds), threads=2)
    labels = np.array([ds.label(i) for i in range(len(ds))])
    fs = _ort_session(model, 2)
    y_f = _per_image(lambda b: fs.run(None, {"input": b})[0], x)
    s = _ort_session(path, 2)
    y_ort = _per_image(lambda b: s.run(None, {"input": b})[0], x)
    q = onnxq.Session(str(path), threads=2)
    y_oq = _per_image(lambda b: q.run({"input": b})["logits"], x)
    so = _ort_session(ort_path, 2)
    y_ortq = _per_image(lambda b: so.run(None, {"input": b})[0], x)

    def acc(y):
        return {"top1": float((y.argmax(1) == labels).mean()),
                "top5": float((np.argsort(-y, 1)[:, :5] == labels[:, None]).any(1).mean()),
                "agree_vs_ort_float": float((y.argmax(1) == y_f.argmax(1)).mean()), "kl_vs_ort_float": _kl(y_f, y)}

    res["images"] = len(x)
    res["ort_float"] = acc(y_f)
    res["onnxq_dynamic_in_ort"] = acc(y_ort)
    res["onnxq_dynamic_in_onnxq"] = acc(y_oq)
    res["ort_quantize_dynamic_in_ort"] = acc(y_ortq)
    res["onnxq_vs_ort_same_file"] = {"top1_same": float((y_oq.argmax(1) == y_ort.argmax(1)).mean()),
                                     "max_abs_diff": float(np.abs(y_oq - y_ort).max()),
                                     "max_abs_logit": float(np.abs(y_ort).max()),
                                     "exactly_equal_fraction": float((y_oq == y_ort).mean())}

    def median_ms(fn):
        for _ in range(5):
            fn()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts) * 1e3)

    x1 = x[:1]
    lat = {}
    for th in threads_list:
        for name, p in (("float", model), ("dynamic", path)):
            s_ort, s_oq = _ort_session(p, th), onnxq.Session(str(p), threads=th)
            lat[f"{name}_threads{th}"] = {"ort_ms": median_ms(lambda: s_ort.run(None, {"input": x1})),
                                          "onnxq_ms": median_ms(lambda: s_oq.run({"input": x1}))}
    res["latency_batch1_median"] = lat
    res["load_average"] = os.getloadavg()
    if smoke:
        res["smoke"] = True
    return res


if __name__ == "__main__":
    print(json.dumps(_measure(), indent=1))
    sys.exit(0)
