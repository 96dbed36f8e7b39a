"""Outlier scores from logits: MSP, MaxLogit, energy.

Direction (pytorch-ood convention, used by all of :mod:`oltr.metrics`): every function
returns an **outlier score, larger = more likely unknown**. Where the paper's quantity
is a confidence (larger = known), the sign is flipped:

==============  ==============================  ===============================
function        returns                         paper quantity
==============  ==============================  ===============================
msp_score       ``-max softmax(z)``             MSP (Hendrycks & Gimpel 2017)
max_logit_score ``-max z``                      MaxLogit (Hendrycks et al. 2022)
energy_score    ``-T·logsumexp(z / T)``         free energy E(x) (Liu et al. 2020),
                                                already larger for outliers
==============  ==============================  ===============================

Input: logits ``(N, K)`` as a torch tensor (any float dtype, any device) or a numpy
array; output ``(N,)`` of the same kind (numpy in → numpy out). No gradient is kept.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from oltr.scores._tensor import as_float_tensor, checked_output, like_input

__all__ = ["LOGIT_SCORES", "energy_score", "max_logit_score", "msp_score", "score_from_logits"]


def _logits(value: Any) -> tuple[torch.Tensor, bool]:
    # NaN / +inf logits make every score below non-finite: the output is checked instead
    t, was_numpy = as_float_tensor(value, "logits", 2, check_finite=False)
    if t.shape[1] == 0:
        raise ValueError("logits must have at least one class column")
    return t, was_numpy


def msp_score(logits):
    """``-max_k softmax(z)_k``: in ``[-1, -1/K]``; the official rejection ``msp < t``
    is ``msp_score > -t``."""
    z, np_in = _logits(logits)
    return like_input(checked_output(-torch.softmax(z, dim=1).amax(dim=1), "logits"), np_in)


def max_logit_score(logits):
    """``-max_k z_k``."""
    z, np_in = _logits(logits)
    return like_input(checked_output(-z.amax(dim=1), "logits"), np_in)


def energy_score(logits, temperature: float = 1.0):
    """``-T · logsumexp(z / T)`` (the energy; larger = more unknown)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    z, np_in = _logits(logits)
    score = -temperature * torch.logsumexp(z / temperature, dim=1)
    return like_input(checked_output(score, "logits"), np_in)


LOGIT_SCORES: dict[str, Callable[[Any], Any]] = {
    "msp": msp_score,
    "max_logit": max_logit_score,
    "energy": energy_score,
}


def score_from_logits(name: str, logits):
    """The logit score called ``name`` (``"msp"``, ``"max_logit"`` or ``"energy"``)."""
    try:
        fn = LOGIT_SCORES[name]
    except KeyError:
        raise ValueError(f"unknown logit score {name!r}; choose from {sorted(LOGIT_SCORES)}") from None
    return fn(logits)
