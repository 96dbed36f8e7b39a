"""The classifier-only stages ``crt`` and ``lws`` (Kang et al., "Decoupling Representation and
Classifier for Long-Tailed Recognition", ICLR 2020, §4).

Both start from a stage-1 (``plain``) ``best.pt`` named by ``model.init`` and keep its backbone
exactly: every ``feat_model`` parameter gets ``requires_grad=False`` and the ``feat_model`` stays
in eval mode while the classifier trains, so its BatchNorm running statistics do not change
(the official code leaves BN in train mode, where they drift). With class-balanced sampling
(``sampler.kind: class_aware``):

* ``crt`` (classifier re-training): the linear classifier ``fc`` is re-initialised
  (``nn.Linear``'s default init) and trained;
* ``lws`` (learnable weight scaling): the stage-1 ``fc`` is copied and frozen; only the
  per-class scales of :class:`oltr.longtail.LWSClassifier` (initialised to 1) train.

The resulting model is a plain-stage :class:`oltr.OLTRModel` (dot-product head), so its
``best.pt`` loads through the one inference path (``oltr eval``, :class:`oltr.Predictor`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oltr.train.config._checks import CLASSIFIER_STAGES

if TYPE_CHECKING:
    from oltr.model import OLTRModel

__all__ = ["CLASSIFIER_STAGES", "freeze_for_classifier_stage", "init_classifier_stage", "model_stage"]


def model_stage(config_stage: str) -> str:
    """The :attr:`oltr.OLTRModel.stage` of a config stage: ``oltr`` → ``"oltr"``, every other
    (``plain``, ``crt``, ``lws``) → ``"plain"`` (a dot-product head)."""
    return "oltr" if config_stage == "oltr" else "plain"


def init_classifier_stage(model: OLTRModel, source: Any, stage: str, path: str) -> str:
    """Load a stage-1 model into ``model`` for stage ``stage`` (``crt`` or ``lws``), in place.

    Every ``feat_model`` tensor must come from ``source`` (a frozen fresh layer would be a silent
    error); the source must be a plain (stage-1) model, with a ``fc`` classifier. ``crt``:
    ``fc`` re-initialised; ``lws``: ``fc`` copied, scales 1. Returns a one-line description.

    Raises:
        ValueError: the source is not a stage-1 model of this architecture (naming ``path``).
    """
    from oltr.model import init_from_stage1

    try:
        report = init_from_stage1(model, source)  # backbone + classifier fc <- source fc
    except ValueError as exc:
        raise ValueError(f"model.init {path!r}: {exc}") from None
    fresh = [k for k in report.kept if not k.endswith("num_batches_tracked")]
    if fresh:
        raise ValueError(f"model.init {path!r} lacks backbone tensors {fresh[:5]} of this model "
                         f"(stage {stage!r} freezes the stage-1 backbone; is model.backbone the stage-1 one?)")
    if stage == "crt":
        model.classifier.fc.reset_parameters()  # type: ignore[union-attr,operator]
        return f"{len(report.copied)} backbone tensors from {path} (frozen), classifier re-initialised"
    return f"{len(report.copied)} backbone tensors and the classifier from {path} (frozen), scales 1"


def freeze_for_classifier_stage(model: OLTRModel, stage: str) -> list[str]:
    """``requires_grad=False`` on every ``feat_model`` parameter and, for ``lws``, on the
    classifier's ``fc``; returns the names of the parameters left to train. Keep the
    ``feat_model`` in eval mode while training (the trainer does) so BatchNorm statistics stay."""
    if stage not in CLASSIFIER_STAGES:
        raise ValueError(f"stage must be one of {CLASSIFIER_STAGES}; got {stage!r}")
    for param in model.feat_model.parameters():
        param.requires_grad_(False)
    if stage == "lws":
        for param in model.classifier.fc.parameters():  # type: ignore[union-attr]
            param.requires_grad_(False)
    return [name for name, p in model.named_parameters() if p.requires_grad]
