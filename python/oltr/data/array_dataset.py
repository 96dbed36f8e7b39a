"""``ArrayDataset``: in-memory uint8 images as float tensors."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ArrayDataset", "images_to_tensor"]


def images_to_tensor(
    images: np.ndarray,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, C, H, W)`` → float32 ``(N, C, H, W)`` in ``[0, 1]``.

    With ``mean``/``std`` (one value per channel, or one for all) the result is
    ``(x / 255 - mean) / std``.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {arr.shape}")
    x = torch.tensor(arr, dtype=torch.float32).div_(255.0)  # copies: read-only input is fine
    if mean is not None or std is not None:
        c = x.shape[1]
        m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).reshape(-1)
        s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).reshape(-1)
        for name, v in (("mean", m), ("std", s)):
            if v.numel() not in (1, c):
                raise ValueError(f"{name} must have 1 or {c} values, got {v.numel()}")
        if torch.any(s <= 0):
            raise ValueError("std must be positive")
        x = (x - m.reshape(1, -1, 1, 1)) / s.reshape(1, -1, 1, 1)
    return x


class ArrayDataset(Dataset):
    """A dataset over in-memory images and labels.

    ``dataset[i]`` returns ``(image, label, index)``: ``image`` a float32 tensor
    ``(C, H, W)`` (``/255``, then ``(x - mean) / std`` when given, then ``transform``),
    ``label`` an ``int`` (``-1`` = open set) and ``index`` = ``i`` — the same 3-tuple
    shape as :class:`~oltr.data.ListDataset`'s ``(image, label, path)``.

    Args:
        images: uint8 ``(N, H, W)`` (one channel is added) or ``(N, C, H, W)``.
        labels: ``(N,)`` integers; ``None`` gives every sample ``-1``.
        transform: callable on the ``(C, H, W)`` float tensor (e.g. augmentation).
        mean, std: per-channel normalisation (or one value for all channels).

    Attributes:
        images: the float32 ``(N, C, H, W)`` tensor (converted once); labels: ``int64``
        numpy array ``(N,)``.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Optional[Union[Sequence[int], np.ndarray]] = None,
        transform: Optional[Callable[[torch.Tensor], Any]] = None,
        *,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ) -> None:
        self.images = images_to_tensor(images, mean, std)
        n = self.images.shape[0]
        if labels is None:
            self.labels = np.full(n, -1, dtype=np.int64)
        else:
            lab = np.asarray(labels)
            if lab.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
            if lab.size and not np.issubdtype(lab.dtype, np.integer):
                raise TypeError(f"labels must be integers, got {lab.dtype}")
            self.labels = lab.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index]), int(index)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All samples at once: ``(images (N, C, H, W) float32, labels (N,) int64)``.

        The transform is not applied (use for evaluation or fast full-batch loops).
        """
        return self.images, torch.from_numpy(self.labels)
