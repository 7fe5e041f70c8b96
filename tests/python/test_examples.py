"""The Python examples under examples/ run, from a folder outside the source tree, against the onnxq
package under test; their printed numbers are checked against ONNX Runtime."""

import os
import pathlib
import re
import subprocess
import sys

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
