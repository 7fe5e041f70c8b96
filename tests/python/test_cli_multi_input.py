"""The CLI calibrates models with several inputs from one `--calib NAME=PATH` per input: the same
ranges as Python's dict samples, sharded `calibrate` included, and clear errors for missing,
unknown, mistyped or mismatched data."""

import json
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import onnxq  # noqa: E402
from test_quantize_api import _three_feeds, _three_input_model  # noqa: E402


def _write_data(root, feeds):
    """x: a folder of per-sample .npy files; y: one stacked .npy; ids: per-sample int64 .npy."""
    (root / "x").mkdir()
    (root / "ids").mkdir()
    for i in range(len(feeds["x"])):
        np.save(root / "x" / f"{i:03d}.npy", feeds["x"][i])
        np.save(root / "ids" / f"{i:03d}.npy", feeds["ids"][i])  # 0-d: the input is [N]
    np.save(root / "y.npy", feeds["y"])
    return [f"x={root / 'x'}", f"y={root / 'y.npy'}", f"ids={root / 'ids'}"]


def _run(cli, *args, ok=True):
    p = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True)
    assert (p.returncode == 0) == ok, p.stderr
    return p


def _calib_args(specs):
    return [a for s in specs for a in ("--calib", s)]


def test_cli_calibrates_each_input_from_its_own_path(tmp_path, onnxq_cli):
    fpath = _three_input_model(tmp_path / "f.onnx")
    feeds = _three_feeds(12, 1)
    specs = _write_data(tmp_path, feeds)

    # Python with one dict per sample is the reference (same observers, same data).
    per_sample = [{k: v[i] for k, v in feeds.items()} for i in range(12)]
    ref = onnxq.quantize(str(fpath), per_sample, {"threads": 1, "bias_correction": "off"})
    ref_scales = {a["tensor"]: a["scale"] for a in ref.report["activations"]}
    assert {"x", "y"} <= set(ref_scales)

    _run(onnxq_cli, "quantize", fpath, "-o", tmp_path / "q.onnx", *_calib_args(specs), "--bias-correction",
         "off", "--threads", 1, "--report", tmp_path / "r.json")
    got = {a["tensor"]: a["scale"] for a in json.loads((tmp_path / "r.json").read_text())["activations"]}
    assert got == ref_scales
    q = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    test = _three_feeds(5, 9)
    fl = ort.InferenceSession(str(fpath), providers=["CPUExecutionProvider"]).run(None, test)[0]
    out = q.run(None, test)[0]
    assert 10 * np.log10((fl ** 2).sum() / ((fl - out) ** 2).sum()) > 25

    # Sharded: two calibrate runs over halves, merged, give the one-shot ranges.
    _run(onnxq_cli, "calibrate", fpath, *_calib_args(specs), "--count", 6, "-o", tmp_path / "a.stats")
    _run(onnxq_cli, "calibrate", fpath, *_calib_args(specs), "--skip", 6, "-o", tmp_path / "b.stats")
    _run(onnxq_cli, "calibrate", "--merge", tmp_path / "a.stats", "--merge", tmp_path / "b.stats", "-o",
         tmp_path / "all.stats")
    _run(onnxq_cli, "quantize", fpath, "-o", tmp_path / "q2.onnx", "--stats", tmp_path / "all.stats",
         "--report", tmp_path / "r2.json")
    merged = {a["tensor"]: a["scale"] for a in json.loads((tmp_path / "r2.json").read_text())["activations"]}
    assert merged == ref_scales


def test_cli_multi_input_errors_name_the_problem(tmp_path, onnxq_cli):
    fpath = _three_input_model(tmp_path / "f.onnx")
    feeds = _three_feeds(6, 2)
    specs = _write_data(tmp_path, feeds)
    out = tmp_path / "q.onnx"

    def fails(*calib, match):
        p = _run(onnxq_cli, "quantize", fpath, "-o", out, *_calib_args(calib), ok=False)
        assert match in p.stderr, p.stderr
        assert not out.exists()

    fails(str(tmp_path / "x"), match="give --calib NAME=PATH for each input")
    fails(specs[0], specs[1], match="no --calib data for the model input 'ids'")
    fails(*specs, f"z={tmp_path / 'x'}", match="names no input of the model")
    fails(specs[0], specs[0], specs[1], specs[2], match="given twice for input 'x'")
    # ids as float32: the .npy type must be the input's.
    (tmp_path / "fids").mkdir()
    for i in range(6):
        np.save(tmp_path / "fids" / f"{i:03d}.npy", feeds["ids"][i].astype(np.float32))
    fails(specs[0], specs[1], f"ids={tmp_path / 'fids'}", match="expected int64")
    # Different sample counts.
    np.save(tmp_path / "y5.npy", feeds["y"][:5])
    fails(specs[0], f"y={tmp_path / 'y5.npy'}", specs[2], match="differ in size")
    # NaN in one input's data.
    bad = feeds["y"].copy()
    bad[3, 2] = np.nan
    np.save(tmp_path / "ynan.npy", bad)
    fails(specs[0], f"y={tmp_path / 'ynan.npy'}", specs[2], match="non-finite")
