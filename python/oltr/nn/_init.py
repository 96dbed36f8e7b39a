"""The official backbone init loop (``ResNetFeature.py:116-122``), shared by every backbone."""
from __future__ import annotations

import math

from torch import nn

__all__ = ["official_backbone_init"]


def official_backbone_init(module: nn.Module) -> None:
    """Every ``Conv2d`` weight ~ N(0, sqrt(2 / (k_h * k_w * out_channels))); every
    ``BatchNorm2d`` weight 1, bias 0; Linear layers untouched.

    Run after the attention layer exists, as the official code does: it overwrites the
    attention's own init, so ``conv_mask`` is not zero (docs/official-differences.md D2). Conv biases are untouched.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
