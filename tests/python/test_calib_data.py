"""Calibration data, observers, calibrators and quantization math against independent references:
PIL (image decode and resize), numpy reimplementations, and ONNX Runtime's QuantizeLinear /
DequantizeLinear."""

import os
from pathlib import Path

import numpy as np
import pytest

import onnxq

calib = onnxq.calib
PIL = pytest.importorskip("PIL.Image")
Image = PIL

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ONNXQ_SHARED", REPO.parent / "shared"))
SAMPLE = SHARED / "data" / "imagenet-sample"


def need_sample():
    if not (SAMPLE / "labels.tsv").exists():
        pytest.skip(f"shared ImageNet sample not found at {SAMPLE} (set ONNXQ_SHARED)")


# ----------------------------------------------------------------------------- references

def torchvision_like(img, resize, crop, scale, mean, std):
    """Resize(resize) + CenterCrop(crop) + ToTensor-like scaling + Normalize, with PIL and numpy."""
    w, h = img.size
    if resize:
        if w <= h:
            nw, nh = resize, int(resize * h / w)
        else:
            nh, nw = resize, int(resize * w / h)
        img = img.resize((nw, nh), Image.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    if crop:
        ch, cw = crop
        top = int(round((a.shape[0] - ch) / 2.0))
        left = int(round((a.shape[1] - cw) / 2.0))
        a = a[top:top + ch, left:left + cw]
    x = a.astype(np.float32) * np.float32(scale)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)


