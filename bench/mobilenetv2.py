#!/usr/bin/env python3
"""MobileNetV2 batch-1 latency: onnxq vs ONNX Runtime in the same run, plus the GEMM microkernel's
GFLOP/s beside this CPU's measured fp32 FMA peak. Prints one JSON object.

    .venv/bin/python bench/mobilenetv2.py [--build build] [--model PATH] [--iters 100]

onnxq is timed through its CLI (`onnxq bench MODEL --threads N --iters N --json`), ONNX Runtime
through its Python API (intra_op_num_threads = N, sequential execution, all graph optimizations),
both at 1 and 2 threads with batch 1, alternating in --rounds blocks of iters/rounds runs so both
see the same machine load (latency: the median of the blocks' medians; min: the overall minimum). The GEMM
numbers come from `onnxq_kernels_bench --micro-only` (single thread, best ISA).

On a shared machine the two blocks of runs see different load, so the 1-thread comparison is also
made interleaved, in this process: one ONNX Runtime run, then one onnxq run (Python binding
`onnxq.Session` from BUILD/python), repeated --iters times, each timed by wall clock and by the
calling thread's CPU time (`time.thread_time`: with one thread all work happens on the calling
thread, and time spent descheduled by other processes is not counted). Both include their Python
binding's input/output copies.

ONNXQ_BENCH_SMOKE=1 (what the docs test uses): a minimal run, 2 iterations in 1 round with 1 warm-up
run per measurement and the kernel bench in its smoke mode, that still prints the complete JSON
(with "smoke": true); its numbers are not measurements.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"


def fail(msg):
    print(f"mobilenetv2.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def default_model():
    shared = os.environ.get("ONNXQ_SHARED", os.path.join(REPO, "..", "shared"))
    return os.path.join(shared, "models", "mobilenetv2-1.0.onnx")


def find_median_ms(obj):
    """The median latency (ms) from `onnxq bench --json`: a top-level or nested numeric key whose
    name contains 'median' (e.g. median_ms or latency_ms.median)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if "median" in key.lower() and isinstance(value, (int, float)):
                return float(value), key
        for key, value in obj.items():
            if isinstance(value, dict):
                found = find_median_ms(value)
                if found is not None:
                    return found[0], f"{key}.{found[1]}"
    return None


