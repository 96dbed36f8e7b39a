"""Initialise a model from pretrained weights, as the official ``utils.init_weights``:
:func:`init_backbone` (stage 1 from backbone weights, e.g. the caffe ResNet-152 file) and
:func:`init_from_stage1` (stage 2 from a stage-1 model)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from oltr.model.oltr_model import OLTRModel

__all__ = ["InitReport", "init_backbone", "init_from_stage1", "split_state_dict"]


class InitReport(NamedTuple):
    """Which feat_model keys were copied from the source and which kept their fresh init."""

    copied: list[str]
    kept: list[str]


def _strip_module(state: Mapping[str, Any]) -> dict[str, Any]:
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def split_state_dict(source: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(feat_model state, classifier state)`` (no ``module.`` prefix) from any of:
    an :class:`~oltr.OLTRModel`; its ``state_dict()`` (``feat_model.*`` / ``classifier.*``);
    an object with ``feat_model`` and ``classifier`` mappings (e.g.
    :class:`oltr.checkpoint.OfficialCheckpoint`, also as :func:`oltr.checkpoint.read_pretrained`
    reads a flat caffe file: empty classifier); a dict ``{'feat_model': ..., 'classifier': ...}``
    or the official file's dict (with ``state_dict_best``)."""
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if hasattr(source, "feat_model") and hasattr(source, "classifier") and not isinstance(source, Mapping):
        return _strip_module(source.feat_model), _strip_module(source.classifier)
    if not isinstance(source, Mapping):
        raise TypeError("source must be an OLTRModel, a state dict or an official checkpoint, "
                        f"got {type(source).__name__}")
    if "state_dict_best" in source:
        source = source["state_dict_best"]
    if "feat_model" in source and "classifier" in source and isinstance(source["feat_model"], Mapping):
        return _strip_module(source["feat_model"]), _strip_module(source["classifier"])
    feat = {k[len("feat_model."):]: v for k, v in source.items() if k.startswith("feat_model.")}
    classifier = {k[len("classifier."):]: v for k, v in source.items() if k.startswith("classifier.")}
    if not feat and not classifier:
        raise ValueError("source holds neither feat_model.* nor classifier.* keys")
    return feat, classifier


def _copy_backbone(model: OLTRModel, feat_src: Mapping[str, Any]) -> InitReport:
    """Copy every key of ``model.feat_model`` present in ``feat_src`` (shapes must agree)."""
    copied, kept = [], []
    for key, target in model.feat_model.state_dict().items():
        if key in feat_src:
            value = torch.as_tensor(feat_src[key])
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"feat_model key {key!r}: source shape {tuple(value.shape)} != model shape "
                                 f"{tuple(target.shape)}")
            target.copy_(value)
            copied.append(key)
        else:
            kept.append(key)
    return InitReport(copied=copied, kept=kept)


@torch.no_grad()
def init_backbone(model: OLTRModel, source: Any) -> InitReport:
    """Copy pretrained backbone weights into ``model.feat_model``, in place, as the official
    ``utils.init_weights`` does for stage 1 (``caffe=True``: the flat caffe ResNet-152 file):
    every feat_model key present in the source is copied, the others (``fc_add``,
    ``modulatedatt``, BN ``num_batches_tracked``) keep their init; source keys the
    feat_model lacks (the caffe file's ImageNet ``fc.*``) are ignored. The classifier is
    untouched.

    ``source``: anything :func:`split_state_dict` accepts.

    Raises:
        ValueError: a key's shape differs from the model's (the official ``load_state_dict``
            fails there too), or no key of the source matches the feat_model (a wrong file:
            the official code would silently keep the random init).
    """
    feat_src, _ = split_state_dict(source)
    report = _copy_backbone(model, feat_src)
    if not report.copied:
        raise ValueError(f"no backbone key of the source matches the model's feat_model (source keys: "
                         f"{sorted(feat_src)[:5]}; model keys: {report.kept[:5]})")
    return report


@torch.no_grad()
def init_from_stage1(model: OLTRModel, source: Any) -> InitReport:
    """Copy stage-1 weights into ``model`` (an :class:`~oltr.OLTRModel`), in place:

    * feat_model: every key of ``model.feat_model`` present in the source is copied (shapes
      must agree); the others (a fresh ``modulatedatt``, a new ``fc_add``) keep their init.
    * classifier of an ``"oltr"`` model: ``fc_hallucinator.{weight,bias}`` <- source
      ``fc.{weight,bias}`` (required); ``fc_selector`` and ``cosnorm_classifier`` keep their
      init. Of a ``"plain"`` model: ``fc.*`` copied.
    * the memory is not touched (compute it next with :func:`oltr.compute_centroids`).

    ``source``: anything :func:`split_state_dict` accepts.
    """
    feat_src, cls_src = split_state_dict(source)
    report = _copy_backbone(model, feat_src)
    pairs = {"fc_hallucinator.weight": "fc.weight", "fc_hallucinator.bias": "fc.bias"} if model.stage == "oltr" \
        else {"fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    cls_state = model.classifier.state_dict()
    for dst, src in pairs.items():
        if src not in cls_src:
            raise ValueError(f"source classifier has no {src!r} (keys: {sorted(cls_src)}); is it a stage-1 model?")
        value = torch.as_tensor(cls_src[src])
        if tuple(value.shape) != tuple(cls_state[dst].shape):
            raise ValueError(f"classifier {src!r}: source shape {tuple(value.shape)} != model {dst!r} shape "
                             f"{tuple(cls_state[dst].shape)}")
        cls_state[dst].copy_(value)
    return report
