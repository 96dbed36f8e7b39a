"""``OpenLTData``: one long-tailed, open-set dataset held in memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from oltr.data.splits import check_counts

__all__ = ["OpenLTData", "SPLITS"]

SPLITS = ("train", "val", "test", "open", "test_open")


@dataclass(frozen=True)
class OpenLTData:
    """Arrays of a long-tailed dataset with a held-out open set.

    Images are uint8 ``(N, H, W)`` (grayscale) and labels ``int64 (N,)`` in
    ``0..K-1`` for the ``K`` known classes; the open set's labels are all ``-1``.
    ``train`` is long-tailed; ``val`` and ``test`` are balanced over the known classes;
    ``open`` holds images of the held-out classes only. For open-set evaluation use
    ``test_open`` = ``test`` followed by ``open`` (the official protocol's test ∪ open).

    The object is immutable, so a cached instance can be shared safely: every array it
    holds (and every array :meth:`split` returns) is a read-only copy made at construction
    (the caller's arrays are not kept), and ``train_counts`` is a tuple. Use
    ``np.array(x)`` or ``torch.tensor(x)`` for a writable copy (``torch.from_numpy`` would
    share the read-only memory).

    Attributes:
        name: dataset name.
        class_names: the ``K`` known class names, index = label.
        unknown_class_names: names of the held-out classes.
        known_classes, unknown_classes: the classes' ids in the source dataset.
        train_counts: tuple of ``K`` ints, training images per class (equal to the
            per-class counts of ``train_labels``).

    Raises:
        ValueError: at construction, when a field is inconsistent (shapes, dtypes, a label
            outside ``[0, K)`` in train / val / test, an open-set label other than ``-1``,
            ``train_counts`` not one non-negative count per class or not matching
            ``train_labels``); the message names the field.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    open_images: np.ndarray
    open_labels: np.ndarray
    class_names: tuple[str, ...]
    unknown_class_names: tuple[str, ...]
    known_classes: tuple[int, ...]
    unknown_classes: tuple[int, ...]
    train_counts: tuple[int, ...]

    def __post_init__(self) -> None:
        k = len(self.class_names)
        if k < 1:
            raise ValueError(f"{self.name}: class_names is empty")
        if len(self.known_classes) != k:
            raise ValueError(f"{self.name}: {len(self.known_classes)} known_classes for {k} class_names")
        if len(self.unknown_classes) != len(self.unknown_class_names):
            raise ValueError(f"{self.name}: unknown_classes and unknown_class_names differ in length")
        shape = None
        for split in SPLITS[:4]:
            images = _frozen(getattr(self, f"{split}_images"), np.uint8, f"{self.name}.{split}_images")
            labels = _frozen(getattr(self, f"{split}_labels"), np.int64, f"{self.name}.{split}_labels")
            if images.ndim != 3 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{self.name}: {split}_images must be (N, H, W) with {split}_labels (N,); "
                    f"got {images.shape} and {labels.shape}"
                )
            if shape is not None and images.shape[1:] != shape:
                raise ValueError(f"{self.name}: {split}_images are {images.shape[1:]}, train are {shape}")
            shape = images.shape[1:]
            _check_labels(labels, k, split, self.name)
            object.__setattr__(self, f"{split}_images", images)
            object.__setattr__(self, f"{split}_labels", labels)
        counts = check_counts(self.train_counts, k, f"{self.name}.train_counts")
        actual = tuple(int(c) for c in np.bincount(self.train_labels, minlength=k))
        if counts != actual:
            raise ValueError(f"{self.name}.train_counts {list(counts)} disagree with train_labels ({list(actual)})")
        object.__setattr__(self, "train_counts", counts)
        for key in ("class_names", "unknown_class_names"):
            object.__setattr__(self, key, tuple(str(n) for n in getattr(self, key)))
        for key in ("known_classes", "unknown_classes"):
            object.__setattr__(self, key, tuple(int(c) for c in getattr(self, key)))

    @property
    def num_classes(self) -> int:
        """Number of known classes ``K``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, e.g. ``(28, 28)``."""
        return tuple(self.train_images.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of ``"train"``, ``"val"``, ``"test"``, ``"open"`` or
        ``"test_open"`` (test then open; labels ``-1`` for the open part); read-only."""
        if name == "test_open":
            return (
                _read_only(np.concatenate([self.test_images, self.open_images])),
                _read_only(np.concatenate([self.test_labels, self.open_labels])),
            )
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def torch_dataset(
        self,
        split: str,
        transform=None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ):
        """The split as an :class:`oltr.data.ArrayDataset` (float32 ``(1, H, W)`` in
        ``[0, 1]``, or normalised with ``mean``/``std``; items ``(image, label, index)``)."""
        from oltr.data.array_dataset import ArrayDataset

        images, labels = self.split(split)
        return ArrayDataset(images, labels, transform, mean=mean, std=std)

    def summary(self) -> str:
        """One line: name, sizes and the train counts."""
        return (
            f"{self.name}: {self.num_classes} known classes, train {len(self.train_labels)} "
            f"(counts {list(self.train_counts)}), val {len(self.val_labels)}, "
            f"test {len(self.test_labels)}, open {len(self.open_labels)} "
            f"({', '.join(self.unknown_class_names)})"
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (which becomes read-only too); unlike an array that
    owns its memory, the view cannot be made writable again with ``setflags``."""
    array.setflags(write=False)
    view = array.view()
    view.setflags(write=False)
    return view


def _frozen(value, dtype, name: str) -> np.ndarray:
    """A read-only copy of ``value`` with ``dtype`` (integers only, no lossy cast)."""
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {arr.dtype}")
    if arr.size and arr.dtype != dtype and not np.array_equal(arr.astype(dtype), arr):
        raise ValueError(f"{name} has values that do not fit {np.dtype(dtype).name}")
    return _read_only(np.array(arr, dtype=dtype, copy=True))


def _check_labels(labels: np.ndarray, k: int, split: str, name: str) -> None:
    if split == "open":
        bad = np.flatnonzero(labels != -1)
        rule = "-1 (open set)"
    else:
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        rule = f"in [0, {k})"
    if bad.size:
        raise ValueError(
            f"{name}: {split}_labels must be {rule}; label {int(labels[bad[0]])} at index {int(bad[0])}"
        )
