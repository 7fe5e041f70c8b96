"""Acceptance: onnxq's executor matches ONNX Runtime on MobileNetV2 for 16 real images.

Preprocessing (shared/models/README.md): resize the shorter side to 256 (bilinear), center crop
224, RGB, x / 127.5 - 1, NCHW. Images are decoded with PIL (in the venv); a later issue adds
onnxq's own image loader.
"""

import pathlib

import numpy as np
import pytest

import onnxq

ort = pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

NUM_IMAGES = 16


def _preprocess(path: pathlib.Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return x.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def images(shared_dir) -> np.ndarray:
    folder = shared_dir / "data" / "imagenet-sample"
    labels = folder / "labels.tsv"
    if not labels.is_file():
        pytest.skip(f"image sample not found at {folder}")
    names = [line.split("\t")[0] for line in labels.read_text().splitlines()
             if line and not line.startswith("#")]
    assert len(names) >= NUM_IMAGES
    return np.stack([_preprocess(folder / n) for n in names[:NUM_IMAGES]])


@pytest.fixture(scope="module")
def ort_logits(mobilenetv2_path, images) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(mobilenetv2_path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": images})[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_logits_match_onnxruntime(mobilenetv2_path, images, ort_logits, threads):
    sess = onnxq.Session(str(mobilenetv2_path), threads=threads)
    assert sess.input_names == ["input"]
    assert sess.output_names == ["logits"]
    logits = sess.run({"input": images})["logits"]
    assert logits.shape == (NUM_IMAGES, 1000)
    assert logits.dtype == np.float32
    diff = float(np.max(np.abs(logits - ort_logits)))
    print(f"threads={threads}: max |onnxq - ORT| over {NUM_IMAGES} images = {diff:.3g}")
    assert diff <= 1e-3
    np.testing.assert_array_equal(logits.argmax(axis=1), ort_logits.argmax(axis=1))
    # The logits are not degenerate (a constant output would also "match" a broken reference).
    assert len(set(ort_logits.argmax(axis=1).tolist())) > NUM_IMAGES // 2
    # 53 Conv, 10 Add, GlobalAveragePool, Flatten, Identity run; the 35 ReLU6 Clips are fused.
    stats = sess.last_stats
    assert stats["fused"] == 35 and stats["steps"] == 66
    assert 0 < stats["peak_bytes"] == sess.peak_bytes


def test_batch_one_matches_batched_run(mobilenetv2_path, images, ort_logits):
    # A second input shape re-plans; each image alone gives the batched result.
    sess = onnxq.Session(str(mobilenetv2_path), threads=2)
    batched = sess.run({"input": images})["logits"]
    for i in range(0, NUM_IMAGES, 5):
        single = sess.run({"input": images[i:i + 1]})["logits"]
        np.testing.assert_allclose(single[0], batched[i], rtol=0, atol=1e-4)
        np.testing.assert_allclose(single[0], ort_logits[i], rtol=0, atol=1e-3)
