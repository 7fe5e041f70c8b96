"""Mixed-precision weights on a small model built with onnx.helper: per-layer bits in the export
(int8 containers with the range restricted, true bits in metadata, packed size in the report),
ONNX Runtime runs the export and matches onnxq's executor, sensitivity and allocation (budget
respected, allocation = what quantize used), GPTQ and AdaRound against nearest rounding, the full
and the oriented sub-8-bit weight grids in ONNX Runtime, and the CLI."""

import json
import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import onnxq  # noqa: E402


def _model(path):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    w2 = rng.normal(0, 0.3, (16, 16, 1, 1)).astype(np.float32)
    wd = rng.normal(0, 0.3, (16, 1, 3, 3)).astype(np.float32)
    wf = rng.normal(0, 0.3, (16, 10)).astype(np.float32)
    bf = rng.normal(0, 0.1, 10).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Conv", ["c2", "wd"], ["c3"], pads=[1, 1, 1, 1], group=16, name="dw"),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, n) for a, n in
         [(w1, "w1"), (b1, "b1"), (w2, "w2"), (wd, "wd"), (wf, "wf"), (bf, "bf")]])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _samples(n, seed):
    rng = np.random.default_rng(seed)
    # Spatially smooth inputs (correlated neighbours, like images): GPTQ has something to exploit.
    base = rng.uniform(-1, 1, (n, 3, 4, 4)).astype(np.float32)
    x = np.repeat(np.repeat(base, 3, axis=2), 3, axis=3)
    return list(x + 0.05 * rng.normal(size=x.shape).astype(np.float32))


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _init(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def test_layer_bits_export_runs_in_ort(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(16, 1)
    bits = {"conv1": 8, "conv2": 4, "dw": 3, "fc": 2}
    r = onnxq.quantize(str(fpath), calib, {"layer_weight_bits": bits, "threads": 1, "calibrator": "minmax"})
    qpath = tmp_path / "q.onnx"
    onnxq.save(r.model, str(qpath))
    m = onnx.load(str(qpath))
    onnx.checker.check_model(m, full_check=True)
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["onnxq.weight_bits"]) == bits
    for w, b in [("w1", 8), ("w2", 4), ("wd", 3), ("wf", 2)]:
        q = _init(m, w + "_quantized")
        assert q.dtype == np.int8
        lim = 2 ** (b - 1) - 1
        # Default weight grid: full below 8 bits ([-8, 7] at 4 bits), narrow at 8 ([-127, 127]).
        assert q.min() >= -lim - (b < 8) and q.max() <= lim
        assert q.max() == lim or q.min() == -lim  # max-abs scale: the range is used
    rep = r.report
    assert [w["bits"] for w in rep["weights"]] == [8, 4, 3, 2]
    # Packed size by hand: params * bits / 8 + 4 bytes per channel scale.
    expect = 16 * 27 * 8 / 8 + 16 * 4 + 16 * 16 * 4 / 8 + 16 * 4 + 16 * 9 * 3 / 8 + 16 * 4 + 160 * 2 / 8 + 10 * 4
    assert rep["sizes"]["packed_weight_bytes"] == int(np.ceil(expect))
    params = 16 * 27 + 256 + 144 + 160
    avg = (16 * 27 * 8 + 256 * 4 + 144 * 3 + 160 * 2) / params
    assert rep["sizes"]["average_weight_bits"] == pytest.approx(avg)
    # ONNX Runtime runs it and agrees with onnxq's executor on the same file.
    x = np.stack(_samples(8, 50))
    q_ort = _ort(qpath, x)
    s = onnxq.Session(onnxq.load(str(qpath)), threads=1)
    q_onnxq = next(iter(s.run({"x": x}).values()))
    np.testing.assert_allclose(q_ort, q_onnxq, atol=0.05 * np.abs(q_ort).max())


def test_sensitivity_and_budget(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(16, 2)
    cfg = {"threads": 1, "sensitivity_samples": 8, "candidate_bits": [2, 4, 8]}
    sens = onnxq.sensitivity(str(fpath), calib, cfg)
    assert sens["metric"] == "kl" and sens["samples"] == 8
    assert [l["node"] for l in sens["layers"]] == ["conv1", "conv2", "dw", "fc"]
    assert [l["params"] for l in sens["layers"]] == [432, 256, 144, 160]
    for l in sens["layers"]:
        d = {int(k): v for k, v in l["damage"].items()}
        assert sorted(d) == [2, 4, 8]
        assert d[2] > d[4] > d[8] >= 0
    # The allocation respects the budget; quantize uses exactly the allocation.
    total = 432 + 256 + 144 + 160
    for avg in [2.0, 3.5, 5.0, 8.0]:
        c = dict(cfg, weight_bits_avg=avg, sensitivity=sens, calibrator="minmax")
        alloc = onnxq.allocate_bits(str(fpath), sens, c)
        used = sum(b * l["params"] for b, l in zip(alloc.values(), sens["layers"])) / total
        assert used <= avg + 1e-9
        r = onnxq.quantize(str(fpath), calib, c)
        assert {w["node"]: w["bits"] for w in r.report["weights"]} == alloc
        assert r.report["sizes"]["average_weight_bits"] == pytest.approx(used)
    assert set(onnxq.allocate_bits(str(fpath), sens, dict(cfg, weight_bits_avg=8.0)).values()) == {8}
    assert set(onnxq.allocate_bits(str(fpath), sens, dict(cfg, weight_bits_avg=2.0)).values()) == {2}
    # A memory budget as a fraction of float32 (8 bits = 0.25 plus scales).
    alloc = onnxq.allocate_bits(str(fpath), sens, dict(cfg, weight_memory=0.2))
    packed = sum(b * l["params"] / 8 + 4 * l["channels"] for b, l in zip(alloc.values(), sens["layers"]))
    assert packed <= 0.2 * 4 * total
    # BOPs: MACs per sample from the inferred shapes (conv1 12x12x16 outputs x 27, ...), x bits x 8.
    macs = {l["node"]: l["macs"] for l in sens["layers"]}
    assert macs == {"conv1": 144 * 16 * 27, "conv2": 144 * 16 * 16, "dw": 144 * 16 * 9, "fc": 160}
    limit = 4.5 * 8 * sum(macs.values())
    alloc = onnxq.allocate_bits(str(fpath), sens, dict(cfg, bops=limit))
    assert sum(macs[k] * b * 8 for k, b in alloc.items()) <= limit
    assert len(set(alloc.values())) > 1
    with pytest.raises(onnxq.OnnxqError, match="one budget"):
        onnxq.allocate_bits(str(fpath), sens, dict(cfg, weight_bits_avg=4, bops=1e6))
    # A cached sensitivity measured with other settings is used, and the report says so.
    same = onnxq.quantize(str(fpath), calib, dict(cfg, weight_bits_avg=4.0, sensitivity=sens, calibrator="minmax"))
    assert not any("given sensitivity" in n for n in same.report["notes"]), same.report["notes"]
    other = onnxq.quantize(str(fpath), calib, dict(cfg, weight_bits_avg=4.0, sensitivity=sens, calibrator="minmax",
                                                   weight_scale="mse", weight_grid="narrow"))
    (note,) = [n for n in other.report["notes"] if "given sensitivity" in n]
    assert "weight_scale minmax (now mse)" in note and "weight_grid auto (now narrow)" in note, note


def test_pareto_front(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    d = tmp_path / "eval"
    d.mkdir()
    for i, smp in enumerate(_samples(6, 7)):
        np.save(d / f"e{i:02d}.npy", smp)
    cfg = {"threads": 1, "sensitivity_samples": 8, "candidate_bits": [2, 3, 4, 8], "weight_bits_avg": 8,
           "calibrator": "minmax"}
    front = onnxq._onnxq.pareto_front(str(fpath), _samples(16, 5), str(d), [2.5, 4.0, 8.0], cfg)
    assert [p["budget"] for p in front] == [2.5, 4.0, 8.0]
    assert all(p["average_weight_bits"] <= p["budget"] + 1e-9 for p in front)
    assert front[0]["packed_weight_bytes"] < front[1]["packed_weight_bytes"] < front[2]["packed_weight_bytes"]
    assert front[0]["predicted_damage_sum"] >= front[1]["predicted_damage_sum"] >= front[2]["predicted_damage_sum"]
    assert all(p["eval_samples"] == 6 and p["top1"] is None for p in front)
    assert front[2]["mean_kl"] < front[0]["mean_kl"]


def test_gptq_beats_nearest(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(32, 3)
    x = np.stack(_samples(32, 3))  # output error on the calibration data itself
    ref = _ort(fpath, x)
    errs = {}
    for rounding in ["nearest", "gptq"]:
        r = onnxq.quantize(str(fpath), calib, {"weight_bits": 3, "rounding": rounding, "threads": 1,
                                               "calibrator": "minmax", "bias_correction": "off",
                                               "rounding_samples": 32})
        q = tmp_path / f"{rounding}.onnx"
        onnxq.save(r.model, str(q))
        errs[rounding] = float(((_ort(q, x) - ref) ** 2).mean())
        assert r.report["mixed_precision"]["rounding"] == rounding
    assert errs["gptq"] < 0.8 * errs["nearest"], errs


def test_full_grid_uses_the_extra_level_and_runs_in_ort(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(16, 1)
    bits = {"conv1": 8, "conv2": 4, "dw": 3, "fc": 2}
    x = np.stack(_samples(8, 50))
    ranges, codes, errs = {}, {}, {}
    fm = onnx.load(str(fpath))
    for grid in ["full", "narrow", "oriented"]:
        r = onnxq.quantize(str(fpath), calib, {"layer_weight_bits": bits, "threads": 1, "calibrator": "minmax",
                                               "weight_scale": "mse", "weight_grid": grid})
        qpath = tmp_path / f"{grid}.onnx"
        onnxq.save(r.model, str(qpath))
        m = onnx.load(str(qpath))
        onnx.checker.check_model(m, full_check=True)
        ranges[grid] = {w: (int(_init(m, w + "_quantized").min()), int(_init(m, w + "_quantized").max()))
                        for w in ["w1", "w2", "wd", "wf"]}
        for w in ["w2", "wd", "wf"]:
            axis = 1 if w == "wf" else 0  # Gemm [K, N]: per output column
            q = np.moveaxis(_init(m, w + "_quantized"), axis, 0).reshape(_init(m, w + "_scale").size, -1)
            codes[grid, w] = q
            deq = q * _init(m, w + "_scale")[:, None]
            ref = np.moveaxis(_init(fm, w), axis, 0).reshape(deq.shape)
            errs[grid, w] = ((deq - ref) ** 2).sum(1)
        # ONNX Runtime and onnxq's fake-quant simulation compute the same model.
        q_ort = _ort(qpath, x)
        sim = onnxq.Session(onnxq.load(str(qpath)), threads=1, integer=False)
        q_sim = next(iter(sim.run({"x": x}).values()))
        np.testing.assert_allclose(q_ort, q_sim, atol=0.02 * np.abs(q_ort).max())
    for w, b in [("w2", 4), ("wd", 3), ("wf", 2)]:
        lo, hi = ranges["full"][w]
        assert -(2 ** (b - 1)) <= lo and hi <= 2 ** (b - 1) - 1
        nlo, nhi = ranges["narrow"][w]
        assert -(2 ** (b - 1) - 1) <= nlo and nhi <= 2 ** (b - 1) - 1
    # The extra negative level is used somewhere below 8 bits; 8 bits stays narrow in both.
    assert any(ranges["full"][w][0] == -(2 ** (b - 1)) for w, b in [("w2", 4), ("wd", 3), ("wf", 2)])
    assert ranges["full"]["w1"][0] >= -127 and ranges["full"]["w1"] == ranges["narrow"]["w1"]
    # Oriented: per output channel the full grid or its mirror ([-7, 8] at 4 bits), never a worse
    # weight error than the full grid; both orientations occur on these symmetric weights.
    mirrored = 0
    for w, b in [("w2", 4), ("wd", 3), ("wf", 2)]:
        top = 2 ** (b - 1)
        for row in codes["oriented", w]:
            assert (-top <= row.min() and row.max() <= top - 1) or (-(top - 1) <= row.min() and row.max() <= top)
            mirrored += int(row.max() == top)
        assert np.all(errs["oriented", w] <= errs["full", w] * (1 + 1e-5) + 1e-12), w
        assert errs["oriented", w].sum() < errs["full", w].sum(), w
    assert mirrored > 0
    assert ranges["oriented"]["w1"] == ranges["narrow"]["w1"]


@pytest.mark.parametrize("objective", ["float", "asymmetric"])
def test_adaround_beats_nearest(tmp_path, objective):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(32, 3)
    x = np.stack(_samples(32, 3))
    ref = _ort(fpath, x)
    errs = {}
    for rounding in ["nearest", "adaround"]:
        r = onnxq.quantize(str(fpath), calib, {"weight_bits": 3, "rounding": rounding, "threads": 1,
                                               "calibrator": "minmax", "bias_correction": "off",
                                               "rounding_samples": 32, "adaround_iters": 300,
                                               "rounding_objective": objective})
        q = tmp_path / f"{rounding}.onnx"
        onnxq.save(r.model, str(q))
        errs[rounding] = float(((_ort(q, x) - ref) ** 2).mean())
        assert r.report["mixed_precision"]["rounding"] == rounding
        if rounding == "adaround":
            # Every re-rounded layer reports its relative output error on the rounding objective.
            losses = [w.get("rounding_loss") for w in r.report["weights"]]
            assert all(v is None or 0 <= v < 1 for v in losses) and any(v is not None for v in losses)
    assert errs["adaround"] < 0.8 * errs["nearest"], errs


def test_adaround_is_deterministic_across_thread_counts(tmp_path):
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(16, 6)
    inits = []
    for threads in [1, 2]:
        r = onnxq.quantize(str(fpath), calib, {"weight_bits_avg": 4.0, "rounding": "adaround", "threads": threads,
                                               "calibrator": "minmax", "weight_scale": "mse",
                                               "sensitivity_samples": 4, "rounding_samples": 12,
                                               "adaround_iters": 200})
        q = tmp_path / f"t{threads}.onnx"
        onnxq.save(r.model, str(q))
        inits.append({t.name: t.raw_data for t in onnx.load(str(q)).graph.initializer})
    assert inits[0] == inits[1]


def test_cli_sensitivity_and_budget(tmp_path, onnxq_cli):
    fpath = _model(tmp_path / "f.onnx")
    d = tmp_path / "calib"
    d.mkdir()
    for i, s in enumerate(_samples(8, 4)):
        np.save(d / f"s{i:02d}.npy", s)
    out = subprocess.run([str(onnxq_cli), "sensitivity", str(fpath), "--calib", str(d), "--samples", "4",
                          "--bits", "3,8", "--json", "--threads", "1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sens = json.loads(out.stdout)
    assert len(sens["layers"]) == 4 and set(sens["layers"][0]["damage"]) == {"3", "8"}
    q = tmp_path / "q.onnx"
    rep = tmp_path / "r.json"
    out = subprocess.run([str(onnxq_cli), "quantize", str(fpath), "-o", str(q), "--calib", str(d),
                          "--weight-bits-avg", "5", "--candidate-bits", "3,8", "--rounding", "adaround",
                          "--adaround-iters", "50", "--weight-grid", "full",
                          "--report", str(rep), "--threads", "1"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    r = json.loads(rep.read_text())
    assert r["sizes"]["average_weight_bits"] <= 5
    assert {w["bits"] for w in r["weights"]} <= {3, 8}
    _ort(q, np.stack(_samples(2, 9)))
    bad = subprocess.run([str(onnxq_cli), "quantize", str(fpath), "-o", str(tmp_path / "b.onnx"), "--calib",
                          str(d), "--layer-bits", "nosuch=4"], capture_output=True, text=True)
    assert bad.returncode != 0 and "nosuch" in bad.stderr
    assert not (tmp_path / "b.onnx").exists()


def _kl(p_logits, q_logits):
    def lsm(a):
        a = a.astype(np.float64)
        m = a.max(1, keepdims=True)
        return a - m - np.log(np.exp(a - m).sum(1, keepdims=True))
    p, q = lsm(p_logits), lsm(q_logits)
    return float((np.exp(p) * (p - q)).sum(1).mean())


def test_allocation_refinement(tmp_path):
    # Whole-model refinement of the allocation: its losses are the KL of the fake-quant model on the
    # last sensitivity_samples calibration samples (checked against ONNX Runtime on the exported
    # files, bias correction off so the export is exactly what was measured), it never ends above
    # the knapsack's loss, keeps the budget and is deterministic.
    fpath = _model(tmp_path / "f.onnx")
    calib = _samples(24, 4)  # a case where swaps are both kept and rejected
    cfg = {"threads": 1, "sensitivity_samples": 12, "candidate_bits": [2, 3, 4, 5, 6, 8], "calibrator": "minmax",
           "bias_correction": "off", "weight_bits_avg": 3.5}
    base = onnxq.quantize(str(fpath), calib, cfg)
    runs = [onnxq.quantize(str(fpath), calib, dict(cfg, allocation_refine=3)) for _ in range(2)]
    ref, again = (dict(r.report["mixed_precision"]["refine"]) for r in runs)
    ref.pop("seconds"), again.pop("seconds")
    assert again == ref
    assert [w["bits"] for w in runs[1].report["weights"]] == [w["bits"] for w in runs[0].report["weights"]]
    assert "refine" not in base.report["mixed_precision"]
    x = np.stack(calib[-12:])
    f = _ort(fpath, x)
    paths = []
    for name, r in [("base", base), ("refined", runs[0])]:
        paths.append(tmp_path / (name + ".onnx"))
        onnxq.save(r.model, str(paths[-1]))
        assert r.report["sizes"]["average_weight_bits"] <= 3.5 + 1e-12
    base_loss = _kl(f, _ort(paths[0], x))
    assert ref["initial_loss"] == pytest.approx(base_loss, rel=0.05)
    assert ref["final_loss"] == pytest.approx(_kl(f, _ort(paths[1], x)), rel=0.05)
    assert ref["final_loss"] <= ref["initial_loss"]
    loss = ref["initial_loss"]
    for c in ref["candidates"]:
        assert c["measured"] < loss * 0.99 or not c["accepted"]
        if c["accepted"]:
            loss = c["measured"]
    assert loss == ref["final_loss"]
    assert ref["evaluations"] == len(ref["candidates"]) >= 1
    changed = sum(a["bits"] != b["bits"] for a, b in zip(base.report["weights"], runs[0].report["weights"]))
    assert changed == ref["changed_layers"]
    assert ref["accepted"] >= 1 and changed > 0 and ref["final_loss"] < base_loss
    assert any(not c["accepted"] for c in ref["candidates"])
