"""Configurable safety limits on the commands that read models and images: --max-model-bytes,
--max-tensor-elements and --max-image-pixels refuse over-limit input with a clear error and write
nothing; the defaults accept ordinary input."""

import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image


def small_model(path):
    """input [N, 3, 30, 40] -> 1x1 Conv (4 channels) -> Relu -> GlobalAveragePool -> Flatten."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv"),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
         helper.make_node("Flatten", ["g"], ["logits"], name="flatten")],
        "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 30, 40])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


@pytest.fixture()
def setup(tmp_path):
    model = tmp_path / "small.onnx"
    small_model(model)
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(data / f"img{i}.png")
    return model, data


def run(cli, *args):
    return subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=120)


RAW = ["--resize", "0", "--crop", "0"]  # the images are used at their own 40x30 size


@pytest.mark.parametrize("command", ["quantize", "calibrate"])
def test_image_pixel_limit_refuses_and_writes_nothing(onnxq_cli, setup, tmp_path, command):
    model, data = setup
    out = tmp_path / ("q.onnx" if command == "quantize" else "s.stats")
    refused = run(onnxq_cli, command, model, "-o", out, "--calib", data, *RAW, "--max-image-pixels", 1199)
    assert refused.returncode == 1, refused.stderr
    assert "img0.png" in refused.stderr and "40x30" in refused.stderr and "1199" in refused.stderr
    assert "--max-image-pixels" in refused.stderr
    assert not out.exists()
    ok = run(onnxq_cli, command, model, "-o", out, "--calib", data, *RAW, "--max-image-pixels", 1200)
    assert ok.returncode == 0, ok.stderr
    assert out.is_file()


def test_eval_honours_the_image_pixel_limit(onnxq_cli, setup):
    model, data = setup
    refused = run(onnxq_cli, "eval", model, "--data", data, *RAW, "--reference", model,
                  "--max-image-pixels", 100)
    assert refused.returncode == 1 and "exceeds the limit of 100 pixels" in refused.stderr
    ok = run(onnxq_cli, "eval", model, "--data", data, *RAW, "--reference", model, "--json")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("command", ["quantize", "calibrate", "eval", "run", "bench", "optimize"])
def test_every_model_reading_command_offers_the_model_limits(onnxq_cli, setup, tmp_path, command):
    model, data = setup
    extra = {
        "quantize": ["-o", tmp_path / "q.onnx", "--calib", data, *RAW],
        "calibrate": ["-o", tmp_path / "s.stats", "--calib", data, *RAW],
        "eval": ["--data", data, *RAW],
        "run": ["--output-dir", tmp_path / "outs"],
        "bench": ["--iters", 1],
        "optimize": ["-o", tmp_path / "o.onnx"],
    }[command]
    refused = run(onnxq_cli, command, model, *extra, "--max-model-bytes", 64)
    assert refused.returncode == 1, refused.stderr
    assert "64" in refused.stderr and "small.onnx" in refused.stderr
    refused = run(onnxq_cli, command, model, *extra, "--max-tensor-elements", 5)
    assert refused.returncode == 1, refused.stderr
    assert "'w'" in refused.stderr or " w " in refused.stderr or "w:" in refused.stderr, refused.stderr
    for p in (tmp_path / "q.onnx", tmp_path / "s.stats", tmp_path / "o.onnx", tmp_path / "outs"):
        assert not p.exists()
    bad = run(onnxq_cli, command, model, *extra, "--max-model-bytes", 0)
    assert bad.returncode == 1 and "--max-model-bytes must be positive" in bad.stderr
