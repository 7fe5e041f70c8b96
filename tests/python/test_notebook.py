"""examples/notebooks/mobilenetv2_ptq.ipynb: stored without outputs, and runs top to bottom with
nbconvert + ipykernel, from a folder outside the source tree, on a kernel that uses this interpreter
with the onnxq package under test (the kernel spec is registered in a temporary JUPYTER_PATH)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import onnxq

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "mobilenetv2_ptq.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, \
                f"clear the outputs of the notebook (cell: {''.join(cell['source'])[:60]!r})"


def _kernel(tmp_path) -> pathlib.Path:
    package_parent = pathlib.Path(os.path.abspath(onnxq.__file__)).parents[1]  # no resolve(): keep symlinked trees
    spec_dir = tmp_path / "jupyter" / "kernels" / "onnxq-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "onnxq (test)",
        "language": "python",
        "env": {"PYTHONPATH": str(package_parent), "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    return tmp_path / "jupyter"


def test_notebook_runs_top_to_bottom(tmp_path, mobilenetv2_path, shared_dir):
    pytest.importorskip("nbconvert", reason="nbconvert is not installed (requirements-dev.txt)")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (requirements-dev.txt)")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (requirements-dev.txt)")
    ort = pytest.importorskip("onnxruntime")
    work = tmp_path / "work"  # outside the source tree: the notebook finds the data via ONNXQ_SHARED
    work.mkdir()
    env = dict(os.environ, JUPYTER_PATH=str(_kernel(tmp_path)), ONNXQ_SHARED=str(shared_dir),
               ONNXQ_NB_CALIB="16", ONNXQ_NB_EVAL="24", ONNXQ_NB_THREADS="2", ONNXQ_NB_OUT=str(work / "out"), ONNXQ_NB_BUDGETS="0.2",
               JUPYTER_PLATFORM_DIRS="1", IPYTHONDIR=str(tmp_path / "ipython"))
    env.pop("PYTHONPATH", None)  # the kernel gets the package only through its kernel spec
    out = work / "executed.ipynb"
    run = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK),
         "--ExecutePreprocessor.kernel_name=onnxq-test", "--ExecutePreprocessor.timeout=600",
         "--output", str(out)],
        cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    nb = json.loads(out.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code)
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, errors
    images = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "the SQNR and per-channel vs per-tensor plots"
    markdown = [o for c in code for o in c["outputs"] if "text/markdown" in o.get("data", {})]
    assert any("quantization report" in "".join(o["data"]["text/markdown"]) for o in markdown)
    results = work / "out"
    names = ["sqnr.png", "per_channel_vs_per_tensor.png"]
    if hasattr(onnxq._onnxq, "sensitivity"):
        names += ["sensitivity.png", "pareto.png"]
    for name in names:
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # The model the notebook wrote is a QDQ model that ONNX Runtime runs close to the float model.
    qpath = results / "mobilenetv2_int8.onnx"
    x = np.stack([onnxq.calib.preprocess_image(str(shared_dir / "data" / "imagenet-sample" / f), "imagenet-tf")
                  for f in sorted(os.listdir(shared_dir / "data" / "imagenet-sample"))[:100]
                  if f.endswith(".JPEG")][:4])
    q = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"])
    f = ort.InferenceSession(str(mobilenetv2_path), providers=["CPUExecutionProvider"])
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(qpath)).graph.node)
    lq = q.run(None, {q.get_inputs()[0].name: x})[0]
    lf = f.run(None, {f.get_inputs()[0].name: x})[0]
    assert (lq.argmax(1) == lf.argmax(1)).mean() >= 0.75
    report = json.loads((results / "report.json").read_text())
    assert report["calibration_samples"] == 16
