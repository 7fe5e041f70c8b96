"""Single-operator models that the ONNX backend test data (ONNX 1.12 era) does not cover, or
covers only partly, run by onnxq's executor and by ONNX Runtime on the same random inputs."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402

_TYPES = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float64"): TensorProto.DOUBLE,
          np.dtype("int64"): TensorProto.INT64, np.dtype("int32"): TensorProto.INT32,
          np.dtype("bool"): TensorProto.BOOL}


def _single(op, inputs, opset, n_out=1, inits=(), out_type=None, **attrs):
    """A model with one `op` node; `inputs` maps name -> array (fed), `inits` (name, array) pairs
    become initializers (in that order after the fed inputs)."""
    names = list(inputs) + [n for n, _ in inits]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    vi = [helper.make_tensor_value_info(n, _TYPES[a.dtype], list(a.shape)) for n, a in inputs.items()]
    t = out_type if out_type is not None else _TYPES[next(iter(inputs.values())).dtype]
    ov = [helper.make_tensor_value_info(o, t, None) for o in outs]
    g = helper.make_graph([node], "t", vi, ov, [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 19 else 9
    return m.SerializeToString()


def _compare(model_bytes, feeds, rtol=1e-5, atol=1e-6):
    want = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(None, feeds)
    sess = onnxq.Session(onnxq.load_bytes(model_bytes), threads=1)
    got = sess.run(feeds)
    assert len(got) == len(want)
    for (name, g), w in zip(sorted(got.items()), want):
        assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
        assert g.shape == w.shape, (name, g.shape, w.shape)
        if g.dtype == np.bool_ or np.issubdtype(g.dtype, np.integer):
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    _compare(_single("Gelu", {"x": X}, 20, approximate=approximate), {"x": X})


def test_mish():
    _compare(_single("Mish", {"x": X}, 18), {"x": X})


@pytest.mark.parametrize("op", ["LessOrEqual", "GreaterOrEqual", "Equal", "Less", "Greater"])
def test_comparisons_broadcast(op):
    b = np.round(rng.standard_normal((4, 1)).astype(np.float32))
    a = np.round(X * 2) / 2
    _compare(_single(op, {"a": a, "b": b}, 16, out_type=TensorProto.BOOL), {"a": a, "b": b})


def test_not_and_where_broadcast():
    c = rng.standard_normal((3, 1, 5)) > 0
    _compare(_single("Not", {"c": c}, 13), {"c": c})
    x = rng.standard_normal((2, 1, 4, 1)).astype(np.float32)
    y = rng.standard_normal((5,)).astype(np.float32)
    _compare(_single("Where", {"c": c, "x": x, "y": y}, 16, out_type=TensorProto.FLOAT),
             {"c": c, "x": x, "y": y})


def test_pow_square_and_int_exponent():
    _compare(_single("Pow", {"x": X}, 15, inits=[("e", np.array(2.0, np.float32))]), {"x": X})
    _compare(_single("Pow", {"x": np.abs(X)}, 15, inits=[("e", np.array([3], np.int64))]), {"x": np.abs(X)})
    _compare(_single("Pow", {"x": np.abs(X)}, 15, inits=[("e", np.array(0.5, np.float32))]), {"x": np.abs(X)})


def test_docs_list_every_operator_the_executor_runs():
    """docs/runtime.md's operator table (plus the integer ops named below it) covers the registry."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "runtime.md").read_text()
    documented = set()
    for line in text.splitlines():
        m = re.match(r"^\| ([A-Za-z0-9, ]+) \| \d+-\d+ \|", line)
        if m:
            documented.update(n.strip() for n in m.group(1).split(","))
    documented.update(re.findall(r"\b(QLinearConv|ConvInteger|QLinearMatMul|MatMulInteger|DynamicQuantizeLinear)\b", text))
    ops = {o for o in onnxq.supported_ops() if "." not in o}
    assert ops - documented == set(), "not documented in docs/runtime.md"
    assert documented - ops == set(), "documented but not registered"


def _isas():
    out = []
    for isa in ("reference", "avx2", "avx512"):
        try:
            onnxq.Session(onnxq.load_bytes(_single("Relu", {"x": X}, 13)), isa=isa)
            out.append(isa)
        except (ValueError, NotImplementedError):
            pass  # not on this CPU
    return out


@pytest.mark.parametrize("shape,spread", [((1, 96, 112, 112), 3.0), ((3, 1000), 0.01), ((17,), 5.0), ((70001,), -2.0)])
def test_dynamic_quantize_linear_matches_ort_on_every_isa(shape, spread):
    # Large inputs go through the SIMD min/max and quantize kernels in chunks over two threads; the
    # odd sizes exercise the tails. A negative spread makes every value negative (zero point 255).
    x = (rng.standard_normal(shape) * abs(spread) + (spread if spread < 0 else 0)).astype(np.float32)
    if spread < 0:
        x = -np.abs(x)
    m = _single("DynamicQuantizeLinear", {"x": x}, 13, n_out=3)
    g = onnx.load_from_string(m)
    for o, t in zip(g.graph.output, (TensorProto.UINT8, TensorProto.FLOAT, TensorProto.UINT8)):
        o.type.tensor_type.elem_type = t
    m = g.SerializeToString()
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for isa in _isas():
        got = onnxq.Session(onnxq.load_bytes(m), threads=2, isa=isa).run({"x": x})
        np.testing.assert_array_equal(got["y1"], want[1], err_msg=isa)
        np.testing.assert_array_equal(got["y2"], want[2], err_msg=isa)
        np.testing.assert_array_equal(got["y0"], want[0], err_msg=isa)


def test_dynamic_quantize_linear_refuses_nan_on_every_isa():
    x = rng.standard_normal(100000).astype(np.float32)
    x[77777] = np.nan
    m = _single("DynamicQuantizeLinear", {"x": x}, 13, n_out=3)
    for isa in _isas():
        with pytest.raises(ValueError, match="non-finite"):
            onnxq.Session(onnxq.load_bytes(m), threads=2, isa=isa).run({"x": x})
