"""The defocus synthesis (irctl/data/defocus.py) and its oracle baseline: seeded, a pixel at the
focal plane untouched, the blur a uniform disc whose radius grows with |depth − focus|, and the
CoC map it keeps being the one that made the pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.config import DegradationConfig
from irctl.data.bokeh import disc_kernel, luminance_depth
from irctl.data.datasets import load_photo
from irctl.data.defocus import (
    DefocusParams,
    add_defocus,
    coc_map,
    defocus_depth,
    render_defocus,
)
from irctl.data.degrade import DEGRADATIONS, build_pair_synthesis, quantize_8bit
from irctl.data.fields import depth_proxy, normalize_per_sample
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import psnr
from irctl.tasks import get_task


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    crops = [load_photo("astronaut")[:96, 150:246], load_photo("coffee")[100:196, 200:296]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def _pair(photos: torch.Tensor, seed: int, **fields: object):
    synth = build_pair_synthesis(DegradationConfig(kind="defocus", **fields))
    return synth(photos, torch.Generator().manual_seed(seed))


def _laplacian_energy(x: torch.Tensor) -> float:
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
    lap = lap - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float((lap**2).mean())


def test_registered_seeded_and_on_the_8bit_grid(photos: torch.Tensor) -> None:
    assert "defocus" in DEGRADATIONS
    assert get_task("defocus").classical == ("richardson-lucy-disc-oracle", "unsharp-mask")
    first, again, other = _pair(photos, 5), _pair(photos, 5), _pair(photos, 6)
    assert first.lq.shape == photos.shape and first.lq.dtype == photos.dtype
    assert first.lq.numpy().tobytes() == again.lq.numpy().tobytes()
    assert np.array_equal(first.known[0]["coc"], again.known[0]["coc"])
    assert not torch.equal(first.lq, other.lq)
    assert torch.equal(first.gt, photos)
    assert torch.equal(first.lq, quantize_8bit(first.lq))
    assert not torch.equal(first.lq, quantize_8bit(photos))


def test_at_the_focal_plane_the_photo_is_untouched(photos: torch.Tensor) -> None:
    assert torch.equal(render_defocus(photos, torch.zeros_like(photos[:, :1])), photos)
    # no defocus anywhere: the pair is the photo, stored as 8 bits
    pair = _pair(photos, 3, defocus_max_radius=(0.0, 0.0))
    assert torch.equal(pair.lq, quantize_8bit(photos))
    assert float(np.abs(pair.known[0]["coc"]).max()) == 0.0


def test_blur_grows_with_the_distance_from_the_focal_plane(photos: torch.Tensor) -> None:
    depth = torch.full_like(photos[:, :1], 0.8)
    energies, errors = [], []
    for focus in (0.8, 0.7, 0.5, 0.2):
        coc = coc_map(depth, torch.tensor(focus), torch.tensor(6.0))
        assert torch.allclose(coc, torch.full_like(coc, 6.0 * abs(0.8 - focus)))
        out = render_defocus(photos, coc)
        energies.append(_laplacian_energy(out))
        errors.append(float((out - photos).abs().mean()))
    assert energies[0] > energies[1] > energies[2] > energies[3]
    assert errors[0] < 1e-6 < errors[1] < errors[2] < errors[3]


def test_the_in_focus_half_stays_sharp_and_the_other_half_blurs(photos: torch.Tensor) -> None:
    coc = torch.zeros_like(photos[:, :1])
    coc[..., 48:] = 5.0
    out = render_defocus(photos, coc)
    # away from the boundary (5 px: the disc's reach) the focused half is the photo exactly
    assert torch.equal(out[..., :43], photos[..., :43])
    assert _laplacian_energy(out[..., 54:]) < 0.3 * _laplacian_energy(photos[..., 54:])


def test_a_point_becomes_a_uniform_disc_of_the_coc_radius() -> None:
    point = torch.zeros(1, 3, 41, 41)
    point[..., 20, 20] = 1.0
    for radius in (2.0, 4.0, 7.0):
        out = render_defocus(point, torch.full((1, 1, 41, 41), radius))
        kernel = disc_kernel(radius)
        half = kernel.shape[-1] // 2
        spot = out[0, 0, 20 - half : 21 + half, 20 - half : 21 + half]
        assert torch.allclose(spot, kernel, atol=1e-6)
        assert float(out[0, 0].sum()) == pytest.approx(1.0, abs=1e-5)
        # a pillbox, not a Gaussian: every pixel the disc covers fully (those within r − 1/√2
        # of the centre, at least π(r − 1)² of them) has the same, largest weight
        flat = spot >= spot.max() - 1e-6
        assert int(flat.sum()) >= np.pi * (radius - 1.0) ** 2
        assert float(out[0, 0].abs().sum() - spot.abs().sum()) < 1e-6


def test_the_depth_proxy_mixes_luminance_and_a_random_field(photos: torch.Tensor) -> None:
    n = photos.shape[0]
    lum = defocus_depth(photos, torch.Generator().manual_seed(0), torch.ones(n, 1, 1, 1))
    assert torch.allclose(lum, normalize_per_sample(luminance_depth(photos)), atol=1e-6)
    rand = defocus_depth(photos, torch.Generator().manual_seed(0), torch.zeros(n, 1, 1, 1))
    field = depth_proxy(n, 96, 96, torch.Generator().manual_seed(0))
    assert torch.allclose(rand, field, atol=1e-6)
    half = defocus_depth(photos, torch.Generator().manual_seed(0), torch.full((n, 1, 1, 1), 0.5))
    assert float(half.min()) == 0.0 and float(half.max()) == 1.0
    assert not torch.allclose(half, lum, atol=0.05) and not torch.allclose(half, rand, atol=0.05)


def test_the_kept_coc_map_is_the_one_that_made_the_pair(photos: torch.Tensor) -> None:
    pair = _pair(photos, 11, defocus_max_radius=(3.0, 5.0))
    for i, known in enumerate(pair.known):
        coc = torch.from_numpy(known["coc"])
        assert coc.shape == photos.shape[-2:]
        assert float(coc.min()) >= 0.0 and float(coc.max()) <= 5.0 + 1e-5
        assert float(coc.max()) > 0.5  # a focal plane in [0, 1] leaves some pixel defocused
        again = quantize_8bit(render_defocus(photos[i : i + 1], coc[None, None]))
        assert torch.equal(again[0], pair.lq[i])


def test_add_defocus_draws_per_photo(photos: torch.Tensor) -> None:
    params = DefocusParams(max_radius=(6.0, 6.0), focus=(0.0, 1.0))
    _out, coc = add_defocus(photos, torch.Generator().manual_seed(2), params)
    # each photo's own focal plane: somewhere its CoC is ~0, and the maxima differ
    assert float(coc[0].min()) < 0.5 and float(coc[1].min()) < 0.5
    assert float(coc[0].max()) != pytest.approx(float(coc[1].max()), abs=1e-3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("defocus_max_radius", (8.0, 4.0)),
        ("defocus_max_radius", (-1.0, 4.0)),
        ("defocus_focus", (0.2, 1.5)),
        ("defocus_luminance", (0.5, 0.2)),
    ],
)
def test_a_bad_setting_names_its_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        build_pair_synthesis(DegradationConfig(kind="defocus", **{field: value}))


def test_the_disc_oracle_deconvolves_a_uniform_defocus() -> None:
    sharp = load_photo("chelsea")[60:188, 120:248]
    chw = torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1)))[None]
    coc = torch.full((1, 1, 128, 128), 3.0)
    blurred = quantize_8bit(render_defocus(chw, coc))[0].numpy().transpose(1, 2, 0)
    oracle = CLASSICAL["richardson-lucy-disc-oracle"]
    out = oracle(blurred, DegradationConfig(), {"coc": coc[0, 0].numpy()})
    before, after = psnr(blurred, sharp, max_value=1.0), psnr(out, sharp, max_value=1.0)
    assert after > before + 0.8, (before, after)
    # a wrong radius helps less: the oracle's knowledge is what the row measures
    wrong = oracle(blurred, DegradationConfig(), {"coc": np.full((128, 128), 1.0)})
    assert psnr(wrong, sharp, max_value=1.0) < after
    with pytest.raises(ValueError, match="CoC"):
        oracle(blurred, DegradationConfig())


def test_the_disc_oracle_beats_the_input_on_a_held_out_defocus() -> None:
    photo = load_photo("rocket")[100:292, 200:392]
    clean = torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None]
    pair = build_pair_synthesis(DegradationConfig(kind="defocus"))(
        clean, torch.Generator().manual_seed(1002)
    )
    lq = pair.lq[0].numpy().transpose(1, 2, 0)
    out = CLASSICAL["richardson-lucy-disc-oracle"](lq, DegradationConfig(), pair.known[0])
    assert psnr(out, photo, max_value=1.0) > psnr(lq, photo, max_value=1.0)
