"""The Python layer over the compiled module (python/onnxq/{_api,config,data,report,progress}.py):
QuantConfig mirrors the C++ config, ImageFolder wraps the C++ dataset, onnxq.quantize accepts every
form of calibration data with the same result, progress/cancellation, the Report object, evaluate.
References: the compiled binding called directly, the C++ preprocessing function, ONNX Runtime."""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402
from onnxq.data import ImageFolder  # noqa: E402
from onnxq.report import Report, pareto_front  # noqa: E402


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler, whatever the test runner inherited: a process started in the
    background by a non-interactive shell ignores SIGINT, and then Ctrl-C tests could not fail."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)

PIL = pytest.importorskip("PIL.Image")


def _classifier(path):
    """x [N, 3, 12, 12] -> logits [N, 4]."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    wf = rng.normal(0, 0.5, (8, 4)).astype(np.float32)
    bf = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (wf, "wf"), (bf, "bf")]])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture
def model_path(tmp_path):
    return _classifier(tmp_path / "clf.onnx")


@pytest.fixture
def images(tmp_path):
    """24 small PNGs with a labels.tsv (labels: the argmax of the float model, except every 4th)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(24):
        PIL.fromarray(rng.integers(0, 256, (14 + i % 3, 16, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


PRE = {"resize": 12, "crop": 12, "scale": 1 / 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]}


def _write_labels(folder, labels):
    lines = ["# file\tclass_index"] + [f"img{i:02d}.png\t{c}" for i, c in enumerate(labels)]
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- QuantConfig

def test_quantconfig_fields_are_the_cpp_config_and_defaults(model_path, tmp_path):
    calib = [np.random.default_rng(i).uniform(-1, 1, (3, 12, 12)).astype(np.float32) for i in range(8)]
    a = onnxq.quantize(model_path, calib, onnxq.QuantConfig(threads=1))
    b = onnxq._onnxq.quantize(str(model_path), calib, {"threads": 1})
    assert a.model.to_bytes() == b.model.to_bytes()
    cpp_config = json.loads(b.report_json)["config"]
    assert a.report["config"] == cpp_config
    fields = {f.name: f.default for f in dataclasses.fields(onnxq.QuantConfig)}
    derived = {"activation_type", "weight_type", "sensitivity_given"}  # reported, not settable
    for key, value in cpp_config.items():
        if key in derived:
            continue
        assert key in fields, f"QuantConfig has no field for the C++ config key {key!r}"
        if key == "threads":
            continue
        default = fields[key]
        if default is None:
            assert value in ("", {}, [], None, 0), f"QuantConfig.{key} is unset by default, C++ has {value!r}"
        elif isinstance(default, tuple):
            assert list(default) == value, f"QuantConfig.{key} default {default!r} != C++ default {value!r}"
        else:
            assert default == value, f"QuantConfig.{key} default {default!r} != C++ default {value!r}"


def test_quantconfig_dict_round_trip_and_cpp_validation(model_path):
    c = onnxq.QuantConfig(calibrator="kl", exclude="Gemm", cle=True, stats=None, extra={"future": 1})
    d = c.to_dict()
    assert d["exclude"] == ["Gemm"] and d["cle"] is True and d["future"] == 1 and "stats" not in d
    assert onnxq.QuantConfig.from_dict(d).to_dict() == d
    with pytest.raises(ValueError, match="weight bits must be in 2..8, got 1"):
        onnxq.quantize(model_path, _calib(2), onnxq.QuantConfig(weight_bits=1))
    with pytest.raises(TypeError, match="unknown quantize config key 'future'"):
        onnxq.quantize(model_path, _calib(2), c)


# ---------------------------------------------------------------- ImageFolder

def test_image_folder_matches_the_cpp_preprocessing(images):
    _write_labels(images, [i % 4 for i in range(24)])
    folder = ImageFolder(images, preprocess={"preset": "imagenet-torch", "resize": 12, "crop": 12}, skip=2, count=5)
    assert len(folder) == 5 and folder.has_labels and folder.sample_shape == (3, 12, 12)
    for i in range(5):
        ref = onnxq.calib.preprocess_image(str(images / f"img{i + 2:02d}.png"), "imagenet-torch", resize=12, crop=12)
        np.testing.assert_array_equal(folder[i], ref)
        assert folder.label(i) == (i + 2) % 4
    np.testing.assert_array_equal(folder[-1], folder[4])
    batches = list(folder.batches(2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(list(folder)))
    with pytest.raises(IndexError):
        folder[5]
    with pytest.raises(TypeError, match="unknown preprocessing option"):
        ImageFolder(images, preprocess={"rezise": 3})
    with pytest.raises(ValueError, match="unknown preprocessing preset 'imagenet-x'"):
        ImageFolder(images, preprocess="imagenet-x")
    with pytest.raises(FileNotFoundError):
        ImageFolder(images / "missing", preprocess="imagenet-torch")


def test_every_form_of_calibration_data_gives_the_same_model(model_path, images):
    folder = ImageFolder(images, preprocess="imagenet-torch", count=16)  # preset only: C++ streams it
    custom = ImageFolder(images, preprocess={"preset": "imagenet-torch", "crop": 224}, count=16)  # via Python
    arrays = [folder[i] for i in range(16)]
    cfg = onnxq.QuantConfig(threads=1, calibrator="minmax")
    # The 224x224 crop does not fit this 12x12 model: use a model-free comparison on the data path.
    ref = onnxq._onnxq.quantize
    results = {}
    for name, data, c in [
        ("folder", folder, cfg),
        ("path", images, cfg.replace(preprocess="imagenet-torch", calib_count=16)),
        ("list", arrays, cfg),
        ("batched array", np.stack(arrays), cfg),
        ("generator", (a for a in arrays), cfg),
        ("dicts", [{"x": a[None]} for a in arrays], cfg),
    ]:
        mp = _resized_model(model_path, 224)
        results[name] = onnxq.quantize(mp, data, c).model.to_bytes()
    expected = ref(str(_resized_model(model_path, 224)), arrays, cfg.to_dict()).model.to_bytes()
    for name, b in results.items():
        assert b == expected, name
    assert len(custom) == 16


_resized_cache = {}


def _resized_model(path, size):
    """The classifier with a [N, 3, size, size] input (GlobalAveragePool makes it size-agnostic)."""
    key = (str(path), size)
    if key not in _resized_cache:
        m = onnx.load(str(path))
        dims = m.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value = dims[3].dim_value = size
        out = str(path).replace(".onnx", f"_{size}.onnx")
        onnx.save(m, out)
        _resized_cache[key] = out
    return _resized_cache[key]


def test_imagefolder_and_config_keys_must_agree(model_path, images):
    folder = ImageFolder(images, preprocess="imagenet-torch", count=4)
    with pytest.raises(ValueError, match="contradicts"):
        onnxq.quantize(model_path, folder, {"calib_count": 8})
    with pytest.raises(ValueError, match="does not apply to an ImageFolder"):
        onnxq.quantize(model_path, folder, {"labels": "x.tsv"})


# ---------------------------------------------------------------- progress, cancel, Ctrl-C, errors

def _calib(n=8):
    return [np.random.default_rng(i).uniform(-1, 1, (3, 12, 12)).astype(np.float32) for i in range(n)]


def test_progress_callback_sees_every_stage_and_can_cancel(model_path, tmp_path):
    events = []
    r = onnxq.quantize(model_path, iter(_calib(8)), {"threads": 1, "batch_size": 4},
                       callback=lambda s, d, t: events.append((s, d, t)))
    assert r.model is not None
    loads = [e for e in events if e[0] == "load data"]
    assert [e[1] for e in loads] == list(range(1, 9))
    calib = [e for e in events if e[0] == "calibrate"]
    assert calib and calib[-1][1] == calib[-1][2] == 8
    out = tmp_path / "never.onnx"
    with pytest.raises(onnxq.CancelledError) as e:
        onnxq.quantize(model_path, _calib(8), {"threads": 1}, callback=lambda s, d, t: d < 3)
    assert isinstance(e.value, KeyboardInterrupt)
    assert not out.exists()


def test_ctrl_c_stops_cleanly(model_path, sigint_raises):
    def interrupt(stage, done, total):
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C

    with pytest.raises(KeyboardInterrupt):
        onnxq.quantize(model_path, _calib(8), {"threads": 1}, callback=interrupt)

    def gen():  # Ctrl-C while a Python data source produces samples
        yield _calib(1)[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        onnxq.quantize(model_path, gen(), {"threads": 1})
    # The module still works afterwards.
    assert onnxq.quantize(model_path, _calib(4), {"threads": 1}).model is not None


def test_callback_errors_and_cpp_errors_are_python_exceptions(model_path, tmp_path):
    def broken(stage, done, total):
        raise ZeroDivisionError("user bug")

    with pytest.raises(ZeroDivisionError, match="user bug"):
        onnxq.quantize(model_path, iter(_calib(4)), {"threads": 1}, callback=broken)
    with pytest.raises(FileNotFoundError, match="missing.onnx' does not exist"):
        onnxq.quantize(tmp_path / "missing.onnx", _calib(2))
    with pytest.raises(ValueError, match="unknown calibrator 'best'"):
        onnxq.quantize(model_path, _calib(2), onnxq.QuantConfig(calibrator="best"))
    with pytest.raises(TypeError, match="calibration_data must be"):
        onnxq.quantize(model_path, 3.0)


def test_plain_progress_bar_without_tqdm(model_path, capsys, monkeypatch):
    import onnxq.progress as progress

    monkeypatch.setattr(progress, "make_bar", lambda kind=True: progress.PlainBar())
    onnxq.quantize(model_path, iter(_calib(4)), {"threads": 1}, progress=True)
    err = capsys.readouterr().err
    assert "load data" in err and "4/4" in err


# ---------------------------------------------------------------- result and report

def test_result_save_and_report_object(model_path, tmp_path):
    r = onnxq.quantize(model_path, _calib(8), {"threads": 1, "sqnr_samples": 2})
    raw = json.loads(r.report_json)
    assert r.report.to_dict() == raw and dict(r.report) == raw
    assert r.report["activations"] == raw["activations"]  # the dict interface of the old report
    r.save(tmp_path / "q.onnx", report=tmp_path / "q.json")
    onnx.checker.check_model(onnx.load(str(tmp_path / "q.onnx")), full_check=True)
    assert Report.load(tmp_path / "q.json").to_dict() == raw
    # to_markdown: the settings, the sizes and the lowest-SQNR tensors of the report.
    md = r.report.to_markdown()
    measured = [a for a in raw["activations"] if a["sqnr_db"] is not None]  # null: no error (inf dB)
    assert measured
    worst = min(measured, key=lambda a: a["sqnr_db"])
    assert f"| {worst['tensor']} |" in md and f"{worst['sqnr_db']:.1f} |" in md
    assert f"{raw['sizes']['float_initializer_bytes']:,}" in md
    s = r.report.summary()
    assert s["quantized_activations"] == len(raw["activations"])
    assert s["compression"] == pytest.approx(raw["sizes"]["float_initializer_bytes"] / raw["sizes"]["quantized_initializer_bytes"])
    # The SQNR plot: one bar per quantized activation, heights = the report's values.
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = r.report.plot_sqnr()
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([a["sqnr_db"] or 0.0 for a in raw["activations"]])
    ax.figure.savefig(tmp_path / "sqnr.png")
    assert (tmp_path / "sqnr.png").stat().st_size > 1000
    # act_bits < 8 is simulation only: no model to save.
    sim = onnxq.quantize(model_path, _calib(4), {"threads": 1, "act_bits": 6})
    with pytest.raises(ValueError, match="simulation only"):
        sim.save(tmp_path / "sim.onnx")
    assert not (tmp_path / "sim.onnx").exists()


def test_pareto_front():
    pts = [{"bytes": 4, "acc": 0.7}, {"bytes": 2, "acc": 0.6}, {"bytes": 3, "acc": 0.55},
           {"bytes": 5, "acc": 0.7}, {"bytes": 6, "acc": 0.72}]
    assert [p["bytes"] for p in pareto_front(pts, x="bytes", y="acc")] == [2, 4, 6]
    assert [p["bytes"] for p in pareto_front(pts, x="bytes", y="acc", higher_is_better=False)] == [2, 3]


# ---------------------------------------------------------------- evaluate

def test_evaluate_against_onnxruntime(model_path, images, tmp_path):
    x = np.stack([onnxq.calib.preprocess_image(str(images / f"img{i:02d}.png"), None, **PRE) for i in range(24)])
    s = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    pred = s.run(None, {"x": x})[0]
    labels = pred.argmax(1).copy()
    labels[::4] = (labels[::4] + 1) % 4  # every 4th label wrong: top-1 = 75 %
    _write_labels(images, labels)
    top5 = 1.0  # 4 classes
    res = onnxq.evaluate(model_path, ImageFolder(images, PRE), threads=1)
    assert res["count"] == 24
    assert res["top1"] == pytest.approx(0.75) and res["top5"] == pytest.approx(top5)
    q = onnxq.quantize(model_path, ImageFolder(images, PRE, count=12), {"threads": 1})
    qres = onnxq.evaluate(q.model, ImageFolder(images, PRE, skip=12), reference=model_path, threads=1)
    qs = ort.InferenceSession(q.model.to_bytes(), providers=["CPUExecutionProvider"])
    qpred = qs.run(None, {"x": x[12:]})[0]
    assert qres["count"] == 12
    assert abs(qres["top1_agreement"] - (qpred.argmax(1) == pred[12:].argmax(1)).mean()) <= 1 / 12 + 1e-9
    p = np.exp(pred[12:] - pred[12:].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert qres["mean_kl"] >= 0 and qres["mean_kl"] < 0.05
    with pytest.raises(FileNotFoundError):
        onnxq.evaluate(tmp_path / "missing.onnx", ImageFolder(images, PRE))


# ---------------------------------------------------------------- mixed precision (issue 7 bindings)

def _fake_quant(w, bits, axis):
    """Symmetric narrow-range per-channel max-abs quantization, round half to even (numpy)."""
    qmax = 2 ** (bits - 1) - 1
    wm = np.moveaxis(w, axis, 0)
    scale = (np.abs(wm.reshape(wm.shape[0], -1)).max(1) / qmax).astype(np.float32)
    scale = scale.reshape((-1,) + (1,) * (wm.ndim - 1))
    return np.moveaxis(np.clip(np.round(wm / scale), -qmax, qmax) * scale, 0, axis).astype(np.float32)


def _mean_kl(p_logits, q_logits):
    p = np.exp(p_logits - p_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(q_logits - q_logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), 1)))


def test_sensitivity_matches_numpy_and_onnxruntime(model_path):
    if not hasattr(onnxq._onnxq, "sensitivity"):
        pytest.skip("this build of the onnxq module has no mixed-precision bindings")
    calib = _calib(8)
    # All 8 samples: the measurement uses the last sensitivity_samples ones (GPTQ fits the first).
    sens = onnxq.sensitivity(model_path, calib, onnxq.QuantConfig(candidate_bits=[3, 4, 8], sensitivity_samples=8,
                                                                  threads=1))
    assert isinstance(sens, onnxq.report.Sensitivity)
    assert sens.bits == [3, 4, 8] and [l["node"] for l in sens.layers] == ["conv1", "fc"]
    # Reference: only that layer's weights quantized (numpy), run in ONNX Runtime, KL vs float on the
    # calibration samples.
    m = onnx.load(str(model_path))
    weights = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    x = np.stack(calib)
    ref = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for node, weight, axis in [("conv1", "w1", 0), ("fc", "wf", 1)]:
        for bits in (3, 4, 8):
            m2 = onnx.load(str(model_path))
            for init in m2.graph.initializer:
                if init.name == weight:
                    init.CopyFrom(numpy_helper.from_array(_fake_quant(weights[weight], bits, axis), weight))
            out = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            # abs: at 8 bits the KL (~1e-8) is at the float32 rounding level of the softmax
            assert sens.damage(node)[bits] == pytest.approx(_mean_kl(ref, out), rel=1e-3, abs=1e-7), (node, bits)
    assert sens.most_sensitive(3, 1)[0][0] == "fc"

    # Allocation under a budget, and quantize reusing the sensitivity: the same per-layer bits.
    cfg = onnxq.QuantConfig(candidate_bits=[3, 4, 8], weight_bits_avg=4.5, sensitivity=sens, threads=1)
    alloc = onnxq.allocate_bits(model_path, sens, cfg)
    assert set(alloc) == {"conv1", "fc"} and set(alloc.values()) <= {3, 4, 8}
    params = {l["node"]: l["params"] for l in sens.layers}
    assert sum(alloc[n] * params[n] for n in alloc) / sum(params.values()) <= 4.5
    r = onnxq.quantize(model_path, calib, cfg)
    assert dict(r.report.layer_bits()) == alloc
    assert r.report.sensitivity().to_dict()["layers"] == sens.to_dict()["layers"]
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = r.report.plot_bits()
    assert [p.get_height() for p in ax.patches] == [alloc["conv1"], alloc["fc"]]
    ax = r.report.plot_sensitivity()
    assert len(ax.lines) == 3  # one per bit width
    with pytest.raises(ValueError, match="no sensitivity"):
        onnxq.quantize(model_path, calib, {"threads": 1}).report.sensitivity()


def test_package_exports_the_python_layer():
    assert onnxq.quantize is onnxq._api.quantize and onnxq.quantize is not onnxq._onnxq.quantize
    for name in ("quantize", "evaluate", "QuantConfig", "QuantizationResult"):
        assert name in onnxq.__all__ and hasattr(onnxq, name)
    for name in ("sensitivity", "allocate_bits"):
        if hasattr(onnxq._onnxq, name):
            assert getattr(onnxq, name) is getattr(onnxq._api, name) and name in onnxq.__all__
    assert onnxq.data.ImageFolder is ImageFolder
    assert "ImageFolder" in dir(onnxq.data)


def test_tqdm_progress_bar(model_path, capsys):
    pytest.importorskip("tqdm")
    onnxq.quantize(model_path, iter(_calib(4)), {"threads": 1}, progress=True)
    err = capsys.readouterr().err
    assert "load data" in err and "4/4" in err


def test_ctrl_c_during_the_cpp_calibration(model_path, sigint_raises):
    seen = []
    onnxq.quantize(model_path, _calib(16), {"threads": 1, "batch_size": 4}, callback=lambda *e: seen.append(e))
    assert [e for e in seen if e[0] == "calibrate"][-1][1:] == (16, 16)

    def interrupt(stage, done, total):
        if stage == "calibrate" and done >= 8:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        onnxq.quantize(model_path, _calib(16), {"threads": 1, "batch_size": 4}, callback=interrupt)
