"""Images for prediction: paths, PIL images, uint8 arrays, tensors → the model's input tensors.

Every image goes through the model's evaluation transform (the config's ``data.transform``,
as the test split at training time): a file is opened with PIL, a uint8 array becomes a PIL
image first, so a file and the array of its pixels give the same input. Float tensors
``(N, C, H, W)`` are taken as already-transformed model inputs.

uint8 array layouts: ``(H, W)`` one grayscale image; ``(H, W, 3|4)`` one colour image;
``(N, H, W)`` grayscale images; ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in 1, 3, 4.

An image whose size or channel count differs from the training images' (see
:func:`expected_input`) is converted as the transform does; :class:`InputMismatchWarning` is
issued once per :class:`~oltr.inference.Predictor`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from oltr.errors import OLTRError

__all__ = ["ExpectedInput", "ImageSources", "InputError", "InputMismatchWarning", "expected_input",
           "image_channels"]


class InputError(OLTRError, ValueError):
    """Inputs to predict are missing, of mixed kinds, or do not fit the model."""


class InputMismatchWarning(UserWarning):
    """An input image's size or channel count differs from the training images'."""


@dataclass(frozen=True)
class ExpectedInput:
    """What the training images looked like: ``channels`` (1 for mode ``L``, 3 for ``RGB``)
    and ``size`` ``(width, height)``, or None when the transform accepts any size (it resizes
    and crops, as the ImageNet transform)."""

    channels: int
    size: Optional[tuple[int, int]]

    def describe(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}, " if self.size else ""
        return f"{size}{self.channels} channel(s)"


def expected_input(config: Any) -> ExpectedInput:
    """The :class:`ExpectedInput` of a training config (``data.transform``, ``data.image_size``)."""
    from oltr.train.transforms import image_mode

    channels = 1 if image_mode(config) == "L" else 3
    data = config["data"]
    size = int(data["image_size"])
    return ExpectedInput(channels, (size, size) if data["transform"] == "none" else None)


def image_channels(image: Any) -> int:
    """Channels of a PIL image (a palette image counts as its palette's colours)."""
    if image.mode == "P":
        return 3
    if image.mode == "PA":
        return 4
    return len(image.getbands())


def _pil_from_array(array: np.ndarray) -> Any:
    from PIL import Image

    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return Image.fromarray(np.ascontiguousarray(array))


def split_uint8(array: np.ndarray) -> list[np.ndarray]:
    """One ``(H, W)`` or ``(H, W, C)`` array per image of a uint8 array (layouts: module
    docstring)."""
    if array.ndim == 2:
        return [array]
    if array.ndim == 3:
        return [array] if array.shape[-1] in (3, 4) else list(array)
    if array.ndim == 4:
        if array.shape[-1] in (1, 3, 4):
            return list(array)
        if array.shape[1] in (1, 3, 4):
            return list(np.moveaxis(array, 1, -1))
    raise InputError(f"uint8 images must be (H, W), (H, W, 3|4), (N, H, W), (N, H, W, C) or (N, C, H, W) "
                     f"with C in 1, 3, 4; got shape {array.shape}")


class ImageSources(Dataset):
    """Images (paths, PIL images or uint8 ``(H, W[, C])`` arrays) through ``transform``.

    ``dataset[i]`` is ``(tensor (C, H, W), -1, i)``. ``on_image(index, size (w, h),
    channels)`` is called with each raw image before it is converted (the mismatch check).
    """

    def __init__(self, sources: Sequence[Any], transform: Callable[[Any], torch.Tensor], mode: str,
                 on_image: Optional[Callable[[int, tuple[int, int], int], None]] = None) -> None:
        self.sources, self.transform, self.mode, self.on_image = list(sources), transform, mode, on_image

    def __len__(self) -> int:
        return len(self.sources)

    def _check(self, index: int, image: Any) -> None:
        if self.on_image is not None:
            self.on_image(index, tuple(image.size), image_channels(image))

    def __getitem__(self, index: int):
        source = self.sources[index]
        if isinstance(source, (str, os.PathLike)):
            from PIL import Image

            from oltr.data.list_dataset import _load_image

            path = os.fspath(source)
            try:
                with Image.open(path) as header:  # lazy: size and mode without decoding
                    self._check(index, header)
            except (OSError, ValueError):
                pass  # unreadable: _load_image raises the error that names the file
            image = _load_image(path, self.mode)
        else:
            image = _pil_from_array(source) if isinstance(source, np.ndarray) else source
            self._check(index, image)
            image = image.convert(self.mode)
        return self.transform(image), -1, index


def source_name(source: Any, index: int) -> str:
    """How a prediction names its input: the path, or ``"<kind>[i]"``."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"{type(source).__name__}[{index}]"


def is_image_path(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


def check_paths(paths: Sequence[Any]) -> None:
    """Raise :class:`InputError` naming the first path that is not a file."""
    missing = [os.fspath(p) for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"input not found: {missing[0]!r}{more}")
