"""Acceptance test of the default optimization pipeline on PyTorch exports.

torchvision MobileNetV2 and ResNet-18 (random weights, non-trivial batch-norm statistics, batch norm
kept, a Dropout node, and the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain an exporter
emits for ``y.reshape(y.size(0), -1)``) are exported to ONNX opset 13 by Debian's python3 (torch
1.13) in a subprocess. ``onnxq optimize`` with the default pipeline must then leave no
BatchNormalization, Identity, Dropout or Shape node, and the outputs must equal the original's on
ONNX Runtime and on onnxq's own executor.

Export details: torch 1.13 drops a Dropout in eval mode and turns ``y.size(0)`` into a constant when
the input shape is static, so the models are exported with a dynamic batch dim and the Dropout
module in train mode; the test then fixes the batch to 1 and sets Dropout's training_mode input to
false, which is what an inference export with a fixed input shape looks like.

The last test runs the same pipeline over the ONNX backend test data and compares ONNX Runtime's
outputs before and after, wherever the pipeline changed the graph.
"""

import pathlib
import subprocess
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import onnxq


EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torchvision

    out = sys.argv[1]

    class Wrapped(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            y = self.model(x)
            return y.reshape(y.size(0), -1)

    for name, ctor in [("mobilenet_v2", torchvision.models.mobilenet_v2),
                       ("resnet18", torchvision.models.resnet18)]:
        torch.manual_seed(0)
        m = ctor(weights=None)
        if name == "resnet18":  # ResNet has no dropout: add one before fc, as MobileNetV2 has
            m.fc = torch.nn.Sequential(torch.nn.Dropout(0.2), m.fc)
        m.eval()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.data.uniform_(0.5, 1.5)
                mod.bias.data.uniform_(-0.2, 0.2)
            if isinstance(mod, torch.nn.Dropout):
                mod.train()  # exported as a Dropout node (see the module docstring)
        x = torch.randn(1, 3, 224, 224)
        torch.onnx.export(Wrapped(m), x, f"{out}/{name}.onnx", opset_version=13,
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    """
)

MODELS = ["mobilenet_v2", "resnet18"]


def op_counts(model: onnx.ModelProto) -> dict:
    counts = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def make_inference_static(model: onnx.ModelProto) -> onnx.ModelProto:
    """Batch 1 everywhere and Dropout's training_mode = false (see the module docstring)."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    del model.graph.value_info[:]
    producers = {o: n for n in model.graph.node for o in n.output}
    flipped = 0
    for n in model.graph.node:
        if n.op_type == "Dropout" and len(n.input) > 2:
            const = producers[n.input[2]]
            assert const.op_type == "Constant"
            const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(False), const.attribute[0].t.name))
            flipped += 1
    assert flipped == 1
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torchvision_python) -> pathlib.Path:
    out = tmp_path_factory.mktemp("torchvision")
    script = out / "export.py"
    script.write_text(EXPORT_SCRIPT)
    r = subprocess.run([torchvision_python, str(script), str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in MODELS:
        m = make_inference_static(onnx.load(str(out / f"{name}.onnx")))
        onnx.save(m, str(out / f"{name}_static.onnx"))
    return out


def run_ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("name", MODELS)
def test_default_pipeline_on_torchvision_export(exported, onnxq_cli, name):
    src = exported / f"{name}_static.onnx"
    dst = exported / f"{name}_opt.onnx"
    before = op_counts(onnx.load(str(src)))
    # The export really contains what the pipeline has to remove.
    assert before.get("BatchNormalization", 0) > 0 and before.get("Dropout") == 1
    assert before.get("Shape", 0) >= 1 and before.get("Gather", 0) >= 1, before

    r = subprocess.run([str(onnxq_cli), "optimize", str(src), "-o", str(dst), "--verbose"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    print(f"\n{name}: onnxq optimize --verbose\n{r.stdout}")

    optimized = onnx.load(str(dst))
    onnx.checker.check_model(optimized)
    after = op_counts(optimized)
    print(f"{name}: ops before {before}\n{name}: ops after  {after}")
    for op in ("BatchNormalization", "Identity", "Dropout", "Shape"):
        assert op not in after, f"{op} left in {name}: {after}"
    assert after["Conv"] == before["Conv"]
    reshape_targets = [n.input[1] for n in optimized.graph.node if n.op_type == "Reshape"]
    inits = {t.name for t in optimized.graph.initializer}
    assert reshape_targets and all(t in inits for t in reshape_targets), "Reshape target not folded"

    rng = np.random.default_rng(0)
    for trial in range(2):
        x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
        ref = run_ort(src, x)
        got = run_ort(dst, x)
        atol = 1e-4 * float(np.abs(ref).max())
        print(f"{name}: ORT max |diff| {np.abs(got - ref).max():.3e} (max |logit| {np.abs(ref).max():.3f})")
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=atol)
        session = onnxq.Session(str(dst))
        mine = session.run({"input": x})["logits"]
        print(f"{name}: onnxq Session max |diff| {np.abs(mine - ref).max():.3e}")
        np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=atol)


def test_training_mode_dropout_is_refused(exported, tmp_path):
    """A Dropout that may run in training mode is kept, with the reason in the report."""
    model = onnxq.load(str(exported / "resnet18.onnx"))  # training_mode = true as exported
    out, report = onnxq.optimize(model, ["remove-identity", "remove-dropout"], return_report=True)
    dropout = [p for p in report if p["name"] == "remove-dropout"][0]
    assert dropout["counters"].get("kept") == 1
    assert any("training_mode" in n for n in dropout["notes"]), dropout["notes"]
    assert out.inspect()["op_counts"].get("Dropout") == 1


# ---- the same pipeline over the ONNX backend test data, checked with ONNX Runtime

def _backend_models(root):
    for kind in ("node", "simple", "pytorch-converted", "pytorch-operator"):
        for d in sorted((root / kind).glob("*/")):
            if (d / "model.onnx").is_file() and (d / "test_data_set_0").is_dir():
                yield d


def test_default_pipeline_on_backend_models_matches_onnxruntime(backend_data):
    """Every backend model onnxq loads goes through the default pipeline without error; where the
    graph changed, ONNX Runtime gives the same outputs for the original and the optimized model on
    the stored test inputs (the C++ executor covers too few of these ops to be the judge here)."""
    ort.set_default_logger_severity(3)
    counts = {"loaded": 0, "changed": 0, "same": 0, "ort_refuses_original": 0}
    failures = []
    for d in _backend_models(backend_data):
        try:
            model = onnxq.load(str(d / "model.onnx"))
        except onnxq.OnnxqError:
            continue
        counts["loaded"] += 1
        try:
            out, report = onnxq.optimize(model, return_report=True)
        except onnxq.OnnxqError as e:
            failures.append(f"{d.name}: optimize failed: {e}")
            continue
        if not any(p["changed"] and p["name"] != "mark-activation-groups" for p in report):
            continue
        counts["changed"] += 1
        try:
            s0 = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
            names = [i.name for i in s0.get_inputs()]
            feeds = {}
            for i, f in enumerate(sorted((d / "test_data_set_0").glob("input_*.pb"))):
                t = onnx.load_tensor(str(f))
                feeds[t.name if t.name in names else names[i]] = numpy_helper.to_array(t)
            want = s0.run(None, feeds)
        except Exception:  # noqa: BLE001 - ORT cannot run some legacy backend models at all
            counts["ort_refuses_original"] += 1
            continue
        try:
            s1 = ort.InferenceSession(out.to_bytes(), providers=["CPUExecutionProvider"])
            got = s1.run(None, {k: v for k, v in feeds.items() if k in {i.name for i in s1.get_inputs()}})
        except Exception as e:  # noqa: BLE001
            failures.append(f"{d.name}: the optimized model does not run on ONNX Runtime: {e}")
            continue
        for a, b in zip(want, got):
            same = (np.array_equal(a, b) if a.dtype == object
                    else np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True))
            if not same:
                failures.append(f"{d.name}: outputs differ after optimization")
                break
        else:
            counts["same"] += 1
    print(f"\nbackend models: {counts}")
    assert counts["loaded"] > 500 and counts["changed"] > 50
    assert not failures, "\n".join(failures[:20])
