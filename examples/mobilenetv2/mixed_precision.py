#!/usr/bin/env python3
"""Mixed-precision weights for MobileNetV2: sweep weight-memory budgets and plot the Pareto front.

    python examples/mobilenetv2/mixed_precision.py [MODEL.onnx] [--budgets 0.15,0.2,0.25] [--png OUT.png]

Measures each layer's sensitivity to its weight bit width once (onnxq.sensitivity: the damage to
the output, as KL divergence against the float model, with only that layer quantized), then, for
each budget (packed weight bytes as a fraction of the float32 weight bytes), lets onnxq choose the
bits per layer that minimise the summed damage (onnxq.quantize with weight_memory=..., reusing the
sensitivity), evaluates the result against the float model, and plots accuracy against weight
bytes with the Pareto front. Activations stay 8-bit.

Model and images are found as in quantize.py (a path, else the shared MobileNetV2 next to this
source tree, else the ONNX model zoo when online). Weight bytes are those of packed sub-8-bit
weights (what a runtime with packed kernels would store); the exported QDQ file keeps every weight
in an int8 container, so its size does not change with the budget.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import onnxq
from onnxq.data import ImageFolder
from onnxq.report import pareto_front, plot_pareto

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from quantize import find_model, shared_dir  # noqa: E402  (model lookup shared with quantize.py)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="float ONNX classifier (default: shared MobileNetV2, else the ONNX zoo one)")
    p.add_argument("--data", help="labelled image folder (default: <shared>/data/imagenet-sample)")
    p.add_argument("--preprocess", choices=onnxq.data.preprocess_presets(),
                   help="pixel preprocessing preset (default: the one the chosen model needs)")
    p.add_argument("--budgets", default="0.15,0.175,0.2,0.25",
                   help="weight-memory budgets, fractions of the float32 weight bytes (default 0.15,0.175,0.2,0.25)")
    p.add_argument("--bits", default="4,6,8", help="candidate weight bit widths (default 4,6,8)")
    p.add_argument("--calib-count", type=int, default=64, help="calibration images (default 64)")
    p.add_argument("--sensitivity-samples", type=int, default=8,
                   help="calibration images the sensitivity is measured on (default 8)")
    p.add_argument("--eval-count", type=int, default=None, help="evaluation images (default: all the rest)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    p.add_argument("--png", default="mobilenetv2_pareto.png", help="where to write the plot")
    p.add_argument("--no-download", action="store_true", help="never download a model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not hasattr(onnxq, "sensitivity"):
        sys.exit("mixed_precision.py: this build of onnxq has no mixed-precision bindings")

    model_path, preset = find_model(args)
    data = pathlib.Path(args.data) if args.data else shared_dir() / "data" / "imagenet-sample"
    if not data.is_dir():
        sys.exit(f"mixed_precision.py: no image folder at {data} (pass --data DIR with images and a labels.tsv)")
    budgets = [float(b) for b in args.budgets.split(",")]
    bits = [int(b) for b in args.bits.split(",")]
    model = onnxq.load(model_path)
    calib = ImageFolder(data, preprocess=preset, count=args.calib_count)
    evalset = ImageFolder(data, preprocess=preset, skip=args.calib_count, count=args.eval_count)
    print(f"model: {model_path}; {len(calib)} calibration images, {len(evalset)} evaluation images")

    base = onnxq.QuantConfig(threads=args.threads, candidate_bits=bits,
                             sensitivity_samples=args.sensitivity_samples)
    t0 = time.perf_counter()
    sens = onnxq.sensitivity(model, calib, base, progress=not args.no_progress)
    print(f"sensitivity of {len(sens.layers)} layers at {sens.bits} bits in {time.perf_counter() - t0:.1f} s; "
          f"most sensitive at {bits[0]} bits: " +
          ", ".join(f"{n} ({d:.3g})" for n, d in sens.most_sensitive(bits[0], 3)))

    points = []
    configs = [("int8", base.replace(candidate_bits=(2, 3, 4, 5, 6, 7, 8)))]
    configs += [(f"{b:g}", base.replace(weight_memory=b, sensitivity=sens)) for b in budgets]
    for label, config in configs:
        result = onnxq.quantize(model, calib, config)
        scores = onnxq.evaluate(result.model, evalset, reference=model, threads=args.threads)
        sizes = result.report["sizes"]
        points.append({
            "label": label,
            "weight_bytes": sizes["packed_weight_bytes"],
            "fraction": sizes["packed_weight_fraction"],
            "average_bits": sizes["average_weight_bits"],
            "top1": scores["top1"],
            "agreement": scores["top1_agreement"],
            "kl": scores["mean_kl"],
        })
    front = {id(p) for p in pareto_front(points, x="weight_bytes", y="agreement")}

    print(f"\n| {'budget':>7} | {'weight MB':>9} | {'of fp32':>7} | {'avg bits':>8} | {'top-1':>7} | "
          f"{'agreement':>9} | {'mean KL':>8} | Pareto |")
    print("|" + "|".join("-" * w for w in (9, 11, 9, 10, 9, 11, 10, 8)) + "|")
    for q in points:
        print(f"| {q['label']:>7} | {q['weight_bytes'] / 1e6:9.3f} | {100 * q['fraction']:6.1f}% | "
              f"{q['average_bits']:8.2f} | {100 * q['top1']:6.2f}% | {100 * q['agreement']:8.2f}% | "
              f"{q['kl']:8.5f} | {'yes' if id(q) in front else '':>6} |")

    import matplotlib

    matplotlib.use("Agg")
    ax = plot_pareto(points, x="weight_bytes", y="agreement", label_key="label",
                     xlabel="packed weight bytes", ylabel="top-1 agreement with float",
                     title=f"MobileNetV2 mixed precision ({len(evalset)} images)")
    ax.figure.savefig(args.png, dpi=120)
    print(f"\nPareto plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
