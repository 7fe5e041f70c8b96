"""`pip install .` from the source tree into a new virtual environment builds the C++ core with
scikit-build-core, and `import onnxq` then works from another folder (quantize included, checked
against ONNX Runtime) and the notebook runs top to bottom on that venv's kernel; `pip wheel .`
gives a wheel that installs and works in a second new venv.

This compiles the whole C++ library (2 minutes on 2 idle cores with the notebook run, 15 to 25 on
busy ones), so it runs only with ONNXQ_TEST_PIP=1: scripts/test's `pip` stage sets it. The build
uses --no-build-isolation with the scikit-build-core and pybind11 versions pinned in requirements-dev.txt installed into the new venv (from the package index, or
from PIP_FIND_LINKS / a local index when there is no network), and a build directory shared
between the install and the wheel, so the wheel step only re-packages.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _pin(name):
    m = re.search(rf"^{re.escape(name)}==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert m, f"requirements-dev.txt pins no {name}"
    return f"{name}=={m.group(1)}"


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def _venv(path):
    _run([sys.executable, "-m", "venv", path])
    return path / "bin" / "python"


CHECK = textwrap.dedent("""
    import os, sys, pathlib
    import numpy as np
    import onnxq
    here = pathlib.Path(onnxq.__file__).resolve()
    assert "site-packages" in str(here), here          # the installed copy, not the source tree
    assert not str(here).startswith(sys.argv[1]), here
    print("version", onnxq.__version__)
    import onnx, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
    onnx.save(m, "f.onnx")
    calib = [rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32) for _ in range(8)]
    r = onnxq.quantize("f.onnx", calib, onnxq.QuantConfig(threads=1, calibrator="minmax"))
    r.save("q.onnx")
    x = np.stack(calib[:2])
    ref = ort.InferenceSession("f.onnx", providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    q = ort.InferenceSession("q.onnx", providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - q) ** 2).sum())
    assert sqnr > 25, sqnr
    print("sqnr", round(float(sqnr), 1))
""")


def _check_installed(python, folder):
    folder.mkdir()
    _run([python, "-m", "pip", "install", "-q", _pin("onnx"), _pin("onnxruntime")])
    (folder / "check.py").write_text(CHECK)
    r = _run([python, "check.py", str(REPO)], cwd=folder, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "sqnr" in r.stdout
    # `python -m onnxq` and the console script run the C++ subcommands.
    r = _run([python, "-m", "onnxq", "--help"], cwd=folder)
    assert "quantize" in r.stdout
    r = _run([python.parent / "onnxq", "inspect", folder / "f.onnx"], cwd=folder)
    assert "Conv" in r.stdout


def _run_notebook(python, tmp_path):
    """The notebook, top to bottom, on a kernel of the installed venv (no PYTHONPATH, run from a
    folder outside the source tree), as a user who ran `pip install .` would open it."""
    shared = pathlib.Path(os.environ.get("ONNXQ_SHARED") or REPO.parent / "shared")
    if not (shared / "models" / "mobilenetv2-1.0.onnx").is_file():
        return  # the install itself is checked; the notebook needs the shared model
    _run([python, "-m", "pip", "install", "-q", _pin("nbconvert"), _pin("ipykernel"), _pin("matplotlib"),
          _pin("tqdm")])
    work = tmp_path / "notebook"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUPYTER_PATH")}
    env.update(ONNXQ_SHARED=str(shared), ONNXQ_NB_CALIB="16", ONNXQ_NB_EVAL="24", ONNXQ_NB_BUDGETS="0.2",
               ONNXQ_NB_OUT=str(work / "out"), MPLBACKEND="Agg", JUPYTER_PLATFORM_DIRS="1",
               IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"))
    _run([python, "-m", "ipykernel", "install", "--user", "--name", "onnxq-pip"], env=env)
    notebook = REPO / "examples" / "notebooks" / "mobilenetv2_ptq.ipynb"
    _run([python, "-m", "nbconvert", "--to", "notebook", "--execute", notebook,
          "--ExecutePreprocessor.kernel_name=onnxq-pip", "--ExecutePreprocessor.timeout=900",
          "--output", work / "executed.ipynb"], cwd=work, env=env, timeout=1800)
    nb = json.loads((work / "executed.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code)
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert (work / "out" / "mobilenetv2_int8.onnx").is_file()


def test_pip_install_in_a_new_venv(tmp_path):
    if os.environ.get("ONNXQ_TEST_PIP") != "1":
        pytest.skip("run by scripts/test's pip stage (ONNXQ_TEST_PIP=1): pip install . compiles the whole C++ core")
    python = _venv(tmp_path / "venv")
    _run([python, "-m", "pip", "install", "-q", _pin("scikit-build-core"), _pin("pybind11")])
    build_dir = tmp_path / "skbuild"
    jobs = os.environ.get("ONNXQ_JOBS", "2")
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=jobs)
    env.pop("PYTHONPATH", None)
    _run([python, "-m", "pip", "install", "--no-build-isolation", "-C", f"build-dir={build_dir}", REPO],
         cwd=tmp_path, env=env, timeout=3600)
    _check_installed(python, tmp_path / "elsewhere")
    _run_notebook(python, tmp_path)

    # The wheel, installed into a second new venv.
    dist = tmp_path / "dist"
    _run([python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-C", f"build-dir={build_dir}",
          "-w", dist, REPO], cwd=tmp_path, env=env, timeout=3600)
    wheels = list(dist.glob("onnxq-*.whl"))
    assert len(wheels) == 1, wheels
    assert re.match(r"onnxq-\d+\.\d+\.\d+-cp3\d+-cp3\d+-linux_x86_64\.whl", wheels[0].name), wheels[0].name
    other = _venv(tmp_path / "venv2")
    _run([other, "-m", "pip", "install", "-q", wheels[0]], env=env)
    _check_installed(other, tmp_path / "elsewhere2")
