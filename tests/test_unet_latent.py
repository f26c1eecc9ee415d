"""The latent Refusion U-Net compressor (paper §4.1, Fig. 3/4): shapes and padding, channel
bookkeeping, the official sizes, skip wiring, locality (what makes tiling possible) and the
latent-replacing loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from irctl.nets.layers import pad_to_multiple
from irctl.nets.unet_latent import CompressorConfig, UNetCompressor, latent_replacing_loss


def _model(seed: int = 0, **kwargs) -> UNetCompressor:
    torch.manual_seed(seed)
    return UNetCompressor(CompressorConfig(**{"channels": 4, **kwargs}))


def _receptive_radius(cfg: CompressorConfig) -> int:
    """Upper bound on how far (in image pixels, per axis) an input pixel can influence an output
    pixel, layer by layer along the deepest path (the skip paths are shorter). A k×k conv at
    jump j adds (k // 2)·j; the 4×4 stride-2 conv (padding 1) reaches 2 pixels to one side;
    nearest ×2 upsampling shifts by less than the coarse jump."""
    r, levels = 1, len(cfg.mult)  # init 3×3
    for i in range(levels):  # encoder
        j = 2**i
        r += cfg.blocks * 2 * j + (j if i == levels - 1 else 2 * j)
    for i in reversed(range(levels)):  # decoder
        j = 2**i
        r += cfg.blocks * 2 * j + (1 if i == 0 else j + j // 2)
    return r + 1  # final 3×3


@pytest.mark.parametrize(
    "h,w,dtype", [(667, 1001, torch.float32), (37, 53, torch.float32), (37, 53, torch.float64)]
)
def test_round_trip_keeps_odd_sizes_and_dtype(h, w, dtype):
    model = _model().to(dtype)
    x = torch.rand(1, 3, h, w, dtype=dtype)
    with torch.no_grad():
        z, skips = model.encode(x)
        y = model.decode(z, skips)
    # Padded to a multiple of 8, then /4: 667×1001 → 672×1008 → 168×252; 37×53 → 10×14.
    expected = (math.ceil(h / 8) * 2, math.ceil(w / 8) * 2)
    assert z.shape == (1, 4, *expected) and model.latent_size(h, w) == expected
    assert y.shape == x.shape and y.dtype == z.dtype == dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("mult,factor", [((1, 2, 4), 4), ((1, 2, 2, 4), 8)])
@pytest.mark.parametrize("blocks", [1, 3])
def test_factor_and_channel_bookkeeping(mult, factor, blocks):
    cfg = CompressorConfig(channels=2, mult=mult, latent_channels=3, blocks=blocks)
    assert cfg.factor == factor and cfg.multiple == 2 * factor
    model = UNetCompressor(cfg)
    x = torch.rand(2, 3, 40, 23)
    with torch.no_grad():
        z, skips = model.encode(x)
        y = model.decode(z, skips)
    assert z.shape == (2, 3, *model.latent_size(40, 23))
    assert model.latent_size(40, 23) == (-(-40 // (2 * factor)) * 2, -(-23 // (2 * factor)) * 2)
    # H = init feature + `blocks` outputs per level, level i at width c_i and stride 2^i.
    widths = cfg.widths
    expected = [(widths[0], 1)] + [
        (widths[i], 2**i) for i in range(len(mult)) for _ in range(blocks)
    ]
    padded = skips.features[0].shape[-2:]
    assert [(f.shape[1], padded[0] // f.shape[-2]) for f in skips.features] == expected
    assert skips.features[-1].shape[-2:] == z.shape[-2:] and skips.size == (40, 23)
    assert y.shape == x.shape


def test_official_configs_have_the_official_sizes():
    """Fact sheet §3.3: bokeh (ch 64, [1,2,4], embed 4) 6.16M, the paper's "6M"; dehaze
    (ch 8, [4,8,8,16], embed 8) 2.01M. Both with the official deepest-level attention."""

    def params(**kw) -> float:
        model = UNetCompressor(CompressorConfig(attention=True, **kw))
        return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)

    assert params(channels=64, mult=(1, 2, 4), latent_channels=4) == 6.16
    assert params(channels=8, mult=(4, 8, 8, 16), latent_channels=8) == 2.01


def test_decoder_uses_the_skips_and_the_latent():
    model = _model()
    lq, gt = torch.rand(2, 1, 3, 32, 48)
    with torch.no_grad():
        z_lq, h_lq = model.encode(lq)
        z_gt, h_gt = model.encode(gt)
        base = model.decode(z_lq, h_lq)
        assert not torch.allclose(model.decode(z_lq, h_gt), base)  # other skips
        assert not torch.allclose(model.decode(z_gt, h_lq), base)  # other latent
        with pytest.raises(ValueError, match="does not match skips"):
            model.decode(z_lq[..., :-2, :], h_lq)


def test_padding_is_reflect_at_the_bottom_right_and_cropped_back():
    model = _model()
    x = torch.rand(1, 3, 30, 45)
    manual = F.pad(x, (0, 3, 0, 2), mode="reflect")  # to 32×48, a multiple of 8
    with torch.no_grad():
        z, skips = model.encode(x)
        assert torch.equal(skips.features[0], model.init(manual))
        # The same computation as on the manually padded image, cropped at the top left.
        assert torch.equal(model(x), model(manual)[..., :30, :45])
        z_manual, skips_manual = model.encode(manual)  # no further padding for a multiple
    assert torch.equal(z, z_manual) and skips_manual.size == (32, 48)
    assert pad_to_multiple(manual, 8) is manual


@pytest.mark.parametrize("h,w", [(3, 5), (1, 1), (8, 3)])
def test_tiny_inputs_fall_back_to_replicate_padding(h, w):
    x = torch.rand(1, 3, h, w)
    padded = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 8) and torch.equal(padded[..., :h, :w], x)
    assert torch.equal(padded[..., -1, -1], x[..., -1, -1])  # replicated corner
    with torch.no_grad():
        assert _model()(x).shape == x.shape


def test_compressor_is_local_without_attention_and_global_with_it():
    size = 192
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    y = x.clone()
    y[..., -1, -1] += 1.0  # bottom-right corner
    radius = _receptive_radius(CompressorConfig(channels=4))
    assert radius == 78 and 2 * radius < size  # the top-left corner is out of reach
    for attention in (False, True):
        model = _model(attention=attention)
        with torch.no_grad():
            changed = (model(x) - model(y)).abs().amax(dim=(0, 1)) > 0
        rows, cols = changed.nonzero().unbind(1)
        assert changed[-1, -1]
        if attention:  # global: the far corner changes too
            assert changed[: size // 4, : size // 4].any()
        else:  # every changed pixel lies within the receptive field of the perturbed one
            assert (size - 1 - rows).max() <= radius and (size - 1 - cols).max() <= radius


def test_encoding_a_crop_matches_the_full_encoding_away_from_its_edges():
    """What tiled encoding relies on: a tile's latent equals the image's, away from its edges."""
    model = _model()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z_full, _ = model.encode(x)
        z_tile, _ = model.encode(x[..., :96, :96])
    # The encoder reaches 39 pixels: latent rows/cols < (96 − 40) / 4 = 14 cannot see the edge.
    torch.testing.assert_close(z_tile[..., :14, :14], z_full[..., :14, :14], rtol=0, atol=1e-6)
    assert not torch.allclose(z_tile[..., -1, -1], z_full[..., 23, 23])


def test_latent_replacing_loss_scalars_and_gradients():
    model = _model()
    lq, gt = torch.rand(2, 2, 3, 24, 40)
    loss, scalars = latent_replacing_loss(model, lq, gt)
    assert set(scalars) == {"loss", "rec_lq", "rec_gt", "latent_reg"}
    assert all(math.isfinite(v) for v in scalars.values()) and loss.ndim == 0
    total = scalars["rec_lq"] + scalars["rec_gt"] + 0.001 * scalars["latent_reg"]
    assert scalars["loss"] == pytest.approx(total, rel=1e-5)
    loss.backward()
    for name in ("init", "enc_blocks", "downs", "to_latent", "from_latent", "dec_blocks", "final"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name
    with torch.no_grad():
        _, same = latent_replacing_loss(model, lq, lq.clone())
    assert same["rec_lq"] == same["rec_gt"]


def test_a_few_adam_steps_reduce_the_loss():
    model = _model(seed=1, channels=8)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    gt = (lq * 0.8 + 0.1).clamp(0, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, scalars = latent_replacing_loss(model, lq, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(scalars["loss"])
    assert losses[-1] < 0.5 * losses[0]
