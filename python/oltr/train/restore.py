"""Rebuild a trained model from its ``best.pt``."""
from __future__ import annotations

import os
from typing import Any

import torch

from oltr.model import OLTRModel
from oltr.train.checkpoints import CheckpointError, load_model_checkpoint
from oltr.train.config import stored_config
from oltr.train.trainer import build_model

__all__ = ["load_trained_model"]


def load_trained_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[OLTRModel, dict[str, Any]]:
    """``(model in eval mode on device, checkpoint dict)`` from a model checkpoint.

    The model is built from the checkpoint's config and gets the best weights and memory.
    For a plain (stage-1) model the checkpoint's ``feature_means`` (class means of its
    training features) are put in the memory buffer, so the reachability score works.

    Raises:
        CheckpointError: missing, corrupt or mismatching checkpoint.
    """
    checkpoint = load_model_checkpoint(path)
    # a stored config is input too: checked again, resource settings bounded to this machine
    checkpoint["config"] = stored_config(checkpoint["config"], str(path)).to_dict()
    config = checkpoint["config"]
    model = build_model(config, len(checkpoint["class_names"]))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{str(path)!r}: weights do not fit the model its config builds: {first}") from None
    means = checkpoint.get("feature_means")
    if model.stage == "plain" and means is not None:
        model.set_memory(means)
    return model.to(device).eval(), checkpoint
