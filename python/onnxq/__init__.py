"""onnxq: post-training quantization of ONNX models.

A thin Python layer over the C++ core (the private ``onnxq._onnxq`` module): every graph, calibration
and quantization algorithm runs in C++; this package only exposes it with Pythonic names.

    >>> import onnxq
    >>> model = onnxq.load("mobilenetv2-1.0.onnx")
    >>> model.inspect()["op_counts"]["Conv"]
    53
    >>> onnxq.save(model, "copy.onnx")

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

__all__ = sorted(["__version__"] + [n for n in vars(_onnxq) if not n.startswith("_")])

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
