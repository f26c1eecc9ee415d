"""ICNR initialisation of NAFNet's pixel-shuffle upsamplers: nearest-neighbour at the start."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from irctl.nets.nafnet import NAFNet, NAFNetConfig, icnr_


def _sub_pixels(y: torch.Tensor) -> torch.Tensor:
    """N×C×H×W → N×C×(H/2)×(W/2)×4: each 2×2 output block's four values."""
    n, c, h, w = y.shape
    return y.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, -1, 4)


def test_icnr_upsampler_is_conv_then_nearest_neighbour() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, bias=True)
    nn.init.normal_(conv.bias)
    icnr_(conv)
    x = torch.randn(2, 8, 5, 7)
    y = nn.PixelShuffle(2)(conv(x))
    blocks = _sub_pixels(y)
    torch.testing.assert_close(blocks, blocks[..., :1].expand_as(blocks))
    assert y.std() > 0.1  # not a degenerate (zero) initialisation


def test_default_init_upsampler_has_a_checkerboard() -> None:
    """What ICNR removes: PyTorch's default gives each sub-pixel its own weights."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, bias=False)
    blocks = _sub_pixels(nn.PixelShuffle(2)(conv(torch.randn(2, 8, 5, 7))))
    assert (blocks - blocks[..., :1]).abs().max() > 0.1


def test_icnr_rejects_a_conv_that_cannot_shuffle() -> None:
    with pytest.raises(ValueError, match="do not shuffle"):
        icnr_(nn.Conv2d(4, 6, 1))


def test_nafnet_icnr_only_changes_the_upsamplers() -> None:
    torch.manual_seed(0)
    plain = NAFNet(NAFNetConfig(width=8))
    torch.manual_seed(0)
    icnr = NAFNet(NAFNetConfig(width=8, icnr=True))
    assert plain.state_dict().keys() == icnr.state_dict().keys()
    for up in icnr.body.ups:
        blocks = _sub_pixels(up(torch.randn(1, up[0].in_channels, 4, 4)))
        torch.testing.assert_close(blocks, blocks[..., :1].expand_as(blocks))
    # the same seed gives the same weights everywhere but the upsampler convs
    differing = {
        k for k, v in plain.state_dict().items() if not torch.equal(v, icnr.state_dict()[k])
    }
    assert differing and all(k.startswith("body.ups.") for k in differing)
