"""The official list-file format: one ``<relative path> <label>`` per line.

As in the official ``data/dataloader.py``: each line is split on whitespace and only the
first two tokens are used; open-set images carry label ``-1``; blank lines are ignored.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from oltr.errors import OLTRError

__all__ = ["ListFileError", "read_list_file", "write_list_file"]


class ListFileError(OLTRError, ValueError):
    """A malformed line in a list file; the message names the file and the line number."""


_INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise ListFileError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start + 1}); list files must be UTF-8"
        ) from None


def _label(path: Path, lineno: int, token: str, num_classes: Optional[int], open_set: bool) -> int:
    where = f"{path}:{lineno}"
    try:
        label = int(token)
    except ValueError:
        if _INTEGER.fullmatch(token):  # digits beyond Python's int-parsing limit
            raise ListFileError(f"{where}: label {token[:20]}... is out of range") from None
        raise ListFileError(f"{where}: label {token!r} is not an integer") from None
    if label > _INT64_MAX:
        raise ListFileError(f"{where}: label {token} is out of range (largest: 2**63 - 1)")
    if label < -1:
        raise ListFileError(f"{where}: label {label} is negative (only -1, open set, is allowed)")
    if open_set and label != -1:
        raise ListFileError(f"{where}: label {label} in an open-set list (every label must be -1)")
    if num_classes is not None and not 0 <= label < num_classes:
        raise ListFileError(
            f"{where}: label {label} is outside [0, {num_classes}) (the {num_classes} known "
            f"classes{'; -1 marks the open set, which has its own list' if label == -1 else ''})"
        )
    return label


def read_list_file(
    list_file: str | os.PathLike,
    *,
    num_classes: Optional[int] = None,
    open_set: bool = False,
) -> tuple[list[str], np.ndarray]:
    """Parse a list file (UTF-8; lines end with ``\\n``, ``\\r\\n`` or ``\\r``).

    Args:
        list_file: the file.
        num_classes: if given, every label must lie in ``[0, num_classes)`` (a list of
            known classes, e.g. train / val / test with ``K`` training classes).
        open_set: if True, every label must be ``-1`` (an open-set list).

    Returns:
        ``(paths, labels)``: the first token of every non-blank line as written (relative
        to the data root), and an ``int64`` array of the labels (``-1`` = open set).

    Raises:
        FileNotFoundError: the list file does not exist.
        ListFileError: a line is not UTF-8, has fewer than two tokens, a non-integer
            label, a label below ``-1`` or above ``2**63 - 1``, or a label that
            ``num_classes`` / ``open_set`` forbid; the message says ``<file>:<line>``.
    """
    path = Path(list_file)
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    if num_classes is not None and open_set:
        raise ValueError("pass num_classes (a list of known classes) or open_set=True, not both")
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    paths: list[str] = []
    labels: list[int] = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = _decode(path, lineno, raw)
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise ListFileError(f"{path}:{lineno}: expected '<path> <label>', got {line.rstrip()!r}")
        paths.append(tokens[0])
        labels.append(_label(path, lineno, tokens[1], num_classes, open_set))
    return paths, np.asarray(labels, dtype=np.int64)


def write_list_file(
    list_file: str | os.PathLike, paths: Sequence[str], labels: Sequence[int]
) -> Path:
    """Write ``<path> <label>`` lines (the official format); returns the file's path.

    Raises:
        ValueError: ``paths`` and ``labels`` differ in length, or a path contains
            whitespace (the format could not be read back).
    """
    label_array = np.asarray(labels)
    if len(paths) != len(label_array):
        raise ValueError(f"paths ({len(paths)}) and labels ({len(label_array)}) differ in length")
    lines = []
    for p, y in zip(paths, label_array.tolist()):
        p = str(p)
        if not p or any(c.isspace() for c in p):
            raise ValueError(f"path {p!r} is empty or contains whitespace")
        lines.append(f"{p} {int(y)}\n")
    out = Path(list_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    return out
