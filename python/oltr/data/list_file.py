"""The official list-file format: one ``<relative path> <label>`` per line.

As in the official ``data/dataloader.py``: each line is split on whitespace and only the
first two tokens are used; open-set images carry label ``-1``; blank lines are ignored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["ListFileError", "read_list_file", "write_list_file"]


class ListFileError(ValueError):
    """A malformed line in a list file; the message names the file and the line number."""


def read_list_file(list_file: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Parse a list file.

    Returns:
        ``(paths, labels)``: the first token of every non-blank line as written (relative
        to the data root), and an ``int64`` array of the labels (``-1`` = open set).

    Raises:
        FileNotFoundError: the list file does not exist.
        ListFileError: a line has fewer than two tokens, a non-integer label, or a label
            below ``-1``; the message says ``<file>:<line number>``.
    """
    path = Path(list_file)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    paths: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise ListFileError(
                    f"{path}:{lineno}: expected '<path> <label>', got {line.rstrip()!r}"
                )
            try:
                label = int(tokens[1])
            except ValueError:
                raise ListFileError(
                    f"{path}:{lineno}: label {tokens[1]!r} is not an integer"
                ) from None
            if label < -1:
                raise ListFileError(
                    f"{path}:{lineno}: label {label} is negative (only -1, open set, is allowed)"
                )
            paths.append(tokens[0])
            labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def write_list_file(
    list_file: str | os.PathLike, paths: Sequence[str], labels: Sequence[int]
) -> Path:
    """Write ``<path> <label>`` lines (the official format); returns the file's path.

    Raises:
        ValueError: ``paths`` and ``labels`` differ in length, or a path contains
            whitespace (the format could not be read back).
    """
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"paths ({len(paths)}) and labels ({len(labels)}) differ in length")
    lines = []
    for p, y in zip(paths, labels.tolist()):
        p = str(p)
        if not p or any(c.isspace() for c in p):
            raise ValueError(f"path {p!r} is empty or contains whitespace")
        lines.append(f"{p} {int(y)}\n")
    out = Path(list_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    return out
