"""``ListDataset``: images named by an official list file, loaded with PIL."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from torch.utils.data import Dataset

from oltr.data.list_file import read_list_file

__all__ = ["ListDataset"]

_ON_MISSING = ("raise", "skip")


def _load_image(path: str, mode: Optional[str]):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode) if mode is not None else img.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc


def _readable(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - any failure means "unreadable"
        return False


class ListDataset(Dataset):
    """Images listed in an official list file (``<relative path> <label>`` per line).

    ``dataset[i]`` returns ``(image, label, path)`` like the official loader: ``image`` is
    the PIL image (converted to ``mode``) passed through ``transform`` when given, ``label``
    an ``int`` (``-1`` = open set) and ``path`` the full path ``os.path.join(root, token)``
    (an absolute token ignores ``root``, as in the official code).

    Args:
        list_file: the list file (see :func:`oltr.data.read_list_file` for the format).
        root: folder the relative paths are joined to.
        transform: callable applied to the PIL image (e.g. torchvision transforms).
        mode: PIL mode to convert to (``"RGB"`` as the official loader; ``"L"`` for
            grayscale; ``None`` keeps the file's mode).
        on_missing: ``"raise"`` (default): a listed image that does not exist raises
            ``FileNotFoundError`` naming its path when the dataset is built, and one that
            cannot be decoded raises ``OSError`` naming its path when it is loaded.
            ``"skip"``: every image is checked once when the dataset is built (exists and
            PIL can parse it); missing or unreadable ones are dropped and counted in one
            ``UserWarning``.
        check_files: with ``on_missing="raise"``, check that every file exists up front
            (one ``stat`` per image); ``False`` defers all errors to loading time.

    Attributes:
        paths: list of full image paths; labels: ``int64`` array ``(N,)``; skipped: list
            of the full paths dropped by ``on_missing="skip"``.
    """

    def __init__(
        self,
        list_file: str | os.PathLike,
        root: str | os.PathLike,
        transform: Optional[Callable[[Any], Any]] = None,
        *,
        mode: Optional[str] = "RGB",
        on_missing: str = "raise",
        check_files: bool = True,
    ) -> None:
        if on_missing not in _ON_MISSING:
            raise ValueError(f"on_missing must be one of {_ON_MISSING}, got {on_missing!r}")
        tokens, labels = read_list_file(list_file)
        paths = [os.path.join(os.fspath(root), t) for t in tokens]
        self.skipped: list[str] = []
        if on_missing == "skip":
            keep = np.array([_readable(p) for p in paths], dtype=bool)
            self.skipped = [p for p, k in zip(paths, keep) if not k]
            if self.skipped:
                warnings.warn(
                    f"{Path(list_file)}: skipped {len(self.skipped)} of {len(paths)} images "
                    f"that are missing or unreadable (first: {self.skipped[0]})",
                    UserWarning,
                    stacklevel=2,
                )
            paths = [p for p, k in zip(paths, keep) if k]
            labels = labels[keep]
        elif check_files:
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(
                    f"{Path(list_file)}: {len(missing)} of {len(paths)} listed images not "
                    f"found (first: {missing[0]}); pass on_missing='skip' to drop them"
                )
        self.list_file = Path(list_file)
        self.root = Path(root)
        self.paths = paths
        self.labels = labels
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        image = _load_image(path, self.mode)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index]), path

    def __repr__(self) -> str:
        return f"ListDataset({str(self.list_file)!r}, root={str(self.root)!r}, n={len(self)})"
