#!/usr/bin/env python3
"""Quantize MobileNetV2 to int8 (QDQ) with onnxq and compare it with the float model.

    python examples/mobilenetv2/quantize.py [MODEL.onnx] [--data DIR] [--out OUT.onnx]

Which model:
  - MODEL.onnx when given (an ImageNet classifier; say how it wants its pixels with --preprocess);
  - otherwise the shared MobileNetV2 next to this source tree ($ONNXQ_SHARED or <repo>/../shared,
    models/mobilenetv2-1.0.onnx: pixels scaled to [-1, 1], preset "imagenet-tf");
  - otherwise, when online, MobileNetV2 from the ONNX model zoo (mobilenetv2-12: RGB NCHW
    [N, 3, 224, 224], resize 256, center crop 224, scale to [0, 1], torchvision mean/std: preset
    "imagenet-torch"): the archive mobilenetv2-12.tar.gz is downloaded, its sha256 checked, and the
    model in it cached as $XDG_CACHE_HOME/onnxq/mobilenetv2-12.onnx (default
    ~/.cache/onnxq/). A failed download or a checksum mismatch is an error that leaves nothing in
    the cache. $ONNXQ_ZOO_URL and $ONNXQ_ZOO_SHA256 replace the archive's URL and checksum (a mirror,
    or a file:// URL offline; the tests use both).
Images: --data DIR (JPEG/PNG files and a labels.tsv of "file<TAB>class index"), by default the shared
data/imagenet-sample. The first --calib-count images calibrate; the next --eval-count evaluate (never
the same images).

Prints float vs int8: top-1/top-5 and agreement (measured on onnxq's CPU executor), file size and
latency (ONNX Runtime, when installed), and writes the model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import sys
import tarfile
import tempfile
import time
import urllib.request

import numpy as np

import onnxq
from onnxq.data import ImageFolder

# The ONNX model zoo's MobileNetV2 (opset 12) archive; the checksum is the one its git LFS pointer
# records. The archive holds the model (one .onnx file) and test data, which is not extracted.
ZOO_URL = ("https://github.com/onnx/models/raw/main/validated/vision/classification/mobilenet/model/"
           "mobilenetv2-12.tar.gz")
ZOO_SHA256 = "5f83b422708a708b592a5fd56d84710038511789df3ae510b84123930c37762d"
ZOO_MODEL = "mobilenetv2-12.onnx"
ZOO_PREPROCESS = "imagenet-torch"
SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]


def shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ONNXQ_SHARED") or SOURCE_ROOT.parent / "shared")


def find_model(args) -> tuple[pathlib.Path, str]:
    """(model path, preprocessing preset)."""
    if args.model:
        return pathlib.Path(args.model), args.preprocess or "imagenet-tf"
    shared = shared_dir() / "models" / "mobilenetv2-1.0.onnx"
    if shared.is_file():
        return shared, args.preprocess or "imagenet-tf"
    if args.no_download:
        sys.exit(f"quantize.py: no model given and none at {shared} (downloads disabled)")
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "onnxq"
    target = cache / ZOO_MODEL
    if not target.is_file():
        url = os.environ.get("ONNXQ_ZOO_URL") or ZOO_URL
        sha256 = (os.environ.get("ONNXQ_ZOO_SHA256") or ZOO_SHA256).lower()
        print(f"no model given and none at {shared}: downloading {url} -> {target}", flush=True)
        try:
            download_zoo_model(url, sha256, target)
        except (OSError, ValueError, tarfile.TarError) as e:
            sys.exit(f"quantize.py: no model given, none at {shared}, and the ONNX zoo model could not be "
                     f"fetched: {e}")
    return target, args.preprocess or ZOO_PREPROCESS


def download_zoo_model(url: str, sha256: str, target: pathlib.Path) -> None:
    """Downloads the archive at url, checks its sha256 and writes its ZOO_MODEL member to target.
    Works in temporary files next to target and renames at the end: nothing partial is left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".download-", suffix=".part", delete=False)
    model = None
    try:
        digest = hashlib.sha256()
        with archive, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                archive.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()} "
                             "(nothing was saved)")
        with tarfile.open(archive.name, "r:gz") as tar:
            # The model is the archive's .onnx file (the rest is test data); its folder and, in some
            # zoo archives, its name differ from the archive's, so match by suffix.
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".onnx")]
            if len(members) > 1:
                members = [m for m in members if pathlib.PurePosixPath(m.name).name == ZOO_MODEL]
            if len(members) != 1:
                raise ValueError(f"{url} does not hold exactly one .onnx model (or one named {ZOO_MODEL})")
            model = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".model-", suffix=".part", delete=False)
            with model, tar.extractfile(members[0]) as src:
                while chunk := src.read(1 << 20):
                    model.write(chunk)
        os.replace(model.name, target)
        model = None
    finally:
        for tmp in (archive, model):
            if tmp is not None and os.path.exists(tmp.name):
                os.unlink(tmp.name)


