"""Backbones: official ResNet structure and init, small CNNs for 28x28 and 8x8 images."""
from __future__ import annotations

import math

import pytest
import torch

from oltr.nn import ResNetFeature, cnn8_feature, cnn28_feature, resnet10_feature, resnet152_feature


def test_official_conv_and_bn_init():
    torch.manual_seed(0)
    net = resnet10_feature()
    conv = net.layer3[0].conv1  # 3x3, 256 out
    assert abs(float(conv.weight.detach().std()) - math.sqrt(2 / (9 * 256))) < 0.03 * math.sqrt(2 / (9 * 256))
    assert torch.equal(net.bn1.weight, torch.ones(64)) and torch.equal(net.bn1.bias, torch.zeros(64))
    assert net.feat_dim == 512 and net.out_channels == 512


def test_resnet152_structure_on_the_meta_device():
    with torch.device("meta"):
        net = resnet152_feature(use_attention=True)
    assert net.out_channels == 2048 and net.feat_dim == 512
    assert tuple(net.modulatedatt.fc_spatial.weight.shape) == (49, 100352)
    assert len(net.layer3) == 36 and net.layer2[0].conv2.stride == (2, 2)


def test_attention_spatial_size_follows_the_input_size():
    torch.manual_seed(0)
    net = resnet10_feature(use_attention=True, use_fc_add=True, attention_spatial_size=(4, 4))
    features, maps = net(torch.randn(2, 3, 128, 128))
    assert features.shape == (2, 512) and maps.mask.shape == (2, 512, 4, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 512, 4, 4\)"):
        net(torch.randn(2, 3, 224, 224))


@pytest.mark.parametrize("factory,size,map_size", [(cnn28_feature, 28, 7), (cnn8_feature, 8, 4)])
def test_small_cnns(factory, size, map_size):
    torch.manual_seed(0)
    net = factory(use_attention=True)
    features, maps = net(torch.randn(3, 1, size, size))
    assert features.shape == (3, 64) and maps.mask.shape == (3, 64, map_size, map_size)
    assert torch.count_nonzero(net.modulatedatt.conv_mask.weight) > 0  # the backbone init loop, as D2
    plain, none = factory(use_fc_add=False)(torch.randn(3, 1, size, size))
    assert plain.shape == (3, 64) and none is None
    params = sum(p.numel() for p in factory().parameters())
    assert params < 50_000
    with pytest.raises(ValueError, match=f"images must have shape \\(B, C, {size}, {size}\\)"):
        net(torch.randn(3, 1, size + 2, size + 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="layers must be 4"):
        ResNetFeature(resnet10_feature().layer1[0].__class__, [1, 1, 1])
    with pytest.raises(ValueError, match="feat_dim must be 512"):
        resnet10_feature(feat_dim=256)
    with pytest.raises(ValueError, match="cannot be halved"):
        cnn8_feature(num_pools=4)
