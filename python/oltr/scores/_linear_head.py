"""The ``(weight (K, D), bias (K,))`` of a linear classifier head, for ViM and ReAct."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from oltr.scores._tensor import real_input

__all__ = ["LinearHeadDetector", "linear_head"]


def linear_head(head: Any) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(weight (K, D), bias (K,))`` from ``(weight, bias)`` (arrays/tensors; bias may
    be None → zeros), an :class:`torch.nn.Linear`, or a model whose ``classifier.fc`` is one (the
    plain stage-1 model; with an :class:`oltr.longtail.LWSClassifier`, its per-class ``scales``
    are folded in: ``(s[:, None] * weight, s * bias)``). Anything else (e.g. the cosine
    classifier) raises TypeError."""
    scales = None
    if isinstance(head, nn.Module) and not isinstance(head, nn.Linear):
        scales = getattr(getattr(head, "classifier", None), "scales", None)  # LWS: logits = s * fc(x)
        fc = getattr(getattr(head, "classifier", None), "fc", None)
        if not isinstance(fc, nn.Linear):
            raise TypeError(f"{type(head).__name__} has no linear head (classifier.fc); ViM and ReAct need a "
                            "dot-product classifier — pass (weight, bias) or an nn.Linear")
        head = fc
    if isinstance(head, nn.Linear):
        weight, bias = head.weight, head.bias
    elif isinstance(head, (tuple, list)) and len(head) == 2:
        weight, bias = head
    else:
        raise TypeError("head must be (weight, bias), an nn.Linear or a model with classifier.fc; "
                        f"got {type(head).__name__}")

    def numpy(value: Any, name: str) -> np.ndarray:
        value = real_input(value, name)
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        return array.astype(np.float64)

    w = numpy(weight, "head weight")
    b = np.zeros(w.shape[0]) if bias is None else numpy(bias, "head bias")
    if scales is not None:
        s = numpy(scales, "head scales")
        w, b = w * s[:, None], b * s
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"head weight must be (K, D) and bias (K,); got {w.shape} and {b.shape}")
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError("head weight or bias contains NaN or infinite values")
    return w, b


class LinearHeadDetector:
    """Mixin of the detectors that read a linear head (ViM, ReAct): ``self.head`` is
    ``(weight (K, D), bias (K,))`` given at construction or taken from ``model`` at ``fit``."""

    head: Optional[tuple[np.ndarray, np.ndarray]] = None

    def _take_head(self, model: Optional[nn.Module], usage: str) -> None:
        if self.head is None:
            if model is None:
                raise ValueError(f"{type(self).__name__} needs the linear head: {usage} or fit(..., model=model)")
            self.head = linear_head(model)

    def _checked_head(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.head is not None, "fit sets the head first"
        weight, bias = self.head
        if weight.shape[1] != features.shape[1]:
            raise ValueError(f"head weight has D = {weight.shape[1]} but features have D = {features.shape[1]}")
        return weight, bias
