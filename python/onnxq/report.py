"""The quantization report as an object: ``result.report``.

``Report`` is a read-only mapping over the JSON report the C++ flow writes (the same document as
``onnxq quantize --report``), so ``report["activations"]`` works as on the dict; it adds
``to_dict()``, ``to_json()``, ``to_markdown()``, summary properties and matplotlib plots. Nothing is
computed here that the C++ report does not contain: the methods only select and format.

Plots take an optional matplotlib ``ax`` and return it; matplotlib is imported only when a plot is
drawn. Each plot is one ``_bar_plot`` / ``plot_pareto`` call over report rows, so a new report
section (e.g. mixed-precision sensitivity) needs a few lines.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple


def _finite(x: Any) -> Optional[float]:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def _axes(ax, figsize=(10, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _bar_plot(ax, labels: Sequence[str], values: Sequence[Optional[float]], *, ylabel: str,
              title: str, color: str = "tab:blue", threshold: Optional[float] = None):
    ax = _axes(ax)
    xs = list(range(len(labels)))
    ax.bar(xs, [v if v is not None else 0.0 for v in values], color=color)
    missing = [x for x, v in zip(xs, values) if v is None]
    if missing:
        ax.plot(missing, [0.0] * len(missing), "x", color="gray", label="no finite SQNR")
        ax.legend(loc="best")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(labels) <= 40:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
    else:
        ax.set_xlabel(f"{len(labels)} tensors, in graph order")
    ax.figure.tight_layout()
    return ax


def plot_pareto(points: Sequence[Mapping[str, Any]], *, x: str, y: str, ax=None,
                xlabel: Optional[str] = None, ylabel: Optional[str] = None, higher_is_better: bool = True,
                label_key: Optional[str] = None, title: str = "Pareto front"):
    """Scatter of ``points`` (dicts) on keys x (cost, lower is better) and y, with the Pareto front
    (the points no other point beats on both) drawn as a step line."""
    ax = _axes(ax, figsize=(6, 4))
    pts = [(float(p[x]), float(p[y]), p) for p in points]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:gray", zorder=2, label="configurations")
    front = pareto_front(points, x=x, y=y, higher_is_better=higher_is_better)
    if front:
        ax.step([float(p[x]) for p in front], [float(p[y]) for p in front], where="post",
                color="tab:red", marker="o", zorder=3, label="Pareto front")
    if label_key:
        for px, py, p in pts:
            ax.annotate(str(p[label_key]), (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.legend(loc="best")
    ax.figure.tight_layout()
    return ax


def pareto_front(points: Sequence[Mapping[str, Any]], *, x: str, y: str,
                 higher_is_better: bool = True) -> List[Mapping[str, Any]]:
    """The non-dominated points, sorted by x (the cost, lower is better)."""
    sign = 1.0 if higher_is_better else -1.0
    ordered = sorted(points, key=lambda p: (float(p[x]), -sign * float(p[y])))
    front: List[Mapping[str, Any]] = []
    best = -math.inf
    for p in ordered:
        v = sign * float(p[y])
        if v > best:
            front.append(p)
            best = v
    return front


class Report(Mapping):
    """The quantization report (read-only mapping of the C++ JSON report)."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        return cls(json.loads(text))

    @classmethod
    def load(cls, path) -> "Report":
        """Reads a report written by ``onnxq quantize --report`` or ``Report.save``."""
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))

    # ---------------------------------------------------------------- mapping
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Report(activations={s['quantized_activations']}, weights={s['quantized_weights']}, "
                f"size {s['float_bytes']} -> {s['quantized_bytes']} bytes)")

    # ---------------------------------------------------------------- export
    def to_dict(self) -> Dict[str, Any]:
        """A deep copy as plain dicts and lists."""
        return copy.deepcopy(self._data)

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self._data, indent=indent)

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.write("\n")

    # ---------------------------------------------------------------- views
    @property
    def config(self) -> Dict[str, Any]:
        return dict(self._data.get("config", {}))

    @property
    def activations(self) -> List[Dict[str, Any]]:
        return list(self._data.get("activations", []))

    @property
    def weights(self) -> List[Dict[str, Any]]:
        return list(self._data.get("weights", []))

    @property
    def notes(self) -> List[str]:
        return list(self._data.get("notes", []))

    def summary(self) -> Dict[str, Any]:
        """The headline numbers (all read from the report)."""
        sizes = self._data.get("sizes", {})
        fb, qb = sizes.get("float_initializer_bytes"), sizes.get("quantized_initializer_bytes")
        act_sqnr = [v for v in (_finite(a.get("sqnr_db")) for a in self.activations) if v is not None]
        worst = self.worst_activations(1)
        return {
            "calibration_samples": self._data.get("calibration_samples"),
            "quantized_activations": len(self.activations),
            "quantized_weights": len(self.weights),
            "float_bytes": fb,
            "quantized_bytes": qb,
            "compression": (fb / qb) if fb and qb else None,
            "median_activation_sqnr_db": (sorted(act_sqnr)[len(act_sqnr) // 2] if act_sqnr else None),
            "worst_activation": (worst[0]["tensor"], worst[0]["sqnr_db"]) if worst else None,
            "cle_applied": self._data.get("cle_applied"),
            "bias_correction_applied": self._data.get("bias_correction_applied"),
            "total_ms": self._data.get("timings_ms", {}).get("total"),
        }

    def worst_activations(self, n: int = 5) -> List[Dict[str, Any]]:
        """The n activations with the lowest measured SQNR (the first places to look)."""
        measured = [a for a in self.activations if _finite(a.get("sqnr_db")) is not None]
        return sorted(measured, key=lambda a: a["sqnr_db"])[:n]

    def to_markdown(self, worst: int = 10) -> str:
        """A Markdown summary: settings, sizes, timings, and the lowest-SQNR activations."""
        s = self.summary()
        cfg = self.config
        lines = ["## onnxq quantization report", ""]
        lines += ["| setting | value |", "| --- | --- |"]
        for key in ("calibrator", "weight_granularity", "weight_bits", "act_bits", "weight_scale",
                    "activation_type", "weight_type", "cle", "bias_correction"):
            if key in cfg:
                lines.append(f"| {key} | {cfg[key]} |")
        if cfg.get("exclude"):
            lines.append(f"| exclude | {', '.join(map(str, cfg['exclude']))} |")
        lines.append(f"| calibration samples | {s['calibration_samples']} |")
        lines.append(f"| CLE applied | {s['cle_applied']} |")
        lines.append(f"| bias correction applied | {s['bias_correction_applied']} |")
        lines.append("")
        lines += ["| size | bytes |", "| --- | ---: |"]
        if s["float_bytes"] is not None:
            lines.append(f"| float weights | {s['float_bytes']:,} |")
        if s["quantized_bytes"] is not None:
            lines.append(f"| quantized weights | {s['quantized_bytes']:,} |")
        if s["compression"]:
            lines.append(f"| compression | {s['compression']:.2f}x |")
        lines.append("")
        timings = self._data.get("timings_ms", {})
        if timings:
            lines += ["| stage | ms |", "| --- | ---: |"]
            lines += [f"| {k} | {v:.1f} |" for k, v in timings.items() if _finite(v) is not None]
            lines.append("")
        rows = self.worst_activations(worst)
        if rows:
            lines += [f"Lowest activation SQNR ({len(rows)} of {len(self.activations)} quantized "
                      "activations; higher is better):", "",
                      "| tensor | calibrator | range | scale | zero point | SQNR (dB) |",
                      "| --- | --- | --- | ---: | ---: | ---: |"]
            for a in rows:
                lines.append(f"| {a['tensor']} | {a.get('calibrator', '')} | "
                             f"[{a.get('range_min', float('nan')):.4g}, {a.get('range_max', float('nan')):.4g}] | "
                             f"{a.get('scale', float('nan')):.4g} | {a.get('zero_point', '')} | "
                             f"{a['sqnr_db']:.1f} |")
            lines.append("")
        if self.notes:
            lines += ["Notes:", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:  # Jupyter renders the report as Markdown
        return self.to_markdown()

    # ---------------------------------------------------------------- plots
    def sqnr_rows(self, kind: str = "activations") -> List[Tuple[str, Optional[float]]]:
        """(name, SQNR in dB or None) per quantized activation or weight, in graph order. None where
        the report has null: the SQNR was not measured or is not finite (no error at all, e.g.
        weights already on the int8 grid, or an all-zero tensor); the C++ JSON writer does not
        tell these apart."""
        if kind == "activations":
            return [(a["tensor"], _finite(a.get("sqnr_db"))) for a in self.activations]
        if kind == "weights":
            return [(w.get("node") or w["tensor"], _finite(w.get("sqnr_db"))) for w in self.weights]
        raise ValueError("kind must be 'activations' or 'weights'")

    def layer_bits(self) -> List[Tuple[str, int]]:
        """(layer, weight bits) per quantized layer, in graph order."""
        return [(w.get("node") or w["tensor"], int(w["bits"])) for w in self.weights]

    @property
    def mixed_precision(self) -> Dict[str, Any]:
        """The mixed-precision section (budget, chosen bits, sensitivity), empty without one."""
        return dict(self._data.get("mixed_precision") or {})

    def sensitivity(self) -> "Sensitivity":
        """The sensitivity a mixed-precision quantization allocated bits with."""
        mp = self.mixed_precision
        if not mp.get("sensitivity"):
            raise ValueError("the report has no sensitivity: quantize with a weight budget "
                             "(weight_bits_avg, weight_memory or bops), or call onnxq.sensitivity")
        return Sensitivity(mp["sensitivity"])

    def plot_sensitivity(self, ax=None, bits: Optional[Sequence[int]] = None):
        """Per-layer damage per bit width of the sensitivity the bits were allocated with."""
        return self.sensitivity().plot(ax=ax, bits=bits)

    def plot_bits(self, ax=None):
        """The weight bit width of every layer (mixed precision gives them different ones)."""
        rows = self.layer_bits()
        return _bar_plot(ax, [r[0] for r in rows], [float(r[1]) for r in rows], ylabel="weight bits",
                         title="Weight bits per layer", color="tab:green")

    def plot_sqnr(self, ax=None, kind: str = "activations", threshold: Optional[float] = 20.0):
        """Per-layer SQNR (dB) of the quantized activations (or weights) as bars, in graph order;
        the dashed line marks `threshold` (layers below it are the ones to inspect)."""
        rows = self.sqnr_rows(kind)
        if not any(v is not None for _, v in rows):
            raise ValueError(f"the report has no {kind} SQNR (quantize with sqnr_samples > 0)")
        return _bar_plot(ax, [r[0] for r in rows], [r[1] for r in rows], ylabel="SQNR (dB)",
                         title=f"Per-layer SQNR of the quantized {kind}", threshold=threshold)


class Sensitivity(Mapping):
    """Per-layer sensitivity to weight bit width, as ``onnxq.sensitivity`` measures it (read-only
    mapping of its dict: metric, rounding, samples, seconds, layers). ``damage(node)`` gives
    {bits: value}; ``plot()`` draws it; pass the object as ``QuantConfig(sensitivity=...)`` to reuse
    it in mixed-precision quantization."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (f"Sensitivity(metric={self._data.get('metric')!r}, layers={len(self.layers)}, "
                f"bits={self.bits})")

    def to_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(self._data)

    @property
    def layers(self) -> List[Dict[str, Any]]:
        return list(self._data.get("layers", []))

    @property
    def bits(self) -> List[int]:
        found = set()
        for layer in self.layers:
            found.update(int(b) for b in layer.get("damage", {}))
        return sorted(found)

    def damage(self, node: str) -> Dict[int, Optional[float]]:
        for layer in self.layers:
            if layer["node"] == node:
                return {int(b): _finite(v) for b, v in layer.get("damage", {}).items()}
        raise KeyError(node)

    def most_sensitive(self, bits: int, n: int = 5) -> List[Tuple[str, float]]:
        """The n layers whose damage at `bits` is largest."""
        rows = [(layer["node"], _finite(layer.get("damage", {}).get(str(bits), layer.get("damage", {}).get(bits))))
                for layer in self.layers]
        rows = [(k, v) for k, v in rows if v is not None]
        return sorted(rows, key=lambda r: -r[1])[:n]

    def plot(self, ax=None, bits: Optional[Sequence[int]] = None):
        """Damage per layer (graph order, log scale), one line per bit width."""
        ax = _axes(ax)
        names = [layer["node"] for layer in self.layers]
        for b in bits or self.bits:
            ys = []
            for layer in self.layers:
                d = layer.get("damage", {})
                ys.append(_finite(d.get(str(b), d.get(b))))
            ax.plot(range(len(names)), [y if y is not None and y > 0 else float("nan") for y in ys],
                    marker=".", label=f"{b} bits")
        ax.set_yscale("log")
        ax.set_xlabel(f"{len(names)} layers, in graph order")
        ax.set_ylabel(f"damage ({self._data.get('metric', '')})")
        ax.set_title("Per-layer sensitivity to weight bits")
        ax.legend(loc="best", fontsize=7)
        ax.figure.tight_layout()
        return ax
