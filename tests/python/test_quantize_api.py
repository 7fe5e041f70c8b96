"""onnxq.quantize on a small model built with onnx.helper, against ONNX Runtime (float model and the
exported QDQ file), plus sharded calibration through the CLI (calibrate shards, merge, quantize
--stats) against one-shot calibration, and error handling."""

import json
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402


def _model(path):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32)
    wf = rng.normal(0, 0.3, (8, 4)).astype(np.float32)
    bf = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (wf, "wf"), (bf, "bf")]])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _samples(n, seed):
    return [np.random.default_rng(seed + i).uniform(-1, 1, (3, 12, 12)).astype(np.float32) for i in range(n)]


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_quantize_list_of_arrays_runs_in_ort(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(16, 1)
    r = onnxq.quantize(str(fpath), calib, {"calibrator": "minmax", "threads": 1})
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    onnx.checker.check_model(onnx.load(str(qpath)), full_check=True)
    ops = [n.op_type for n in onnx.load(str(qpath)).graph.node]
    assert ops.count("QuantizeLinear") == 6  # x, relu1, conv2, add, gap, flatten (shared with gap)
    x = np.stack(_samples(8, 100))
    ref, q = _ort(fpath, x), _ort(qpath, x)
    sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - q) ** 2).sum())
    assert sqnr > 25, sqnr
    # onnxq's executor on the QDQ file (= the simulation) agrees with ONNX Runtime's integer run.
    sim = next(iter(onnxq.Session(str(qpath), threads=1).run({"x": x}).values()))
    assert np.abs(sim - q).max() < 0.05 * np.abs(ref).max()
    rep = r.report
    names = {a["tensor"] for a in rep["activations"]}
    assert {"x", "r1", "c2", "a", "g", "f"} == names
    gap = {a["tensor"]: a for a in rep["activations"]}
    assert gap["g"]["scale"] == gap["f"]["scale"], "Flatten shares GlobalAveragePool's params"
    # minmax: the input range is the data's, uint8: scale = (max - min) / 255.
    lo, hi = min(s.min() for s in calib), max(s.max() for s in calib)
    assert gap["x"]["scale"] == pytest.approx((hi - lo) / 255, rel=1e-6)
    assert len(rep["inputs"]["calibration"]) == 16


def test_bias_that_would_overflow_int32_widens_the_weight_scale(tmp_path):
    # Inputs of magnitude 1e-9 (a nearly dead activation) give input scale x weight scale ~1e-14,
    # so conv1's bias (~0.1) would need codes of ~1e13: clamped to int32 it would vanish. The
    # quantizer must raise those channels' weight scales until the bias fits, and say so.
    fpath = _model(tmp_path / "f.onnx")
    calib = [s * 1e-9 for s in _samples(8, 1)]
    r = onnxq.quantize(str(fpath), calib, {"calibrator": "minmax", "threads": 1})
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    x = np.stack(_samples(4, 50)) * 1e-9
    ref, q = _ort(fpath, x), _ort(qpath, x)
    assert np.abs(ref).max() > 0.05  # the output is the biases' doing
    assert np.abs(q - ref).max() < 0.02 * np.abs(ref).max(), (q, ref)
    assert any("int32 bias fits" in n and "conv1" in n for n in r.report["notes"]), r.report["notes"]
    qm = onnx.load(str(qpath))
    codes = [numpy_helper.to_array(t) for t in qm.graph.initializer if t.data_type == TensorProto.INT32]
    assert codes and max(int(np.abs(c.astype(np.int64)).max()) for c in codes) <= 2 ** 30


