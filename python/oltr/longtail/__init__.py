"""Long-tail corrections that compose with any classifier (and with OLTR).

* :func:`logit_adjust` — post-hoc logit adjustment (Menon et al., ICLR 2021):
  ``logits - tau * log(prior)``; :func:`tune_tau` picks ``tau`` on validation data.
* :class:`LogitAdjustedLoss` / :class:`BalancedSoftmaxLoss` — the training-time forms
  (Menon et al. 2021; Ren et al., NeurIPS 2020): cross-entropy of ``logits + tau * log(prior)``.
* :class:`NCM` — nearest class mean of centred, L2-normalised features (Kang et al. 2020).
* :class:`LWSClassifier` — learnable weight scaling (Kang et al. 2020): a frozen linear classifier
  times learned per-class scales (training stage ``lws``; ``crt`` re-trains the classifier).
* :func:`tau_normalize` — τ-normalisation of a dot-product classifier's weight rows (Kang et al.,
  ICLR 2020): ``w_k / ||w_k||^tau``; :func:`tune_tau_normalization` picks ``tau`` on validation.

``prior`` is the training label distribution ``train_counts / sum(train_counts)``.
"""
from __future__ import annotations

from oltr.longtail.adjust import log_prior, logit_adjust, tune_tau
from oltr.longtail.losses import BalancedSoftmaxLoss, LogitAdjustedLoss
from oltr.longtail.lws import LWSClassifier
from oltr.longtail.ncm import NCM
from oltr.longtail.tau_norm import tau_normalize, tune_tau_normalization

__all__ = [
    "BalancedSoftmaxLoss",
    "LWSClassifier",
    "LogitAdjustedLoss",
    "NCM",
    "log_prior",
    "logit_adjust",
    "tau_normalize",
    "tune_tau",
    "tune_tau_normalization",
]
