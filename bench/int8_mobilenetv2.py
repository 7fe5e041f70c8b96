#!/usr/bin/env python3
"""W8A8 MobileNetV2: onnxq's integer execution against ONNX Runtime on the same QDQ file.
Prints one JSON object.

    PYTHONPATH=build/python .venv/bin/python bench/int8_mobilenetv2.py [--build build]
        [--model q.onnx] [--rounds 7] [--iters 20] [--eval 400] [--skip-gemm-bench]

The model is the file `onnxq quantize` exports with its defaults (calibration: the first 100
images of labels.tsv, --preprocess imagenet-tf) unless --model names one.

Latency (batch 1, 1 and 2 threads): ONNX Runtime on the QDQ file (its fused integer kernels),
onnxq on the same file (Session(integer=True): the QDQ lowering onto onnxq's int8 kernels), onnxq
on the float model (fp32), and onnxq's float Q/DQ reference (integer=False) for scale. The
sessions are timed in interleaved rounds (each round runs every engine `iters` times) so machine
load hits all of them alike; the median over all timed runs is reported. The machine's load
average is recorded with the numbers: absolute times on a shared machine are inflated, the ratios
measured in the same rounds are the meaningful part. Each engine is timed in a child process of
its own (one session, 3 warm-up runs, then the timed runs), as an application runs it: in one
process, ONNX Runtime's idle worker threads spin and take a core from whatever runs next.

Agreement (the issue's acceptance check) over the --eval evaluation images (the 400 after the
calibration images): the last quantized activation (input of the float classifier Conv) identical
or one step apart, the float logits within one step of that activation propagated through the
classifier (|d logit_j| <= scale * max_k |W[j, k]|, plus 1e-5 relative float noise), same top-1.

Microkernel: bin/onnxq_int8_gemm_bench, three runs (the VNNI peak measured on this CPU and the
AVX-512 VNNI tile's GOP/s); the best peak and the best tile of the runs are compared.

With ONNXQ_BENCH_SMOKE=1 it runs a minimal version (calibration on 8 images, 8 evaluation
images, one round of 2 runs per engine, one short microkernel run) that prints the same JSON keys
plus "smoke": true; its numbers only show that everything runs.
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


def shared_dir():
    return os.environ.get("ONNXQ_SHARED", os.path.join(REPO, "..", "shared"))


def load():
    return [round(v, 2) for v in os.getloadavg()]


def last_quantized_activation(model):
    from onnx import numpy_helper
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    def quantized(v):  # v reaches a QuantizeLinear directly or through Relu / Clip
        return any(c.op_type == "QuantizeLinear" or (c.op_type in ("Relu", "Clip") and quantized(c.output[0]))
                   for c in consumers.get(v, []))

    for n in model.graph.node:
        if n.op_type == "Conv" and not quantized(n.output[0]):
            xdq, wdq = producers[n.input[0]], producers[n.input[1]]
            w = (inits[wdq.input[0]].astype(np.float32) - inits[wdq.input[2]].reshape(-1, 1, 1, 1)) \
                * inits[wdq.input[1]].reshape(-1, 1, 1, 1)
            return xdq.input[0], float(inits[xdq.input[1]]), w.reshape(w.shape[0], -1)
    raise SystemExit("int8_mobilenetv2.py: no float classifier Conv found")


def agreement(onnxq, ort, qpath, x, tmp):
    import onnx
    from onnx import TensorProto, helper
    m = onnx.load(qpath)
    last, scale, w = last_quantized_activation(m)
    m.graph.output.append(helper.make_tensor_value_info(last, TensorProto.UINT8, None))
    path = os.path.join(tmp, "with_last.onnx")
    onnx.save(m, path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    rt = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s = onnxq.Session(qpath, threads=2)
    ol, oq, ql, qq = [], [], [], []
    for i in range(0, len(x), 25):
        lo, la = rt.run(None, {"input": x[i:i + 25]})
        r = s.run({"input": x[i:i + 25]}, extra_outputs=[last])
        ol.append(lo), oq.append(la), ql.append(r["logits"]), qq.append(r[last])
    ol, oq, ql, qq = map(np.concatenate, (ol, oq, ql, qq))
    step = np.abs(qq.astype(np.int32) - oq.astype(np.int32))
    bound = scale * np.abs(w).max(1)[None, :] + 1e-5 * np.abs(ol) + 1e-5
    return {
        "images": int(len(x)),
        "last_quantized_value": last,
        "last_identical_fraction": float((step == 0).mean()),
        "last_within_one_step_fraction": float((step <= 1).mean()),
        "last_max_steps": int(step.max()),
        "logits_within_one_step_fraction": float((np.abs(ql - ol) <= bound).mean()),
        "logits_max_abs_diff": float(np.abs(ql - ol).max()),
        "top1_same_fraction": float((ql.argmax(1) == ol.argmax(1)).mean()),
        "lowered_qdq_groups": int(s.lowered_qdq_groups),
    }


ENGINES = ("ort_int8", "onnxq_int8", "onnxq_fp32", "onnxq_qdq_float")


def time_engine(engine, qpath, fpath, threads, iters):
    """Child process: one engine's session alone in the process, 3 warm-up runs, `iters` timed."""
    import onnxq
    import onnxruntime as ort
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    if engine == "ort_int8":
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        s = ort.InferenceSession(qpath, so, providers=["CPUExecutionProvider"])
        f = lambda: s.run(None, {"input": x})  # noqa: E731
    else:
        s = onnxq.Session(fpath if engine == "onnxq_fp32" else qpath, threads=threads,
                          integer=engine != "onnxq_qdq_float")
        f = lambda: s.run({"input": x})  # noqa: E731
    for _ in range(3):
        f()
    ms, cpu = [], []
    for _ in range(iters):
        c0, t0 = time.thread_time(), time.perf_counter()
        f()
        ms.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.thread_time() - c0))
    print(json.dumps({"ms": ms, "cpu_ms": cpu}))