def test_batched_array_and_dict_samples_give_the_same_result(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(6, 3)
    cfg = {"calibrator": "mse", "threads": 1, "sqnr_samples": 0}
    a = onnxq.quantize(str(fpath), np.stack(calib), cfg).report
    b = onnxq.quantize(str(fpath), [{"x": s} for s in calib], cfg).report
    assert [x["scale"] for x in a["activations"]] == [x["scale"] for x in b["activations"]]


def test_errors(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    with pytest.raises(TypeError, match="unknown quantize config key"):
        onnxq.quantize(str(fpath), _samples(2, 0), {"calibrater": "mse"})
    with pytest.raises(ValueError, match="calibrator"):
        onnxq.quantize(str(fpath), _samples(2, 0), {"calibrator": "magic"})
    with pytest.raises(ValueError, match="empty"):
        onnxq.quantize(str(fpath), [], None)
    bad = _samples(2, 0)
    bad[1][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        onnxq.quantize(str(fpath), bad, None)
    with pytest.raises(ValueError, match="shape"):
        onnxq.quantize(str(fpath), [np.zeros((3, 12, 12), np.float32), np.zeros((3, 10, 10), np.float32)], None)


def test_sharded_calibration_matches_one_shot(tmp_path, onnxq_cli):
    fpath = _model(tmp_path / "f.onnx")
    data = tmp_path / "npy"
    data.mkdir()
    for i, s in enumerate(_samples(10, 7)):
        np.save(data / f"s{i:02d}.npy", s)
    cli = str(onnxq_cli)

    def run(*args):
        p = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p

    run("calibrate", fpath, "--calib", data, "--count", 4, "-o", tmp_path / "a.stats")
    run("calibrate", fpath, "--calib", data, "--skip", 4, "-o", tmp_path / "b.stats")
    run("calibrate", "--merge", tmp_path / "a.stats", "--merge", tmp_path / "b.stats", "-o", tmp_path / "all.stats")
    run("quantize", fpath, "-o", tmp_path / "q1.onnx", "--stats", tmp_path / "all.stats", "--report", tmp_path / "r1.json")
    run("quantize", fpath, "-o", tmp_path / "q2.onnx", "--calib", data, "--report", tmp_path / "r2.json")
    r1 = json.loads((tmp_path / "r1.json").read_text())
    r2 = json.loads((tmp_path / "r2.json").read_text())
    # Histograms merge exactly, so the chosen ranges are identical.
    assert [a["scale"] for a in r1["activations"]] == [a["scale"] for a in r2["activations"]]
    assert [a["zero_point"] for a in r1["activations"]] == [a["zero_point"] for a in r2["activations"]]
    # Statistics of another model are refused.
    other = tmp_path / "other.onnx"
    m = onnx.load(str(fpath))
    m.graph.initializer[0].float_data[:] = []
    arr = numpy_helper.to_array(m.graph.initializer[0]) * 2
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(arr, m.graph.initializer[0].name))
    onnx.save(m, str(other))
    p = subprocess.run([cli, "quantize", str(other), "-o", str(tmp_path / "q3.onnx"), "--stats",
                        str(tmp_path / "all.stats")], capture_output=True, text=True)
    assert p.returncode == 1 and "another model" in p.stderr
    assert not (tmp_path / "q3.onnx").exists()


def test_sub_8_bit_activations_are_simulation_only(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(4, 9)
    r = onnxq.quantize(str(fpath), calib, {"calibrator": "minmax", "act_bits": 4, "weight_bits": 4})
    assert r.model is None
    rep = r.report
    assert rep["sizes"]["exported"] is False and "quantized_initializer_bytes" not in rep["sizes"]
    x = {a["tensor"]: a for a in rep["activations"]}["x"]
    lo, hi = min(s.min() for s in calib), max(s.max() for s in calib)
    assert x["bits"] == 4
    assert x["scale"] == pytest.approx((hi - lo) / 15, rel=1e-6)  # 16 levels
    assert all(w["bits"] == 4 for w in rep["weights"])


def test_integer_session_layouts_agree(tmp_path):
    # Channels-last chains (default, as ONNX Runtime runs them) and NCHW compute the same integers;
    # only the NCHW layout keeps every quantized intermediate under its own name.
    fpath = _model(tmp_path / "f.onnx")
    r = onnxq.quantize(str(fpath), _samples(8, 1), {"threads": 1})
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    x = np.stack(_samples(3, 200))
    nhwc = onnxq.Session(str(qpath), threads=1)
    nchw = onnxq.Session(str(qpath), threads=1, channels_last=False)
    np.testing.assert_array_equal(nhwc.run({"x": x})["y"], nchw.run({"x": x})["y"])
    inner = [n.output[0] for n in onnx.load(str(qpath)).graph.node
             if n.op_type == "QuantizeLinear" and n.output[0].startswith("r1")]
    assert inner, [n.output[0] for n in onnx.load(str(qpath)).graph.node]
    got = nchw.run({"x": x}, extra_outputs=inner)
    assert got[inner[0]].shape == (3, 8, 12, 12)
    with pytest.raises(FileNotFoundError, match="not a value of the model"):
        nhwc.run({"x": x}, extra_outputs=inner)
    np.testing.assert_array_equal(nhwc.run({"x": x}, extra_outputs=[inner[0] + "_nhwc"])[inner[0] + "_nhwc"],
                                  got[inner[0]].transpose(0, 2, 3, 1))
    # conv2's output feeds only the residual Add: the channels-last chain computes it inside the
    # fused conv + Add kernel, and the error says how to get it; NCHW and the fake-quant session
    # compute it.
    fused = [n.output[0] for n in onnx.load(str(qpath)).graph.node
             if n.op_type == "QuantizeLinear" and n.output[0].startswith("c2")]
    assert fused
    with pytest.raises(FileNotFoundError, match="fused kernels .* integer=False"):
        nhwc.run({"x": x}, extra_outputs=fused)
    sim = onnxq.Session(str(qpath), threads=1, integer=False).run({"x": x}, extra_outputs=fused)
    np.testing.assert_array_equal(nchw.run({"x": x}, extra_outputs=fused)[fused[0]], sim[fused[0]])


def _three_input_model(path):
    # x (image) -> Conv -> Relu -> GlobalAveragePool -> Flatten; y (features) -> MatMul;
    # ids (int64) -> Gather from an embedding table; the three are added.
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    wm = rng.normal(0, 0.3, (6, 4)).astype(np.float32)
    emb = rng.normal(0, 0.5, (10, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["y", "wm"], ["m"], name="mm"),
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="lookup"),
        helper.make_node("Add", ["f", "m"], ["a"], name="add1"),
        helper.make_node("Add", ["a", "e"], ["out"], name="add2"),
    ]
    graph = helper.make_graph(
        nodes, "three",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for a, n in [(w, "w"), (wm, "wm"), (emb, "emb")]])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _three_feeds(n, seed):
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32),
            "y": rng.uniform(-2, 2, (n, 6)).astype(np.float32),
            "ids": rng.integers(0, 10, n).astype(np.int64)}


