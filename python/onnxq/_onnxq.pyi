# Type stubs of the compiled module onnxq._onnxq (src/python/*_bindings.cc). Keep in step with the
# bindings: tests/python/test_python_api.py checks that both name the same things.
import os
from types import ModuleType
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np

_Path = Union[str, os.PathLike[str]]
_Dim = Union[int, str, None]

__version__: str

class OnnxqError(RuntimeError): ...
class InvalidModelError(OnnxqError, ValueError): ...
class NotFoundError(OnnxqError, FileNotFoundError): ...
class UnsupportedError(OnnxqError, NotImplementedError): ...
class LimitError(OnnxqError, ValueError): ...
class IoError(OnnxqError, OSError): ...
class CancelledError(OnnxqError, KeyboardInterrupt): ...

class TensorInfo:
    """Name, element type and shape of a graph input or output."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str:
        """Element type in numpy spelling ('float32', 'int64', ...)."""
    @property
    def shape(self) -> Optional[Tuple[_Dim, ...]]:
        """int (known), str (symbolic) or None (unknown) per dim; None when the rank is unknown."""

class Model:
    """An ONNX model in onnxq's graph IR (load it with onnxq.load)."""

    @property
    def inputs(self) -> List[TensorInfo]:
        """Graph inputs a caller feeds (initializers excluded)."""
    @property
    def outputs(self) -> List[TensorInfo]: ...
    @property
    def opset(self) -> int:
        """Version of the default ONNX domain imported by the model (-1 if none)."""
    @property
    def opset_imports(self) -> Dict[str, int]: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def metadata(self) -> Dict[str, str]:
        """metadata_props as a new dict (edit with set_metadata)."""
    def set_metadata(self, key: str, value: str) -> None: ...
    @property
    def ir_version(self) -> int: ...
    @property
    def producer_name(self) -> str: ...
    @property
    def producer_version(self) -> str: ...
    @property
    def doc_string(self) -> str: ...
    @property
    def source_path(self) -> str: ...
    def inspect(self) -> Dict[str, Any]:
        """The summary `onnxq inspect --json` prints: op counts, parameters, bytes by dtype, ..."""
    def summary(self) -> str:
        """The human-readable summary `onnxq inspect` prints."""
    def copy(self) -> Model: ...
    def __copy__(self) -> Model: ...
    def __deepcopy__(self, memo: dict) -> Model: ...
    def save(self, path: _Path) -> None:
        """Writes the model as ONNX, atomically: on error nothing is left at `path`."""
    def to_bytes(self) -> bytes: ...

def load(path: _Path, *, infer_shapes: bool = True, allow_external_data: bool = True) -> Model:
    """Reads and validates an ONNX model file (external data is resolved next to it)."""

def load_bytes(data: bytes, *, base_dir: Optional[_Path] = None, infer_shapes: bool = True) -> Model:
    """Reads a serialized ModelProto; external data is refused unless base_dir is given."""

def save(model: Model, path: _Path) -> None:
    """Writes the model as ONNX, atomically: on error nothing is left at `path`."""

# ---- graph-optimization passes (src/python/passes_bindings.cc)

@overload
def optimize(model: Model, passes: Union[str, Sequence[str]] = "default", *,
             cle_clip: str = "exact", input_range: Optional[Tuple[float, float]] = None,
             dump_dir: Optional[str] = None, verify: bool = True,
             return_report: Literal[False] = False) -> Model: ...
@overload
def optimize(model: Model, passes: Union[str, Sequence[str]] = "default", *,
             cle_clip: str = "exact", input_range: Optional[Tuple[float, float]] = None,
             dump_dir: Optional[str] = None, verify: bool = True,
             return_report: Literal[True]) -> Tuple[Model, List[Dict[str, Any]]]: ...
def list_passes() -> List[Tuple[str, str]]:
    """[(name, description)] of every registered pass."""
def default_pipeline() -> List[str]:
    """The pass names of the default pipeline, in order."""
def weight_sqnr_db(weights: np.ndarray, bits: int = 8) -> float:
    """SQNR in dB of symmetric per-tensor max-abs quantization of `weights` to `bits` bits."""

# ---- float executor (src/python/session_bindings.cc)

class Session:
    """Runs a float ONNX model on the CPU (onnxq's executor)."""

    def __init__(self, model_or_path: Union[Model, _Path], threads: Optional[int] = None,
                 isa: Optional[str] = None, integer: bool = True, channels_last: bool = True) -> None: ...
    def run(self, feeds: Dict[str, np.ndarray],
            extra_outputs: Optional[List[str]] = None, profile: bool = False) -> Dict[str, np.ndarray]: ...
    @property
    def input_names(self) -> List[str]: ...
    @property
    def output_names(self) -> List[str]: ...
    @property
    def num_threads(self) -> int: ...
    @property
    def lowered_qdq_groups(self) -> int:
        """Quantized groups lowered to integer kernels (0 for float models)."""
    @property
    def peak_bytes(self) -> int:
        """Bytes of intermediate buffers the last run's memory plan used."""
    @property
    def last_stats(self) -> Dict[str, int]:
        """Statistics of the last run: peak_bytes, steps, fused, folded."""
    @property
    def last_profile(self) -> List[Dict[str, Any]]:
        """Per executed node of the last run(profile=True): node, op, output, shape, us."""

