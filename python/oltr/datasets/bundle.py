"""``OpenLTData``: one long-tailed, open-set dataset held in memory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

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

    Attributes:
        name: dataset name.
        class_names: the ``K`` known class names, index = label.
        unknown_class_names: names of the held-out classes.
        known_classes, unknown_classes: the classes' ids in the source dataset.
        train_counts: ``int64 (K,)`` training images per class.
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
    train_counts: np.ndarray

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
        ``"test_open"`` (test then open; labels ``-1`` for the open part)."""
        if name == "test_open":
            return (
                np.concatenate([self.test_images, self.open_images]),
                np.concatenate([self.test_labels, self.open_labels]),
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
            f"(counts {self.train_counts.tolist()}), val {len(self.val_labels)}, "
            f"test {len(self.test_labels)}, open {len(self.open_labels)} "
            f"({', '.join(self.unknown_class_names)})"
        )