def test_models_with_several_inputs_calibrate_from_dicts(tmp_path):
    fpath = _three_input_model(tmp_path / "f.onnx")
    batched = _three_feeds(12, 1)
    per_sample = [{k: v[i] for k, v in batched.items()} for i in range(12)]
    r = onnxq.quantize(str(fpath), per_sample, {"threads": 1})
    r2 = onnxq.quantize(str(fpath), [batched], {"threads": 1})  # one dict of batched arrays
    assert r.report["activations"] == r2.report["activations"]
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    onnx.checker.check_model(onnx.load(str(qpath)), full_check=True)
    observed = {a["tensor"] for a in r.report["activations"]}
    assert {"x", "y"} <= observed and "ids" not in observed  # float inputs quantized, ids not
    feeds = _three_feeds(5, 9)
    ref = ort.InferenceSession(str(fpath), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    q = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - q) ** 2).sum())
    assert sqnr > 25, sqnr
    sim = onnxq.Session(str(qpath), threads=1, integer=False).run(feeds)["out"]
    np.testing.assert_allclose(sim, q, atol=0.05 * np.abs(ref).max())
    # Bad data names the problem.
    with pytest.raises(ValueError, match="3 inputs .* must be a dict"):
        onnxq.quantize(str(fpath), [batched["x"]], {"threads": 1})
    with pytest.raises(ValueError, match="no array for the model input 'ids'"):
        onnxq.quantize(str(fpath), [{"x": batched["x"], "y": batched["y"]}], {"threads": 1})
    with pytest.raises(ValueError, match="'z' is not an input"):
        onnxq.quantize(str(fpath), [dict(batched, z=batched["y"])], {"threads": 1})
    with pytest.raises(ValueError, match="ids' is float64, the model expects int64"):
        onnxq.quantize(str(fpath), [dict(batched, ids=batched["ids"].astype(np.float64))], {"threads": 1})


def test_one_int64_input_calibrates_from_arrays(tmp_path):
    # ids [N, 5] (int64) -> Gather from an embedding table -> MatMul -> ReduceMean: a one-input model
    # whose input is not float (a text model's token ids). Arrays keep their int64 type.
    rng = np.random.default_rng(4)
    emb = rng.normal(0, 0.5, (20, 6)).astype(np.float32)
    wm = rng.normal(0, 0.4, (6, 3)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="lookup"),
             helper.make_node("MatMul", ["e", "wm"], ["m"], name="mm"),
             helper.make_node("ReduceMean", ["m"], ["out"], axes=[1], keepdims=0, name="mean")]
    graph = helper.make_graph(nodes, "ids_only",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 5])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(emb, "emb"), numpy_helper.from_array(wm, "wm")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    fpath = tmp_path / "f.onnx"
    onnx.save(m, str(fpath))
    ids = rng.integers(0, 20, (16, 5)).astype(np.int64)
    r = onnxq.quantize(str(fpath), [ids[i:i + 1] for i in range(16)], {"threads": 1})
    assert r.report["calibration_samples"] == 16
    r2 = onnxq.quantize(str(fpath), ids, {"threads": 1})  # one batched array
    assert r.report["activations"] == r2.report["activations"]
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    test = rng.integers(0, 20, (4, 5)).astype(np.int64)
    ref = ort.InferenceSession(str(fpath), providers=["CPUExecutionProvider"]).run(None, {"ids": test})[0]
    q = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"]).run(None, {"ids": test})[0]
    assert 10 * np.log10((ref ** 2).sum() / ((ref - q) ** 2).sum()) > 25
    with pytest.raises(ValueError, match="'ids' is float32, the model expects int64"):
        onnxq.quantize(str(fpath), ids.astype(np.float32), {"threads": 1})
