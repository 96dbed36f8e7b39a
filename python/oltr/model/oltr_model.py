"""The OLTR network: feature model + classifier + memory (class centroids)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from oltr.nn.attention import AttentionMaps
from oltr.nn.dot_product import DotProductClassifier
from oltr.nn.meta_embedding import MetaEmbeddingClassifier

__all__ = ["ModelExtras", "OLTRModel", "STAGES"]

#: ``OLTRModel.stage`` values: ``"plain"`` (stage 1, dot-product ``fc``) and ``"oltr"``
#: (stage 2, meta-embedding classifier reading the memory).
STAGES = ("plain", "oltr")


class ModelExtras(NamedTuple):
    """Side outputs of :meth:`OLTRModel.forward`: the classifier's
    :class:`~oltr.nn.ClassifierExtras` fields (``direct`` always; the others only in the
    ``"oltr"`` stage, ``None`` in ``"plain"``) plus ``attention`` (the backbone's
    :class:`~oltr.nn.AttentionMaps`, or ``None`` without attention)."""

    direct: Tensor
    infused: Optional[Tensor] = None
    memory: Optional[Tensor] = None
    selector: Optional[Tensor] = None
    reachability: Optional[Tensor] = None
    nearest: Optional[Tensor] = None
    meta_embedding: Optional[Tensor] = None
    attention: Optional[AttentionMaps] = None


class OLTRModel(nn.Module):
    """``feat_model`` (backbone, + attention, + ``fc_add``) -> ``classifier``, with the memory
    as the ``centroids`` buffer (K, D) float32 (zeros until set).

    * ``forward(images, centroids=None) -> (logits (B, K), ModelExtras)``. In the ``"oltr"``
      stage the classifier reads ``centroids`` when given (the trainer passes the live
      :class:`~oltr.nn.DiscCentroidsLoss` centroids, as the official training passes
      ``criterion.centroids.data``; they are detached inside) and the ``centroids`` buffer
      otherwise. The plain stage ignores ``centroids``.
    * ``extras.direct`` (B, D) is the direct feature in both stages: apply
      :class:`~oltr.nn.DiscCentroidsLoss` to it; :func:`oltr.compute_centroids` averages it.
    * :meth:`set_memory` copies centroids into the buffer (sync after training, or after
      :func:`oltr.compute_centroids`).

    State-dict keys: ``feat_model.<official feat_model key>``, ``classifier.<official
    classifier key>``, ``centroids``. :func:`oltr.checkpoint.save_official` writes the
    official layout.
    """

    def __init__(self, feat_model: nn.Module, classifier: nn.Module, backbone_name: str = "custom") -> None:
        super().__init__()
        if isinstance(classifier, MetaEmbeddingClassifier):
            stage = "oltr"
        elif isinstance(classifier, DotProductClassifier):
            stage = "plain"
        else:
            raise TypeError("classifier must be an oltr.nn.MetaEmbeddingClassifier or oltr.nn.DotProductClassifier, "
                            f"got {type(classifier).__name__}")
        feat_dim = getattr(feat_model, "feat_dim", classifier.feat_dim)
        if feat_dim != classifier.feat_dim:
            raise ValueError(f"feat_model gives {feat_dim}-d features but the classifier takes {classifier.feat_dim}")
        self.feat_model = feat_model
        self.classifier = classifier
        self.stage = stage
        self.backbone_name = backbone_name
        self.num_classes = classifier.num_classes
        self.feat_dim = classifier.feat_dim
        self.register_buffer("centroids", torch.zeros(self.num_classes, self.feat_dim))

    @property
    def backbone(self) -> nn.Module:
        """The feature model (alias of ``feat_model``)."""
        return self.feat_model

    def features(self, images: Tensor) -> Tensor:
        """Direct features (B, D) of ``images``."""
        return self.feat_model(images)[0]

    def forward(self, images: Tensor, centroids: Optional[Tensor] = None) -> tuple[Tensor, ModelExtras]:
        features, attention = self.feat_model(images)
        if self.stage == "oltr":
            logits, extras = self.classifier(features, self.centroids if centroids is None else centroids)
        else:
            logits, extras = self.classifier(features)
        return logits, ModelExtras(*extras, attention=attention)

    @torch.no_grad()
    def set_memory(self, centroids: Tensor) -> None:
        """Copy ``centroids`` (K, D), any float dtype or device, into the ``centroids`` buffer
        (in place, so caches keyed on the buffer see the change)."""
        if not isinstance(centroids, Tensor):
            centroids = torch.as_tensor(centroids)
        if tuple(centroids.shape) != (self.num_classes, self.feat_dim):
            raise ValueError(f"centroids must have shape ({self.num_classes}, {self.feat_dim}), "
                             f"got {tuple(centroids.shape)}")
        if not torch.isfinite(centroids).all():
            raise ValueError("centroids contain NaN or Inf")
        self.centroids.copy_(centroids.detach())

    def freeze_backbone(self) -> list[str]:
        """The official ``fix`` (docs/official-differences.md D11): ``requires_grad=False`` on every feat_model
        parameter whose name contains neither ``'modulatedatt'`` nor ``'fc'``. BN layers stay in
        train mode. Returns the frozen names."""
        frozen = []
        for name, param in self.feat_model.named_parameters():
            if "modulatedatt" not in name and "fc" not in name:
                param.requires_grad_(False)
                frozen.append(name)
        return frozen

    def extra_repr(self) -> str:
        return f"stage={self.stage!r}, backbone={self.backbone_name!r}, num_classes={self.num_classes}, feat_dim={self.feat_dim}"