def supported_ops() -> List[str]:
    """Operators the executor implements."""

# ---- quantization (src/python/quant_bindings.cc)

class QuantizeResult:
    """The QDQ model and the quantization report."""

    @property
    def model(self) -> Model:
        """The quantized QDQ model (save it with onnxq.save)."""
    @property
    def report_json(self) -> str: ...
    @property
    def report(self) -> Dict[str, Any]:
        """The report as a dict (scales, zero points, SQNR per tensor, sizes, timings, hashes, config)."""

def quantize(model: Union[Model, str], calibration_data: Any,
             config: Optional[Dict[str, Any]] = None) -> QuantizeResult:
    """Post-training static quantization to a QDQ model.

    calibration_data: an image/.npy folder or .npy path, a numpy array, or an iterable of arrays (or
    {input: array} dicts). config keys: calibrator, percentile, weight_granularity, weight_bits,
    act_bits, weight_scale, exclude, cle, bias_correction, bias_correction_samples, act_equalization,
    act_equalization_alpha, act_equalization_max_scale, act_equalization_samples, batch_size,
    threads, sqnr_samples, stats, preprocess, calib_count, calib_skip, labels.
    """

def evaluate(model: Union[Model, str], data: Any, *, reference: Optional[Union[Model, str]] = None,
             batch_size: int = 8, threads: int = 0) -> Dict[str, Any]:
    """Top-1/top-5 of a classifier on an onnxq.calib.Dataset; with reference, also top1_agreement and
    mean_kl. Returns the dict of `onnxq eval --json`."""
    ...
def evaluate_samples(model: Union[Model, str], data: Any, *, labels: Optional[Sequence[int]] = None,
                     reference: Optional[Union[Model, str]] = None, batch_size: int = 8,
                     threads: int = 0) -> Dict[str, Any]:
    """evaluate() on numpy samples: arrays, or {input name: array} dicts for a model with several
    inputs; labels (one per sample) optional. Returns the dict of `onnxq eval --json`."""
    ...
def softmax_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(softmax(p) || softmax(q)) in nats (double precision)."""

def sensitivity(model: Union[Model, str], calibration_data: Any,
                config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Per-layer damage with only that layer's weights quantized, for each of candidate_bits:
    {metric, rounding, weight_scale, samples, seconds, layers: [{node, op, weight, params, channels,
    macs, damage: {bits: value}}]}. Same arguments and config keys as quantize."""

def allocate_bits(model: Union[Model, str], sensitivity: Dict[str, Any],
                  config: Dict[str, Any]) -> Dict[str, int]:
    """Per-layer weight bits {node: bits} minimising the summed sensitivity under the config's
    budget (weight_bits_avg, weight_memory or bops)."""

def pareto_front(model: Union[Model, str], calibration_data: Any, eval_data: str,
                 budgets: List[float], config: Dict[str, Any], eval_skip: int = 0,
                 eval_count: int = -1) -> List[Dict[str, Any]]:
    """Per budget value (of the config's budget kind): quantize with the sensitivity measured once,
    evaluate the QDQ model against float on eval_data. Dicts with budget, average_weight_bits,
    packed_weight_bytes, packed_weight_fraction, layer_bits, predicted_damage_sum, top1,
    reference_top1, top1_agreement, mean_kl, eval_samples."""

# ---- dynamic-range quantization (src/python/dynamic_bindings.cc)

class DynamicQuantizeResult:
    """The dynamically quantized model and its report."""

    @property
    def model(self) -> Model:
        """The model with DynamicQuantizeLinear + ConvInteger / MatMulInteger (save it with onnxq.save)."""
    @property
    def quantized_nodes(self) -> int:
        """Number of Conv / MatMul / Gemm nodes rewritten into integer ops."""
    @property
    def report_json(self) -> str: ...
    @property
    def report(self) -> Dict[str, Any]:
        """The report as a dict (config, sizes, per-weight scales and SQNR, float nodes, evaluation, timings)."""

def quantize_dynamic(model: Union[Model, str],
                     config: Optional[Dict[str, Any]] = None) -> DynamicQuantizeResult:
    """Dynamic-range quantization: int8 weights, uint8 activations quantized at run time.

    config keys: weight_granularity, weight_bits, weight_scale, op_types, exclude, passes, threads;
    eval_data, preprocess, labels, eval_skip, eval_count, eval_batch_size (accuracy vs float).
    """

# ---- calibration (src/python/calib_bindings.cc): datasets, observers, calibrators, quant math
calib: ModuleType

# ---- command line (src/python/cli_bindings.cc)

def cli_main(args: List[str]) -> int:
    """Runs an onnxq subcommand in-process (args exclude the program name); returns the exit code."""
