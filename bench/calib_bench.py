"""Calibration-component throughput (JSON on stdout).

    PYTHONPATH=build/python .venv/bin/python bench/calib_bench.py

Histogram observer update rate, calibrator (minmax / percentile / mse / kl) time on a 1 Mi-sample
histogram, histogram serialization and merge, image decoding + preprocessing rate on the shared
ImageNet sample (1 and 2 threads), and 4-bit weight quantization of MobileNetV2's convolutions.
ONNXQ_BENCH_SMOKE=1 (what the docs test uses): a minimal run with the same JSON keys ("smoke": true):
1 Mi-sample arrays, one timing per measurement, 8 images, the first 4 weight tensors; its numbers
are not measurements.
"""
import json, os, time
from pathlib import Path
import numpy as np
import onnxq

SMOKE = os.environ.get("ONNXQ_BENCH_SMOKE") == "1"
REPEATS = 1 if SMOKE else 3
c = onnxq.calib
out = {"smoke": SMOKE}
rng = np.random.default_rng(0)

def best(f, n=REPEATS):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)

x = rng.standard_normal((1 if SMOKE else 16) << 20).astype(np.float32)
relu = np.maximum(x, 0)
for name, arr in [("gaussian", x), ("relu", relu)]:
    h = c.HistogramObserver(); h.update(arr[:1000])
    out[f"histogram_update_{name}_GBps"] = round(arr.nbytes / best(lambda: h.update(arr)) / 1e9, 2)
mm = c.HistogramObserver(0)
out["minmax_only_update_GBps"] = round(x.nbytes / best(lambda: mm.update(x)) / 1e9, 2)
h = c.HistogramObserver(); h.update(x[:1 << 20])
hr = c.HistogramObserver(); hr.update(relu[:1 << 20])
for m in ["minmax", "percentile", "mse", "kl"]:
    out[f"calibrate_{m}_ms_signed"] = round(best(lambda: c.calibrate(h, m, signed=True, symmetric=True)) * 1e3, 3)
    out[f"calibrate_{m}_ms_relu_uint8"] = round(best(lambda: c.calibrate(hr, m)) * 1e3, 3)
b = h.to_bytes()
out["histogram_serialized_bytes"] = len(b)
out["merge_us"] = round(best(lambda: c.HistogramObserver.from_bytes(b).merge(hr)) * 1e6, 1)

shared = Path(os.environ.get("ONNXQ_SHARED") or Path(__file__).resolve().parents[2] / "shared")
sample = shared / "data" / "imagenet-sample"
if sample.exists():
    n_images, batch = (8, 4) if SMOKE else (100, 25)
    for threads in (1, 2):
        ds = c.Dataset(str(sample), "imagenet-tf", count=n_images)
        t = time.perf_counter()
        for s in range(0, n_images, batch):
            ds.load_batch(s, batch, threads)
        out[f"images_per_s_{threads}_threads"] = round(n_images / (time.perf_counter() - t), 1)
else:
    out["images_skipped"] = f"no image folder at {sample} (set ONNXQ_SHARED)"
model = shared / "models" / "mobilenetv2-1.0.onnx"
try:
    import onnx
    from onnx import numpy_helper
    ws = [numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer if len(t.dims) == 4]
    if SMOKE:
        ws = ws[:4]
    for meth in ("minmax", "mse"):
        t = time.perf_counter()
        for w in ws:
            c.quantize_weight(w.astype(np.float32), bits=4, method=meth)
        out[f"mobilenetv2_weights_4bit_{meth}_s"] = round(time.perf_counter() - t, 3)
except Exception as e:  # model or onnx absent
    out["weights_skipped"] = str(e)[:80]
print(json.dumps(out, indent=1))
