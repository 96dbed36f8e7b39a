"""Modulated attention (official ``ModulatedAttLayer``): non-local self-attention
modulated by a learned spatial attention."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["AttentionMaps", "ModulatedAttention"]


class AttentionMaps(NamedTuple):
    """Side outputs of :class:`ModulatedAttention` (the official ``feature_maps`` list).

    * ``input``: (B, C, H, W) the layer's input map.
    * ``spatial_attention``: (B, C, H, W) the softmax over the H*W positions, expanded over
      channels as in the official code (an expanded view: every channel holds the same map).
    * ``mask``: (B, C, H, W) ``conv_mask`` of the self-attention output.
    """

    input: Tensor
    spatial_attention: Tensor
    mask: Tensor


class ModulatedAttention(nn.Module):
    """``out = s * conv_mask(NL(x)) + x`` with ``NL`` the embedded-Gaussian non-local block and
    ``s = softmax(fc_spatial(flatten(x)))`` a spatial attention over the H*W positions.

    ``in_channels`` C, inter channels ``C // 2``; ``spatial_size`` (H, W) is fixed at
    construction because ``fc_spatial`` is ``Linear(H*W*C, H*W)`` (the official layer is
    hard-wired to 7x7, docs/official-differences.md D20). Parameters (official names): ``g``, ``theta``, ``phi``
    (``Conv2d(C, C//2, 1)``), ``conv_mask`` (``Conv2d(C//2, C, 1, bias=False)``), ``fc_spatial``.

    Init is the official standalone one (kaiming-normal fan_in g/theta/phi, zero biases, zero
    ``conv_mask``: an identity at start). Inside the official ResNet the backbone's conv-init
    loop overwrites it (docs/official-differences.md D2); :func:`oltr.nn.resnet10_feature` and friends reproduce that.

    ``forward(x (B, C, H, W)) -> (out (B, C, H, W), AttentionMaps)``.
    """

    def __init__(self, in_channels: int, spatial_size: tuple[int, int] | int = (7, 7)) -> None:
        super().__init__()
        if isinstance(spatial_size, int):
            spatial_size = (spatial_size, spatial_size)
        height, width = (int(v) for v in spatial_size)
        if int(in_channels) < 2:
            raise ValueError(f"in_channels must be >= 2, got {in_channels}")
        if height < 1 or width < 1:
            raise ValueError(f"spatial_size must be positive, got {spatial_size}")
        self.in_channels = int(in_channels)
        self.inter_channels = self.in_channels // 2
        self.spatial_size = (height, width)
        positions = height * width
        self.g = nn.Conv2d(self.in_channels, self.inter_channels, kernel_size=1)
        self.theta = nn.Conv2d(self.in_channels, self.inter_channels, kernel_size=1)
        self.phi = nn.Conv2d(self.in_channels, self.inter_channels, kernel_size=1)
        self.conv_mask = nn.Conv2d(self.inter_channels, self.in_channels, kernel_size=1, bias=False)
        self.fc_spatial = nn.Linear(positions * self.in_channels, positions)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official standalone ``init_weights``."""
        for conv in (self.g, self.theta, self.phi):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in")
            assert conv.bias is not None
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv_mask.weight)

    def forward(self, x: Tensor) -> tuple[Tensor, AttentionMaps]:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.spatial_size:
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, {self.spatial_size[0]}, {self.spatial_size[1]}), "
                f"got {tuple(x.shape)}")
        batch, channels, height, width = x.shape
        positions = height * width
        values = self.g(x).reshape(batch, self.inter_channels, positions).permute(0, 2, 1)
        queries = self.theta(x).reshape(batch, self.inter_channels, positions).permute(0, 2, 1)
        keys = self.phi(x).reshape(batch, self.inter_channels, positions)
        affinity = torch.softmax(torch.bmm(queries, keys), dim=-1)  # (B, N, N), no 1/sqrt(d)
        attended = torch.bmm(affinity, values).permute(0, 2, 1).reshape(batch, self.inter_channels, height, width)
        mask = self.conv_mask(attended)
        spatial = torch.softmax(self.fc_spatial(x.reshape(batch, positions * channels)), dim=1)
        spatial = spatial.view(batch, 1, height, width).expand(batch, channels, height, width)
        out = spatial * mask + x
        return out, AttentionMaps(input=x, spatial_attention=spatial, mask=mask)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, spatial_size={self.spatial_size}"
