"""Quantization of models as `torch.onnx.export` writes them by default: batch 1 fixed in the input
and in constant Reshape shapes (ShuffleNetV2's channel shuffle reshapes to [1, 2, C/2, H, W]),
hard-swish and squeeze-excitation (MobileNetV3). torchvision models with random weights and
non-trivial batch-norm statistics are exported by Debian's python3 (torch) in a subprocess; W8A8
`quantize`, mixed precision with GPTQ and `eval` must run them, ONNX Runtime must run every export,
and it must agree with onnxq's integer session on the file and stay close to the float model."""

import json
import subprocess
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxq

MODELS = ["mobilenet_v3_small", "shufflenet_v2_x0_5"]

EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torchvision

    out = sys.argv[1]
    torch.set_num_threads(1)
    for name in sys.argv[2:]:
        torch.manual_seed(0)
        m = getattr(torchvision.models, name)(weights=None)
        m.train()  # batch-norm statistics from a few random batches: activations of realistic scale
        with torch.no_grad():
            for _ in range(3):
                m(torch.randn(8, 3, 224, 224))
        m.eval()
        torch.onnx.export(m, torch.randn(1, 3, 224, 224), f"{out}/{name}.onnx", opset_version=13,
                          input_names=["input"], output_names=["logits"])
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torchvision_python):
    out = tmp_path_factory.mktemp("tv_quant")
    script = out / "export.py"
    script.write_text(EXPORT_SCRIPT)
    r = subprocess.run([torchvision_python, str(script), str(out), *MODELS], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _images(n, seed):
    # Smooth random images (neighbouring pixels correlated), normalised like ImageNet inputs.
    rng = np.random.default_rng(seed)
    base = rng.uniform(-2, 2, (n, 3, 28, 28)).astype(np.float32)
    return np.repeat(np.repeat(base, 8, axis=2), 8, axis=3)


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


def _sqnr(ref, out):
    return 10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref.astype(np.float64) - out) ** 2).sum())


@pytest.mark.parametrize("name", MODELS)
def test_batch1_torchvision_export_quantizes(exported, tmp_path, onnxq_cli, name):
    src = exported / f"{name}.onnx"
    m = onnx.load(str(src))
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # the batch really is fixed
    calib = _images(16, 1)
    test = _images(6, 2)
    ref = _ort(src, test)

    r = onnxq.quantize(str(src), calib, {"threads": 1})
    q8 = tmp_path / "q8.onnx"
    onnxq.save(r.model, str(q8))
    got = _ort(q8, test)
    assert _sqnr(ref, got) > 25, _sqnr(ref, got)  # measured 34.9 / 46.6 dB
    # What onnxq computes for the file is what ONNX Runtime computes.
    mine = np.concatenate([onnxq.Session(str(q8), threads=1).run({"input": test[i:i + 1]})["logits"]
                           for i in range(len(test))])
    assert _sqnr(got, mine) > 60, _sqnr(got, mine)  # measured 131 / 135 dB

    # Mixed precision (sensitivity + allocation + GPTQ) on the same batch-1 graph.
    r6 = onnxq.quantize(str(src), calib, {"threads": 1, "weight_bits_avg": 6.0, "rounding": "gptq",
                                          "sensitivity_samples": 6, "candidate_bits": [4, 6, 8]})
    q6 = tmp_path / "q6.onnx"
    onnxq.save(r6.model, str(q6))
    meta = {p.key: p.value for p in onnx.load(str(q6)).metadata_props}
    bits = json.loads(meta["onnxq.weight_bits"])
    params = {w["node"]: w["params"] for w in r6.report["mixed_precision"]["sensitivity"]["layers"]}
    assert set(bits) == set(params)
    avg = sum(bits[k] * params[k] for k in bits) / sum(params.values())
    assert avg <= 6.0 + 1e-9 and avg == pytest.approx(r6.report["sizes"]["average_weight_bits"], rel=1e-6)
    assert min(bits.values()) < 8  # the budget bites
    got6 = _ort(q6, test)
    assert _sqnr(ref, got6) > 25, _sqnr(ref, got6)  # measured 36.5 / 55.8 dB

    # `onnxq eval` runs the fixed-batch files sample by sample; its KL is ONNX Runtime's.
    data = tmp_path / "data"
    data.mkdir()
    for i, x in enumerate(test):
        np.save(data / f"{i}.npy", x)
    p = subprocess.run([str(onnxq_cli), "eval", str(q6), "--data", str(data), "--reference", str(src), "--json",
                        "--threads", "1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])

    def lsm(v):
        v = v.astype(np.float64) - v.max(1, keepdims=True)
        return v - np.log(np.exp(v).sum(1, keepdims=True))

    kl = float((np.exp(lsm(ref)) * (lsm(ref) - lsm(got6))).sum(1).mean())
    assert res["count"] == 6
    assert res["mean_kl"] == pytest.approx(kl, rel=0.1, abs=1e-7)
