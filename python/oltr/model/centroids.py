"""``compute_centroids``: the memory initialisation (official ``centroids_cal``)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn

__all__ = ["FALLBACKS", "compute_centroids"]

#: ``fallback`` values: ``None`` (a class with no sample raises ValueError), ``"zeros"`` (its
#: centroid is the zero vector), ``"global_mean"`` (its centroid is the mean of all features).
FALLBACKS = (None, "zeros", "global_mean")


def _features_of(model: nn.Module, images: Tensor) -> Tensor:
    if hasattr(model, "feat_model"):
        features = model.feat_model(images)
    else:
        features = model(images)
    if isinstance(features, (tuple, list)):
        features = features[0]
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise ValueError("the model must give (B, D) features (or a tuple starting with them), got "
                         f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}")
    return features


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def compute_centroids(model: nn.Module, loader: Iterable, num_classes: int, fallback: Optional[str] = None,
                      return_counts: bool = False) -> Any:
    """Class means of the direct features over ``loader``: the official memory init.

    * ``model``: an :class:`~oltr.OLTRModel` (its ``feat_model`` gives the direct feature) or
      any module returning (B, D) features or a tuple starting with them.
    * ``loader``: yields ``(images, labels)`` or ``(images, labels, *extra)``; labels int in
      ``[0, num_classes)``. Images go to the model's device.
    * Runs in eval mode without gradients, streaming: only the (K, D) float64 sums and the
      (K,) counts are held. Every submodule's train/eval flag is restored afterwards.
    * ``fallback`` for a class with no sample: ``None`` raises ValueError naming the classes;
      ``"zeros"``; ``"global_mean"`` (mean over every feature seen).

    Returns the (K, D) float32 centroids on the model's device, or ``(centroids, counts (K,)
    int64)`` with ``return_counts=True``.
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    device = _device_of(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    sums: Optional[Tensor] = None
    counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
    try:
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("loader must yield (images, labels) or (images, labels, *extra)")
            images, labels = batch[0], batch[1]
            labels = torch.as_tensor(labels).to(device=device, dtype=torch.int64).reshape(-1)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
                raise ValueError(f"loader labels must lie in [0, {num_classes}), got {bad}")
            features = _features_of(model, torch.as_tensor(images).to(device))
            if features.shape[0] != labels.shape[0]:
                raise ValueError(f"{features.shape[0]} features but {labels.shape[0]} labels in a batch")
            if sums is None:
                sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=device)
            sums.index_add_(0, labels, features.to(torch.float64))
            counts += torch.bincount(labels, minlength=num_classes)
    finally:
        for module, training in modes:
            module.training = training
    if sums is None:
        raise ValueError("loader yielded no batch")
    missing = (counts == 0).nonzero().flatten().tolist()
    centroids = sums / counts.clamp_min(1).unsqueeze(1).to(torch.float64)
    if missing:
        if fallback is None:
            shown = missing[:20]
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise ValueError(f"class(es) {shown}{more} have no sample in the loader; pass fallback='zeros' or "
                             "fallback='global_mean' to fill them")
        if fallback == "global_mean":
            centroids[missing] = sums.sum(0) / counts.sum().to(torch.float64)
        else:
            centroids[missing] = 0.0
    centroids = centroids.to(torch.float32)
    return (centroids, counts) if return_counts else centroids
