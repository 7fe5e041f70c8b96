"""Shared fixtures of the Python tests (run with PYTHONPATH=build/python, as scripts/test does).

Paths: the source tree is this file's grandparent; the build tree is the one the imported onnxq
package lives in (build/python/onnxq -> build/), unless ONNXQ_BUILD_DIR says otherwise; the CLI is
$ONNXQ_CLI or <build>/bin/onnxq. Shared data is $ONNXQ_SHARED or <repo>/../shared; tests that need
it (or the ONNX backend test data of Debian's libonnx-testdata) skip with a message when it is absent.
"""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BACKEND_DATA = pathlib.Path("/usr/share/libonnx-testdata/data")


def _build_dir() -> pathlib.Path:
    if os.environ.get("ONNXQ_BUILD_DIR"):
        return pathlib.Path(os.environ["ONNXQ_BUILD_DIR"]).resolve()
    import onnxq

    package_dir = pathlib.Path(onnxq.__file__).resolve().parent
    # build/python/onnxq -> build; a pip-installed package has no build tree.
    candidate = package_dir.parents[1]
    if (candidate / "CMakeCache.txt").is_file():
        return candidate
    return REPO_ROOT / "build"


def _shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ONNXQ_SHARED") or REPO_ROOT.parent / "shared")


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    return _build_dir()


@pytest.fixture(scope="session")
def onnxq_cli() -> pathlib.Path:
    """Path of the onnxq executable of the build tree under test."""
    path = pathlib.Path(os.environ.get("ONNXQ_CLI") or _build_dir() / "bin" / "onnxq")
    if not path.is_file():
        pytest.fail(f"onnxq CLI not found at {path}: run ./scripts/build (or set ONNXQ_CLI)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    path = _shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set ONNXQ_SHARED)")
    return path


@pytest.fixture(scope="session")
def mobilenetv2_path(shared_dir) -> pathlib.Path:
    path = shared_dir / "models" / "mobilenetv2-1.0.onnx"
    if not path.is_file():
        pytest.skip(f"MobileNetV2 not found at {path} (set ONNXQ_SHARED)")
    return path


@pytest.fixture(scope="session")
def backend_data() -> pathlib.Path:
    """Root of the ONNX backend test data (node/, simple/, pytorch-converted/, pytorch-operator/)."""
    if not (BACKEND_DATA / "node").is_dir():
        pytest.skip(f"ONNX backend test data not found at {BACKEND_DATA} (apt-get install libonnx-testdata)")
    return BACKEND_DATA


@pytest.fixture(scope="session")
def backend_model(backend_data):
    """Factory: backend_model("node", "test_conv_with_strides_padding") -> path of its model.onnx."""

    def find(kind: str, name: str) -> pathlib.Path:
        path = backend_data / kind / name / "model.onnx"
        if not path.is_file():
            pytest.skip(f"ONNX backend test model not found: {path}")
        return path

    return find


# PyTorch comes from Debian (python3-torch, python3-torchvision) for Debian's /usr/bin/python3 only;
# tests export models with it in a subprocess and skip, saying why, where it is missing.
TORCH_PYTHON = "/usr/bin/python3"


def _python_with(modules: str) -> str:
    import shutil
    import subprocess

    if not shutil.which(TORCH_PYTHON):
        pytest.skip(f"{TORCH_PYTHON} not found (Debian's python3-torch is needed for the export)")
    probe = subprocess.run([TORCH_PYTHON, "-c", f"import {modules}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"Debian's python3 cannot import {modules}: " + probe.stderr.decode()[-300:])
    return TORCH_PYTHON


@pytest.fixture(scope="session")
def torch_python() -> str:
    """Debian's python3 with torch (skips without it)."""
    return _python_with("torch")


@pytest.fixture(scope="session")
def torchvision_python() -> str:
    """Debian's python3 with torch and torchvision (skips without them)."""
    return _python_with("torch, torchvision")
