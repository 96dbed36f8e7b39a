"""ResNet feature extractors with the official structure and state-dict names.

``resnet10_feature`` = ``ResNet(BasicBlock, [1, 1, 1, 1])`` (ImageNet-LT) and
``resnet152_feature`` = ``ResNet(Bottleneck, [3, 8, 36, 3])`` (Places-LT). Keys match
``golden/real_model_keys.json`` (without the ``module.`` prefix): ``conv1``, ``bn1``,
``layer{1..4}.N.{conv,bn}*``, ``layerL.0.downsample.{0,1}``, then ``fc_add`` and ``modulatedatt``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

from torch import Tensor, nn

from oltr.nn._feature_head import PooledFeatureModel
from oltr.nn._init import official_backbone_init
from oltr.nn.attention import AttentionMaps

__all__ = ["BasicBlock", "Bottleneck", "ResNetFeature", "resnet10_feature", "resnet152_feature"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (torchvision's BasicBlock, official names)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 convs with a residual, expansion 4 (official names)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNetFeature(PooledFeatureModel):
    """Official ``ResNet`` feature model (``models/ResNetFeature.py``).

    ``forward(images (B, 3, H, W)) -> (direct (B, feat_dim), AttentionMaps | None)``::

        x = maxpool(relu(bn1(conv1(img)))); x = layer4(layer3(layer2(layer1(x))))
        x, maps = modulatedatt(x)          if use_attention
        x = mean over H, W                 (= official AvgPool2d(7) on a 7x7 map)
        x = relu(fc_add(x))                if use_fc_add   (Linear(C, feat_dim))

    The official net needs 224x224 input (7x7 maps, D20); here the pooling is global, and the
    attention's ``attention_spatial_size`` must equal the layer4 map size (input/32).
    ``out_channels`` is C (512 ResNet-10, 2048 ResNet-152) and ``feat_dim`` is the direct
    feature size (must be C when ``use_fc_add`` is off; ``None``: C, or 512 with ``fc_add``). Init: the official loop
    (:func:`oltr.nn._init.official_backbone_init`), run after attention and ``fc_add`` exist.
    """

    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: Sequence[int], use_attention: bool = False,
                 use_fc_add: bool = False, feat_dim: Optional[int] = None,
                 attention_spatial_size: tuple[int, int] = (7, 7), in_channels: int = 3) -> None:
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self._build_head(512 * block.expansion, use_attention=use_attention, use_fc_add=use_fc_add,
                         feat_dim=feat_dim, fc_add_dim=512, spatial_size=attention_spatial_size)
        official_backbone_init(self)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, int(blocks)))
        return nn.Sequential(*layers)

    def forward(self, images: Tensor) -> tuple[Tensor, Optional[AttentionMaps]]:
        if images.dim() != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self._head(x)


def resnet10_feature(use_attention: bool = False, use_fc_add: bool = False, feat_dim: Optional[int] = None,
                     **kwargs) -> ResNetFeature:
    """Official ImageNet-LT backbone ``ResNet(BasicBlock, [1,1,1,1])``, C = 512.

    Stage 1: ``use_attention=False, use_fc_add=False`` (72 state-dict tensors); stage 2: both
    True (83 tensors, 6,928,625 parameters). ``kwargs`` go to :class:`ResNetFeature`.
    """
    return ResNetFeature(BasicBlock, [1, 1, 1, 1], use_attention=use_attention, use_fc_add=use_fc_add,
                         feat_dim=feat_dim, **kwargs)


def resnet152_feature(use_attention: bool = False, use_fc_add: bool = True, feat_dim: Optional[int] = None,
                      **kwargs) -> ResNetFeature:
    """Official Places-LT backbone ``ResNet(Bottleneck, [3,8,36,3])``, C = 2048; ``fc_add``
    (2048 -> 512) in both stages, attention in stage 2. Large (~60-73 M parameters): build it
    under ``torch.device("meta")`` to inspect shapes cheaply.
    """
    return ResNetFeature(Bottleneck, [3, 8, 36, 3], use_attention=use_attention, use_fc_add=use_fc_add,
                         feat_dim=feat_dim, **kwargs)
