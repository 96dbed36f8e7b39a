"""The classification loss a config names (``loss.kind``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from oltr.train.config import ConfigError

__all__ = ["LOSS_KINDS", "build_loss"]

#: ``loss.kind`` values.
LOSS_KINDS = ("ce", "balanced_softmax", "logit_adjusted")


def build_loss(config: Mapping[str, Any], train_counts: Sequence[int]) -> nn.Module:
    """``loss.kind`` as a module ``(logits (B, K) float, labels (B,) int64) -> scalar`` (mean):

    * ``ce``: :class:`torch.nn.CrossEntropyLoss`;
    * ``balanced_softmax``: :class:`oltr.longtail.BalancedSoftmaxLoss` ``(train_counts)``;
    * ``logit_adjusted``: :class:`oltr.longtail.LogitAdjustedLoss` ``(train_counts, loss.tau)``.

    Raises:
        ConfigError: a prior-based loss with a class that has no training image.
    """
    from oltr.longtail import BalancedSoftmaxLoss, LogitAdjustedLoss

    loss = config["loss"]
    kind = loss["kind"]
    if kind == "ce":
        return nn.CrossEntropyLoss()
    if kind not in LOSS_KINDS:
        raise ConfigError(f"loss.kind must be one of {', '.join(LOSS_KINDS)}; got {kind!r}")
    try:
        if kind == "balanced_softmax":
            return BalancedSoftmaxLoss(list(train_counts))
        return LogitAdjustedLoss(list(train_counts), tau=float(loss["tau"]))
    except ValueError as exc:
        raise ConfigError(f"loss.kind {kind!r} needs the training prior: {exc}") from None
