"""Determinism (issue 9): the same model, data and config give byte-identical outputs, whatever the
thread count. `quantize`, `run` and `bench` all take --threads."""
import hashlib
import subprocess

import numpy as np


def _quantize(cli, model, data, out, threads):
    r = subprocess.run([str(cli), "quantize", str(model), "-o", str(out), "--calib", str(data),
                        "--calib-count", "16", "--preprocess", "imagenet-tf", "--threads", str(threads)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_quantize_is_byte_identical_for_1_and_2_threads(onnxq_cli, mobilenetv2_path, shared_dir, tmp_path):
    data = shared_dir / "data" / "imagenet-sample"
    h1 = _quantize(onnxq_cli, mobilenetv2_path, data, tmp_path / "t1.onnx", 1)
    h2 = _quantize(onnxq_cli, mobilenetv2_path, data, tmp_path / "t2.onnx", 2)
    h2b = _quantize(onnxq_cli, mobilenetv2_path, data, tmp_path / "t2b.onnx", 2)
    assert h1 == h2 == h2b


def test_run_outputs_are_identical_for_1_and_2_threads(onnxq_cli, mobilenetv2_path, tmp_path):
    x = np.random.default_rng(7).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    outs = []
    for t in (1, 2):
        d = tmp_path / f"out{t}"
        r = subprocess.run([str(onnxq_cli), "run", str(mobilenetv2_path), "--input", f"input={tmp_path / 'x.npy'}",
                            "--output-dir", str(d), "--threads", str(t)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append((d / "logits.npy").read_bytes())
    assert outs[0] == outs[1]
