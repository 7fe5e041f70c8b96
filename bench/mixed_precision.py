#!/usr/bin/env python3
"""Mixed-precision weights on the shared MobileNetV2 (MCT-style table). Prints one JSON object.

    PYTHONPATH=build/python .venv/bin/python bench/mixed_precision.py [--bits 8,6,5,4,3] [--threads 2]
        [--columns single,mixed,mixed+gptq,mixed+adaround] [--cache DIR]

Calibration: first 100 images of labels.tsv; evaluation: the other 400. Activations 8 bits
(onnxq's default calibration). For each average weight bit width B, the columns:
  single:  every layer at B bits (B must be an integer), nearest rounding (max-abs per-channel scales,
           narrow grid: ONNX Runtime's recipe with fewer bits);
  mixed:   per-layer bits from the measured sensitivity (nearest rounding, max-abs scales, narrow
           grid) under "average <= B";
  mixed+gptq: MSE-searched per-channel scales, the default sub-8-bit grid (full; at 2 bits per
              channel the full grid or its mirror) and GPTQ rounding, in the sensitivity and the final model;
  mixed+adaround: the same allocation (sensitivity measured with GPTQ) and AdaRound rounding.
Each is exported and evaluated with onnxq's executor on the QDQ file (its Q/DQ computed in float:
exactly the simulation) and with ONNX Runtime; top-1, agreement with float top-1 and the mean
KL(softmax(float) || softmax(quantized)).
Timing: the sensitivity (measured once per recipe and reused for every budget) and each quantize
call (calibration, Hessians, allocation, rounding, bias correction, export).
ONNXQ_BENCH_SMOKE=1: a minimal run (4 bits, mixed+gptq, candidate bits 4 and 8, few samples and
evaluation images) that still prints the JSON.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_dir():
    return os.environ.get("ONNXQ_SHARED", os.path.join(REPO, "..", "shared"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", default="8,6,5,4,3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--columns", default="single,mixed,mixed+gptq,mixed+adaround")
    ap.add_argument("--sensitivity-samples", type=int, default=64)
    ap.add_argument("--rounding-samples", type=int, default=100)
    ap.add_argument("--cache", help="folder for the sensitivity JSON (reused when present; then not timed)")
    ap.add_argument("--gptq-bits", default="", help="candidate bits for the mixed+gptq column (default: all)")
    ap.add_argument("--eval-count", type=int, default=400)
    ap.add_argument("--allocation-refine", type=int, default=0,
                    help="rounds of whole-model refinement of the allocation (config allocation_refine)")
    args = ap.parse_args()
    smoke = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"
    if smoke:
        args.bits, args.columns, args.gptq_bits = "4", "mixed+gptq", "4,8"
        args.sensitivity_samples, args.rounding_samples, args.eval_count = 4, 8, 16
    import onnxq
    import onnxruntime as ort

    model = os.path.join(shared_dir(), "models", "mobilenetv2-1.0.onnx")
    data = os.path.join(shared_dir(), "data", "imagenet-sample")
    if not os.path.exists(model):
        print(json.dumps({"skipped": "shared MobileNetV2 not found (set ONNXQ_SHARED)"}))
        return
    ds = onnxq.calib.Dataset(data, preset="imagenet-tf", skip=100, count=args.eval_count)
    x = ds.load_batch(0, len(ds), threads=args.threads)
    labels = np.array([ds.label(i) for i in range(len(ds))])

    def ort_logits(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])

    def onnxq_logits(path):
        s = onnxq.Session(onnxq.load(path), threads=args.threads)
        return np.concatenate([next(iter(s.run({"input": x[i:i + 25]}).values()))
                               for i in range(0, len(x), 25)])

    ref = ort_logits(model)

    def log_softmax(a):
        a = a.astype(np.float64) - a.max(1, keepdims=True)
        return a - np.log(np.exp(a).sum(1, keepdims=True))

    def m(l):
        p, q = log_softmax(ref), log_softmax(l)
        return {"top1": round(100.0 * float((l.argmax(1) == labels).mean()), 2),
                "agreement": round(100.0 * float((l.argmax(1) == ref.argmax(1)).mean()), 2),
                # mean KL(softmax(float) || softmax(quantized)): steadier than top-1 on 400 images
                "kl": round(float((np.exp(p) * (p - q)).sum(1).mean()), 5)}

    out = {"float_top1": m(ref)["top1"], "eval_images": len(x), "threads": args.threads, "smoke": smoke}
    base = {"preprocess": "imagenet-tf", "calib_count": 100, "threads": args.threads,
            "sensitivity_samples": args.sensitivity_samples, "rounding_samples": args.rounding_samples}
    if args.allocation_refine:
        base["allocation_refine"] = args.allocation_refine
    cols = args.columns.split(",")
    # nearest: max-abs scales, narrow grid (ONNX Runtime's recipe); gptq / adaround: MSE-searched
    # scales, the default ("auto") grid; AdaRound's allocation uses the GPTQ sensitivity.
    recipe = {"nearest": {"rounding": "nearest", "weight_grid": "narrow"},
              "gptq": {"rounding": "gptq", "weight_scale": "mse", "weight_grid": "auto"},
              "adaround": {"rounding": "adaround", "weight_scale": "mse", "weight_grid": "auto"}}
    if smoke:
        base["candidate_bits"] = [4, 8]
    sens = {}
    needed = (["nearest"] if "mixed" in cols else []) + \
        (["gptq"] if "mixed+gptq" in cols or "mixed+adaround" in cols else [])
    for rounding in needed:
        tag = {"nearest": "nearest", "gptq": "gptq_auto"}[rounding] + f"_s{args.sensitivity_samples}"
        cached = os.path.join(args.cache, f"sensitivity_{tag}.json") if args.cache and not smoke else None
        if cached and os.path.exists(cached):
            with open(cached) as f:
                sens[rounding] = json.load(f)
            out["sensitivity_s_" + rounding] = sens[rounding]["seconds"]
            continue
        t0 = time.perf_counter()
        s = onnxq.sensitivity(model, data, dict(base, **recipe[rounding]))
        sens[rounding] = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        out["sensitivity_s_" + rounding] = round(time.perf_counter() - t0, 1)
        if cached:
            with open(cached, "w") as f:
                json.dump(sens[rounding], f)
        print(f"sensitivity {rounding}: {out['sensitivity_s_' + rounding]} s", file=sys.stderr, flush=True)
    tmp = tempfile.mkdtemp()
    rows = []
    for b in [float(v) for v in args.bits.split(",")]:
        for col in cols:
            if col == "single":
                if b != int(b):
                    continue
                cfg = dict(base, weight_bits=int(b), **recipe["nearest"])
            elif col == "mixed":
                cfg = dict(base, weight_bits_avg=b, sensitivity=sens["nearest"], **recipe["nearest"])
            else:
                cfg = dict(base, weight_bits_avg=b, sensitivity=sens["gptq"], **recipe[col.split("+")[1]])
                if args.gptq_bits:
                    cfg["candidate_bits"] = [int(v) for v in args.gptq_bits.split(",")]
            t0 = time.perf_counter()
            r = onnxq.quantize(model, data, cfg)
            qs = time.perf_counter() - t0
            path = os.path.join(tmp, "q.onnx")
            onnxq.save(r.model, path)
            rep = r.report
            lo, lq = onnxq_logits(path), ort_logits(path)
            row = {"avg_bits_budget": b, "column": col,
                   "average_weight_bits": round(rep["sizes"]["average_weight_bits"], 3),
                   "packed_weight_bytes": rep["sizes"]["packed_weight_bytes"],
                   "bits_histogram": {str(k): sum(1 for w in rep["weights"] if w["bits"] == k)
                                      for k in range(2, 9)},
                   "quantize_s": round(qs, 1), "onnxq_sim": m(lo), "onnxruntime": m(lq),
                   "timings_ms": {k: round(v) for k, v in rep["timings_ms"].items()}}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    out["table"] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
