"""onnxq.QuantConfig: the quantization settings as a dataclass.

Its fields are the config keys the compiled ``onnxq._onnxq.quantize`` accepts (src/python/
quant_bindings.cc), with the C++ defaults of ``quant::QuantizeConfig``. ``to_dict()`` gives that
dict; every check of the values happens in C++ (bad values raise ``onnxq.InvalidModelError`` with
the C++ message).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

_Toggle = Union[bool, str]  # True/False or "auto" | "on" | "off"


@dataclasses.dataclass
class QuantConfig:
    """Settings of ``onnxq.quantize`` (defaults = the C++ defaults = ``onnxq quantize``'s defaults).

    calibrator: "auto" (per tensor: MSE, or min-max where clipping must not happen), "minmax",
        "percentile", "mse" or "kl".
    percentile: the percentile of the "percentile" calibrator.
    weight_granularity: "per-channel" (one scale per output channel) or "per-tensor".
    weight_bits, act_bits: bit widths (act_bits < 8 is simulation only: no exported model).
    weight_scale: "minmax" (max-abs) or "mse" (searched) weight scales.
    exclude: node names or op types kept in float.
    cle: cross-layer equalization, "auto" (on for per-tensor weights), True/"on", False/"off".
    bias_correction: empirical bias correction, "auto" (on for per-tensor or < 8-bit weights), ...
    bias_correction_samples: calibration samples used by bias correction.
    act_equalization: activation-channel equalization of linear tensors, "auto" (= off: it
        measured worse on MobileNetV2), True/"on", False/"off"; act_equalization_alpha,
        act_equalization_max_scale, act_equalization_samples tune it (docs/quantization.md).
    batch_size: calibration batch size. threads: 0 = all cores.
    sqnr_samples: calibration samples on which the report measures per-tensor SQNR (0: skip).
    stats: statistics file from ``onnxq calibrate`` used instead of a calibration pass.
    preprocess, calib_count, calib_skip, labels: how a calibration folder given as a path is read
        (an ``onnxq.data.ImageFolder`` carries these itself).

    Mixed precision and rounding (issue 7):
    layer_weight_bits: {node name: bits} overriding weight_bits per layer.
    rounding: "nearest", "adaround" or "gptq"; rounding_samples (Gram-matrix samples),
        rounding_objective ("asymmetric": match the float layer output from the inputs of the
        model quantized so far; "float"), rounding_target_damp, gptq_damp, gptq_act_order,
        gptq_quantized_inputs, adaround_iters, adaround_lambda, adaround_lr tune them.
    weight_grid: below 8 bits, "auto" (the full grid; at 2 bits per output channel [-2, 1] or its
        mirror [-1, 2], whichever fits), "full" ([-8, 7] at 4 bits), "oriented" (the full grid or its
        mirror per channel at every width) or "narrow" ([-7, 7]).
    weight_bits_avg, weight_memory, bops: at most one budget; the per-layer bits are then chosen
        from the layers' sensitivity (weight_memory <= 1 is a fraction of the float32 weight bytes,
        > 1 bytes).
    candidate_bits, sensitivity_samples, sensitivity_metric: how sensitivity is measured;
        sensitivity: a result of ``onnxq.sensitivity`` to reuse instead of measuring again.
    allocation_refine: rounds of whole-model refinement of the allocation (each layer re-measured
        with the others at their allocated widths and activations fake-quantized, then swaps of
        widths within the budget, each kept only if the whole model's measured loss on the
        sensitivity samples drops); 0 = off (measured no gain on MobileNetV2).

    extra: further keys passed to the binding unchanged (for settings newer than this class).

    ``to_dict()`` leaves out the fields that keep their default (the C++ default applies), so a
    config only sends what it changes.
    """

    calibrator: str = "auto"
    percentile: float = 99.999
    weight_granularity: str = "per-channel"
    weight_bits: int = 8
    act_bits: int = 8
    weight_scale: str = "minmax"
    exclude: Sequence[str] = ()
    cle: _Toggle = "auto"
    bias_correction: _Toggle = "auto"
    bias_correction_samples: int = 32
    act_equalization: _Toggle = "auto"
    act_equalization_alpha: float = 1.0
    act_equalization_max_scale: float = 16.0
    act_equalization_samples: int = 16
    batch_size: int = 8
    threads: int = 0
    sqnr_samples: int = 2
    stats: Optional[Union[str, os.PathLike]] = None
    preprocess: Optional[str] = None
    calib_count: Optional[int] = None
    calib_skip: Optional[int] = None
    labels: Optional[Union[str, os.PathLike]] = None
    layer_weight_bits: Optional[Mapping[str, int]] = None
    rounding: str = "nearest"
    rounding_samples: int = 100
    gptq_damp: float = 0.01
    gptq_act_order: bool = True
    gptq_quantized_inputs: bool = False
    rounding_objective: str = "float"
    rounding_target_damp: float = 0.1
    adaround_iters: int = 1000
    adaround_lambda: float = 1.0
    adaround_lr: float = 0.01
    weight_grid: str = "auto"
    weight_bits_avg: Optional[float] = None
    weight_memory: Optional[float] = None
    bops: Optional[float] = None
    candidate_bits: Sequence[int] = (2, 3, 4, 5, 6, 7, 8)
    sensitivity_samples: int = 64
    sensitivity_metric: str = "auto"
    allocation_refine: int = 0
    sensitivity: Optional[Mapping[str, Any]] = None
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """The config dict of the compiled binding (unset optional keys left out)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is None or _same(v, f.default):
                continue
            if f.name == "exclude":
                if isinstance(v, str):
                    v = [v]
                v = [str(x) for x in v]
            elif f.name == "candidate_bits":
                v = [int(x) for x in v]
            elif f.name in ("layer_weight_bits", "sensitivity"):
                v = dict(v)
            elif f.name in ("stats", "labels"):
                v = os.fspath(v)
            out[f.name] = v
        overlap = set(out) & set(self.extra)
        if overlap:
            raise ValueError(f"QuantConfig.extra repeats fields of the dataclass: {sorted(overlap)}")
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuantConfig":
        """The inverse of to_dict: known keys become fields, the others go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**known, extra=extra)

    def replace(self, **changes: Any) -> "QuantConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return list(value) == list(default)
    if isinstance(value, bool) or isinstance(default, bool):
        return type(value) is type(default) and value == default
    return value == default


def config_dict(config: Union[None, QuantConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """QuantConfig, dict or None -> the binding's dict (a new one: the caller may add keys)."""
    if config is None:
        return {}
    if isinstance(config, QuantConfig):
        return config.to_dict()
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be an onnxq.QuantConfig or a dict, not {type(config).__name__}")
