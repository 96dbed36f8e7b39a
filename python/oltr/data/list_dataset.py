"""``ListDataset``: images named by an official list file, loaded with PIL."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from torch.utils.data import Dataset

from oltr.data.images import load_image
from oltr.data.list_file import read_list_file

__all__ = ["ListDataset"]

_ON_MISSING = ("raise", "skip")
_NAMED_SKIPS = 10  # skipped files named in the warning (all are in ``dataset.skipped``)

#: The loader, under its former private name (``oltr.predict`` imports it).
_load_image = load_image


def _unreadable(path: str, mode: Optional[str]) -> Optional[str]:
    """Why ``path`` cannot be used (missing, or does not decode fully), or None if it can."""
    try:
        load_image(path, mode)
    except OSError as exc:  # FileNotFoundError included
        return str(exc)
    return None


class ListDataset(Dataset):
    """Images listed in an official list file (``<relative path> <label>`` per line).

    ``dataset[i]`` returns ``(image, label, path)`` like the official loader: ``image`` is
    the PIL image (converted to ``mode``) passed through ``transform`` when given, ``label``
    an ``int`` (``-1`` = open set) and ``path`` the full path ``os.path.join(root, token)``
    (an absolute token ignores ``root``, as in the official code). Images are read by
    :func:`oltr.data.images.load_image` (16-bit files scaled to 8 bit).

    Args:
        list_file: the list file (see :func:`oltr.data.read_list_file` for the format).
        root: folder the relative paths are joined to.
        transform: callable applied to the PIL image (e.g. torchvision transforms).
        mode: PIL mode to convert to (``"RGB"`` as the official loader; ``"L"`` for
            grayscale; ``None`` keeps the file's mode, except that 16-bit grayscale
            becomes 8-bit ``"L"``).
        on_missing: ``"raise"`` (default): a listed image that does not exist raises
            ``FileNotFoundError`` naming its path when the dataset is built, and one that
            cannot be decoded raises ``OSError`` naming its path when it is loaded.
            ``"skip"``: every image is decoded in full once when the dataset is built;
            missing, undecodable or truncated ones are dropped, listed in ``skipped`` and
            named (with the reason) in one ``UserWarning``.
        check_files: with ``on_missing="raise"``, check that every file exists up front
            (one ``stat`` per image); ``False`` defers all errors to loading time.
        num_classes: if given, every label must lie in ``[0, num_classes)`` (a list of
            known classes: train, val, test).
        open_set: if True, every label must be ``-1`` (an open-set list).

    Raises:
        oltr.data.ListFileError: a malformed line or a label outside what ``num_classes``
            / ``open_set`` allow; the message says ``<file>:<line>``.

    Attributes:
        paths: list of full image paths; labels: read-only ``int64`` array ``(N,)``;
        skipped: list of the full paths dropped by ``on_missing="skip"``.
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
        num_classes: Optional[int] = None,
        open_set: bool = False,
    ) -> None:
        if on_missing not in _ON_MISSING:
            raise ValueError(f"on_missing must be one of {_ON_MISSING}, got {on_missing!r}")
        if mode is not None:
            from PIL import Image

            if mode not in Image.MODES:  # else every image would fail (or be skipped) at conversion
                raise ValueError(f"mode must be None or a PIL mode {tuple(Image.MODES)}, got {mode!r}")
        tokens, labels = read_list_file(list_file, num_classes=num_classes, open_set=open_set)
        paths = [os.path.join(os.fspath(root), t) for t in tokens]
        self.skipped: list[str] = []
        if on_missing == "skip":
            reasons = [_unreadable(p, mode) for p in paths]
            keep = np.array([r is None for r in reasons], dtype=bool)
            self.skipped = [p for p, r in zip(paths, reasons) if r is not None]
            if self.skipped:
                named = [r for r in reasons if r is not None][:_NAMED_SKIPS]
                more = len(self.skipped) - len(named)
                warnings.warn(
                    f"{Path(list_file)}: skipped {len(self.skipped)} of {len(paths)} images "
                    f"that are missing or do not decode:\n  " + "\n  ".join(named)
                    + (f"\n  ... and {more} more (all in dataset.skipped)" if more else ""),
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
        labels.setflags(write=False)
        self.list_file = Path(list_file)
        self.root = Path(root)
        self.paths = paths
        self.labels = labels
        self.transform = transform
        self.mode = mode

    def with_transform(self, transform: Optional[Callable[[Any], Any]]) -> ListDataset:
        """The same images and labels with another ``transform`` (no file is read again)."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        image = load_image(path, self.mode)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index]), path

    def __repr__(self) -> str:
        return f"ListDataset({str(self.list_file)!r}, root={str(self.root)!r}, n={len(self)})"
