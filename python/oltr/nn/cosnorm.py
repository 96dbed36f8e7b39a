"""Cosine-normalised classifier (official ``CosNorm_Classifier``; docs/official-differences.md D1)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CosNormClassifier"]

_SQUASH_FORMS = ("code", "paper")


class CosNormClassifier(nn.Module):
    """``logits = scale * squash(v) @ (W / ||W_row||)^T``.

    * ``squash="code"`` (default, what the official code runs): ``v * ||v|| / (1 + ||v||) / ||v||``
      = ``v / (1 + ||v||)``, so ``|logit| < scale``.
    * ``squash="paper"`` (paper Eq. 6): ``v * ||v||^2 / (1 + ||v||^2) / ||v||``.

    Both are written without dividing by ``||v||``, so a zero row gives zero logits instead of
    the official NaN. Parameter ``weight`` (out_dims, in_dims), initialised U(-1/sqrt(in_dims),
    1/sqrt(in_dims)) as the official code. Input (B, in_dims) float, output (B, out_dims).
    """

    def __init__(self, in_dims: int, out_dims: int, scale: float = 16.0, squash: str = "code") -> None:
        super().__init__()
        if int(in_dims) < 1 or int(out_dims) < 1:
            raise ValueError(f"in_dims and out_dims must be >= 1, got {in_dims} and {out_dims}")
        if squash not in _SQUASH_FORMS:
            raise ValueError(f"squash must be one of {_SQUASH_FORMS}, got {squash!r}")
        self.in_dims = int(in_dims)
        self.out_dims = int(out_dims)
        self.scale = float(scale)
        self.squash = squash
        self.weight = nn.Parameter(torch.empty(self.out_dims, self.in_dims))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_dims)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dims:
            raise ValueError(f"x must have shape (B, {self.in_dims}), got {tuple(x.shape)}")
        norm = x.norm(p=2, dim=1, keepdim=True)
        if self.squash == "code":
            squashed = x / (1.0 + norm)
        else:
            squashed = x * (norm / (1.0 + norm * norm))
        unit_weight = self.weight / self.weight.norm(p=2, dim=1, keepdim=True)
        return torch.mm(self.scale * squashed, unit_weight.t())

    def extra_repr(self) -> str:
        return f"in_dims={self.in_dims}, out_dims={self.out_dims}, scale={self.scale}, squash={self.squash!r}"
