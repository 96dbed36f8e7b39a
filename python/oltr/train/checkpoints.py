"""The trainer's two checkpoint files, written atomically and read with ``weights_only=True``.

* ``best.pt`` — the **model checkpoint** that ``oltr eval`` and ``oltr predict`` read: the
  best-by-validation weights, the memory (centroids), the config, the class names, the
  training class counts (shot groups) and the thresholds chosen on validation.
* ``last.pt`` — the **resume state** at the end of the last finished epoch: live weights,
  both optimisers and schedulers, the RNG states, the epoch and the best-so-far record.

Both are plain dicts of tensors, lists, numbers and strings, so ``torch.load`` with
``weights_only=True`` reads them (no pickled code), after the zip archive's CRC-32s are
checked (:func:`oltr.checkpoint.load_verified`: changed bytes raise :class:`CheckpointError`).
Writes go through :func:`oltr.checkpoint.write_atomically`: a crash or a full disk mid-write
leaves the previous file intact; a kill can leave a temp file ``.best.pt.<random>.tmp``, which
:func:`remove_stale_temps` deletes when a run starts or resumes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from oltr.checkpoint import CheckpointError, load_verified, write_atomically

__all__ = [
    "BEST_NAME",
    "CheckpointError",
    "LAST_NAME",
    "MODEL_FORMAT",
    "RESUME_FORMAT",
    "load_model_checkpoint",
    "load_resume_state",
    "remove_stale_temps",
    "save_checkpoint",
]

MODEL_FORMAT = "oltr.model/1"
RESUME_FORMAT = "oltr.resume/1"
BEST_NAME = "best.pt"
LAST_NAME = "last.pt"

#: keys every model checkpoint carries (see :func:`load_model_checkpoint`).
_MODEL_KEYS = (
    "format", "config", "class_names", "train_class_counts", "state_dict", "centroids",
    "epoch", "best_acc", "thresholds",
)
_RESUME_KEYS = ("format", "config", "epoch", "model", "model_optimizer", "model_scheduler", "rng", "best")


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (the folder is created).

    Raises:
        oltr.checkpoint.CheckpointWriteError: the write failed (disk full, I/O error); the
            previous file at ``path`` is intact and no temp file is left.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(payload, target)
    return target


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files a killed write of ``best.pt`` / ``last.pt`` left in ``folder``
    (``.best.pt.<random>.tmp``, the names :func:`oltr._io.atomic_save` gives them); returns
    the removed paths. Call it only when no write to ``folder`` is in progress (a run's start)."""
    removed = []
    for name in (BEST_NAME, LAST_NAME):
        for temp in sorted(Path(folder).glob(f".{name}.*.tmp")):
            if temp.is_file() and not temp.is_symlink():
                temp.unlink(missing_ok=True)
                removed.append(temp)
    return removed


def _read(path: str | os.PathLike, fmt: str, required: tuple[str, ...]) -> dict[str, Any]:
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint not found: {str(source)!r}")
    try:
        payload = load_verified(source)
    except (IsADirectoryError, PermissionError) as exc:
        raise CheckpointError(f"cannot read checkpoint {str(source)!r}: {exc.strerror or exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (pass best.pt, not last.pt)" if found == RESUME_FORMAT else ""
        raise CheckpointError(f"{str(source)!r} is not an oltr {fmt} checkpoint (found {found!r}){hint}")
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(source)!r} lacks {', '.join(missing)}")
    return payload


def load_model_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a model checkpoint (``best.pt``) on the CPU.

    Returns a dict with:

    * ``config``: the training config (see :mod:`oltr.train.config`);
    * ``class_names``: list of K strings; ``train_class_counts``: list of K ints;
    * ``state_dict``: the model's weights; ``centroids``: float32 (K, D) tensor, or None
      (stage 1);
    * ``epoch``: best epoch (1-based); ``best_acc``: its val top-1 in [0, 1];
    * ``thresholds``: dict score name -> value chosen on validation (a sample is unknown
      when its score is **above**; scores are "larger = more unknown", see
      :mod:`oltr.scores`), plus ``"open_threshold"``, the official MSP threshold.

    Raises:
        CheckpointError: missing, corrupt or wrong kind of file.
    """
    return _read(path, MODEL_FORMAT, _MODEL_KEYS)


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a resume state (``last.pt``) on the CPU. Raises :class:`CheckpointError`."""
    return _read(path, RESUME_FORMAT, _RESUME_KEYS)