def latency(build, qpath, fpath, threads, rounds, iters):
    # Every engine runs in a process of its own, as in an application: a live ONNX Runtime
    # session's worker threads keep spinning after its runs and took a core from the engine timed
    # next in the same process (measured at 2 threads: onnxq int8 median 1.33 ms beside a live ORT
    # session, 0.76 ms alone or with ORT's spinning off). Rounds interleave the engines so machine
    # load hits all of them alike.
    times = {k: [] for k in ENGINES}
    # With one thread both runtimes compute in the calling thread, so its CPU time is the
    # latency without the time other processes took from it (the machine is shared).
    cpu = {k: [] for k in ENGINES}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(build, "python")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    load_before = load()
    for _ in range(rounds):
        for k in ENGINES:
            n = iters if k != "onnxq_qdq_float" else max(2, iters // 5)
            cmd = [sys.executable, os.path.abspath(__file__), "--time-engine", k, "--model", qpath,
                   "--float-model", fpath, "--threads", str(threads), "--iters", str(n)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"int8_mobilenetv2.py: timing {k} failed:\n{proc.stderr}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            times[k] += r["ms"]
            cpu[k] += r["cpu_ms"]
    med = {k: float(np.median(v)) for k, v in times.items()}
    mn = {k: float(np.min(v)) for k, v in times.items()}
    extra = {}
    if threads == 1:
        mc = {k: float(np.median(v)) for k, v in cpu.items()}
        extra = {
            "thread_cpu_median_ms": {k: round(v, 3) for k, v in mc.items()},
            "onnxq_int8_over_ort_int8_cpu": round(mc["onnxq_int8"] / mc["ort_int8"], 3),
            "onnxq_fp32_over_onnxq_int8_cpu": round(mc["onnxq_fp32"] / mc["onnxq_int8"], 3),
        }
    return {
        **extra,
        "threads": threads,
        "load_average_before_after": [load_before, load()],
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "min_ms": {k: round(v, 3) for k, v in mn.items()},
        "onnxq_int8_over_ort_int8": round(med["onnxq_int8"] / med["ort_int8"], 3),
        "onnxq_int8_over_ort_int8_min": round(mn["onnxq_int8"] / mn["ort_int8"], 3),
        "onnxq_fp32_over_onnxq_int8": round(med["onnxq_fp32"] / med["onnxq_int8"], 3),
        "onnxq_fp32_over_onnxq_int8_min": round(mn["onnxq_fp32"] / mn["onnxq_int8"], 3),
    }


def gemm_bench(build, runs=3, seconds="0.5"):
    """The VNNI peak and the tiles are timed one after the other; on a shared machine either can
    be preempted, so the best of `runs` runs of each is compared."""
    exe = os.path.join(build, "bin", "onnxq_int8_gemm_bench")
    if not os.path.isfile(exe):
        return {"error": f"{exe} not built"}
    peaks, tiles, raws = [], [], []
    for _ in range(runs):
        proc = subprocess.run([exe, "--seconds", seconds], capture_output=True, text=True)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()}
        j = json.loads(proc.stdout)
        raws.append(j)
        peaks.append(j["vnni_peak_gops"])
        tiles.append(max((t["gops"] for t in j["tiles"] if t["isa"] == "avx512"), default=0.0))
    best_peak, best_tile = max(peaks), max(tiles)
    return {
        "vnni_peak_gops_runs": peaks,
        "avx512_tile_best_gops_runs": tiles,
        "vnni_peak_gops": best_peak,
        "avx512_tile_best_gops": best_tile,
        "avx512_tile_fraction_of_peak": round(best_tile / best_peak, 3) if best_peak else None,
        "raw_last": raws[-1],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--model", help="an exported QDQ MobileNetV2 (default: quantize now)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--eval", type=int, default=400, help="evaluation images for the agreement check")
    ap.add_argument("--skip-gemm-bench", action="store_true")
    ap.add_argument("--time-engine", choices=ENGINES, help=argparse.SUPPRESS)  # child process mode
    ap.add_argument("--float-model", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_engine:
        time_engine(args.time_engine, args.model, args.float_model, args.threads, args.iters)
        return
    smoke = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"
    calib_count = "100"
    if smoke:
        args.rounds, args.iters, args.eval, calib_count = 1, 2, 8, "8"
    sys.path.insert(0, os.path.join(args.build, "python"))
    import onnxq
    import onnxruntime as ort

    fpath = os.path.join(shared_dir(), "models", "mobilenetv2-1.0.onnx")
    data = os.path.join(shared_dir(), "data", "imagenet-sample")
    if not os.path.isfile(fpath) or not os.path.isfile(os.path.join(data, "labels.tsv")):
        sys.exit(f"int8_mobilenetv2.py: MobileNetV2 or the image sample missing under {shared_dir()}")
    with tempfile.TemporaryDirectory() as tmp:
        qpath = args.model
        if qpath is None:
            qpath = os.path.join(tmp, "mnv2_w8a8.onnx")
            cmd = [os.path.join(args.build, "bin", "onnxq"), "quantize", fpath, "-o", qpath, "--calib", data,
                   "--calib-count", calib_count, "--preprocess", "imagenet-tf", "--threads", "2"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"int8_mobilenetv2.py: `{' '.join(cmd)}` failed:\n{proc.stderr}")
        ds = onnxq.calib.Dataset(data, preset="imagenet-tf", skip=100)
        x = ds.load_batch(0, min(args.eval, len(ds)), threads=2)
        result = {
            "smoke": smoke,
            "model": f"mobilenetv2-1.0, onnxq quantize defaults (calib: first {calib_count} of labels.tsv, imagenet-tf)",
            "cpu_isa": onnxq.active_isa() if hasattr(onnxq, "active_isa") else None,
            "agreement": agreement(onnxq, ort, qpath, x, tmp),
            "latency": [latency(args.build, qpath, fpath, t, args.rounds, args.iters) for t in (1, 2)],
            "targets": {"onnxq_int8_over_ort_int8": "<= 0.8", "onnxq_fp32_over_onnxq_int8": ">= 2.5",
                        "microkernel_fraction_of_vnni_peak": ">= 0.6",
                        "last_within_one_step_fraction": ">= 0.999", "top1_same_fraction": ">= 0.995"},
        }
        if not args.skip_gemm_bench:
            result["int8_gemm_microkernel"] = gemm_bench(args.build, *((1, "0.05") if smoke else ()))
        result["load_average_end"] = load()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
