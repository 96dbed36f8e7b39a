"""Run a model over a loader and collect what evaluation and prediction need."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["Outputs", "classify_features", "run_model"]


@dataclass
class Outputs:
    """Model outputs over a dataset, in loader order (numpy, on the CPU).

    Attributes:
        logits: float32 ``(N, K)``.
        features: float32 ``(N, D)`` direct features (the memory's space).
        labels: int64 ``(N,)``, ``-1`` for open-set samples.
    """

    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def run_model(
    model: nn.Module, loader: Iterable, device: torch.device,
    centroids: Optional[torch.Tensor] = None,
) -> Outputs:
    """Forward every batch of ``loader`` (items ``(images, labels, ...)``) in eval mode.

    ``centroids`` (K, D) is passed to the model (stage 2: the live memory); ``None`` uses the
    model's own ``centroids`` buffer. The model's train/eval flags are restored afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    logits, features, labels = [], [], []
    try:
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            out, extras = model(images, centroids=centroids)
            logits.append(out.float().cpu())
            features.append(extras.direct.float().cpu())
            labels.append(torch.as_tensor(batch[1]).to(torch.int64).cpu())
    finally:
        for module, training in modes:
            module.training = training
    if not logits:
        raise ValueError("the loader yielded no batch (empty dataset)")
    return Outputs(
        logits=torch.cat(logits).numpy(),
        features=torch.cat(features).numpy(),
        labels=torch.cat(labels).numpy(),
    )


@torch.no_grad()
def classify_features(model: nn.Module, features: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Logits float32 ``(N, K)`` of direct features ``(N, D)`` (no backbone): the classifier
    reads the model's memory (``centroids`` buffer) in the ``oltr`` stage."""
    model.eval()
    device = model.centroids.device
    out = []
    for start in range(0, features.shape[0], batch_size):
        chunk = features[start:start + batch_size].to(device)
        if model.stage == "oltr":
            logits, _ = model.classifier(chunk, model.centroids)
        else:
            logits, _ = model.classifier(chunk)
        out.append(logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)
