"""A trained model and its runner from a ``best.pt``: what every checkpoint consumer starts from."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from oltr.inference.outputs import ModelRunner

__all__ = ["LoadedModel", "load_for_inference"]


@dataclass
class LoadedModel:
    """A model checkpoint ready for inference.

    Attributes:
        path: the checkpoint file.
        model: the :class:`oltr.OLTRModel`, in eval mode on its device.
        checkpoint: the checkpoint dict (:func:`oltr.train.load_model_checkpoint`).
        config: the training config with any overrides applied.
        runner: the model's :class:`~oltr.inference.ModelRunner` (built once; keeps caches).
    """

    path: Path
    model: Any
    checkpoint: dict[str, Any]
    config: Any
    runner: ModelRunner

    @property
    def class_names(self) -> list[str]:
        return list(self.checkpoint["class_names"])

    @property
    def train_counts(self) -> list[int]:
        return [int(c) for c in self.checkpoint["train_class_counts"]]


def load_for_inference(path: str | os.PathLike, device: str | torch.device = "auto",
                       overrides: Iterable[str] = ()) -> LoadedModel:
    """Load ``path`` on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device).

    ``overrides`` (``"key=value"``, as ``oltr train --set``) change the stored config for
    this use (e.g. ``eval.batch_size=64``, ``eval.open_threshold=0.2``, ``num_workers=0``).

    Raises:
        oltr.checkpoint.CheckpointError: missing, corrupt or mismatching checkpoint.
        oltr.train.config.ConfigError: a bad override.
    """
    from oltr.train.restore import load_trained_model
    from oltr.train.trainer import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    model, checkpoint = load_trained_model(path, dev)
    config = checkpoint["config"]
    overrides = list(overrides)
    if overrides:
        from oltr.train.config import apply_overrides

        config = apply_overrides(config, overrides)
    means = checkpoint.get("feature_means")
    memory = model.centroids if model.stage == "plain" and means is not None else None
    return LoadedModel(Path(path), model, checkpoint, config, ModelRunner(model, memory))
