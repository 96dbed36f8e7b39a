"""The OLTR network: feature model + classifier + memory (class centroids)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from oltr.memory.index import REACHABILITY_SCALE
from oltr.nn.dot_product import DotProductClassifier
from oltr.nn.extras import Extras
from oltr.nn.meta_embedding import MetaEmbeddingClassifier

__all__ = ["ModelExtras", "OLTRModel", "STAGES"]

#: ``OLTRModel.stage`` values: ``"plain"`` (stage 1, dot-product ``fc``) and ``"oltr"``
#: (stage 2, meta-embedding classifier reading the memory).
STAGES = ("plain", "oltr")


#: The side outputs of :meth:`OLTRModel.forward`: :class:`oltr.nn.Extras` (one type for the
#: classifiers and the model) with ``attention`` set to the backbone's
#: :class:`~oltr.nn.AttentionMaps` (``None`` without attention). ``direct`` is always set; the
#: memory fields only in the ``"oltr"`` stage (``None`` in ``"plain"``).
ModelExtras = Extras


class OLTRModel(nn.Module):
    """``feat_model`` (backbone, + attention, + ``fc_add``) -> ``classifier``, with the memory
    as the ``centroids`` buffer (K, D) float32 (zeros until set).

    * ``forward(images, centroids=None) -> (logits (B, K), Extras)``. In the ``"oltr"``
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

    centroids: Tensor  # the buffer registered in __init__ (nn.Module.__getattr__ is typed Tensor | Module)

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

    @property
    def reach_scale(self) -> float:
        """The reachability scale of this model: the meta-embedding classifier's
        ``reach_scale`` in the ``"oltr"`` stage, :data:`oltr.memory.index.REACHABILITY_SCALE`
        in the ``"plain"`` stage (whose reachability score uses the class means of its
        features). Every consumer (evaluation, prediction, thresholds) reads it here."""
        if isinstance(self.classifier, MetaEmbeddingClassifier):  # the "oltr" stage
            return float(self.classifier.reach_scale)
        return REACHABILITY_SCALE

    def clear_caches(self) -> None:
        """Forget the classifier's inference caches (Rust index, normalised weights); needed
        only after writing weights or centroids in place through ``.data``."""
        if isinstance(self.classifier, MetaEmbeddingClassifier):  # the "oltr" stage
            self.classifier.clear_caches()

    def forward(self, images: Tensor, centroids: Optional[Tensor] = None) -> tuple[Tensor, Extras]:
        features, attention = self.feat_model(images)
        if self.stage == "oltr":
            logits, extras = self.classifier(features, self.centroids if centroids is None else centroids)
        else:
            logits, extras = self.classifier(features)
        return logits, extras._replace(attention=attention)

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

    def enroll(self, x: Tensor, class_name: Optional[str] = None, *, imprint: str = "mean") -> int:
        """Add a class from its examples without training; returns its label (the old K).

        ``x``: images float ``(B, C, H, W)`` or direct features ``(B, D)``, B >= 1. Appends the
        class mean of the direct features to the memory, an imprinted row to the hallucinator
        (``fc`` in the plain stage) and, in the ``"oltr"`` stage, the normalised mean of the
        examples' meta-embeddings to the cosine classifier (weight imprinting); see
        :mod:`oltr.model.enrollment` for the choices. ``class_name`` goes to
        ``self.class_names`` (made up as ``class_<i>`` where the model has none); ``imprint``
        (``"mean"``, ``"calibrated"``) picks the cosine row. Raises ValueError for no example,
        NaN, a wrong feature dimension or images the backbone cannot take."""
        from oltr.model.enrollment import enroll_class

        return enroll_class(self, x, class_name, imprint=imprint)

    def reserve_classes(self, extra: int) -> None:
        """Make room for ``extra`` more classes, so the next ``extra`` :meth:`enroll` calls
        append in O(D) each (as ``Vec::reserve``): one O(K·D) copy now of each class-indexed
        tensor and of each warm inference cache, instead of at the first enroll (which
        otherwise makes room for a quarter more classes by itself). Values, state-dict keys
        and saved state dicts are unchanged (a state dict holds no room). ValueError for
        ``extra`` < 0."""
        from oltr.model._class_rows import reserve_classes

        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise ValueError(f"extra must be an integer >= 0, got {extra!r}")
        with torch.no_grad():
            reserve_classes(self, extra)

    def forget(self, label: int) -> None:
        """Remove class ``label`` (memory row and classifier rows); later labels move down by
        one. ValueError for a label outside ``[0, K)`` or the model's only class."""
        from oltr.model.enrollment import forget_class

        forget_class(self, label)

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
        return (f"stage={self.stage!r}, backbone={self.backbone_name!r}, num_classes={self.num_classes}, "
                f"feat_dim={self.feat_dim}")
