"""The two-stage OLTR trainer (OLTR.md §5-6) and its configs.

* :func:`load_config` / :func:`apply_overrides` — YAML configs checked against
  :data:`DEFAULTS`; ``"a.b=value"`` overrides; shipped configs by name
  (:func:`shipped_configs`).
* :func:`train` — one stage (``stage: plain`` or ``oltr``) → :class:`TrainResult`; writes
  ``best.pt`` / ``last.pt`` / ``log.jsonl`` to ``out_dir``; ``resume=True`` continues.
* :func:`load_model_checkpoint` — read a ``best.pt``.
* :mod:`oltr.train.distributed` — the torch.distributed seam (identity in one process).
"""
from __future__ import annotations

from oltr.train.checkpoints import CheckpointError, load_model_checkpoint, load_resume_state
from oltr.train.config import (
    DEFAULTS,
    ConfigError,
    apply_overrides,
    load_config,
    parse_value,
    shipped_configs,
)
from oltr.train.trainer import TrainResult, build_model, resolve_device, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DEFAULTS",
    "TrainResult",
    "apply_overrides",
    "build_model",
    "load_config",
    "load_model_checkpoint",
    "load_resume_state",
    "parse_value",
    "resolve_device",
    "shipped_configs",
    "train",
]
