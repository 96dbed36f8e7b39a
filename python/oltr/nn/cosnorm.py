"""Cosine-normalised classifier (official ``CosNorm_Classifier``; docs/official-differences.md D1)."""
from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from oltr.nn import _products
from oltr.nn._weight_cache import DerivedCache

__all__ = ["CosNormClassifier", "LOGIT_SCALE", "inference_fast_path"]

#: Default ``logit_scale``: the official ``CosNorm_Classifier(scale=16)``; ``|logit| < 16``.
LOGIT_SCALE = 16.0

_SQUASH_FORMS = ("code", "paper")


def inference_fast_path(module: nn.Module, x: Tensor) -> bool:
    """Whether ``module`` may use its inference caches for ``x``: eval mode, autograd off
    (``torch.no_grad`` / ``torch.inference_mode``) and no autocast on ``x``'s device. Training
    and anything autograd records always take the reference formulas."""
    return not module.training and not torch.is_grad_enabled() and \
        not torch.is_autocast_enabled(x.device.type)


def resolve_logit_scale(logit_scale: Optional[float], scale: Optional[float], owner: str) -> float:
    """The ``logit_scale`` of ``owner``'s constructor, honouring the deprecated ``scale=``."""
    if scale is not None:
        if logit_scale is not None:
            raise TypeError(f"{owner}: give logit_scale only (scale is its deprecated name)")
        warnings.warn(f"{owner}(scale=...) is deprecated: the keyword is now logit_scale "
                      "(reach_scale is the other scale of OLTR)", DeprecationWarning, stacklevel=3)
        logit_scale = scale
    value = LOGIT_SCALE if logit_scale is None else float(logit_scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"logit_scale must be finite and > 0, got {logit_scale}")
    return value


