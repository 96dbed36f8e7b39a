"""Image transforms named by ``data.transform`` in a config.

* ``"imagenet"``: the official transforms: train RandomResizedCrop(224),
  RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0), ToTensor, Normalize(ImageNet);
  eval Resize(256), CenterCrop(224), ToTensor, Normalize. Needs ``torchvision``.
* ``"none"``: for small grayscale images (the embedded datasets): the PIL image is converted
  to mode ``"L"`` (16-bit images scaled by :func:`oltr.data.images.to_8bit`), resized to
  ``image_size`` if needed and scaled to [0, 1] — the same float32 ``(1, S, S)`` tensor
  :class:`oltr.data.ArrayDataset` gives for uint8 arrays.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch

from oltr.train.config import ConfigError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transform", "image_mode"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_mode(config: Mapping[str, Any]) -> str:
    """PIL mode images are converted to when read from files: ``RGB`` or ``L``."""
    return "RGB" if config["data"]["transform"] == "imagenet" else "L"


def build_transform(config: Mapping[str, Any], train: bool) -> Callable[[Any], torch.Tensor]:
    """The PIL-image → float32 ``(C, H, W)`` tensor transform of ``config`` for a split.

    Args:
        config: a complete training config.
        train: True for the training split (augmentation), False for val/test/open/predict.
    """
    data = config["data"]
    if data["transform"] == "imagenet":
        try:
            from torchvision import transforms as T
        except ImportError:
            raise ConfigError(
                "data.transform 'imagenet' needs torchvision (pip install torchvision)"
            ) from None
        size, resize = int(data["image_size"]), int(data["resize"])
        normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if train:
            return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                              T.ColorJitter(0.4, 0.4, 0.4, 0), T.ToTensor(), normalize])
        return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(), normalize])
    return _GrayscaleToTensor(int(data["image_size"]))


class _GrayscaleToTensor:
    """PIL image → float32 ``(1, S, S)`` in [0, 1] (mode ``L``, 16-bit samples scaled to 8 bit
    first, bilinear resize if needed)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Any) -> torch.Tensor:
        from PIL import Image

        from oltr.data.images import to_8bit

        image = to_8bit(image).convert("L")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array.copy()).unsqueeze(0)
