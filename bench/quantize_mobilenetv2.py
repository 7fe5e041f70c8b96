#!/usr/bin/env python3
"""W8A8 quantization of the shared MobileNetV2: wall time, peak memory and an accuracy table.
Prints one JSON object.

    PYTHONPATH=build/python .venv/bin/python bench/quantize_mobilenetv2.py [--build build]
        [--grid full|acceptance] [--threads 2]

Timing: `onnxq quantize` (CLI, default flags + --calibrator kl/mse) on the first 100 images of
labels.tsv, end to end (JPEG decoding and preprocessing, calibration, bias correction, per-tensor
SQNR, export), wall time and the child's peak RSS; the same with 400 calibration images shows
that memory does not grow with the calibration set.

CPU time (user + system of the child, from its rusage) is printed beside the wall time, with the
load average before the run: on a shared machine the wall time measures the other processes too.

Accuracy: for each configuration (calibrator x weight granularity x cross-layer equalization x
bias correction; plus activation-channel equalization at the defaults) the model is quantized
through the Python API on the first 100 images and evaluated on the other 400, both by onnxq's executor running the exported QDQ file with its Q/DQ
nodes computed in float (`Session(..., integer=False)`: exactly onnxq's fake-quant simulation)
and by ONNX Runtime running the same file (fused integer kernels). Float reference: ONNX Runtime on the float model. Columns:
top-1, top-5, top-1 agreement with float, mean KL(float || quantized) of the softmax outputs, and
the top-1 agreement between ONNX Runtime and onnxq's simulation.

With --grid acceptance (or --ort-tool on), ONNX Runtime's own `quantize_static` (QDQ, per-channel
int8 weights, uint8 activations; MinMax, Percentile 99.999 and Entropy calibration) quantizes the
same model on the same 100 images and is evaluated on the same 400 ("onnxruntime_quantize_static"):
the issue's reference recipe on this split (smoke: MinMax only).

ONNXQ_BENCH_SMOKE=1 (what the docs test uses): a minimal run with the same JSON layout ("smoke":
true): each timing row once on 4 calibration images (8 for the "400" row), the first two rows of the
grid, 8 calibration and 8 evaluation images; its numbers are not measurements.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"


def shared_dir():
    return os.environ.get("ONNXQ_SHARED", os.path.join(REPO, "..", "shared"))


def log_softmax(a):
    a = a.astype(np.float64)
    m = a.max(1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(1, keepdims=True))


def metrics(logits, labels, ref_logits):
    top5 = np.argsort(-logits, axis=1)[:, :5]
    p, q = log_softmax(ref_logits), log_softmax(logits)
    return {
        "top1": round(100.0 * float((logits.argmax(1) == labels).mean()), 2),
        "top5": round(100.0 * float((top5 == labels[:, None]).any(1).mean()), 2),
        "agreement": round(100.0 * float((logits.argmax(1) == ref_logits.argmax(1)).mean()), 2),
        "mean_kl": round(float((np.exp(p) * (p - q)).sum(1).mean()), 5),
    }


def timed_child(cmd):
    """Runs cmd; returns (wall seconds, peak RSS in MiB, CPU seconds user + system) of that child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"quantize_mobilenetv2.py: `{' '.join(cmd)}` failed:\n{err}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", choices=["full", "table", "acceptance"], default="table",
                    help="full: every calibrator x granularity x CLE x bias correction (40 rows, about "
                         "an hour on 2 busy cores); table: every CLE x bias-correction combination for "
                         "both granularities with the default calibrator, and each other calibrator at "
                         "the per-channel and per-tensor defaults (14 rows; auto = mse); acceptance: the defaults, "
                         "per-tensor defaults and one row per calibrator; every grid adds the per-channel "
                         "and per-tensor defaults with --act-equalization on")
    ap.add_argument("--ort-tool", choices=["auto", "on", "off"], default="auto",
                    help="also quantize with ONNX Runtime's own quantize_static (QDQ, per-channel int8 "
                         "weights, uint8 activations; MinMax, Percentile 99.999, Entropy) on the same "
                         "calibration images and evaluate it on the same images (auto: with --grid "
                         "acceptance)")
    ap.add_argument("--timing-runs", type=int, default=3, help="best of N for the wall time")
    ap.add_argument("--no-timing", action="store_true", help="skip the CLI timing runs")
    args = ap.parse_args()

    sys.path.insert(0, os.path.join(args.build, "python"))
    import onnxq
    import onnxruntime as ort

    cli = os.path.join(args.build, "bin", "onnxq")
    model = os.path.join(shared_dir(), "models", "mobilenetv2-1.0.onnx")
    data = os.path.join(shared_dir(), "data", "imagenet-sample")
    if not os.path.exists(model) or not os.path.isdir(data):
        sys.exit(f"quantize_mobilenetv2.py: shared data not found under {shared_dir()} (set ONNXQ_SHARED)")
    tmp = tempfile.mkdtemp(prefix="onnxq-qbench-")
    out = {"model": model, "threads": args.threads, "cpu_count": os.cpu_count(), "smoke": SMOKE}
    # Image counts: calibration (timing rows "_100" / "_400", accuracy grid) and evaluation.
    n_time, n_time_big, n_calib, n_eval = (4, 8, 8, 8) if SMOKE else (100, 400, 100, None)
    if SMOKE:
        args.timing_runs = 1

    # ---- wall time and peak memory of the CLI
    timing = {}
    for name, extra, count in [] if args.no_timing else [
            ("default_100", [], n_time), ("kl_100", ["--calibrator", "kl"], n_time),
            ("mse_100", ["--calibrator", "mse"], n_time), ("default_400", [], n_time_big)]:
        cmd = [cli, "quantize", model, "-o", os.path.join(tmp, "t.onnx"), "--calib", data,
               "--calib-count", str(count), "--preprocess", "imagenet-tf", "--threads",
               str(args.threads), "--report", os.path.join(tmp, "t.json")] + extra
        load = os.getloadavg()[0]
        runs = [timed_child(cmd) for _ in range(args.timing_runs if count == n_time else 1)]
        with open(os.path.join(tmp, "t.json")) as f:
            stages = json.load(f)["timings_ms"]
        timing[name] = {"wall_s": round(min(r[0] for r in runs), 3),
                        "wall_s_all": [round(r[0], 3) for r in runs],
                        "cpu_s_user_sys": round(min(r[2] for r in runs), 3),
                        "cpu_s_all": [round(r[2], 3) for r in runs],
                        "load_average_before": round(load, 2), "calib_images": count,
                        "peak_rss_mib": round(max(r[1] for r in runs), 1),
                        "stages_ms_last_run": {k: round(v, 1) for k, v in stages.items()}}
    out["timing"] = timing

    # ---- evaluation data (decoded once)
    ds = onnxq.calib.Dataset(data, preset="imagenet-tf", skip=n_calib, **({"count": n_eval} if n_eval else {}))
    x = ds.load_batch(0, len(ds), threads=args.threads)
    labels = np.array([ds.label(i) for i in range(len(ds))])

    def ort_logits(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        return np.concatenate([s.run(None, {name: x[i:i + 50]})[0] for i in range(0, len(x), 50)])

    def onnxq_logits(path):
        # integer=False: Q/DQ computed in float (the fake-quant simulation), not the integer lowering.
        s = onnxq.Session(onnxq.load(path), threads=args.threads, integer=False)
        return np.concatenate([next(iter(s.run({"input": x[i:i + 25]}).values()))
                               for i in range(0, len(x), 25)])

    ref = ort_logits(model)
    out["float"] = {"onnxruntime": metrics(ref, labels, ref),
                    "onnxq": metrics(onnxq_logits(model), labels, ref), "eval_images": len(x)}

    if args.grid == "full":
        grid = [(c, g, cle, bc, "auto") for c in ["auto", "minmax", "percentile", "mse", "kl"]
                for g in ["per-channel", "per-tensor"] for cle in ["off", "on"] for bc in ["off", "on"]]
    elif args.grid == "table":
        grid = [("auto", g, cle, bc, "auto") for g in ["per-channel", "per-tensor"] for cle in ["off", "on"]
                for bc in ["off", "on"]] + \
               [(c, g, "auto", "auto", "auto") for c in ["minmax", "percentile", "kl"]
                for g in ["per-channel", "per-tensor"]]
    else:
        grid = [("auto", "per-channel", "auto", "auto", "auto"), ("auto", "per-tensor", "auto", "auto", "auto")] + \
               [(c, "per-channel", "auto", "auto", "auto") for c in ["minmax", "percentile", "mse", "kl"]]
    # Activation-channel equalization (off by default) at both granularities' defaults.
    grid += [("auto", g, "auto", "auto", "on") for g in ["per-channel", "per-tensor"]]
    if SMOKE:
        grid = grid[:2]
    rows = []
    for calib, gran, cle, bc, ae in grid:
        cfg = {"calibrator": calib, "weight_granularity": gran, "cle": cle, "bias_correction": bc,
               "act_equalization": ae, "preprocess": "imagenet-tf", "calib_count": n_calib,
               "threads": args.threads}
        t0 = time.perf_counter()
        res = onnxq.quantize(model, data, cfg)
        qtime = time.perf_counter() - t0
        path = os.path.join(tmp, "q.onnx")
        onnxq.save(res.model, path)
        lo, lq = onnxq_logits(path), ort_logits(path)
        rows.append({"calibrator": calib, "weights": gran, "cle": cle, "bias_correction": bc,
                     "act_equalization": ae, "act_equalization_applied": res.report["act_equalization"] is not None,
                     "cle_applied": res.report["cle_applied"],
                     "bias_correction_applied": res.report["bias_correction_applied"],
                     "quantize_s": round(qtime, 2),
                     "onnxq_sim": metrics(lo, labels, ref), "onnxruntime": metrics(lq, labels, ref),
                     "ort_vs_sim_top1_agreement": round(100.0 * float((lo.argmax(1) == lq.argmax(1)).mean()), 2)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out["table"] = rows

    # ---- ONNX Runtime's own static quantization on the same split: the reference recipe of the
    # issue, measured on these evaluation images (its published numbers are for other images).
    if args.ort_tool == "on" or (args.ort_tool == "auto" and args.grid == "acceptance"):
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                              QuantType, quantize_static)
        cal = onnxq.calib.Dataset(data, preset="imagenet-tf", count=n_calib).load_batch(0, n_calib,
                                                                                     threads=args.threads)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(cal):
                    return None
                self.i += 1
                return {"input": cal[self.i - 1:self.i]}

        ort_rows = []
        for method in ["MinMax"] if SMOKE else ["MinMax", "Percentile", "Entropy"]:
            path = os.path.join(tmp, f"ort_{method}.onnx")
            t0 = time.perf_counter()
            quantize_static(model, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, method))
            ort_rows.append({"method": method, "quantize_s": round(time.perf_counter() - t0, 2),
                             "onnxruntime": metrics(ort_logits(path), labels, ref)})
            print(json.dumps(ort_rows[-1]), file=sys.stderr, flush=True)
        out["onnxruntime_quantize_static"] = ort_rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
