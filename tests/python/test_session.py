"""onnxq.Session from Python: numpy in and out (several dtypes), errors, threads, extra outputs.
References are numpy computations of the same small models (built with the onnx package)."""

import os

import numpy as np
import pytest

import onnxq

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _save(tmp_path, nodes, inputs, outputs, inits=(), opset=13, name="m.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _gemm_softmax_model(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 8)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["h"], ["y"], axis=-1),
    ]
    path = _save(
        tmp_path, nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return path, w, b


def _numpy_gemm_softmax(x, w, b):
    h = 0.5 * (x.astype(np.float64) @ w.T.astype(np.float64)) + 2.0 * b
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return h, e / e.sum(axis=1, keepdims=True)


def test_run_matches_numpy_from_path_and_model(tmp_path):
    path, w, b = _gemm_softmax_model(tmp_path)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    h_ref, y_ref = _numpy_gemm_softmax(x, w, b)
    for source in (str(path), path, onnxq.load(str(path))):
        sess = onnxq.Session(source, threads=1)
        assert sess.input_names == ["x"] and sess.output_names == ["y"]
        out = sess.run({"x": x})
        assert list(out) == ["y"]
        assert out["y"].dtype == np.float32 and out["y"].shape == (3, 5)
        np.testing.assert_allclose(out["y"], y_ref, rtol=1e-5, atol=1e-6)
    # extra outputs return intermediates; a different batch re-plans.
    out = sess.run({"x": x[:1]}, extra_outputs=["h"])
    np.testing.assert_allclose(out["h"], h_ref[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["y"], y_ref[:1], rtol=1e-5, atol=1e-6)
    assert sess.peak_bytes > 0


def test_outputs_are_owned_writable_and_inputs_may_be_views(tmp_path):
    path, w, b = _gemm_softmax_model(tmp_path)
    sess = onnxq.Session(path)
    base = np.random.default_rng(2).standard_normal((8, 4)).astype(np.float32)
    x = base.T  # non-contiguous view
    a = sess.run({"x": x})["y"]
    a[...] = 0  # the array owns its memory: the next run is unaffected
    b2 = sess.run({"x": np.ascontiguousarray(x)})["y"]
    np.testing.assert_allclose(b2, _numpy_gemm_softmax(x, w, b)[1], rtol=1e-5, atol=1e-6)


def test_integer_and_double_dtypes(tmp_path):
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Cast", ["s"], ["d"], to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["d", "d"], ["sq"]),
        helper.make_node("Cast", ["s"], ["flag"], to=TensorProto.BOOL),
    ]
    path = _save(
        tmp_path, nodes,
        [helper.make_tensor_value_info("a", TensorProto.INT64, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("sq", TensorProto.DOUBLE, [2, 3]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [2, 3]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2, 3])])
    a = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int64)
    b = np.array([10, 2, 6], dtype=np.int64)
    out = onnxq.Session(path).run({"a": a, "b": b})
    np.testing.assert_array_equal(out["s"], a + b)
    assert out["s"].dtype == np.int64
    np.testing.assert_array_equal(out["sq"], ((a + b).astype(np.float64)) ** 2)
    assert out["sq"].dtype == np.float64
    np.testing.assert_array_equal(out["flag"], (a + b) != 0)
    assert out["flag"].dtype == np.bool_


def test_errors(tmp_path):
    path = _save(
        tmp_path, [helper.make_node("Hardmax", ["x"], ["y"], name="my_hardmax")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], name="hardmax.onnx")
    with pytest.raises(NotImplementedError, match=r"unsupported operator Hardmax \(opset 13\) at node 'my_hardmax'"):
        onnxq.Session(path)
    good, _, _ = _gemm_softmax_model(tmp_path)
    sess = onnxq.Session(good)
    with pytest.raises(ValueError, match="missing input 'x'"):
        sess.run({})
    with pytest.raises(ValueError, match="float64"):
        sess.run({"x": np.zeros((1, 8))})
    with pytest.raises(ValueError, match=r"shape \[1,7\]"):
        sess.run({"x": np.zeros((1, 7), np.float32)})
    with pytest.raises(FileNotFoundError):
        onnxq.Session(tmp_path / "missing.onnx")
    with pytest.raises(ValueError):
        onnxq.Session(good, isa="sse9")


def test_threads_and_determinism(tmp_path):
    path, _, _ = _gemm_softmax_model(tmp_path)
    assert onnxq.Session(path).num_threads == (os.cpu_count() or 1)
    sess = onnxq.Session(path, threads=2)
    assert sess.num_threads == 2
    x = np.random.default_rng(3).standard_normal((64, 8)).astype(np.float32)
    first = sess.run({"x": x})["y"]
    for _ in range(3):
        np.testing.assert_array_equal(sess.run({"x": x})["y"], first)
    assert "Conv" in onnxq.supported_ops() and "Hardmax" not in onnxq.supported_ops()


def test_shape_arithmetic_is_folded_per_input_shape(tmp_path):
    # PyTorch-style flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])).
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    path = _save(tmp_path, nodes,
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12])], inits)
    sess = onnxq.Session(path, threads=1)
    for n in (2, 5):
        x = np.arange(n * 12, dtype=np.float32).reshape(n, 3, 4)
        np.testing.assert_array_equal(sess.run({"x": x})["y"], x.reshape(n, 12))
        stats = sess.last_stats
        assert stats["folded"] == 4 and stats["steps"] == 1
