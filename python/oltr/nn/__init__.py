"""OLTR modules, faithful to the official implementation (docs/official-differences.md lists where it differs).

* :class:`CosNormClassifier` -- cosine classifier (code form; paper form via ``squash``).
* :class:`MetaEmbeddingClassifier` -- the meta-embedding classifier; ``forward(x, centroids)
  -> (logits, Extras)``.
* :class:`Extras` -- the side outputs of every classifier and of :class:`oltr.OLTRModel`
  (``ClassifierExtras`` and ``MetaEmbeddingExtras`` are other names of the same type).
* :class:`DotProductClassifier` -- the plain stage-1 classifier (``fc``), same call shape.
* :class:`ModulatedAttention` -- non-local attention modulated by a spatial attention.
* :class:`DiscCentroidsLoss` -- discriminative centroid loss, official or exact gradient.
* Backbones: :func:`resnet10_feature`, :func:`resnet152_feature` (official names),
  :func:`cnn28_feature`, :func:`cnn8_feature` (small images). Every backbone's
  ``forward(images) -> (direct feature (B, feat_dim), AttentionMaps | None)``.
"""
from __future__ import annotations

from oltr.nn.attention import AttentionMaps, ModulatedAttention
from oltr.nn.cosnorm import CosNormClassifier
from oltr.nn.disc_centroids_loss import CentroidLossTerms, DiscCentroidsLoss
from oltr.nn.dot_product import DotProductClassifier
from oltr.nn.extras import ClassifierExtras, Extras
from oltr.nn.meta_embedding import MetaEmbeddingClassifier
from oltr.nn.resnet import BasicBlock, Bottleneck, ResNetFeature, resnet10_feature, resnet152_feature
from oltr.nn.small_cnn import SmallCNNFeature, cnn8_feature, cnn28_feature

#: The official name of the meta-embedding classifier's side outputs (the same type as Extras).
MetaEmbeddingExtras = Extras

__all__ = [
    "AttentionMaps",
    "BasicBlock",
    "Bottleneck",
    "CentroidLossTerms",
    "ClassifierExtras",
    "CosNormClassifier",
    "DiscCentroidsLoss",
    "DotProductClassifier",
    "Extras",
    "MetaEmbeddingClassifier",
    "MetaEmbeddingExtras",
    "ModulatedAttention",
    "ResNetFeature",
    "SmallCNNFeature",
    "cnn28_feature",
    "cnn8_feature",
    "resnet10_feature",
    "resnet152_feature",
]
