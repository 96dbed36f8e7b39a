"""The run folder rule of ``oltr train``: a non-empty ``out_dir`` is used only when asked.

* Empty or missing folder: the run starts.
* ``resume=True`` (``--resume``): the run continues there (see :func:`oltr.train.train`).
* ``overwrite=True`` (``--overwrite``): oltr's own files of the previous run are removed first
  -- :data:`RUN_FILES` and the files matching :data:`RUN_FILE_PATTERNS` (``oltr eval``'s
  reports beside the checkpoint, temp files of an interrupted checkpoint write) -- and every
  other file or folder is kept. The removed paths are returned (the command lists them).
* Otherwise: :class:`RunDirNotEmptyError`, naming the folder, some of what it holds, and the
  two flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from oltr.errors import OLTRError
from oltr.train import distributed as dist_seam
from oltr.train.checkpoints import BEST_NAME, LAST_NAME

__all__ = ["RUN_FILES", "RUN_FILE_PATTERNS", "RunDirNotEmptyError", "own_run_files", "prepare_run_dir"]

#: The files a training run writes into its folder.
RUN_FILES = (BEST_NAME, LAST_NAME, "log.jsonl", "config.yaml")
#: Other files of oltr's in a run folder: ``oltr eval`` reports and interrupted-write temps.
RUN_FILE_PATTERNS = ("eval_*.json", f".{BEST_NAME}.*.tmp", f".{LAST_NAME}.*.tmp")


class RunDirNotEmptyError(OLTRError, ValueError):
    """``oltr train`` was pointed at a non-empty run folder without ``--resume`` or ``--overwrite``."""


def own_run_files(folder: Union[str, Path]) -> list[Path]:
    """The files of :data:`RUN_FILES` and :data:`RUN_FILE_PATTERNS` present in ``folder``
    (plain files or links; sorted)."""
    folder = Path(folder)
    found = {folder / name for name in RUN_FILES}
    for pattern in RUN_FILE_PATTERNS:
        found.update(folder.glob(pattern))
    return sorted(p for p in found if p.is_symlink() or p.is_file())


def _check(folder: Path, resume: bool, overwrite: bool) -> tuple[str, list[str]]:
    """``(error message or "", removed paths)``; removes oltr's files when ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        return f"out_dir {str(folder)!r} is a file, not a folder", []
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not entries or resume:
        return "", []
    if not overwrite:
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        return (f"out_dir {str(folder)!r} is not empty (it holds {shown}): pass --resume to continue the run "
                f"in it, or --overwrite to replace that run (removes only oltr's files: "
                f"{', '.join(RUN_FILES + RUN_FILE_PATTERNS)}), or choose another --out"), []
    removed = own_run_files(folder)
    for path in removed:
        path.unlink()
    return "", [str(p) for p in removed]


def prepare_run_dir(out_dir: Union[str, Path], *, resume: bool = False, overwrite: bool = False) -> list[Path]:
    """Apply the run folder rule (module docstring) to ``out_dir`` before training.

    Under torch.distributed, rank 0 looks at (and clears) the folder and every rank gets its
    verdict, so all ranks raise or go on together. Returns the removed files (``[]`` unless
    ``overwrite`` found files of a previous run).

    Raises:
        ValueError: both ``resume`` and ``overwrite``.
        RunDirNotEmptyError: a non-empty folder without either flag, or ``out_dir`` is a file.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run or replace it")
    verdict = _check(Path(out_dir), resume, overwrite) if dist_seam.is_main() else None
    error, removed = dist_seam.broadcast_object(verdict)
    if error:
        raise RunDirNotEmptyError(error)
    return [Path(p) for p in removed]
