"""The two-stage OLTR trainer and its configs.

* :func:`load_config` / :func:`apply_overrides` — YAML configs (``base:`` inheritance) →
  :class:`Config`, a frozen typed dataclass that also reads as a ``Mapping``; ``"a.b=value"``
  overrides; shipped configs by name (:func:`shipped_configs`); see :mod:`oltr.train.config`.
* :func:`train` — one stage (``stage: plain`` or ``oltr``) → :class:`TrainResult`; writes
  ``best.pt`` / ``last.pt`` / ``log.jsonl`` to ``out_dir``; ``resume=True`` continues.
* :func:`load_model_checkpoint` — read a ``best.pt``; :func:`load_trained_model` — the model
  in it, ready for inference; :func:`evaluate_checkpoint` — its metrics (``oltr eval``).
* :mod:`oltr.train.distributed` — the torch.distributed seam (identity in one process).
"""
from __future__ import annotations

from oltr.train.checkpoints import CheckpointError, load_model_checkpoint, load_resume_state
from oltr.train.config import (
    DEFAULTS,
    Config,
    ConfigError,
    apply_overrides,
    load_config,
    parse_value,
    shipped_configs,
)
from oltr.train.eval_run import evaluate_checkpoint
from oltr.train.restore import load_trained_model
from oltr.train.trainer import TrainResult, build_model, resolve_device, train

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DEFAULTS",
    "TrainResult",
    "apply_overrides",
    "build_model",
    "evaluate_checkpoint",
    "load_config",
    "load_model_checkpoint",
    "load_resume_state",
    "load_trained_model",
    "parse_value",
    "resolve_device",
    "shipped_configs",
    "train",
]
