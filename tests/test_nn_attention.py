"""ModulatedAttention against a plain re-statement of the official equations, and its init
(docs/official-differences.md D2)."""
from __future__ import annotations

import math

import pytest
import torch

from oltr.nn import ModulatedAttention, resnet10_feature


def _reference(layer, x):
    """the official equations line by line, with explicit weights (float64)."""
    b, c, h, w = x.shape
    n, ci = h * w, c // 2
    conv = lambda m, t: torch.einsum("oc,bchw->bohw", m.weight[:, :, 0, 0].double(), t) + (  # noqa: E731
        0 if m.bias is None else m.bias.double()[None, :, None, None])
    gx = conv(layer.g, x).reshape(b, ci, n).permute(0, 2, 1)
    th = conv(layer.theta, x).reshape(b, ci, n).permute(0, 2, 1)
    ph = conv(layer.phi, x).reshape(b, ci, n)
    attention = torch.softmax(th @ ph, dim=-1)
    y = (attention @ gx).permute(0, 2, 1).reshape(b, ci, h, w)
    mask = conv(layer.conv_mask, y)
    fc = layer.fc_spatial
    s = torch.softmax(x.reshape(b, n * c) @ fc.weight.double().t() + fc.bias.double(), dim=1)
    s = s.reshape(b, 1, h, w).expand(b, c, h, w)
    return s * mask + x, s, mask


@pytest.mark.parametrize("spatial", [(7, 7), (4, 5)])
def test_forward_matches_the_official_formulas(device, spatial):
    torch.manual_seed(0)
    layer = ModulatedAttention(32, spatial_size=spatial)
    for conv in (layer.g, layer.theta, layer.phi, layer.conv_mask):  # non-trivial weights
        torch.nn.init.normal_(conv.weight, 0.0, 0.2)
    layer = layer.to(device)
    x = torch.randn(4, 32, *spatial, device=device)
    out, maps = layer(x)
    ref_out, ref_s, ref_mask = _reference(layer, x.double())
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps.spatial_attention.double(), ref_s, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps.mask.double(), ref_mask, atol=1e-5, rtol=1e-5)
    assert maps.input is x
    torch.testing.assert_close(maps.spatial_attention[:, 0].sum(dim=(1, 2)), torch.ones(4, device=device))


def test_channels_last_maps_give_the_same_output():
    torch.manual_seed(0)
    layer = resnet10_feature(use_attention=True, use_fc_add=True).modulatedatt
    x = torch.randn(2, 512, 7, 7)
    expected, _ = layer(x)
    out, _ = layer(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    layer = resnet10_feature(use_attention=True, use_fc_add=True).modulatedatt  # D2 init: non-zero mask
    x = torch.randn(2, 512, 7, 7, requires_grad=True)
    out, _ = layer(x)
    out.square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad is not None


def test_standalone_init_is_an_identity_but_the_backbone_overwrites_it():
    torch.manual_seed(0)
    standalone = ModulatedAttention(64)
    assert torch.count_nonzero(standalone.conv_mask.weight) == 0
    x = torch.randn(2, 64, 7, 7)
    torch.testing.assert_close(standalone(x)[0], x)
    # D2: inside the ResNet the conv-init loop gives g/theta/phi std sqrt(2/C_i), conv_mask std sqrt(2/C)
    layer = resnet10_feature(use_attention=True, use_fc_add=True).modulatedatt
    assert torch.count_nonzero(layer.conv_mask.weight) > 0
    for name, expected in (("g", math.sqrt(2 / 256)), ("theta", math.sqrt(2 / 256)), ("phi", math.sqrt(2 / 256)),
                           ("conv_mask", math.sqrt(2 / 512))):
        std = float(getattr(layer, name).weight.detach().std())
        assert abs(std - expected) < 0.05 * expected, (name, std, expected)
    for name in ("g", "theta", "phi"):
        assert torch.count_nonzero(getattr(layer, name).bias) == 0


def test_rejects_a_wrong_map_size():
    layer = ModulatedAttention(8, spatial_size=(7, 7))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, 7, 7\)"):
        layer(torch.randn(1, 8, 6, 6))
    with pytest.raises(ValueError, match="in_channels"):
        ModulatedAttention(1)
