"""CosNormClassifier: the code form (D1), the paper form, bounds and edge cases."""
from __future__ import annotations

import math

import pytest
import torch

from oltr.nn import CosNormClassifier


def _reference(x, weight, scale, squared):
    norm = x.norm(dim=1, keepdim=True)
    factor = norm ** 2 / (1 + norm ** 2) if squared else norm / (1 + norm)
    return (scale * factor * x / norm) @ (weight / weight.norm(dim=1, keepdim=True)).t()


@pytest.mark.parametrize("squash,squared", [("code", False), ("paper", True)])
def test_matches_the_formula(squash, squared):
    torch.manual_seed(0)
    layer = CosNormClassifier(16, 5, logit_scale=16.0, squash=squash)
    x = torch.randn(6, 16, dtype=torch.float64) * torch.tensor([0.01, 0.5, 1, 3, 10, 100], dtype=torch.float64)[:, None]
    layer = layer.double()
    torch.testing.assert_close(layer(x), _reference(x, layer.weight, 16.0, squared))


def test_logits_are_bounded_by_the_scale_and_a_zero_row_is_finite():
    torch.manual_seed(0)
    layer = CosNormClassifier(8, 4)
    x = torch.randn(5, 8) * 1e4
    assert layer(x).abs().max() < 16.0
    assert torch.equal(layer(torch.zeros(2, 8)), torch.zeros(2, 4))


def test_init_bound_and_errors():
    layer = CosNormClassifier(100, 7)
    assert layer.weight.abs().max() <= 1 / math.sqrt(100)
    with pytest.raises(ValueError, match="squash must be one of"):
        CosNormClassifier(4, 2, squash="square")
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        CosNormClassifier(4, 2)(torch.zeros(3, 5))
