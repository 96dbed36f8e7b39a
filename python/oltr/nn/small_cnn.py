"""Small CNN backbones for 28x28 (Fashion-MNIST) and 8x8 (sklearn digits) 1-channel images."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from oltr.nn._feature_head import PooledFeatureModel
from oltr.nn._init import official_backbone_init
from oltr.nn.attention import AttentionMaps

__all__ = ["SmallCNNFeature", "cnn28_feature", "cnn8_feature"]


class SmallCNNFeature(PooledFeatureModel):
    """Three conv3x3-BN-ReLU blocks, with 2x2 max-pooling after the first ``num_pools`` blocks,
    then (optionally) modulated attention on the last map, global average pooling and
    (optionally) ``relu(fc_add(.))`` -- the ResNet feature model's layout in miniature.

    ``image_size`` 28 -> pools 2 -> 7x7 maps; 8 -> pools 1 -> 4x4 maps. ``channels`` are the
    three block widths; the last is C. ``feat_dim`` is the direct feature size (must be C
    when ``use_fc_add`` is off; ``None``: C, or 64 with ``fc_add``). Attribute names
    ``modulatedatt`` and ``fc_add`` match the official ones, so name-based freezing (the
    official ``fix``) works the same.

    ``forward(images (B, in_channels, S, S)) -> (direct (B, feat_dim), AttentionMaps | None)``.
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential

    def __init__(self, image_size: int, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64),
                 use_attention: bool = False, use_fc_add: bool = True, feat_dim: Optional[int] = None,
                 num_pools: Optional[int] = None) -> None:
        super().__init__()
        if len(channels) != 3 or any(int(c) < 2 for c in channels):
            raise ValueError(f"channels must be 3 widths >= 2, got {list(channels)}")
        if num_pools is None:
            num_pools = 2 if image_size >= 16 else 1
        if not 0 <= num_pools <= 3 or image_size % (2 ** num_pools):
            raise ValueError(f"image_size {image_size} cannot be halved {num_pools} times")
        self.image_size = int(image_size)
        self.map_size = self.image_size // 2 ** num_pools
        widths = [in_channels, *(int(c) for c in channels)]
        for i in range(3):
            block = [nn.Conv2d(widths[i], widths[i + 1], kernel_size=3, padding=1, bias=False),
                     nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True)]
            if i < num_pools:
                block.append(nn.MaxPool2d(2))
            setattr(self, f"layer{i + 1}", nn.Sequential(*block))
        self._build_head(widths[-1], use_attention=use_attention, use_fc_add=use_fc_add, feat_dim=feat_dim,
                         fc_add_dim=64, spatial_size=(self.map_size, self.map_size))
        official_backbone_init(self)

    def forward(self, images: Tensor) -> tuple[Tensor, Optional[AttentionMaps]]:
        if images.dim() != 4 or tuple(images.shape[2:]) != (self.image_size, self.image_size):
            raise ValueError(f"images must have shape (B, C, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        x = self.layer3(self.layer2(self.layer1(images)))
        return self._head(x)


def cnn28_feature(**kwargs) -> SmallCNNFeature:
    """Small CNN for 28x28 1-channel images (Fashion-MNIST): 7x7 last map, C = 64, feat 64."""
    return SmallCNNFeature(image_size=28, **kwargs)


def cnn8_feature(**kwargs) -> SmallCNNFeature:
    """Small CNN for 8x8 1-channel images (sklearn digits): 4x4 last map, C = 64, feat 64."""
    return SmallCNNFeature(image_size=8, **kwargs)
