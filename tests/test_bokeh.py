"""Synthetic lens bokeh (thin-lens CoC, brand-specific aperture shapes) and the lens registry."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from irctl.data.bokeh import bokeh_pair, disc_kernel, render_bokeh
from irctl.data.lenses import LENSES, UnknownLensError, parse_lens

NTIRE_NAMES = {
    "Sony50mmf1.8BS",
    "Sony50mmf16.0BS",
    "Canon50mmf1.8BS",
    "Canon50mmf1.4BS",
    "Canon50mmf16.0BS",
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _texture(n: int = 1, h: int = 48, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, h, w), generator=_gen(seed))


def _laplacian_energy(x: torch.Tensor) -> float:
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    weight = lap.expand(x.shape[1], 1, 3, 3)
    return float(F.conv2d(x, weight, groups=x.shape[1]).pow(2).mean())


def _radial_moment(kernel: torch.Tensor) -> float:
    """E[r²] of the kernel seen as a distribution over pixel offsets."""
    half = kernel.shape[0] // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(offsets, offsets, indexing="ij")
    return float((kernel * (yy**2 + xx**2)).sum())


# --- kernels -------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.6, 1.0, 2.3, 5.0, 9.7])
@pytest.mark.parametrize("rim", [1.0, 1.6])
def test_disc_kernel_is_normalised_odd_and_symmetric(radius: float, rim: float):
    k = disc_kernel(radius, rim)
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert (k >= 0).all()
    for image in (k.flip(0), k.flip(1), k.T):
        assert torch.allclose(k, image, atol=1e-7)


@pytest.mark.parametrize("radius", [0.0, 0.2, 0.49])
def test_small_radius_is_a_delta(radius: float):
    assert torch.equal(disc_kernel(radius), torch.ones((1, 1)))


def test_disc_kernel_is_antialiased():
    """The spread grows with every sub-pixel step of the radius (a hard-edged disc would only
    change when the radius crosses a pixel centre), and E[r²] ≈ R²/2 as for a uniform disc."""
    moments = [_radial_moment(disc_kernel(r)) for r in torch.arange(0.6, 4.0, 0.1).tolist()]
    assert all(b > a for a, b in itertools.pairwise(moments))
    assert _radial_moment(disc_kernel(6.0)) == pytest.approx(6.0**2 / 2, rel=0.03)


def test_canon_rim_puts_more_weight_on_the_outer_ring():
    radius = 6.0
    sony, canon = disc_kernel(radius, 1.0), disc_kernel(radius, 1.6)
    half = sony.shape[0] // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(offsets, offsets, indexing="ij")
    ring = (yy**2 + xx**2).sqrt() > 0.75 * radius
    assert float(canon[ring].sum()) > float(sony[ring].sum()) + 0.05
    assert _radial_moment(canon) > _radial_moment(sony)


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("lens", ["Canon50mmf1.4BS", "Sony50mmf1.8BS"])
def test_constant_image_stays_constant(lens: str):
    """Normalised convolution: no dark halos where depth layers meet, nor at the borders."""
    flat = torch.full((2, 3, 40, 40), 0.7)
    depth = torch.rand((2, 1, 40, 40), generator=_gen(1))
    out = render_bokeh(flat, depth, torch.tensor([0.1, 0.4]), parse_lens(lens), max_radius=8.0)
    assert torch.allclose(out, flat, atol=1e-5)


def test_in_focus_pixels_stay_sharp_and_far_pixels_blur():
    sharp = _texture(h=48, w=64)
    depth = torch.full((1, 1, 48, 64), 0.2)
    depth[..., 32:] = 1.0  # left half at the focus depth, right half far behind it
    out = render_bokeh(sharp, depth, torch.tensor([0.2]), LENSES["Sony50mmf1.8BS"], 6.0)
    margin = 8  # beyond the largest kernel radius (6 px) from the depth edge
    assert torch.allclose(out[..., : 32 - margin], sharp[..., : 32 - margin], atol=1e-6)
    far_out, far_sharp = out[..., 8:-8, 32 + margin : -8], sharp[..., 8:-8, 32 + margin : -8]
    assert far_out.std() < 0.3 * far_sharp.std()


def test_wider_apertures_blur_more():
    sharp = _texture(h=40, w=40, seed=2)
    depth = torch.rand((1, 1, 40, 40), generator=_gen(3))
    focus = torch.tensor([0.1])
    energy = {
        name: _laplacian_energy(render_bokeh(sharp, depth, focus, LENSES[name], 8.0))
        for name in ("Canon50mmf1.4BS", "Canon50mmf1.8BS", "Canon50mmf16.0BS")
    }
    assert (
        energy["Canon50mmf1.4BS"]
        < energy["Canon50mmf1.8BS"]
        < energy["Canon50mmf16.0BS"]
        < _laplacian_energy(sharp)
    )


def test_brands_render_differently_at_the_same_aperture():
    sharp = _texture(h=32, w=32, seed=4)
    depth = torch.full((1, 1, 32, 32), 1.0)
    focus = torch.tensor([0.0])
    sony = render_bokeh(sharp, depth, focus, LENSES["Sony50mmf1.8BS"], 6.0)
    canon = render_bokeh(sharp, depth, focus, LENSES["Canon50mmf1.8BS"], 6.0)
    assert (sony - canon).abs().mean() > 1e-3


# --- pairs ---------------------------------------------------------------------------------


def test_bokeh_pair_codes_match_distinct_lenses_and_renders():
    names = ("Sony50mmf16.0BS", "Canon50mmf1.4BS")
    clean = _texture(n=6, h=32, w=32, seed=5)
    lq, gt, codes = bokeh_pair(clean, _gen(6), names, 8.0)
    assert lq.shape == gt.shape == clean.shape
    assert codes.shape == (6, 2) and codes.dtype == torch.float32
    assert torch.isin(codes, torch.tensor([16.0, -1.4])).all()
    assert (codes[:, 0] != codes[:, 1]).all()
    for i in range(6):
        # The f/16 side of each pair is the sharp one: the renders follow the codes.
        sharper_is_lq = _laplacian_energy(lq[i : i + 1]) > _laplacian_energy(gt[i : i + 1])
        assert sharper_is_lq == (float(codes[i, 0]) > 0)


def test_bokeh_pair_codes_are_the_lens_codes():
    names = tuple(LENSES)
    _, _, codes = bokeh_pair(_texture(n=8, h=16, w=16), _gen(7), names, 4.0)
    known = torch.tensor([lens.code for lens in LENSES.values()], dtype=torch.float32)
    assert torch.isin(codes, known).all()
    assert (codes[:, 0] != codes[:, 1]).all()


def test_bokeh_pair_is_seed_deterministic():
    clean = _texture(n=3, h=24, w=24, seed=8)
    names = tuple(LENSES)
    first = bokeh_pair(clean, _gen(9), names, 6.0)
    again = bokeh_pair(clean, _gen(9), names, 6.0)
    other = bokeh_pair(clean, _gen(10), names, 6.0)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_bokeh_pair_needs_two_known_lenses():
    with pytest.raises(ValueError):
        bokeh_pair(_texture(), _gen(0), ("Sony50mmf1.8BS",), 4.0)
    with pytest.raises(UnknownLensError):
        bokeh_pair(_texture(), _gen(0), ("Sony50mmf1.8BS", "Nikon50mmf1.8BS"), 4.0)


# --- lens registry -------------------------------------------------------------------------


def test_registry_holds_exactly_the_ntire_lenses():
    assert set(LENSES) == NTIRE_NAMES
    assert all(name == lens.name for name, lens in LENSES.items())


def test_lens_codes_follow_refusion():
    assert parse_lens("Canon50mmf1.8BS").code == pytest.approx(-1.8)
    assert parse_lens("Canon50mmf1.4BS").code == pytest.approx(-1.4)
    assert parse_lens("Sony50mmf16.0BS").code == pytest.approx(16.0)
    for lens in LENSES.values():
        assert (lens.code < 0) == (lens.brand == "Canon")
        assert abs(lens.code) == lens.f_number


def test_parse_lens_exact_and_case_insensitive():
    assert parse_lens("Sony50mmf1.8BS") is LENSES["Sony50mmf1.8BS"]
    assert parse_lens("canon50MMF1.4bs") is LENSES["Canon50mmf1.4BS"]


def test_unknown_lens_message_lists_every_lens():
    with pytest.raises(UnknownLensError) as info:
        parse_lens("Sony85mmf1.4BS")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and "Sony85mmf1.4BS" in message
    assert all(name in message for name in NTIRE_NAMES)


def test_disparity_conditioned_pairs_carry_the_preset_disparity_after_the_lens_codes():
    """Synthetic renders have no NTIRE disparity: a disparity-conditioned preset labels every
    pair with its ``bokeh_disparity``, so training and held-out tables feed the net 3 scalars."""
    from irctl.config import DegradationConfig
    from irctl.data.degrade import build_pair_synthesis

    lenses = ("Sony50mmf1.8BS", "Canon50mmf16.0BS")
    clean = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    plain = DegradationConfig(kind="bokeh", lenses=lenses)
    with_disparity = DegradationConfig(kind="bokeh", lenses=lenses, bokeh_disparity=35.0)
    a = build_pair_synthesis(plain)(clean, torch.Generator().manual_seed(1))
    b = build_pair_synthesis(with_disparity)(clean, torch.Generator().manual_seed(1))
    assert a.cond.shape == (3, 2) and b.cond.shape == (3, 3)
    assert torch.equal(b.cond[:, :2], a.cond) and torch.all(b.cond[:, 2] == 35.0)
    assert torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)
