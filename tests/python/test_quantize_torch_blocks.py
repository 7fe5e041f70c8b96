"""End to end on architectures beyond MobileNetV2: small ConvNeXt-, ViT- and EfficientNet-style
networks written in PyTorch (Debian's python3-torch 1.13, in a subprocess), exported to ONNX as
PyTorch exports them (LayerNorm at opset 13 decomposed into ReduceMean/Sub/Pow/Sqrt/Div, GELU as
Erf, attention as MatMul/Softmax, SiLU and squeeze-excitation as Sigmoid/Mul), quantized with
onnxq's defaults on random calibration data, then run by ONNX Runtime.

Checked per model: the float model runs in onnxq as in ONNX Runtime; the quantized file passes the
ONNX checker and runs in ONNX Runtime; its outputs stay close to float (SQNR); and onnxq's
simulation of the file agrees with ONNX Runtime's run of it.
"""

import pathlib
import subprocess
import textwrap

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import onnxq  # noqa: E402


EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.nn as nn

    out = sys.argv[1]

    class ConvNeXtBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c)
            self.pw1 = nn.Linear(c, 4 * c)
            self.act = nn.GELU()
            self.pw2 = nn.Linear(4 * c, c)

        def forward(self, x):
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.pw2(self.act(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
            return x + y

    class ConvNeXtTiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 32, 4, stride=4)
            self.blocks = nn.Sequential(ConvNeXtBlock(32), ConvNeXtBlock(32))
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            y = self.blocks(self.stem(x))
            return self.head(y.mean(dim=(2, 3)))

    class ViTTiny(nn.Module):
        def __init__(self, d=48, heads=3):
            super().__init__()
            self.patch = nn.Conv2d(3, d, 8, stride=8)
            self.pos = nn.Parameter(torch.randn(1, 16, d) * 0.1)
            layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, 10)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
            return self.head(self.norm(self.enc(t)).mean(dim=1))

    class SE(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.fc1 = nn.Conv2d(c, c // 4, 1)
            self.fc2 = nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            s = x.mean(dim=(2, 3), keepdim=True)
            return x * torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(s))))

    class EffNetTiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU())
            self.expand = nn.Sequential(nn.Conv2d(16, 64, 1), nn.BatchNorm2d(64), nn.SiLU())
            self.dw = nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.SiLU())
            self.se = SE(64)
            self.project = nn.Sequential(nn.Conv2d(64, 16, 1), nn.BatchNorm2d(16))
            self.head = nn.Sequential(nn.Conv2d(16, 64, 1), nn.Hardswish())
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            y = self.stem(x)
            y = y + self.project(self.se(self.dw(self.expand(y))))
            return self.fc(self.head(y).mean(dim=(2, 3)))

    for name, ctor in [("convnext", ConvNeXtTiny), ("vit", ViTTiny), ("effnet", EffNetTiny)]:
        torch.manual_seed(0)
        m = ctor().eval()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
        torch.onnx.export(m, torch.randn(1, 3, 32, 32), f"{out}/{name}.onnx", opset_version=13,
                          input_names=["input"], output_names=["logits"])
    """
)

MODELS = ["convnext", "vit", "effnet"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torch_python) -> pathlib.Path:
    out = tmp_path_factory.mktemp("torch_blocks")
    r = subprocess.run([torch_python, "-c", EXPORT_SCRIPT, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _sqnr(ref, x):
    return 10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref - x).astype(np.float64) ** 2).sum())


@pytest.mark.parametrize("name", MODELS)
def test_quantize_and_run_in_ort(exported, name, tmp_path):
    fpath = exported / f"{name}.onnx"
    ops = {n.op_type for n in onnx.load(str(fpath)).graph.node}
    expected = {"convnext": {"Pow", "Sqrt", "Erf", "ReduceMean"}, "vit": {"Softmax", "Erf", "Pow"},
                "effnet": {"Sigmoid", "Mul", "HardSigmoid"}}[name]
    assert expected <= ops or name == "effnet" and {"Sigmoid", "Mul"} <= ops, sorted(ops)

    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(16)]
    x = rng.standard_normal((4, 1, 3, 32, 32)).astype(np.float32)
    fsess = ort.InferenceSession(str(fpath), providers=["CPUExecutionProvider"])
    ref = np.concatenate([fsess.run(None, {"input": xi})[0] for xi in x])
    mine = onnxq.Session(str(fpath), threads=1)
    got = np.concatenate([mine.run({"input": xi})["logits"] for xi in x])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)

    r = onnxq.quantize(str(fpath), calib, {"threads": 1})
    qpath = tmp_path / f"{name}_q.onnx"
    onnxq.save(r.model, str(qpath))
    qmodel = onnx.load(str(qpath))
    onnx.checker.check_model(qmodel, full_check=True)
    assert sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node) >= 5
    qsess = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"])
    q = np.concatenate([qsess.run(None, {"input": xi})[0] for xi in x])
    assert _sqnr(ref, q) > 15, _sqnr(ref, q)
    # What onnxq simulates is what ONNX Runtime computes, up to rounding flips.
    sim = np.concatenate([onnxq.Session(str(qpath), threads=1, integer=False).run({"input": xi})["logits"]
                          for xi in x])
    assert _sqnr(q, sim) > 25, _sqnr(q, sim)