def random_png(path, w, h, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth-ish content plus noise so that resizing is non-trivial.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256], -1)
    a = np.clip(base + rng.integers(-40, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)
    return a


# ----------------------------------------------------------------------------- images

def test_png_decode_and_resize_match_pil_exactly(tmp_path):
    a = random_png(tmp_path / "x.png", 173, 131)
    dec = calib.decode_image(str(tmp_path / "x.png"))
    np.testing.assert_array_equal(dec, a)
    im = Image.fromarray(a)
    for w, h in [(256, 193), (64, 48), (173, 131), (400, 90), (17, 300), (1, 1)]:
        ours = calib.resize_bilinear(a, w, h)
        ref = np.asarray(im.resize((w, h), Image.BILINEAR))
        np.testing.assert_array_equal(ours, ref, err_msg=f"{w}x{h}")
    # Pillow >= 13 picks the pass order for some downscales by a heuristic onnxq does not fully
    # reproduce; the 8-bit rounding between passes then differs by at most one level.
    rng = np.random.default_rng(1)
    for _ in range(30):
        w, h = (int(v) for v in rng.integers(1, 260, 2))
        ours = calib.resize_bilinear(a, w, h).astype(int)
        ref = np.asarray(im.resize((w, h), Image.BILINEAR)).astype(int)
        assert np.abs(ours - ref).max() <= 1, (w, h)


@pytest.mark.parametrize("size", [(173, 131), (131, 173), (300, 300), (640, 480), (333, 500)])
@pytest.mark.parametrize("preset", ["imagenet-torch", "imagenet-tf"])
def test_preprocessing_matches_pil_pipeline(tmp_path, size, preset):
    random_png(tmp_path / "x.png", *size, seed=size[0])
    img = Image.open(tmp_path / "x.png").convert("RGB")
    if preset == "imagenet-torch":
        ref = torchvision_like(img, 256, (224, 224), 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    else:
        ref = torchvision_like(img, 256, (224, 224), 1 / 127.5, (1, 1, 1), (1, 1, 1))
    ours = calib.preprocess_image(str(tmp_path / "x.png"), preset)
    assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)


def test_preprocessing_options(tmp_path):
    random_png(tmp_path / "x.png", 100, 61)
    img = Image.open(tmp_path / "x.png").convert("RGB")
    # No resize; crop offsets (61-50)/2 = 5.5 and (100-51)/2 = 24.5 round half to even: 6 and 24.
    ref = torchvision_like(img, 0, (50, 51), 1.0, (0, 0, 0), (1, 1, 1))
    a = np.asarray(img)
    np.testing.assert_array_equal(ref.transpose(1, 2, 0), a[6:56, 24:75].astype(np.float32))
    ours = calib.preprocess_image(str(tmp_path / "x.png"), resize=0, crop=(50, 51), scale=1.0)
    np.testing.assert_array_equal(ours, ref)
    nhwc = calib.preprocess_image(str(tmp_path / "x.png"), resize=0, crop=(50, 51), scale=1.0,
                                  layout="NHWC", bgr=True)
    np.testing.assert_array_equal(nhwc, ref.transpose(1, 2, 0)[:, :, ::-1])
    full = calib.preprocess_image(str(tmp_path / "x.png"), resize=0, crop=None, scale=2.0, mean=(1, 2, 3),
                                  std=(2, 4, 8))
    expect = (a.astype(np.float32) * 2 - np.float32([1, 2, 3])) / np.float32([2, 4, 8])
    np.testing.assert_array_equal(full, expect.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="smaller than"):
        calib.preprocess_image(str(tmp_path / "x.png"), resize=0, crop=100)
    with pytest.raises(ValueError, match="std"):
        calib.preprocess_image(str(tmp_path / "x.png"), std=(1, 0, 1))
    with pytest.raises(ValueError, match="unknown preprocessing preset"):
        calib.preprocess_image(str(tmp_path / "x.png"), "imagenet-keras")


def test_jpeg_preprocessing_close_to_pil_on_shared_sample():
    need_sample()
    files = sorted(SAMPLE.glob("*.JPEG"))[:25]
    for f in files:
        img = Image.open(f).convert("RGB")
        ref = torchvision_like(img, 256, (224, 224), 1 / 127.5, (1, 1, 1), (1, 1, 1))
        ours = calib.preprocess_image(str(f), "imagenet-tf")
        diff = np.abs(ours - ref) * 127.5  # in 8-bit levels
        # stb_image and libjpeg differ in IDCT/upsampling rounding by a few levels at most.
        assert diff.mean() < 0.15, f.name
        assert diff.max() <= 4.01, f.name


# ----------------------------------------------------------------------------- datasets

def test_dataset_labels_window_and_batches():
    need_sample()
    rows = [l.split("\t") for l in (SAMPLE / "labels.tsv").read_text().splitlines()
            if l.strip() and not l.startswith("#")]
    ds = calib.Dataset(str(SAMPLE), "imagenet-tf", count=5)
    assert len(ds) == 5 and ds.has_labels
    assert [Path(ds.source(i)).name for i in range(5)] == [r[0] for r in rows[:5]]
    assert [ds.label(i) for i in range(5)] == [int(r[1]) for r in rows[:5]]
    ev = calib.Dataset(str(SAMPLE), "imagenet-tf", skip=100, count=3)
    assert [Path(ev.source(i)).name for i in range(3)] == [r[0] for r in rows[100:103]]
    batch = ds.load_batch(0, 5, 2)
    assert batch.shape == (5, 3, 224, 224)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], ds.load(i))
        np.testing.assert_array_equal(batch[i], calib.preprocess_image(ds.source(i), "imagenet-tf"))


def test_dataset_folder_sorted_and_npy(tmp_path):
    for name, seed in [("b.png", 1), ("a.PNG", 2), ("c.jpg", 3)]:
        a = np.random.default_rng(seed).integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / name, format="PNG" if "png" in name.lower() else "JPEG")
    (tmp_path / "README.txt").write_text("ignored")
    ds = calib.Dataset(str(tmp_path), resize=0, crop=(32, 32))
    assert [Path(ds.source(i)).name for i in range(len(ds))] == ["a.PNG", "b.png", "c.jpg"]
    assert not ds.has_labels
    # A folder of .npy samples (with or without a leading batch dim of 1), and a stacked file.
    npy = tmp_path / "npy"
    npy.mkdir()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, 4, 4)).astype(np.float32) for _ in range(4)]
    for i, x in enumerate(xs):
        np.save(npy / f"s{i}.npy", x if i % 2 else x[None])
    d = calib.Dataset(str(npy), sample_shape=[3, 4, 4])
    np.testing.assert_array_equal(d.load_batch(0, 4), np.stack(xs))
    np.save(tmp_path / "stack.npy", np.stack(xs))
    st = calib.Dataset(str(tmp_path / "stack.npy"), skip=1, count=2)
    assert len(st) == 2 and st.sample_dims == [3, 4, 4]
    np.testing.assert_array_equal(st.load(0), xs[1])
    assert st.source(1).endswith("stack.npy[2]")


