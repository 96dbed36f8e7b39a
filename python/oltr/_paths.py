"""Guards on the files a command writes: an output must never be one of its inputs.

``oltr predict CKPT img.png -o CKPT`` once replaced the checkpoint with JSON lines; every
command that writes a file checks it with :func:`refuse_overwrite` before writing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from oltr.errors import OLTRError

__all__ = ["OutputOverwritesInputError", "listed_files", "refuse_overwrite", "same_file"]

PathLike = str | os.PathLike


class OutputOverwritesInputError(OLTRError, ValueError):
    """An output path names one of the command's inputs (also through a symlink or hard link)."""


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file.

    True when their real paths (symlinks resolved) are equal, or when both exist and share
    device and inode (hard links, bind mounts). A path that does not exist yet is the same
    file as another only if both resolve to the same real path.
    """
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except (OSError, ValueError):  # one of them does not exist (or is not a valid path)
        return False


def refuse_overwrite(output: Optional[PathLike], inputs: Iterable[Optional[PathLike]], *,
                     what: str = "--output") -> None:
    """Raise if ``output`` is one of ``inputs``.

    Args:
        output: the file about to be written; ``None`` or ``"-"`` (stdout) is always fine.
        inputs: the files the command reads; ``None`` and empty entries are skipped.
        what: how the output was given (an option name), for the message.

    Raises:
        OutputOverwritesInputError: ``output`` is one of ``inputs``; the message names both.
    """
    if output is None or str(output) in ("", "-"):
        return
    for source in inputs:
        if source is None or str(source) == "":
            continue
        if same_file(output, source):
            link = "" if os.path.realpath(output) == os.path.realpath(source) or str(output) == str(source) \
                else " (a link to it)"
            raise OutputOverwritesInputError(
                f"{what} {str(output)!r} is the input {str(source)!r}{link}: refusing to overwrite an "
                "input; choose another output file")


def listed_files(list_file: PathLike, root: Optional[PathLike] = None) -> list[Path]:
    """The files a list file names (``<path> <label>`` lines), joined with ``root`` (default:
    the list file's folder) as ``oltr predict`` reads them; ``[]`` if the list cannot be read
    (the command itself reports that)."""
    from oltr.data.list_file import read_list_file

    try:
        paths, _ = read_list_file(list_file)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    base = Path(root) if root is not None else Path(list_file).parent
    return [base / p for p in paths]
