"""The Python examples under examples/ run, from a folder outside the source tree, against the onnxq
package under test; their printed numbers are checked against ONNX Runtime."""

import functools
import hashlib
import http.server
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

import onnxq

REPO = pathlib.Path(__file__).resolve().parents[2]
QUANTIZE = REPO / "examples" / "mobilenetv2" / "quantize.py"


def _env(**extra):
    package_parent = pathlib.Path(os.path.abspath(onnxq.__file__)).parents[1]
    env = dict(os.environ, PYTHONPATH=str(package_parent), MPLBACKEND="Agg")
    env.update(extra)
    return env


def _row(out, name):
    m = re.search(rf"^\| {re.escape(name)}\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|$", out, re.MULTILINE)
    assert m, f"no row {name!r} in:\n{out}"
    return m.group(1), m.group(2)


def _ort_top1(path, images, labels):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = s.run(None, {s.get_inputs()[0].name: images})[0]
    return logits.argmax(1), float((logits.argmax(1) == labels).mean())


def test_quantize_example_on_the_shared_model(tmp_path, mobilenetv2_path, shared_dir):
    out_model = tmp_path / "mnv2_int8.onnx"
    run = subprocess.run(
        [sys.executable, str(QUANTIZE), "--calib-count", "16", "--eval-count", "24", "--threads", "2",
         "--latency-iters", "3", "--no-progress", "--no-download", "--out", str(out_model)],
        cwd=tmp_path, env=_env(ONNXQ_SHARED=str(shared_dir)), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert str(mobilenetv2_path) in out and "imagenet-tf" in out
    assert "16 calibration images, 24 evaluation images" in out
    # Independent reference: ONNX Runtime on the same 24 evaluation images (16..39 of labels.tsv).
    data = onnxq.data.ImageFolder(shared_dir / "data" / "imagenet-sample", "imagenet-tf", skip=16, count=24)
    x = np.stack(list(data))
    labels = np.array([data.label(i) for i in range(len(data))])
    float_pred, float_top1 = _ort_top1(mobilenetv2_path, x, labels)
    q_pred, q_top1 = _ort_top1(out_model, x, labels)
    f1, q1 = _row(out, "top-1 (24 images)")
    assert float(f1.rstrip(" %")) == pytest.approx(100 * float_top1, abs=0.01)
    # The printed int8 top-1 is onnxq's simulation; ONNX Runtime's integer run may flip a close call.
    assert abs(float(q1.rstrip(" %")) - 100 * q_top1) <= 100 / 24 + 0.01
    agree = float(_row(out, "top-1 agreement with float")[1].rstrip(" %"))
    assert agree >= 90
    assert (q_pred == float_pred).mean() >= 0.9
    size_f, size_q = _row(out, "model file size")
    assert float(size_f.split()[0]) == pytest.approx(mobilenetv2_path.stat().st_size / 1e6, abs=0.006)
    assert float(size_q.split()[0]) == pytest.approx(out_model.stat().st_size / 1e6, abs=0.006)
    assert out_model.stat().st_size < 0.3 * mobilenetv2_path.stat().st_size
    assert (tmp_path / "mnv2_int8.report.json").is_file()
    assert _row(out, "latency, ONNX Runtime 1 thread")[1].endswith(" ms")


def test_quantize_example_with_a_model_path_and_data(tmp_path, mobilenetv2_path, shared_dir):
    """An explicit model path and --data, with the shared folder hidden (ONNXQ_SHARED empty dir)."""
    run = subprocess.run(
        [sys.executable, str(QUANTIZE), str(mobilenetv2_path), "--data",
         str(shared_dir / "data" / "imagenet-sample"), "--calib-count", "8", "--eval-count", "8",
         "--threads", "2", "--latency-iters", "0", "--no-progress", "--no-download", "--calibrator", "minmax",
         "--out", "q.onnx"],
        cwd=tmp_path, env=_env(ONNXQ_SHARED=str(tmp_path / "nothing")), capture_output=True, text=True,
        timeout=600)
    assert run.returncode == 0, run.stderr
    assert "8 calibration images, 8 evaluation images" in run.stdout
    assert _row(run.stdout, "latency, ONNX Runtime 1 thread") == ("n/a", "n/a")
    report = onnxq.report.Report.load(tmp_path / "q.report.json")
    assert report.config["calibrator"] == "minmax"
    assert {a["calibrator"] for a in report.activations} == {"minmax"}


def test_quantize_example_explains_what_is_missing(tmp_path):
    run = subprocess.run([sys.executable, str(QUANTIZE), "--no-download"], cwd=tmp_path,
                         env=_env(ONNXQ_SHARED=str(tmp_path / "nothing")), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1
    assert "no model given and none at" in run.stderr and "nothing" in run.stderr


def _zoo_archive(folder, model):
    """A stand-in for the ONNX zoo's mobilenetv2-12.tar.gz (this machine is offline): the shared model
    as mobilenetv2-12/mobilenetv2-12.onnx plus a test-data file, as the zoo's archives hold. Like the
    zoo's file it imports opset 12 (every operator of this graph means the same there), so the
    example also exercises the quantizer's upgrade to opset 13."""
    import onnx
    folder.mkdir()
    archive = folder / "mobilenetv2-12.tar.gz"
    extra = folder / "input_0.pb"
    extra.write_bytes(b"not a model")
    m = onnx.load(str(model))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 12
    opset12 = folder / "mobilenetv2-12.onnx"
    onnx.save(m, str(opset12))
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(opset12, arcname="mobilenetv2-12/mobilenetv2-12.onnx")
        tar.add(extra, arcname="mobilenetv2-12/test_data_set_0/input_0.pb")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_quantize_example_downloads_the_zoo_model_when_given_no_path(tmp_path, mobilenetv2_path, shared_dir):
    """No model and no shared folder: the example downloads the zoo archive (served here over HTTP from
    a local copy), checks its sha256, caches the model under $XDG_CACHE_HOME/onnxq and quantizes it
    with the zoo model's preprocessing (imagenet-torch); the next run reuses the cache."""
    archive, sha = _zoo_archive(tmp_path / "zoo", mobilenetv2_path)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(archive.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    cache = tmp_path / "cache"
    args = [sys.executable, str(QUANTIZE), "--data", str(shared_dir / "data" / "imagenet-sample"),
            "--calib-count", "8", "--eval-count", "8", "--threads", "2", "--latency-iters", "0",
            "--no-progress", "--out", "q.onnx"]
    env = _env(ONNXQ_SHARED=str(tmp_path / "nothing"), XDG_CACHE_HOME=str(cache), ONNXQ_ZOO_URL=url,
               ONNXQ_ZOO_SHA256=sha)
    try:
        run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stderr
    cached = cache / "onnxq" / "mobilenetv2-12.onnx"
    assert f"downloading {url} -> {cached}" in run.stdout
    assert sorted(p.name for p in cached.parent.iterdir()) == ["mobilenetv2-12.onnx"]  # no temp files
    assert cached.read_bytes() == (tmp_path / "zoo" / "mobilenetv2-12.onnx").read_bytes()
    # The model imports opset 12; the quantized file is opset 13 (the pipeline's upgrade).
    import onnx
    assert {o.version for o in onnx.load(str(tmp_path / "q.onnx")).opset_import if o.domain in ("", "ai.onnx")} == {13}
    assert f"model: {cached}" in run.stdout and "preprocessing imagenet-torch" in run.stdout
    # The printed float top-1 is the model on imagenet-torch pixels (images 8..15), per ONNX Runtime.
    data = onnxq.data.ImageFolder(shared_dir / "data" / "imagenet-sample", "imagenet-torch", skip=8, count=8)
    x = np.stack(list(data))
    labels = np.array([data.label(i) for i in range(len(data))])
    _, float_top1 = _ort_top1(cached, x, labels)
    assert float(_row(run.stdout, "top-1 (8 images)")[0].rstrip(" %")) == pytest.approx(100 * float_top1, abs=0.01)
    assert (tmp_path / "q.onnx").stat().st_size < 0.3 * cached.stat().st_size

    # Cached: no download (the URL now points nowhere), same model.
    env["ONNXQ_ZOO_URL"] = (tmp_path / "missing.tar.gz").as_uri()
    args[args.index("--calib-count") + 1] = args[args.index("--eval-count") + 1] = "2"
    again = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stdout and f"model: {cached}" in again.stdout


def test_quantize_example_refuses_a_zoo_download_with_a_wrong_checksum(tmp_path, mobilenetv2_path):
    archive, sha = _zoo_archive(tmp_path / "zoo", mobilenetv2_path)
    cache = tmp_path / "cache"
    wrong = "0" * 64
    env = _env(ONNXQ_SHARED=str(tmp_path / "nothing"), XDG_CACHE_HOME=str(cache), ONNXQ_ZOO_URL=archive.as_uri(),
               ONNXQ_ZOO_SHA256=wrong)
    run = subprocess.run([sys.executable, str(QUANTIZE), "--data", str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"checksum mismatch for {archive.as_uri()}: expected sha256 {wrong}, got {sha}" in run.stderr
    assert list((cache / "onnxq").iterdir()) == []  # neither the archive nor a model was kept
    # An unreachable URL: a clear error, nothing left either.
    env["ONNXQ_ZOO_URL"] = (tmp_path / "missing.tar.gz").as_uri()
    run = subprocess.run([sys.executable, str(QUANTIZE), "--data", str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "the ONNX zoo model could not be fetched" in run.stderr and "missing.tar.gz" in run.stderr
    assert list((cache / "onnxq").iterdir()) == []


def test_quantize_example_zoo_constants_name_the_zoo_model():
    """The default download is the zoo's MobileNetV2 opset-12 archive with the sha256 its git LFS
    pointer records (onnx/models, validated/vision/classification/mobilenet/model/), and the
    preprocessing is the zoo's (resize 256, crop 224, torchvision mean/std), not the shared model's."""
    spec = importlib.util.spec_from_file_location("quantize_example", QUANTIZE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.ZOO_URL == ("https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/"
                               "model/mobilenetv2-12.tar.gz")
    assert example.ZOO_SHA256 == "5f83b422708a708b592a5fd56d84710038511789df3ae510b84123930c37762d"
    assert example.ZOO_MODEL == "mobilenetv2-12.onnx" and example.ZOO_PREPROCESS == "imagenet-torch"


MIXED = REPO / "examples" / "mobilenetv2" / "mixed_precision.py"


def test_mixed_precision_example_plots_the_pareto_front(tmp_path, mobilenetv2_path, shared_dir):
    if not hasattr(onnxq._onnxq, "sensitivity"):
        pytest.skip("this build of the onnxq module has no mixed-precision bindings")
    png = tmp_path / "pareto.png"
    run = subprocess.run(
        [sys.executable, str(MIXED), "--budgets", "0.15,0.2", "--bits", "4,8", "--calib-count", "16",
         "--sensitivity-samples", "2", "--eval-count", "16", "--threads", "2", "--no-progress", "--no-download",
         "--png", str(png)],
        cwd=tmp_path, env=_env(ONNXQ_SHARED=str(shared_dir)), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {}
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] in ("int8", "0.15", "0.2"):
            rows[cells[0]] = cells
    assert set(rows) == {"int8", "0.15", "0.2"}, run.stdout
    frac = {k: float(v[2].rstrip("%")) for k, v in rows.items()}
    bits = {k: float(v[3]) for k, v in rows.items()}
    # Budgets hold (packed bytes <= budget x float32 bytes) and order the average bit widths.
    assert frac["0.15"] <= 15.0 + 1e-6 and frac["0.2"] <= 20.0 + 1e-6
    assert bits["0.15"] < bits["0.2"] <= bits["int8"] == 8.0
    assert 4.0 <= bits["0.15"]
    # int8 everywhere agrees best with float; the tighter budget never beats the looser one by much.
    agree = {k: float(v[5].rstrip("%")) for k, v in rows.items()}
    assert agree["int8"] >= 90
    assert agree["0.15"] <= agree["0.2"] + 100 / 16 + 1e-6
