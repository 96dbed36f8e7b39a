"""Export in-memory images as PNG files plus an official list file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from oltr.data.list_file import write_list_file

__all__ = ["write_image_list"]


def write_image_list(
    images: np.ndarray,
    labels: Sequence[int],
    root: str | os.PathLike,
    list_file: str | os.PathLike,
    prefix: str = "img",
) -> Path:
    """Save uint8 images as PNGs under ``root`` and list them in ``list_file``.

    Args:
        images: uint8 ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)`` (RGB).
        labels: ``(N,)`` integers (``-1`` = open set).
        root: folder for the images (created); the list file holds paths relative to it,
            named ``<prefix>/<index:06d>.png``.
        list_file: where to write the list (``<path> <label>`` lines).

    Returns:
        The list file's path; ``ListDataset(list_file, root)`` reads it back.
    """
    from PIL import Image

    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[3] != 3):
        raise ValueError(
            f"images must be uint8 (N, H, W) or (N, H, W, 3), got {arr.dtype} {arr.shape}"
        )
    label_array = np.asarray(labels)
    if label_array.shape != (arr.shape[0],):
        raise ValueError(f"labels must have shape ({arr.shape[0]},), got {label_array.shape}")
    folder = Path(root) / prefix
    folder.mkdir(parents=True, exist_ok=True)
    rel = []
    for i, img in enumerate(arr):
        name = f"{prefix}/{i:06d}.png"
        Image.fromarray(img).save(Path(root) / name)
        rel.append(name)
    return write_list_file(list_file, rel, labels)
