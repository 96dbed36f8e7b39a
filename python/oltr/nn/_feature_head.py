"""The part every backbone shares after its last feature map: optional modulated attention,
global average pooling and an optional ``relu(fc_add(.))`` (official ``ResNetFeature`` layout).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from oltr.nn.attention import AttentionMaps, ModulatedAttention

__all__ = ["PooledFeatureModel"]


class PooledFeatureModel(nn.Module):
    """Base class of the feature models: subclasses build their trunk, then call
    :meth:`_build_head`, and end ``forward`` with :meth:`_head`.

    Attribute names ``fc_add`` and ``modulatedatt`` are the official ones (created in that
    order, as in the official state dict), so name-based freezing and checkpoint keys match.
    """

    out_channels: int
    feat_dim: int
    use_attention: bool
    use_fc_add: bool

    def _build_head(self, out_channels: int, *, use_attention: bool, use_fc_add: bool,
                    feat_dim: Optional[int], fc_add_dim: int, spatial_size: tuple[int, int]) -> None:
        """``feat_dim`` must equal ``out_channels`` without ``fc_add``; ``None`` picks
        ``out_channels``, or ``fc_add_dim`` with ``fc_add``."""
        self.out_channels = int(out_channels)
        self.use_fc_add = bool(use_fc_add)
        self.use_attention = bool(use_attention)
        if feat_dim is None:
            feat_dim = fc_add_dim if self.use_fc_add else self.out_channels
        if not self.use_fc_add and int(feat_dim) != self.out_channels:
            raise ValueError(f"feat_dim must be {self.out_channels} (the pooled map) when use_fc_add is False, "
                             f"got {feat_dim}")
        self.feat_dim = int(feat_dim)
        if self.use_fc_add:
            self.fc_add = nn.Linear(self.out_channels, self.feat_dim)
        if self.use_attention:
            self.modulatedatt = ModulatedAttention(self.out_channels, spatial_size=spatial_size)

    def _head(self, x: Tensor) -> tuple[Tensor, Optional[AttentionMaps]]:
        """Last map (B, C, H, W) -> (direct feature (B, feat_dim), attention maps or None)."""
        maps = None
        if self.use_attention:
            x, maps = self.modulatedatt(x)
        x = x.mean(dim=(2, 3))
        if self.use_fc_add:
            x = torch.relu(self.fc_add(x))
        return x, maps