class CosNormClassifier(nn.Module):
    """``logits = logit_scale * squash(v) @ (W / ||W_row||)^T``.

    * ``squash="code"`` (default, what the official code runs): ``v * ||v|| / (1 + ||v||) / ||v||``
      = ``v / (1 + ||v||)``, so ``|logit| < logit_scale``.
    * ``squash="paper"`` (paper Eq. 6): ``v * ||v||^2 / (1 + ||v||^2) / ||v||``.
    * ``logit_scale`` (default :data:`LOGIT_SCALE` = 16) is the official ``scale``; the
      ``scale=`` keyword and attribute still work but are deprecated (DeprecationWarning).

    Both squash forms are written without dividing by ``||v||``, so a zero row gives zero
    logits instead of the official NaN. Parameter ``weight`` (out_dims, in_dims), initialised
    U(-1/sqrt(in_dims), 1/sqrt(in_dims)) as the official code (state-dict key ``weight``).
    Input (B, in_dims) float, output (B, out_dims).

    At inference (eval mode, autograd off) the row-normalised weight is cached (a transposed
    (in_dims, out_dims) copy on the core path below; on the torch path an (out_dims, in_dims)
    copy, and a transposed one too once a single-row batch is seen) and
    rebuilt only when ``weight`` changes (:mod:`oltr.nn._weight_cache`); call :meth:`clear_cache`
    after writing the weight in place through ``weight.data``. With CPU float32 tensors and the
    Rust core the squash and the product run in one core call (:meth:`inference_logits`,
    :mod:`oltr.nn._products`: a row's logits have the same bits in any batch), otherwise with
    ``torch.mm``. Training and autograd always normalise on the fly.
    """

    def __init__(self, in_dims: int, out_dims: int, logit_scale: Optional[float] = None, squash: str = "code",
                 *, scale: Optional[float] = None) -> None:
        super().__init__()
        if int(in_dims) < 1 or int(out_dims) < 1:
            raise ValueError(f"in_dims and out_dims must be >= 1, got {in_dims} and {out_dims}")
        if squash not in _SQUASH_FORMS:
            raise ValueError(f"squash must be one of {_SQUASH_FORMS}, got {squash!r}")
        self.in_dims = int(in_dims)
        self.out_dims = int(out_dims)
        self.logit_scale = resolve_logit_scale(logit_scale, scale, type(self).__name__)
        self.squash = squash
        self.weight = nn.Parameter(torch.empty(self.out_dims, self.in_dims))
        self._unit_weight = DerivedCache()
        self._unit_weight_t = DerivedCache()  # transposed (core path; torch path: single rows)
        self.reset_parameters()

    @property
    def scale(self) -> float:
        """Deprecated name of :attr:`logit_scale`."""
        warnings.warn("CosNormClassifier.scale is deprecated: use logit_scale", DeprecationWarning, stacklevel=2)
        return self.logit_scale

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_dims)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def __setstate__(self, state: dict) -> None:
        # modules pickled before the rename kept ``scale`` and had no cache
        if "logit_scale" not in state and "scale" in state:
            state["logit_scale"] = state.pop("scale")
        state.setdefault("_unit_weight", DerivedCache())
        state.setdefault("_unit_weight_t", DerivedCache())
        super().__setstate__(state)

    def clear_cache(self) -> None:
        """Forget the cached normalised weight (needed only after in-place ``weight.data`` writes)."""
        self._unit_weight.clear()
        self._unit_weight_t.clear()

    def unit_weight(self) -> Tensor:
        """``W / ||W_row||`` (out_dims, in_dims), the weight's dtype and device: cached (no
        autograd) when autograd is off, computed with autograd otherwise."""
        if torch.is_grad_enabled():
            return _normalise_rows(self.weight)
        return self._unit_weight.get(self.weight, _normalise_rows)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dims:
            raise ValueError(f"x must have shape (B, {self.in_dims}), got {tuple(x.shape)}")
        if inference_fast_path(self, x):
            if _products.available(x, self.weight):
                return torch.from_numpy(self.inference_logits(_products.view(x)))
            return self._torch_inference(x)
        norm = x.norm(p=2, dim=1, keepdim=True)
        if self.squash == "code":
            squashed = x / (1.0 + norm)
        else:
            squashed = x * (norm / (1.0 + norm * norm))
        return torch.mm(self.logit_scale * squashed, _normalise_rows(self.weight).t())

    def _torch_inference(self, x: Tensor) -> Tensor:
        # one (B, D) multiply by the per-row factor, and the cached unit weight
        norm = x.norm(p=2, dim=1, keepdim=True)
        if self.squash == "code":
            factor = norm.add_(1.0).reciprocal_().mul_(self.logit_scale)
        else:
            factor = norm.mul(self.logit_scale).div_(norm.square().add_(1.0))
        if x.shape[0] == 1:
            return torch.mm(x * factor, self._unit_weight_t.get(self.weight, _normalised_transposed))
        return torch.mm(x * factor, self.unit_weight().t())

    def inference_logits(self, v: np.ndarray) -> np.ndarray:
        """The logits (B, K) of ``v`` (B, in_dims) float32 at inference, on the Rust core
        (:func:`oltr.nn._products.cosine_logits`, batch-invariant): ``v`` times its rows'
        squash factors times the cached transposed unit weight (in_dims, K). K is the cached
        weight's: ``out_dims`` may run ahead of it while a class is enrolled."""
        unit_t = _products.view(self._unit_weight_t.get(self.weight, _normalised_transposed))
        return _products.cosine_logits(v, unit_t, self.logit_scale, self.squash)

    def extra_repr(self) -> str:
        return (f"in_dims={self.in_dims}, out_dims={self.out_dims}, logit_scale={self.logit_scale}, "
                f"squash={self.squash!r}")


def _normalise_rows(weight: Tensor) -> Tensor:
    return weight / weight.norm(p=2, dim=1, keepdim=True)


def _normalised_transposed(weight: Tensor) -> Tensor:
    # (in_dims, out_dims) contiguous: the core path's weight for every batch (inference_logits);
    # the torch path's for a batch of one row, where torch.mm(x, .) runs ~2.5x faster than
    # x @ W.t() with MKL on this CPU (1 x 512 @ 512 x 1e4: ~0.8 vs ~2 ms). The torch path's
    # batches of more rows keep W.t(): with MKL and the transposed copy a row's logits would
    # depend on its batch.
    return _normalise_rows(weight).t().contiguous()
