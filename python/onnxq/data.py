"""Calibration and evaluation data: ``onnxq.data.ImageFolder``.

A thin wrapper of the C++ dataset (``onnxq.calib.Dataset``, src/calib/dataset.cc): decoding,
resizing, cropping and normalisation all run in C++ (stb_image, PIL-compatible bilinear resize).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _onnxq

Preprocess = Union[None, str, Mapping[str, Any]]

# The options of onnxq.calib.preprocess_image / Dataset besides the preset name.
PREPROCESS_OPTIONS = ("resize", "crop", "scale", "mean", "std", "bgr", "layout")


def _split_preprocess(preprocess: Preprocess) -> Tuple[Optional[str], Dict[str, Any]]:
    if preprocess is None:
        return None, {}
    if isinstance(preprocess, str):
        return preprocess, {}
    if isinstance(preprocess, Mapping):
        opts = dict(preprocess)
        preset = opts.pop("preset", None)
        unknown = set(opts) - set(PREPROCESS_OPTIONS)
        if unknown:
            raise TypeError(f"unknown preprocessing option(s) {sorted(unknown)} "
                            f"(known: preset, {', '.join(PREPROCESS_OPTIONS)})")
        return preset, opts
    raise TypeError("preprocess must be a preset name ('imagenet-torch', 'imagenet-tf'), a dict of "
                    f"options, or None; not {type(preprocess).__name__}")


def preprocess_presets() -> List[str]:
    """Names of the built-in preprocessing presets."""
    return list(_onnxq.calib.preprocess_presets())


class ImageFolder:
    """The JPEG/PNG images (or .npy samples) of a folder, preprocessed in C++.

    path: a folder of images (sorted by name, or listed in ``labels``), a folder of .npy files,
        or one .npy file.
    preprocess: a preset name ("imagenet-torch": resize 256, center-crop 224, torchvision
        mean/std; "imagenet-tf": the same crop, pixels scaled to [-1, 1]), or a dict of options
        {"preset", "resize", "crop", "scale", "mean", "std", "bgr", "layout"} applied over the
        preset. Images need one; .npy data takes none.
    labels: a labels.tsv (file name, class index); ``<path>/labels.tsv`` is used when present.
    skip, count: use samples [skip, skip + count) (count None: all the rest).
    sample_shape: the expected shape of each sample (checked by the C++ loader).

    ``len(folder)``, ``folder[i]`` (one sample, float32 without a batch dim), iteration, and
    ``folder.batches(n)`` (arrays with a leading batch dim) read the samples; ``folder.label(i)``
    gives the class index when there are labels.
    """

    def __init__(self, path: Union[str, os.PathLike], preprocess: Preprocess = None, *,
                 labels: Union[None, str, os.PathLike] = None, skip: int = 0,
                 count: Optional[int] = None, sample_shape: Optional[Sequence[int]] = None,
                 threads: int = 1):
        self.path = os.fspath(path)
        self.preprocess = preprocess
        self.labels_path = os.fspath(labels) if labels is not None else ""
        self.skip = int(skip)
        self.count = count
        self.threads = int(threads)
        self._preset, self._options = _split_preprocess(preprocess)
        self._dataset = _onnxq.calib.Dataset(
            self.path, self._preset, labels=self.labels_path, skip=self.skip,
            count=-1 if count is None else int(count),
            sample_shape=list(sample_shape or []), **self._options)

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range (the folder has {n})")
        return self._dataset.load(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._dataset.load(i)

    def batches(self, batch_size: int = 8) -> Iterator[np.ndarray]:
        """Consecutive batches [batch_size, ...] (the last one may be smaller), loaded in C++."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for begin in range(0, len(self), batch_size):
            yield self._dataset.load_batch(begin, min(batch_size, len(self) - begin), self.threads)

    def source(self, i: int) -> str:
        """The file (or .npy entry) sample i comes from."""
        return self._dataset.source(i)

    @property
    def has_labels(self) -> bool:
        return bool(self._dataset.has_labels)

    def label(self, i: int) -> int:
        return int(self._dataset.label(i))

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        return tuple(self._dataset.sample_dims)

    @property
    def dataset(self):
        """The underlying ``onnxq.calib.Dataset``."""
        return self._dataset

    # ---------------------------------------------------------------- passing it to the C++ flow
    def binding_args(self) -> Optional[Tuple[str, Dict[str, Any]]]:
        """(path, config keys) for the compiled quantize/evaluate, which open the folder themselves
        (parallel decoding, no copy in Python); None when the preprocessing is more than a preset
        name, which those config keys cannot express."""
        if self._options:
            return None
        keys: Dict[str, Any] = {}
        if self._preset is not None:
            keys["preprocess"] = self._preset
        if self.skip:
            keys["calib_skip"] = self.skip
        if self.count is not None:
            keys["calib_count"] = int(self.count)
        if self.labels_path:
            keys["labels"] = self.labels_path
        return self.path, keys

    def __repr__(self) -> str:
        return (f"ImageFolder({self.path!r}, preprocess={self.preprocess!r}, "
                f"samples={len(self)}, labels={self.has_labels})")
