"""The Python-level entry points ``onnxq.quantize`` and ``onnxq.evaluate``.

They convert arguments (QuantConfig, ImageFolder, iterables, paths), attach progress reporting,
and wrap the result; the work is done by the compiled ``onnxq._onnxq.quantize`` (src/quant/
quantize_model.cc) and the C++ evaluator (src/quant/evaluate.cc).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import _onnxq
from .config import QuantConfig, config_dict
from .data import ImageFolder
from .progress import Callback, ProgressArg, Reporter
from .report import Report, Sensitivity

PathLike = Union[str, os.PathLike]
_DATASET_KEYS = ("preprocess", "calib_count", "calib_skip", "labels")

class QuantizationResult:
    """What ``onnxq.quantize`` returns: the QDQ ``model``, the ``report`` and ``save(path)``."""

    def __init__(self, compiled_result, config: Dict[str, Any]):
        self._result = compiled_result
        self.model = compiled_result.model
        self.report_json: str = compiled_result.report_json
        self.report = Report.from_json(self.report_json)
        self.config = config

    def save(self, path: PathLike, report: Optional[PathLike] = None) -> None:
        """Writes the quantized model as ONNX (atomically) and, if `report` is given, the JSON report."""
        if self.model is None:
            raise ValueError("this result has no exported model: act_bits < 8 is simulation only "
                             "(the QDQ export writes 8-bit activations)")
        _onnxq.save(self.model, os.fspath(path))
        if report is not None:
            self.report.save(report)

    def __repr__(self) -> str:
        n = self.model.num_nodes if self.model is not None else None
        return f"QuantizationResult(model nodes={n}, {self.report!r})"


def _counted(items: Iterable[Any], reporter: Reporter, stage: str) -> Iterator[Any]:
    total = len(items) if hasattr(items, "__len__") else 0
    done = 0
    for item in items:
        yield item
        done += 1
        if reporter.active and reporter(stage, done, max(total, done)) is False:
            if reporter.error is not None:
                raise reporter.error
            raise _onnxq.CancelledError(f"{stage} cancelled")


def _calibration_argument(data: Any, cfg: Dict[str, Any], reporter: Reporter):
    """The binding's calibration_data argument; may add dataset keys to cfg."""
    if isinstance(data, ImageFolder):
        direct = data.binding_args()
        if direct is not None:
            path, keys = direct
            for k in _DATASET_KEYS:
                if k in cfg and k not in keys:
                    raise ValueError(f"config key '{k}' does not apply to an ImageFolder: set it on the "
                                     "ImageFolder instead")
                if k in cfg and cfg[k] != keys[k]:
                    raise ValueError(f"config key '{k}'={cfg[k]!r} contradicts the ImageFolder's {keys[k]!r}")
            cfg.update(keys)
            return path
        # Preprocessing beyond a preset: the samples are decoded by the C++ dataset one by one.
        return _counted(data, reporter, "load data")
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, np.ndarray):
        return data
    if isinstance(data, Mapping):  # one {input: batch} dict
        return [dict(data)]
    if isinstance(data, Iterable):
        return _counted(data, reporter, "load data")
    raise TypeError("calibration_data must be a path, an onnxq.data.ImageFolder, a numpy array, or an "
                    f"iterable of arrays or {{input: array}} dicts; not {type(data).__name__}")


def _call_quantize(model, data, cfg: Dict[str, Any], reporter: Reporter):
    # The C++ flow calls `reporter` after every batch (with the GIL); it also checks for Ctrl-C there,
    # so the call can be cancelled mid-way.
    if reporter.active:
        return _onnxq.quantize(model, data, {**cfg, "progress": reporter})
    return _onnxq.quantize(model, data, cfg)


def quantize(model: Union["_onnxq.Model", PathLike], calibration_data: Any,
             config: Union[None, QuantConfig, Mapping[str, Any]] = None, *,
             progress: ProgressArg = False, callback: Optional[Callback] = None) -> QuantizationResult:
    """Post-training static quantization of a float model to a QDQ model (W8A8 by default).

    model: an ``onnxq.Model`` or a path.
    calibration_data: an ``onnxq.data.ImageFolder``; a folder/.npy path (read with ``config``'s
        preprocess, calib_count, calib_skip, labels); a numpy array (a leading batch dim is split
        into samples); or an iterable of arrays or ``{input: array}`` dicts.
    config: an ``onnxq.QuantConfig`` or the equivalent dict (None: the defaults).
    progress: True for a bar (tqdm when installed, a plain one otherwise), or a callable
        ``(stage, done, total)``. callback: another such callable. A callable returning False, or
        Ctrl-C, cancels: ``onnxq.CancelledError`` (a KeyboardInterrupt) is raised and nothing is
        returned or written.

    Errors of the C++ core are raised as ``onnxq.OnnxqError`` subclasses with its message.
    """
    cfg = _with_sensitivity_dicts(config_dict(config))
    if "progress" in cfg:
        raise TypeError("pass progress callbacks as quantize(..., progress=...) / callback=..., not in the config")
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    reporter = Reporter(progress, callback)
    try:
        data = _calibration_argument(calibration_data, cfg, reporter)
        if not isinstance(data, (str, np.ndarray, list)):
            # The binding iterates in C++; a generator must not be consumed by a failed probe.
            data = list(data)
        result = _call_quantize(model, data, cfg, reporter)
    except _onnxq.CancelledError:
        if reporter.error is not None:
            raise reporter.error from None
        raise
    finally:
        reporter.close()
    return QuantizationResult(result, cfg)


