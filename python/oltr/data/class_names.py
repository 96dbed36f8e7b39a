"""Class names of list-file data: a ``classes.txt`` beside the lists.

Format: UTF-8 text, one class name per line **in label order** (line 1 names label 0, line 2
label 1, ...); surrounding whitespace is stripped; blank lines, duplicate names and a count
other than the number of classes are errors naming the file (and line). The trainer looks
for ``classes.txt`` next to ``data.train_list`` first, then in ``data.root``; without one the
names are ``class_0 … class_{K-1}``. The embedded data sets know their names.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

__all__ = ["CLASSES_FILE", "ClassNamesError", "default_class_names", "find_classes_file", "read_class_names"]

CLASSES_FILE = "classes.txt"


class ClassNamesError(ValueError):
    """A malformed classes file; the message names the file (and line)."""


def default_class_names(num_classes: int) -> list[str]:
    """``["class_0", ..., "class_{K-1}"]``."""
    return [f"class_{k}" for k in range(int(num_classes))]


def read_class_names(path: str | os.PathLike, num_classes: Optional[int] = None) -> list[str]:
    """The names in a classes file (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ClassNamesError: not UTF-8, a blank line, a duplicate, or not ``num_classes`` names.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ClassNamesError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are fine
        lines.pop()
    names: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        name = line.strip()
        if not name:
            raise ClassNamesError(f"{source}:{lineno}: blank line (one class name per line, in label order)")
        if name in seen:
            raise ClassNamesError(f"{source}:{lineno}: class name {name!r} repeats line {seen[name]}")
        seen[name] = lineno
        names.append(name)
    if num_classes is not None and len(names) != int(num_classes):
        raise ClassNamesError(f"{source}: {len(names)} class names for {int(num_classes)} classes "
                              "(one name per line, label 0 first)")
    return names


def find_classes_file(folders: Iterable[str | os.PathLike | None]) -> Optional[Path]:
    """The first ``classes.txt`` in ``folders`` (None and empty entries skipped), or None."""
    for folder in folders:
        if folder is None or str(folder) == "":
            continue
        candidate = Path(folder) / CLASSES_FILE
        if candidate.is_file():
            return candidate
    return None
