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


def _conv_relu_model(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [onnx.numpy_helper.from_array(w, "w")])
    path = tmp_path / "cr.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_bench_profile(onnxq_cli, tmp_path):
    model = _conv_relu_model(tmp_path)
    r = subprocess.run([str(onnxq_cli), "bench", str(model), "--threads", "1", "--iters", "7",
                        "--profile", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    prof = j["profile"]
    # Relu is fused into the Conv: three executed nodes, in graph order.
    assert [(s["node"], s["op"], s["shape"]) for s in prof["steps"]] == [
        ("conv", "Conv", "[1,8,16,16]"), ("gap", "GlobalAveragePool", "[1,8,1,1]"),
        ("flat", "Flatten", "[1,8]")]
    assert j["steps"] == 3
    assert sorted((o["op"], o["count"]) for o in prof["by_op"]) == [
        ("Conv", 1), ("Flatten", 1), ("GlobalAveragePool", 1)]
    assert all(s["us"] >= 0 for s in prof["steps"])
    assert prof["total_us"] == pytest.approx(sum(s["us"] for s in prof["steps"]), abs=0.05)
    # Per-node medians cannot add up to more than the slowest whole run.
    assert prof["total_us"] <= j["latency_ms"]["max"] * 1000
    text = subprocess.run([str(onnxq_cli), "bench", str(model), "--iters", "3", "--profile", "--top", "1"],
                          capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    assert "per operator type" in text.stdout and "slowest nodes" in text.stdout
    assert len(text.stdout.split("slowest nodes (median us):")[1].strip().splitlines()) == 1


def test_session_profile(tmp_path):
    import onnxq
    model = _conv_relu_model(tmp_path)
    s = onnxq.Session(str(model), threads=1)
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    plain = s.run({"x": x})["y"]
    assert s.last_profile == []
    timed = s.run({"x": x}, profile=True)["y"]
    np.testing.assert_array_equal(plain, timed)
    prof = s.last_profile
    assert [p["op"] for p in prof] == ["Conv", "GlobalAveragePool", "Flatten"]
    assert prof[0]["shape"] == [1, 8, 16, 16] and prof[0]["output"] == "r"
    assert all(p["us"] >= 0 for p in prof)
    s.run({"x": x})
    assert s.last_profile == []
