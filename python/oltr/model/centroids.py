"""``compute_centroids``: the memory initialisation (official ``centroids_cal``)."""
from __future__ import annotations

from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn

from oltr.inference.class_means import FALLBACKS, ClassMeanAccumulator

__all__ = ["FALLBACKS", "accumulate_class_means", "compute_centroids"]


def _features_of(model: nn.Module, images: Tensor) -> Tensor:
    feat_model = getattr(model, "feat_model", None)  # an OLTRModel's, or None for a plain feature module
    features = model(images) if feat_model is None else feat_model(images)
    if isinstance(features, (tuple, list)):
        features = features[0]
    if not isinstance(features, Tensor) or features.dim() != 2:
        raise ValueError("the model must give (B, D) features (or a tuple starting with them), got "
                         f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}")
    return features


def _device_of(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


@torch.no_grad()
def accumulate_class_means(model: nn.Module, loader: Iterable, num_classes: int) -> ClassMeanAccumulator:
    """Per-class sums and counts of the direct features over ``loader`` (see
    :func:`compute_centroids` for ``model`` and ``loader``); the model's train/eval flags are
    restored afterwards. Raises ValueError on bad labels or when the loader yields no batch."""
    device = _device_of(model)
    acc = ClassMeanAccumulator(num_classes, device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("loader must yield (images, labels) or (images, labels, *extra)")
            labels = torch.as_tensor(batch[1]).to(device=device, dtype=torch.int64).reshape(-1)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= acc.num_classes):
                bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
                raise ValueError(f"loader labels must lie in [0, {acc.num_classes}), got {bad}")
            features = _features_of(model, torch.as_tensor(batch[0]).to(device))
            if features.shape[0] != labels.shape[0]:
                raise ValueError(f"{features.shape[0]} features but {labels.shape[0]} labels in a batch")
            acc.add(features, labels)
    finally:
        for module, training in modes:
            module.training = training
    if acc.sums is None:
        raise ValueError("loader yielded no batch")
    return acc


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
    acc = accumulate_class_means(model, loader, num_classes)
    centroids, counts = acc.means(fallback, where=" in the loader"), acc.counts
    return (centroids, counts) if return_counts else centroids