def find_min_ms(obj):
    """The minimum latency (ms) from `onnxq bench --json` (latency_ms.min or min_ms), or None."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.lower() in ("min", "min_ms") and isinstance(value, (int, float)):
                return float(value)
        for value in obj.values():
            found = find_min_ms(value)
            if found is not None:
                return found
    return None


def run_onnxq(cli, model, threads, iters):
    cmd = [cli, "bench", model, "--threads", str(threads), "--iters", str(iters), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{proc.stderr.strip()}")
    text = proc.stdout.strip()
    try:
        report = json.loads(text[text.index("{"):])
    except (ValueError, json.JSONDecodeError):
        fail(f"`{' '.join(cmd)}` did not print JSON:\n{text[:2000]}")
    found = find_median_ms(report)
    if found is None:
        fail(f"no median latency in the JSON of `{' '.join(cmd)}`:\n{text[:2000]}")
    return found[0], report


def run_ort(model, threads, iters, warmup):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    feed = {inp.name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), ort.__version__


def run_interleaved(build, model, iters, warmup):
    """1-thread ORT and onnxq runs alternating one by one: (wall, cpu) medians and minima in ms."""
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, os.path.join(build, "python"))
    try:
        import onnxq
    except ImportError as e:
        fail(f"cannot import onnxq from {build}/python for the interleaved run: {e}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    ort_sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    oq_sess = onnxq.Session(model, threads=1)
    name = ort_sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    ort_out = ort_sess.run(None, {name: x})[0]
    oq_out = oq_sess.run({name: x})[oq_sess.output_names[0]]
    max_diff = float(np.max(np.abs(ort_out - oq_out)))
    runs = {"onnxruntime": lambda: ort_sess.run(None, {name: x}), "onnxq": lambda: oq_sess.run({name: x})}
    times = {k: ([], []) for k in runs}
    for i in range(warmup + iters):
        for key, fn in runs.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            c1, w1 = time.thread_time(), time.perf_counter()
            if i >= warmup:
                times[key][0].append((w1 - w0) * 1e3)
                times[key][1].append((c1 - c0) * 1e3)
    out = {"iters": iters, "max_abs_logit_diff": max_diff}
    for key, (wall, cpu) in times.items():
        out[key] = {"wall_median_ms": statistics.median(wall), "wall_min_ms": min(wall),
                    "cpu_median_ms": statistics.median(cpu), "cpu_min_ms": min(cpu)}
    for stat in ("wall_median_ms", "wall_min_ms", "cpu_median_ms", "cpu_min_ms"):
        out[f"ratio_{stat[:-3]}"] = out["onnxq"][stat] / out["onnxruntime"][stat]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="onnxq build directory")
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating blocks of iters/rounds runs per library and thread count")
    args = ap.parse_args()
    if SMOKE:
        args.iters, args.warmup, args.rounds = min(args.iters, 2), min(args.warmup, 1), 1

    if not os.path.exists(args.model):
        fail(f"model not found: {args.model} (set ONNXQ_SHARED or pass --model)")
    cli = os.path.join(args.build, "bin", "onnxq")
    kbench = os.path.join(args.build, "bin", "onnxq_kernels_bench")
    for path in (cli, kbench):
        if not os.path.exists(path):
            fail(f"{path} is missing: build onnxq first (cmake --build {args.build})")
    helptext = subprocess.run([cli, "--help"], capture_output=True, text=True)
    probe = subprocess.run([cli, "bench", "--help"], capture_output=True, text=True)
    if probe.returncode != 0 and "bench" not in (helptext.stdout + helptext.stderr):
        fail(f"`{cli}` has no `bench` command yet (it is part of the executor work, issue 3):\n"
             f"{(probe.stderr or probe.stdout).strip()}")

    result = {"model": os.path.abspath(args.model), "batch": 1, "iters": args.iters, "smoke": SMOKE}
    onnxq_ms, ort_ms, ort_min, raw = {}, {}, {}, {}
    ort_version = None
    # --rounds alternating blocks of iters / rounds runs each, so a burst of load from other
    # processes hits both libraries about equally; latency = median of the blocks' medians.
    rounds = max(1, min(args.rounds, args.iters))
    per_round = max(1, args.iters // rounds)
    ort_meds, ort_mins, oq_meds, oq_mins = ({1: [], 2: []} for _ in range(4))
    for _ in range(rounds):
        for threads in (1, 2):
            med, mn, ort_version = run_ort(args.model, threads, per_round, args.warmup)
            ort_meds[threads].append(med)
            ort_mins[threads].append(mn)
            med, raw[threads] = run_onnxq(cli, args.model, threads, per_round)
            oq_meds[threads].append(med)
            oq_mins[threads].append(find_min_ms(raw[threads]))
    for threads in (1, 2):
        ort_ms[threads], ort_min[threads] = statistics.median(ort_meds[threads]), min(ort_mins[threads])
        onnxq_ms[threads] = statistics.median(oq_meds[threads])
    result["rounds"] = rounds
    result["round_medians_ms"] = {"onnxq_1thread": oq_meds[1], "onnxruntime_1thread": ort_meds[1],
                                  "onnxq_2threads": oq_meds[2], "onnxruntime_2threads": ort_meds[2]}

    result["interleaved_1thread"] = run_interleaved(args.build, args.model, args.iters, args.warmup)

    micro = subprocess.run([kbench, "--micro-only"], capture_output=True, text=True)
    if micro.returncode != 0:
        fail(f"{kbench} --micro-only failed:\n{micro.stderr}")
    kreport = json.loads(micro.stdout)
    best = kreport["active_isa"]
    isa_report = kreport["isas"][best]

    def least(values):
        values = [v for v in values if v is not None]
        return min(values) if values else None

    result["onnxq"] = {"latency_ms_1thread": onnxq_ms[1], "latency_ms_2threads": onnxq_ms[2],
                       "min_ms_1thread": least(oq_mins[1]), "min_ms_2threads": least(oq_mins[2]),
                       "raw_1thread_last_round": raw[1], "raw_2threads_last_round": raw[2]}
    result["onnxruntime"] = {"version": ort_version, "latency_ms_1thread": ort_ms[1],
                             "latency_ms_2threads": ort_ms[2], "min_ms_1thread": ort_min[1],
                             "min_ms_2threads": ort_min[2]}
    # Ratios of medians (the acceptance metric) and of minima (robust on a loaded, shared machine,
    # where noise only ever adds time).
    result["ratio_onnxq_over_ort_1thread"] = onnxq_ms[1] / ort_ms[1]
    result["ratio_onnxq_over_ort_2threads"] = onnxq_ms[2] / ort_ms[2]
    for t, name in ((1, "1thread"), (2, "2threads")):
        mn = result["onnxq"][f"min_ms_{name}"]
        result[f"ratio_of_minima_{name}"] = mn / ort_min[t] if mn is not None else None
    result["target_ratio_1thread"] = 1.1
    result["meets_target"] = result["ratio_onnxq_over_ort_1thread"] <= 1.1
    result["gemm"] = {"isa": best, "microkernel": isa_report["microkernel"],
                      "microkernel_gflops": isa_report["microkernel"]["gflops"],
                      "fp32_fma_peak_gflops_1thread": isa_report.get("fma_peak_gflops_1thread")}
    macs = 300.8e6
    result["machine_load_average"] = os.getloadavg()  # 1, 5, 15 minutes, at the end of the run
    result["model_gflops_1thread"] = {"onnxq": 2 * macs / (onnxq_ms[1] * 1e-3) * 1e-9,
                                      "onnxruntime": 2 * macs / (ort_ms[1] * 1e-3) * 1e-9}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
