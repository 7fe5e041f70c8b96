"""`onnxq run` and `onnxq bench` end to end, checked against numpy."""

import json
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(tmp_path):
    # Output names that are unsafe as file names must stay inside the output folder.
    nodes = [helper.make_node("Relu", ["x"], ["../evil/relu:0"]),
             helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("../evil/relu:0", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [3, "N"])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_run_writes_every_output_inside_the_folder(onnxq_cli, tmp_path):
    model = _model(tmp_path)
    x = np.array([[1.5, -2.0, 0.25], [-1.0, 3.0, -0.5]], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    r = subprocess.run([str(onnxq_cli), "run", str(model), "--input", f"x={tmp_path / 'x.npy'}",
                        "--output-dir", str(out_dir), "--threads", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["_.._evil_relu_0.npy", "t.npy"]
    assert not (tmp_path / "evil").exists()
    np.testing.assert_array_equal(np.load(out_dir / "_.._evil_relu_0.npy"), np.maximum(x, 0))
    np.testing.assert_array_equal(np.load(out_dir / "t.npy"), x.T)


def test_run_errors(onnxq_cli, tmp_path):
    model = _model(tmp_path)
    r = subprocess.run([str(onnxq_cli), "run", str(model), "--input", "x=nope.npy"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "output-dir" in r.stderr
    r = subprocess.run([str(onnxq_cli), "run", str(model), "--input", "x",
                        "--output-dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and "NAME=file.npy" in r.stderr
    r = subprocess.run([str(onnxq_cli), "run", str(model), "--output-dir", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "missing input 'x'" in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_bench_json(onnxq_cli, tmp_path):
    model = _model(tmp_path)
    r = subprocess.run([str(onnxq_cli), "bench", str(model), "--threads", "1", "--batch", "4",
                        "--iters", "5", "--warmup", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["threads"] == 1 and j["batch"] == 4 and j["iters"] == 5
    lat = j["latency_ms"]
    assert 0 <= lat["min"] <= lat["median"] <= lat["max"]
    # Two [4,3] float outputs are kept to the end of the run.
    assert j["peak_bytes"] >= 2 * 4 * 3 * 4
    r = subprocess.run([str(onnxq_cli), "bench", str(model), "--iters", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--iters" in r.stderr