def test_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no .jpg"):
        calib.Dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        calib.Dataset(str(tmp_path / "missing"))
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    ds = calib.Dataset(str(tmp_path), resize=0, crop=None)
    names = [Path(ds.source(i)).name for i in range(len(ds))]
    with pytest.raises(ValueError, match="corrupt.jpg"):
        ds.load(names.index("corrupt.jpg"))
    with pytest.raises(ValueError, match="truncated.png"):
        ds.load(names.index("truncated.png"))
    with pytest.raises(ValueError, match="corrupt.jpg"):
        ds.load_batch(0, len(ds), 2)
    with pytest.raises(ValueError, match="only 3"):
        calib.Dataset(str(tmp_path), count=10)
    # labels.tsv naming a missing image: error with the line number and the file.
    (tmp_path / "labels.tsv").write_text("# file\tclass\nok.png\t1\nghost.png\t2\n")
    with pytest.raises(FileNotFoundError, match=r"labels.tsv:3.*ghost.png"):
        calib.Dataset(str(tmp_path))
    (tmp_path / "labels.tsv").write_text("ok.png\tcat\n")
    with pytest.raises(ValueError, match="labels.tsv:1"):
        calib.Dataset(str(tmp_path))
    (tmp_path / "labels.tsv").write_text("../ok.png\t1\n")
    with pytest.raises(Exception, match="labels.tsv:1"):
        calib.Dataset(str(tmp_path))
    (tmp_path / "labels.tsv").unlink()
    np.save(tmp_path / "x.npy", np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="mixes"):
        calib.Dataset(str(tmp_path))

    npy = tmp_path / "n"
    npy.mkdir()
    np.save(npy / "a.npy", np.ones((2, 2), np.float32))
    bad = np.ones((2, 2), np.float32)
    bad[1, 0] = np.nan
    np.save(npy / "b.npy", bad)
    np.save(npy / "c.npy", np.ones((2, 3), np.float32))
    np.save(npy / "d.npy", np.ones((2, 2), np.float64))
    d = calib.Dataset(str(npy))
    np.testing.assert_array_equal(d.load(0), np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"b\.npy.*non-finite"):
        d.load(1)
    with pytest.raises(ValueError, match=r"c\.npy.*shape"):
        d.load(2)
    with pytest.raises(ValueError, match=r"d\.npy.*float64"):
        d.load(3)


# ----------------------------------------------------------------------------- observers

def test_histogram_matches_numpy_binning_and_is_split_independent():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(50000) * s + m for s, m in [(0.1, 0), (1, 2), (30, -5)]])
    x = x.astype(np.float32)
    h = calib.HistogramObserver()
    h.update(x)
    assert h.count == x.size and h.min == x.min() and h.max == x.max()
    w = h.bin_width
    idx = np.floor(x.astype(np.float64) / w).astype(np.int64) - h.first_index
    ref = np.bincount(idx, minlength=h.num_bins)
    np.testing.assert_array_equal(h.counts, ref)
    edges = h.edges()
    np.testing.assert_allclose(np.diff(edges), w)
    assert edges[0] <= min(0, x.min()) and edges[-1] > x.max()
    # Random batch splits and shard merges through bytes give the identical state.
    for seed in range(3):
        r = np.random.default_rng(seed)
        cuts = np.sort(r.choice(x.size, 7, replace=False))
        parts = np.split(x, cuts)
        b = calib.HistogramObserver()
        for p in parts:
            b.update(p)
        assert b == h
        shards = []
        for p in parts:
            s = calib.HistogramObserver()
            s.update(p)
            shards.append(calib.HistogramObserver.from_bytes(s.to_bytes()))
        m = calib.HistogramObserver()
        for s in reversed(shards):
            m.merge(s)
        assert m == h
    with pytest.raises(ValueError, match="non-finite"):
        h.update(np.array([1, np.inf], np.float32))


