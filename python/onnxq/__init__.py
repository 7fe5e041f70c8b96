"""onnxq: post-training quantization of ONNX models.

A thin Python layer over the C++ core (the private ``onnxq._onnxq`` module): every graph, calibration
and quantization algorithm runs in C++; this package only exposes it with Pythonic names.

    >>> import onnxq
    >>> model = onnxq.load("mobilenetv2-1.0.onnx")
    >>> model.inspect()["op_counts"]["Conv"]
    53
    >>> onnxq.save(model, "copy.onnx")
    >>> calib = onnxq.data.ImageFolder("imagenet-sample", preprocess="imagenet-tf", count=100)
    >>> result = onnxq.quantize(model, calib, onnxq.QuantConfig(), progress=True)
    >>> result.save("mobilenetv2_int8.onnx"); result.report.plot_sqnr()

Errors raised by the core are ``onnxq.OnnxqError`` subclasses that also derive from the matching
built-in exception (``InvalidModelError`` is a ``ValueError``, ``NotFoundError`` a
``FileNotFoundError``, ...) and carry the C++ message unchanged.
"""

import importlib as _importlib
import importlib.util as _importlib_util

from . import _onnxq

# Every public name that a src/python/*_bindings.cc file adds to the compiled module (Model, load,
# save, and later ones) is part of the package API, so a new binding needs no edit here.
from ._onnxq import *  # noqa: E402,F401,F403

# Set from CMake's project(VERSION) when the module is compiled; "0+unknown" only for a module built
# without that definition.
__version__: str = getattr(_onnxq, "__version__", "0+unknown")

# The Python layer (python/onnxq/_api.py, config.py): onnxq.quantize (and sensitivity,
# allocate_bits) wrap the compiled functions of the same name (QuantConfig, ImageFolder, progress,
# Report/Sensitivity objects); the compiled ones stay reachable as onnxq._onnxq.<name>.
from ._api import QuantizationResult, evaluate, quantize  # noqa: E402
from .config import QuantConfig  # noqa: E402

_PYTHON_API = ["QuantConfig", "QuantizationResult", "evaluate", "quantize"]
# Mixed precision (issue 7): wrapped when the compiled module binds it.
if hasattr(_onnxq, "sensitivity"):
    from ._api import sensitivity  # noqa: E402,F811
    _PYTHON_API.append("sensitivity")
if hasattr(_onnxq, "allocate_bits"):
    from ._api import allocate_bits  # noqa: E402,F811
    _PYTHON_API.append("allocate_bits")
__all__ = sorted(set(["__version__"] + [n for n in vars(_onnxq) if not n.startswith("_")] + _PYTHON_API))

# Report the classes as onnxq.Model, onnxq.NotFoundError, ... (their public home) in reprs,
# tracebacks and pickles, rather than under the private module's name.
for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type) and _obj.__module__ == _onnxq.__name__:
        _obj.__module__ = __name__
del _name, _obj


def __getattr__(name):
    # Python-side submodules (python/onnxq/<name>.py) load on first use, so onnxq.<name> works after
    # a plain `import onnxq` without this file listing them.
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
