"""Learnable weight scaling (LWS; Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020, §4): the stage-1 linear classifier kept fixed and one
learned scale per class, ``logits_k = s_k · (w_k · x + b_k)``, ``s`` initialised to 1 and
trained with class-balanced sampling on the frozen backbone (``stage: lws``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from oltr.nn.dot_product import DotProductClassifier
from oltr.nn.extras import Extras

__all__ = ["LWSClassifier"]


class LWSClassifier(DotProductClassifier):
    """:class:`oltr.nn.DotProductClassifier` (``fc``: weight (K, D), bias (K,)) times learned
    per-class scales ``scales`` float32 (K,), initialised to 1, so a fresh one gives the stage-1
    logits exactly. ``forward(x (B, D)) -> (logits (B, K), Extras(direct=x))``.

    State-dict keys: ``fc.weight``, ``fc.bias``, ``scales``. The trainer's ``lws`` stage freezes
    ``fc`` (:func:`oltr.train.classifier_stage.freeze_for_classifier_stage`); only ``scales``
    learn.
    """

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__(feat_dim, num_classes)
        self.scales = nn.Parameter(torch.ones(self.num_classes))

    def forward(self, x: Tensor, centroids: Optional[Tensor] = None) -> tuple[Tensor, Extras]:
        logits, extras = super().forward(x, centroids)
        return logits * self.scales, extras