def test_calibration_stats_files(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(10000).astype(np.float32)
    shards = []
    for k in range(2):
        st = calib.CalibrationStats()
        st.fingerprint = "m"
        o = calib.HistogramObserver()
        o.update(x[k * 5000:(k + 1) * 5000])
        st.tensors = {"t": o}
        st.save(str(tmp_path / f"s{k}.stats"))
        shards.append(calib.CalibrationStats.load(str(tmp_path / f"s{k}.stats")))
    shards[0].merge(shards[1])
    one = calib.HistogramObserver()
    one.update(x)
    assert shards[0].tensors["t"] == one
    (tmp_path / "bad.stats").write_bytes(b"OQSTATS1\x05")
    with pytest.raises(ValueError, match="bad.stats"):
        calib.CalibrationStats.load(str(tmp_path / "bad.stats"))


# ----------------------------------------------------------------------------- calibrators

def np_quant_params(lo, hi, bits, signed, symmetric):
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        t = max(-lo, hi)
        if signed:
            return np.float32(t / qmax), 0, qmin, qmax
        if lo >= 0:
            return np.float32(hi / qmax), 0, qmin, qmax
        zp = 1 << (bits - 1)
        return np.float32(t / (qmax - zp)), zp, qmin, qmax
    s = np.float32((hi - lo) / (qmax - qmin))
    zp = int(np.clip(qmin - np.rint(lo / float(s)), qmin, qmax))
    return s, zp, qmin, qmax


def np_fake_quant(x, s, zp, qmin, qmax):
    q = np.clip(np.rint(x / np.float32(s)) + zp, qmin, qmax)
    return ((q - zp).astype(np.float32) * np.float32(s)).astype(np.float32)


@pytest.mark.parametrize("bits,signed,symmetric", [(8, False, False), (8, True, True), (4, True, False),
                                                   (2, False, True), (16, True, False)])
def test_compute_quant_params_matches_numpy(bits, signed, symmetric):
    rng = np.random.default_rng(bits)
    for _ in range(50):
        lo, hi = sorted(rng.uniform(-5, 5, 2))
        p = calib.compute_quant_params(lo, hi, bits, signed, symmetric)
        s, zp, qmin, qmax = np_quant_params(lo, hi, bits, signed, symmetric)
        assert p["scale"] == pytest.approx(float(s), rel=1e-7)
        assert (p["zero_point"], p["qmin"], p["qmax"]) == (zp, qmin, qmax)


def test_percentile_matches_numpy_quantiles():
    rng = np.random.default_rng(3)
    x = rng.laplace(size=400000).astype(np.float32)
    h = calib.HistogramObserver()
    h.update(x)
    r = calib.calibrate(h, "percentile", signed=True, symmetric=True, percentile=99.9)
    assert r["hi"] == pytest.approx(np.quantile(np.abs(x), 0.999), abs=2 * h.bin_width)
    r = calib.calibrate(h, "percentile", percentile=99.0)
    assert r["hi"] == pytest.approx(np.quantile(x, 0.99), abs=2 * h.bin_width)
    assert r["lo"] == pytest.approx(np.quantile(x, 0.01), abs=2 * h.bin_width)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_mse_matches_numpy_brute_force(bits):
    rng = np.random.default_rng(4)
    x = rng.laplace(size=100000).astype(np.float32)
    h = calib.HistogramObserver()
    h.update(x)
    r = calib.calibrate(h, "mse", bits=bits, signed=True, symmetric=True)
    got = np.mean((x - np_fake_quant(x, r["scale"], 0, r["qmin"], r["qmax"])) ** 2)
    qmax = (1 << (bits - 1)) - 1
    ts = np.linspace(0.2, float(np.abs(x).max()), 600)
    errs = [np.mean((x - np_fake_quant(x, np.float32(t / qmax), 0, -qmax - 1, qmax)) ** 2) for t in ts]
    assert got <= min(errs) * 1.01
    # The histogram's error model agrees with the empirical error.
    assert r["expected_mse"] == pytest.approx(got, rel=0.03)


def np_kl_threshold(counts, first_index, width, nq, max_candidates=160):
    """TensorRT entropy calibration, reimplemented in numpy on onnxq's histogram, with the zero
    bin as a level of its own and the other nq - 1 levels split as TensorRT does."""
    g = np.arange(counts.size) + first_index
    k = np.where(g >= 0, g, -g - 1)
    h = np.bincount(k, weights=counts.astype(np.float64))
    h = h[: np.nonzero(h)[0].max() + 1]
    while h.size > 2048:
        h = np.add.reduceat(np.pad(h, (0, h.size % 2)), np.arange(0, h.size + h.size % 2, 2))
        width *= 2
    m = h.size
    if nq >= m:
        return width * m
    stride = max(1, (m - nq + max_candidates - 1) // max_candidates)
    cands = list(range(nq, m, stride)) + [m]

    def smooth(p, eps=1e-4):
        zeros = p == 0
        nz = (~zeros).sum()
        e1 = eps * zeros.sum() / nz
        return np.where(zeros, eps, p - e1) if nz else p

    best, best_i = np.inf, m
    for i in cands:
        p = h[:i].copy()
        p[-1] += h[i:].sum()
        q = np.zeros(i)
        merged = (i - 1) // (nq - 1)
        bounds = [0, 1] + [1 + j * merged for j in range(1, nq - 1)] + [i]
        for a, b in zip(bounds[:-1], bounds[1:]):
            nzmask = p[a:b] != 0
            if nzmask.any():
                q[a:b][nzmask] = h[a:b].sum() / nzmask.sum()
        p, q = smooth(p / p.sum()), smooth(q / q.sum())
        if (p <= 0).any() or (q <= 0).any():
            continue  # smoothing failed: unusable candidate (as in onnxq)
        kl = np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0]))
        if kl < best:
            best, best_i = kl, i
    return width * best_i