def _with_sensitivity_dicts(cfg: Dict[str, Any]) -> Dict[str, Any]:
    if isinstance(cfg.get("sensitivity"), Sensitivity):
        cfg["sensitivity"] = cfg["sensitivity"].to_dict()
    return cfg


def sensitivity(model: Union["_onnxq.Model", PathLike], calibration_data: Any,
                config: Union[None, QuantConfig, Mapping[str, Any]] = None, *,
                progress: ProgressArg = False, callback: Optional[Callback] = None) -> Sensitivity:
    """Per-layer sensitivity to the weight bit width (the C++ measurement of mixed precision):
    for each quantizable layer and each of the config's candidate_bits, the damage to the output
    with only that layer's weights quantized, on the last sensitivity_samples calibration samples.
    Arguments as for ``onnxq.quantize``. Pass the result as ``QuantConfig(sensitivity=...)`` to
    quantize under several budgets without measuring again."""
    compiled = getattr(_onnxq, "sensitivity", None)
    if compiled is None:
        raise NotImplementedError("this build of the onnxq module has no sensitivity binding (issue 7)")
    cfg = _with_sensitivity_dicts(config_dict(config))
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    reporter = Reporter(progress, callback)
    try:
        data = _calibration_argument(calibration_data, cfg, reporter)
        if not isinstance(data, (str, np.ndarray, list)):
            data = list(data)
        result = compiled(model, data, cfg)
    except _onnxq.CancelledError:
        if reporter.error is not None:
            raise reporter.error from None
        raise
    finally:
        reporter.close()
    return Sensitivity(result)


def allocate_bits(model: Union["_onnxq.Model", PathLike], sensitivity: Mapping[str, Any],
                  config: Union[QuantConfig, Mapping[str, Any]]) -> Dict[str, int]:
    """{layer: weight bits} minimising the summed sensitivity under the config's budget
    (weight_bits_avg, weight_memory or bops); no measurement (the C++ allocator)."""
    compiled = getattr(_onnxq, "allocate_bits", None)
    if compiled is None:
        raise NotImplementedError("this build of the onnxq module has no allocate_bits binding (issue 7)")
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    sens = sensitivity.to_dict() if isinstance(sensitivity, Sensitivity) else dict(sensitivity)
    return dict(compiled(model, sens, _with_sensitivity_dicts(config_dict(config))))


# ---------------------------------------------------------------- evaluate

def evaluate(model: Union["_onnxq.Model", PathLike], data: Any, *,
             reference: Union[None, "_onnxq.Model", PathLike] = None, preprocess=None,
             labels: Optional[Sequence[int]] = None, batch_size: int = 8, threads: int = 0) -> Dict[str, Any]:
    """Top-1/top-5 of a classifier (logits [N, classes]) run on onnxq's CPU executor (the same C++
    Evaluate as ``onnxq eval``); with `reference` (the float model) also top-1 agreement and mean
    KL(reference || model) of the softmax outputs.

    `data`: a labelled image folder (path or ``ImageFolder``; its labels.tsv gives the labels), or
    numpy samples as ``quantize`` takes them (an array, a list of arrays, or ``{input name: array}``
    dicts for a model with several inputs), with optional `labels` (one class index per sample).

    Returns a dict: count, top1, top5 (fractions; with labels), reference_top1/5, top1_agreement,
    mean_kl (with a reference): the result of ``onnxq eval --json``.
    """
    fs = (lambda m: os.fspath(m) if isinstance(m, (str, os.PathLike)) else m)
    if isinstance(data, (ImageFolder, str, os.PathLike)):
        if labels is not None:
            raise ValueError("labels are given with numpy samples; an image folder has its labels.tsv")
        if not isinstance(data, ImageFolder):
            data = ImageFolder(data, preprocess)
        elif preprocess is not None:
            raise ValueError("preprocess is set on the ImageFolder")
        return dict(_onnxq.evaluate(fs(model), data.dataset, reference=fs(reference), batch_size=batch_size,
                                    threads=threads))
    if preprocess is not None:
        raise ValueError("preprocess applies to image folders, not to numpy samples")
    if not isinstance(data, (np.ndarray, dict, list)):
        data = list(data)
    return dict(_onnxq.evaluate_samples(fs(model), data, labels=None if labels is None else list(labels),
                                        reference=fs(reference), batch_size=batch_size, threads=threads))