def ort_latency_ms(path: pathlib.Path, shape, iters: int) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="float ONNX classifier (default: shared MobileNetV2, else the ONNX zoo one)")
    p.add_argument("--data", help="labelled image folder (default: <shared>/data/imagenet-sample)")
    p.add_argument("--preprocess", choices=onnxq.data.preprocess_presets(),
                   help="pixel preprocessing preset (default: the one the chosen model needs)")
    p.add_argument("--calib-count", type=int, default=100, help="calibration images (default 100)")
    p.add_argument("--eval-count", type=int, default=None, help="evaluation images (default: all the rest)")
    p.add_argument("--calibrator", default="auto", help="auto, minmax, percentile, mse or kl")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default per-channel)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    p.add_argument("--latency-iters", type=int, default=30, help="timed runs per model (0: skip)")
    p.add_argument("--out", default="mobilenetv2_int8.onnx", help="where to write the quantized model")
    p.add_argument("--no-download", action="store_true", help="never download a model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    model_path, preset = find_model(args)
    data = pathlib.Path(args.data) if args.data else shared_dir() / "data" / "imagenet-sample"
    if not data.is_dir():
        sys.exit(f"quantize.py: no image folder at {data} (pass --data DIR with images and a labels.tsv)")

    model = onnxq.load(model_path)
    print(f"model: {model_path}  ({model.num_nodes} nodes, input {model.inputs[0].shape}, preprocessing {preset})")
    calib = ImageFolder(data, preprocess=preset, count=args.calib_count)
    evalset = ImageFolder(data, preprocess=preset, skip=args.calib_count, count=args.eval_count)
    print(f"data:  {data}  ({len(calib)} calibration images, {len(evalset)} evaluation images)")

    config = onnxq.QuantConfig(calibrator=args.calibrator, threads=args.threads,
                               weight_granularity="per-tensor" if args.per_tensor else "per-channel")
    t0 = time.perf_counter()
    result = onnxq.quantize(model, calib, config, progress=not args.no_progress)
    qtime = time.perf_counter() - t0
    out = pathlib.Path(args.out)
    result.save(out, report=out.with_suffix(".report.json"))
    print(f"quantized in {qtime:.1f} s -> {out} (report: {out.with_suffix('.report.json')})")

    fl = onnxq.evaluate(model_path, evalset, threads=args.threads)
    q = onnxq.evaluate(out, evalset, reference=model_path, threads=args.threads)
    shape = [d if isinstance(d, int) else 1 for d in model.inputs[0].shape]
    lat_f = ort_latency_ms(model_path, shape, args.latency_iters) if args.latency_iters else None
    lat_q = ort_latency_ms(out, shape, args.latency_iters) if args.latency_iters else None

    def ms(v):
        return f"{v:.2f} ms" if v is not None else "n/a"

    rows = [
        (f"top-1 ({q['count']} images)", f"{100 * fl['top1']:.2f} %", f"{100 * q['top1']:.2f} %"),
        ("top-5", f"{100 * fl['top5']:.2f} %", f"{100 * q['top5']:.2f} %"),
        ("top-1 agreement with float", "", f"{100 * q['top1_agreement']:.2f} %"),
        ("mean KL(float || int8)", "", f"{q['mean_kl']:.5f}"),
        ("model file size", f"{model_path.stat().st_size / 1e6:.2f} MB", f"{out.stat().st_size / 1e6:.2f} MB"),
        ("latency, ONNX Runtime 1 thread", ms(lat_f), ms(lat_q)),
    ]
    print()
    print(f"| {'':30} | {'float32':>10} | {'int8 (QDQ)':>10} |")
    print(f"|{'-' * 32}|{'-' * 12}|{'-' * 12}|")
    for name, a, b in rows:
        print(f"| {name:30} | {a:>10} | {b:>10} |")
    worst = result.report.worst_activations(3)
    if worst:
        print("\nlowest activation SQNR: " + ", ".join(f"{a['tensor']} {a['sqnr_db']:.1f} dB" for a in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