def test_kl_matches_numpy_tensorrt_reimplementation():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(300000).astype(np.float32)
    h = calib.HistogramObserver()
    h.update(x)
    r = calib.calibrate(h, "kl", signed=True, symmetric=True)
    t = np_kl_threshold(h.counts, h.first_index, h.bin_width, 128)
    assert r["hi"] == pytest.approx(t, rel=1e-9)
    assert 2.5 < t < x.max()
    # Non-negative data with a zero spike in uint8 (256 levels), where the zero level matters.
    xr = np.clip(rng.normal(0.0, 2.0, 300000), 0, 6).astype(np.float32)
    hr = calib.HistogramObserver()
    hr.update(xr)
    rr = calib.calibrate(hr, "kl")
    assert rr["hi"] == pytest.approx(min(np_kl_threshold(hr.counts, 0, hr.bin_width, 256), 6.0), rel=1e-9)


def np_ort_entropy_threshold(x, num_bins=128, num_quantized_bins=128):
    """ONNX Runtime's entropy calibrator (HistogramCalibrater collect + get_entropy_threshold,
    default bin counts), reimplemented in numpy on the raw samples: a symmetric np.histogram over
    [-max|x|, max|x|], candidate windows around the zero bin, result clipped to [min, max]."""
    th = float(np.abs(x).max())
    hist, edges = np.histogram(x, num_bins, range=(-th, th))
    zero = num_bins // 2
    half = num_quantized_bins // 2
    best, best_t = np.inf, None
    for i in range(half, zero + 1):
        a, b = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[a:b].astype(np.int64)
        p = sliced.copy()
        p[0] += hist[:a].sum()
        p[-1] += hist[b:].sum()
        nz = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        qb = np.array([sliced[j * merged:(j + 1) * merged].sum() for j in range(num_quantized_bins)])
        qb[-1] += sliced[num_quantized_bins * merged:].sum()
        q = np.zeros(p.size, dtype=np.int64)
        for j in range(num_quantized_bins):
            n = nz[j * merged:(j + 1) * merged].sum()
            if n:
                q[j * merged:(j + 1) * merged] = qb[j] / n

        def smooth(d, eps=1e-4):
            z = d == 0
            if z.all():
                return None
            return d.astype(np.float64) + eps * z - eps * z.sum() / (~z).sum() * (~z)

        ps, qs = smooth(p), smooth(q)
        if ps is None or qs is None:
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best:
            best, best_t = kl, (edges[a], edges[b])
    return max(best_t[0], x.min()), min(best_t[1], x.max())


