"""onnxq's .npy reader/writer against files written and read by numpy itself."""

import io

import numpy as np
import pytest

import onnxq

calib = onnxq.calib

DTYPES = ["<f4", "<f8", "<f2", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "|b1"]


def _sample(dtype, shape, rng):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (2, 3), (1, 3, 4, 5)])
def test_reads_numpy_files_and_writes_numpy_identical_bytes(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    a = np.asarray(_sample(dtype, shape, rng))
    p = tmp_path / "a.npy"
    np.save(p, a)
    b = calib.read_npy(str(p))
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    q = tmp_path / "b.npy"
    calib.write_npy(str(q), a)
    assert q.read_bytes() == p.read_bytes()  # byte-identical to np.save
    np.testing.assert_array_equal(np.load(q), a)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_format_versions(tmp_path, version):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=version)
    p = tmp_path / "v.npy"
    p.write_bytes(buf.getvalue())
    np.testing.assert_array_equal(calib.read_npy(str(p)), a)
    np.testing.assert_array_equal(calib.parse_npy(buf.getvalue()), a)


def _expect_error(tmp_path, data, exc, needle):
    p = tmp_path / "bad_file.npy"
    p.write_bytes(data)
    with pytest.raises(exc) as e:
        calib.read_npy(str(p))
    assert "bad_file.npy" in str(e.value)
    assert needle in str(e.value)


def _bytes(a, **kw):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, **kw)
    return buf.getvalue()


def _raw(header, data):
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    h = (header + " " * pad + "\n").encode()
    return b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + data


def test_refuses_what_it_cannot_read(tmp_path):
    f = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    _expect_error(tmp_path, _bytes(f), NotImplementedError, "Fortran")
    _expect_error(tmp_path, _bytes(np.arange(4, dtype=">f4")), NotImplementedError, "big-endian")
    _expect_error(tmp_path, _bytes(np.array([1, "a"], dtype=object), allow_pickle=True),
                  NotImplementedError, "object")
    _expect_error(tmp_path, _bytes(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])),
                  NotImplementedError, "structured")
    _expect_error(tmp_path, _bytes(np.zeros(3, dtype=np.complex64)), NotImplementedError, "dtype")
    good = _bytes(np.arange(100, dtype=np.float32))
    _expect_error(tmp_path, good[:-4], ValueError, "truncated")
    _expect_error(tmp_path, good[:20], ValueError, "truncated")
    _expect_error(tmp_path, b"not a numpy file at all", ValueError, "magic")
    # A header claiming an absurd shape in a tiny file fails before allocating.
    _expect_error(tmp_path, _raw("{'descr': '<f4', 'fortran_order': False, 'shape': (10000000000000,), }",
                                 b"1234"), ValueError, "limit")
    with pytest.raises(FileNotFoundError):
        calib.read_npy(str(tmp_path / "missing.npy"))
