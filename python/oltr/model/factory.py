"""``create_model``: build an :class:`OLTRModel` by backbone name and stage."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

from oltr.model.oltr_model import STAGES, OLTRModel
from oltr.nn._feature_head import PooledFeatureModel
from oltr.nn.dot_product import DotProductClassifier
from oltr.nn.meta_embedding import MetaEmbeddingClassifier
from oltr.nn.resnet import resnet10_feature, resnet152_feature
from oltr.nn.small_cnn import cnn8_feature, cnn28_feature

__all__ = ["BACKBONES", "create_model", "stage_defaults"]

#: Backbone name -> builder ``f(use_attention, use_fc_add, feat_dim, **kw) -> feature model``.
BACKBONES: dict[str, Callable[..., PooledFeatureModel]] = {
    "resnet10": resnet10_feature,
    "resnet152": resnet152_feature,
    "cnn28": cnn28_feature,
    "cnn8": cnn8_feature,
}

# (use_attention, use_fc_add) per backbone and stage: the official configs for
# the ResNets; the small CNNs follow the Places-LT pattern (fc_add in both stages, so the
# stage-2 features are not passed through a fresh random layer, docs/official-differences.md D10).
_STAGE_DEFAULTS = {
    "resnet10": {"plain": (False, False), "oltr": (True, True)},
    "resnet152": {"plain": (False, True), "oltr": (True, True)},
    "cnn28": {"plain": (False, True), "oltr": (True, True)},
    "cnn8": {"plain": (False, True), "oltr": (True, True)},
}

# "scale" is the deprecated name of "logit_scale" (the classifier warns when it is used)
_CLASSIFIER_OPTIONS = ("reach_scale", "logit_scale", "scale", "squash", "nearest_backend")


def stage_defaults(backbone: str, stage: str) -> tuple[bool, bool]:
    """``(use_attention, use_fc_add)`` that :func:`create_model` uses when not given."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return _STAGE_DEFAULTS[backbone][stage]


def create_model(backbone: str, num_classes: int, stage: str = "plain", feat_dim: Optional[int] = None,
                 use_attention: Optional[bool] = None, use_fc_add: Optional[bool] = None, **kw: Any) -> OLTRModel:
    """Build an :class:`OLTRModel`.

    * ``backbone``: ``"resnet10"``, ``"resnet152"`` (official), ``"cnn28"`` (28x28, 1 channel),
      ``"cnn8"`` (8x8, 1 channel).
    * ``stage``: ``"plain"`` (dot-product ``fc`` classifier) or ``"oltr"`` (meta-embedding).
    * ``use_attention`` / ``use_fc_add``: ``None`` takes :func:`stage_defaults` (official:
      resnet10 plain F/F, oltr T/T; resnet152 plain F/T, oltr T/T; cnn* plain F/T, oltr T/T).
    * ``feat_dim``: direct feature size; ``None`` gives the backbone's default (512 for the
      ResNets, 64 for the CNNs; C without ``fc_add``).
    * ``kw``: ``reach_scale``, ``logit_scale`` (deprecated name: ``scale``), ``squash``,
      ``nearest_backend`` go to the meta-embedding classifier (error in the plain stage;
      defaults: :data:`oltr.memory.index.REACHABILITY_SCALE`, 16, ``"code"``, ``"auto"``);
      anything else goes to the
      backbone (e.g. ``channels`` for the CNNs, ``attention_spatial_size`` for the ResNets).
    """
    attention_default, fc_default = stage_defaults(backbone, stage)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    classifier_kw = {k: kw.pop(k) for k in _CLASSIFIER_OPTIONS if k in kw}
    if classifier_kw and stage == "plain":
        raise ValueError(f"options {sorted(classifier_kw)} apply to the 'oltr' stage only")
    feat_model = BACKBONES[backbone](
        use_attention=attention_default if use_attention is None else bool(use_attention),
        use_fc_add=fc_default if use_fc_add is None else bool(use_fc_add),
        feat_dim=feat_dim, **kw)
    classifier: Union[MetaEmbeddingClassifier, DotProductClassifier]
    if stage == "oltr":
        classifier = MetaEmbeddingClassifier(feat_model.feat_dim, int(num_classes), **classifier_kw)
    else:
        classifier = DotProductClassifier(feat_model.feat_dim, int(num_classes))
    return OLTRModel(feat_model, classifier, backbone_name=backbone)
