"""The OLTR network and its memory.

Design, for the trainer:

* :func:`create_model` ``(backbone, num_classes, stage="plain"|"oltr", feat_dim=None,
  use_attention=None, use_fc_add=None, **kw) -> OLTRModel``.
* Stage 1 -> 2: ``m2 = create_model(name, K, "oltr")``; ``init_from_stage1(m2, m1)`` copies
  the backbone keys present and ``fc_hallucinator <- fc`` (official ``utils.init_weights``);
  ``c = compute_centroids(m2, train_plain_loader, K)``; ``criterion.centroids.data.copy_(c)``
  (criterion = :class:`oltr.nn.DiscCentroidsLoss`); ``m2.set_memory(c)``.
* Training step: ``logits, ex = model(images, centroids=criterion.centroids)`` (detached inside
  the classifier, like the official ``.data``); ``loss = ce(logits, y) + 0.01 *
  criterion(ex.direct, y)``. After training (or before validation), ``model.set_memory(
  criterion.centroids)`` so the buffer -- what ``model(images)`` and checkpoints use -- holds
  the live memory.
* :func:`compute_centroids` averages ``extras.direct`` (= ``model.features``) in eval mode.
"""
from __future__ import annotations

from oltr.model.centroids import FALLBACKS, compute_centroids
from oltr.model.factory import BACKBONES, create_model, stage_defaults
from oltr.model.oltr_model import STAGES, ModelExtras, OLTRModel
from oltr.model.stage_init import InitReport, init_from_stage1, split_state_dict

__all__ = [
    "BACKBONES",
    "FALLBACKS",
    "InitReport",
    "ModelExtras",
    "OLTRModel",
    "STAGES",
    "compute_centroids",
    "create_model",
    "init_from_stage1",
    "split_state_dict",
    "stage_defaults",
]
