"""Atomic file writes: a crash mid-write never leaves a half-written file at ``path``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_save", "atomic_write_bytes"]


def _atomic_replace(path: str | os.PathLike, write) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: folder {str(directory)!r} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_save(obj: Any, path: str | os.PathLike, **save_kwargs: Any) -> Path:
    """``torch.save(obj, path, **save_kwargs)`` done atomically.

    The object is written to a temporary file in the same folder, flushed to disk, then
    renamed over ``path`` with :func:`os.replace`, so readers see either the old file or the
    complete new one. ``save_kwargs`` go to :func:`torch.save` (e.g.
    ``_use_new_zipfile_serialization=False`` for the legacy format). Returns the path.
    """
    return _atomic_replace(path, lambda f: torch.save(obj, f, **save_kwargs))


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (same scheme as :func:`atomic_save`)."""
    return _atomic_replace(path, lambda f: f.write(data))