def test_kl_keeps_relu6_range_like_onnxruntime_entropy():
    # ReLU6 outputs: ~40 % exact zeros, a clipped mass at 6 and a spread in between. Real uint8
    # quantization keeps 0 exact, so KL must not clip the range to pull the zeros apart from
    # their neighbours (it used to pick ~2 of 6, wrecking MobileNetV2).
    rng = np.random.default_rng(6)
    x = np.clip(rng.normal(0.3, 2.0, 400000), 0, 6).astype(np.float32)
    h = calib.HistogramObserver()
    h.update(x)
    r = calib.calibrate(h, "kl")
    lo, hi = np_ort_entropy_threshold(x)
    assert (lo, hi) == (0.0, 6.0)
    assert r["lo"] == 0.0 and r["zero_point"] == 0
    assert r["hi"] == pytest.approx(hi, rel=0.05)


# ----------------------------------------------------------------------------- quantization math

def ort_qdq(x, scale, zp, axis=None):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    zdt = zp.dtype
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **({"axis": axis} if axis is not None else {})),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **({"axis": axis} if axis is not None else {}))]
    ttype = TensorProto.UINT8 if zdt == np.uint8 else TensorProto.INT8
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
                          [numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
                           numpy_helper.from_array(np.asarray(zp, zdt), "z")])
    del ttype
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_fake_quantize_equals_onnxruntime_qdq():
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((4, 8, 5)) * 3).astype(np.float32)
    x.flat[:40] = np.arange(-20, 20, dtype=np.float32) * np.float32(0.05)  # exact .5 ties at scale 0.1
    for scale, zp, dt in [(0.1, 128, np.uint8), (0.0371, 17, np.uint8), (0.1, 0, np.int8), (0.0213, -5, np.int8)]:
        qmin, qmax = (0, 255) if dt == np.uint8 else (-128, 127)
        ours = calib.fake_quantize(x, np.float32([scale]), np.int32([zp]), qmin, qmax)
        ref = ort_qdq(x, np.float32(scale), np.asarray(zp, dt))
        np.testing.assert_array_equal(ours, ref)
        np.testing.assert_array_equal(ours, np_fake_quant(x, np.float32(scale), zp, qmin, qmax))
    scales = rng.uniform(0.01, 0.1, 8).astype(np.float32)
    zps = np.zeros(8, np.int32)
    ours = calib.fake_quantize(x, scales, zps, -128, 127, axis=1)
    ref = ort_qdq(x, scales, zps.astype(np.int8), axis=1)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_and_bias_quantization_match_numpy(bits):
    rng = np.random.default_rng(bits)
    w = (rng.standard_normal((16, 3, 3, 3)) * rng.uniform(0.01, 2, (16, 1, 1, 1))).astype(np.float32)
    q, scales, sqnr = calib.quantize_weight(w, bits=bits)
    qmax = (1 << (bits - 1)) - 1
    ref_scales = (np.abs(w).reshape(16, -1).max(1) / qmax).astype(np.float32)
    np.testing.assert_allclose(scales, ref_scales, rtol=1e-7)
    ref_q = np.clip(np.rint(w / scales[:, None, None, None]), -qmax, qmax).astype(np.int8)
    np.testing.assert_array_equal(q, ref_q)
    deq = q.astype(np.float32) * scales[:, None, None, None]
    assert sqnr == pytest.approx(10 * np.log10(np.sum(w.astype(np.float64) ** 2) / np.sum((w - deq) ** 2.0)), rel=1e-6)
    q2, s2, sqnr2 = calib.quantize_weight(w, bits=bits, method="mse")
    assert sqnr2 >= sqnr - 1e-9
    assert np.all(s2 <= scales * (1 + 1e-6))
    b = rng.standard_normal(16).astype(np.float32)
    bq, bs, sat = calib.quantize_bias(b, 0.02, scales)
    np.testing.assert_array_equal(bs, np.float32(0.02) * scales)
    np.testing.assert_array_equal(bq, np.rint(b.astype(np.float64) / bs.astype(np.float64)).astype(np.int32))
    assert sat == 0
