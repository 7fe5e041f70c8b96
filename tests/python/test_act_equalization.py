"""Activation-channel equalization (config act_equalization, CLI --act-equalization) on a small
residual model built with onnx.helper: ONNX Runtime running the exported QDQ files is closer to the
float model with it than without, the report lists the equalized and the skipped groups, and
groups that cannot be scaled (ReLU6 crossing, non-conv consumer) leave the model as it was."""

import json
import os
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402

ROWS = np.array([8, 0.25, 1, 0.5, 2, 0.125, 1.5, 0.75], np.float32)  # channel ranges differ ~64x


def _model(path, tail="conv"):
    """x -> Conv -> ReLU6 -> {convP, convQ} (linear, uneven channels) -> Add -> tail.
    tail: "conv" (Add -> convC -> y), "relu6" (Add -> Clip -> convC), "sigmoid" (Add -> Sigmoid -> y)."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    wp = (rng.normal(0, 0.3, (8, 8, 1, 1)) * ROWS[:, None, None, None]).astype(np.float32)
    wq = (rng.normal(0, 0.3, (8, 8, 1, 1)) * ROWS[:, None, None, None]).astype(np.float32)
    bp = (rng.normal(0, 0.1, 8) * ROWS).astype(np.float32)
    # The consumer weighs every channel's content alike (small channels carry big weights), so the
    # small channels' quantization error reaches the output.
    wc = (rng.normal(0, 0.3, (4, 8, 1, 1)) / ROWS[None, :, None, None]).astype(np.float32)
    inits = [(w0, "w0"), (wp, "wp"), (wq, "wq"), (bp, "bp"), (wc, "wc"),
             (np.array(0, np.float32), "lo"), (np.array(6, np.float32), "hi")]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node("Clip", ["c0", "lo", "hi"], ["r0"], name="relu6_0"),
        helper.make_node("Conv", ["r0", "wp", "bp"], ["p"], name="convP"),
        helper.make_node("Conv", ["r0", "wq"], ["q"], name="convQ"),
        helper.make_node("Add", ["p", "q"], ["a"], name="add"),
    ]
    if tail == "conv":
        nodes.append(helper.make_node("Conv", ["a", "wc"], ["y"], name="convC"))
    elif tail == "relu6":
        nodes += [helper.make_node("Clip", ["a", "lo", "hi"], ["a6"], name="relu6_1"),
                  helper.make_node("Conv", ["a6", "wc"], ["y"], name="convC")]
    else:
        nodes.append(helper.make_node("Sigmoid", ["a"], ["y"], name="sig"))
    ych = 8 if tail == "sigmoid" else 4
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", ych, 10, 10])],
        [numpy_helper.from_array(a, n) for a, n in inits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


def _data(n, seed):
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 10, 10)).astype(np.float32)


def _ort(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _quantize(model, tmp_path, ae, name):
    r = onnxq.quantize(model, list(_data(16, 1)),
                       {"calibrator": "minmax", "act_equalization": ae, "threads": 1})
    out = str(tmp_path / name)
    onnxq.save(r.model, out)
    return r, out


def test_equalization_lowers_ort_error(tmp_path):
    model = _model(tmp_path / "m.onnx")
    x = _data(8, 7)
    ref = _ort(model, x)
    r_off, q_off = _quantize(model, tmp_path, "off", "off.onnx")
    r_on, q_on = _quantize(model, tmp_path, "on", "on.onnx")
    err = {k: float(np.mean((_ort(p, x) - ref) ** 2) / np.mean(ref ** 2)) for k, p in [("off", q_off), ("on", q_on)]}
    assert err["on"] < err["off"] / 4, err
    assert r_off.report["act_equalization"] is None
    rep = r_on.report["act_equalization"]
    assert rep["groups_equalized"] == 1 and rep["samples"] == 16
    (grp,) = [g for g in rep["groups"] if g["applied"]]
    assert set(grp["tensors"]) == {"p", "q", "a"}
    assert grp["scale_min"] == 1.0 and grp["scale_max"] == 16.0  # channel 5 (x0.125) hits the cap
    assert r_on.report["config"]["act_equalization"] == "on"
    # The default (auto) is off.
    r_auto = onnxq.quantize(model, list(_data(16, 1)), {"calibrator": "minmax", "threads": 1})
    assert r_auto.report["act_equalization"] is None
    assert onnxq.QuantConfig(act_equalization=True).to_dict() == {"act_equalization": True}


@pytest.mark.parametrize("tail,reason", [("relu6", "Clip"), ("sigmoid", "Sigmoid")])
def test_skipped_groups_leave_the_model_unchanged(tmp_path, tail, reason):
    model = _model(tmp_path / "m.onnx", tail)
    r_off, q_off = _quantize(model, tmp_path, "off", "off.onnx")
    r_on, q_on = _quantize(model, tmp_path, "on", "on.onnx")
    rep = r_on.report["act_equalization"]
    assert rep["groups_equalized"] == 0
    (grp,) = [g for g in rep["groups"] if "a" in g["tensors"]]
    assert not grp["applied"] and reason in grp["skipped"], grp
    # Nothing was rewritten: the exported initializers are identical.
    a = {t.name: numpy_helper.to_array(t) for t in onnx.load(q_off).graph.initializer}
    b = {t.name: numpy_helper.to_array(t) for t in onnx.load(q_on).graph.initializer}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cli_flag(tmp_path):
    cli = os.environ.get("ONNXQ_CLI")
    if not cli:
        cli = os.path.join(os.path.dirname(onnxq.__file__), "..", "..", "bin", "onnxq")
    if not os.path.exists(cli):
        pytest.skip(f"onnxq CLI not found at {cli} (set ONNXQ_CLI)")
    model = _model(tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", _data(16, 1))
    rep = tmp_path / "r.json"
    subprocess.run([cli, "quantize", model, "-o", str(tmp_path / "q.onnx"), "--calib", str(tmp_path / "calib.npy"),
                    "--act-equalization", "on", "--report", str(rep)], check=True, capture_output=True)
    assert json.loads(rep.read_text())["act_equalization"]["groups_equalized"] == 1
    bad = subprocess.run([cli, "quantize", model, "-o", str(tmp_path / "q2.onnx"), "--calib",
                          str(tmp_path / "calib.npy"), "--act-equalization", "maybe"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--act-equalization" in bad.stderr
