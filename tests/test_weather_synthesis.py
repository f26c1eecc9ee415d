"""The snow and raindrop syntheses (irctl/data/snow.py, irctl/data/raindrops.py): seeded,
physically shaped (flakes lighten, drops refract and leave the rest of the frame alone), and
their settings checked when the preset is used."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from irctl.config import DegradationConfig
from irctl.data.datasets import load_photo
from irctl.data.degrade import DEGRADATIONS, build_pair_synthesis, quantize_8bit
from irctl.data.raindrops import RaindropParams, add_raindrops, drop_maps, render_drops
from irctl.data.snow import SnowParams, add_snow, flake_layer

KINDS = ("snow", "raindrops")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    crops = [load_photo("astronaut")[:128, 150:278], load_photo("coffee")[100:228, 200:328]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def _synth(photos: torch.Tensor, seed: int, **fields: object) -> torch.Tensor:
    synth = build_pair_synthesis(DegradationConfig(**fields))
    return synth(photos, torch.Generator().manual_seed(seed)).lq


@pytest.mark.parametrize("kind", KINDS)
def test_registered_seeded_and_on_the_8bit_grid(kind: str, photos: torch.Tensor) -> None:
    assert kind in DEGRADATIONS
    first, again = _synth(photos, 5, kind=kind), _synth(photos, 5, kind=kind)
    other = _synth(photos, 6, kind=kind)
    assert first.shape == photos.shape and first.dtype == photos.dtype
    assert first.numpy().tobytes() == again.numpy().tobytes()
    assert not torch.equal(first, other)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, quantize_8bit(first))
    assert not torch.equal(first, quantize_8bit(photos))


def test_snow_lightens_and_grows_with_density(photos: torch.Tensor) -> None:
    covers, means = [], []
    for density in (0.01, 0.04, 0.1):
        params = SnowParams(density=(density, density), veil=(0.0, 0.0))
        lq, alpha = add_snow(photos, np.random.default_rng(1), params)
        covers.append(float(alpha.mean()))
        means.append(float(lq.mean()))
        flakes = alpha[:, 0] > 0.5
        lifted = lq - photos
        # under a flake the image is lighter (the photos are darker than snow there)
        assert float(lifted.permute(1, 0, 2, 3)[:, flakes].mean()) > 0.1
    assert float(photos.mean()) < means[0] < means[1] < means[2]
    assert covers[0] < covers[1] < covers[2]
    assert 0.05 < covers[2] < 0.6


def test_snow_veil_alone_lifts_the_whole_frame(photos: torch.Tensor) -> None:
    params = SnowParams(density=(0.0, 0.0), veil=(0.2, 0.2))
    lq, alpha = add_snow(photos, np.random.default_rng(0), params)
    assert float(alpha.abs().max()) == 0.0
    dark = photos < 0.8  # darker than any snow colour: the veil lifts every such pixel
    assert bool((lq[dark] > photos[dark]).all())


def test_no_snow_and_no_veil_is_the_photo(photos: torch.Tensor) -> None:
    lq = _synth(photos, 3, kind="snow", snow_density=(0.0, 0.0), snow_veil=(0.0, 0.0))
    assert torch.equal(lq, quantize_8bit(photos))


def test_larger_flakes_make_larger_blobs() -> None:
    def mean_blob_area(radius: tuple[float, float]) -> float:
        alpha = flake_layer(160, 160, np.random.default_rng(2), radius, 0.03)
        labels, count = ndimage.label(alpha > 0.3)
        assert count > 0
        return float((labels > 0).sum()) / count

    small, large = mean_blob_area((0.8, 1.2)), mean_blob_area((4.0, 6.0))
    assert large > 8 * small


def _no_blur(**fields: object) -> RaindropParams:
    return dataclasses.replace(RaindropParams(background_blur=(0.0, 0.0)), **fields)


def test_raindrops_leave_the_rest_of_the_frame_alone(photos: torch.Tensor) -> None:
    lq, alpha = add_raindrops(photos, np.random.default_rng(4), _no_blur())
    outside = (alpha == 0).expand_as(lq)
    assert 0.02 < float((alpha > 0).float().mean()) < 0.6
    assert torch.equal(lq[outside], photos[outside])
    inside = (alpha == 1).expand_as(lq)
    assert float((lq - photos)[inside].abs().mean()) > 0.02  # refracted, not the photo


def test_raindrop_background_blur_is_the_blurred_photo(photos: torch.Tensor) -> None:
    params = RaindropParams(background_blur=(0.7, 0.7))
    lq, alpha = add_raindrops(photos, np.random.default_rng(4), params)
    blurred = torch.from_numpy(
        np.stack(
            [
                [ndimage.gaussian_filter(c, 0.7, mode="reflect") for c in p]
                for p in photos.double().numpy()
            ]
        )
    ).float()
    outside = (alpha == 0).expand_as(lq)
    assert torch.allclose(lq[outside], blurred[outside], atol=1e-6)
    assert not torch.allclose(lq[outside], photos[outside], atol=1e-3)


def test_no_drops_is_the_photo(photos: torch.Tensor) -> None:
    lq = _synth(
        photos, 3, kind="raindrops", raindrop_count=(0.0, 0.0), raindrop_background_blur=(0, 0)
    )
    assert torch.equal(lq, quantize_8bit(photos))


def test_drop_coverage_grows_with_count() -> None:
    def coverage(count: float) -> float:
        params = _no_blur(count=(count, count))
        return float(
            np.mean(
                [
                    drop_maps(128, 128, np.random.default_rng(s), params).alpha.mean()
                    for s in range(3)
                ]
            )
        )

    few, some, many = coverage(4.0), coverage(12.0), coverage(40.0)
    assert 0.0 < few < some < many


@pytest.mark.parametrize("flip", [1.0, 0.0])
def test_a_drop_shows_its_surroundings_flipped_or_magnified(flip: float) -> None:
    size = 128
    ramp = np.tile(np.arange(size, dtype=np.float64) / (size - 1), (size, 1))[None]
    params = _no_blur(
        count=(4.0, 4.0), radius=(20.0, 20.0), aspect=(1.0, 1.0), zoom=(2.0, 2.0), flip=flip,
        rim=(0.0, 0.0),
    )  # fmt: skip
    maps = drop_maps(size, size, np.random.default_rng(3), params)
    out = render_drops(ramp, maps, drop_blur=0.0, background_blur=0.0)[0]
    # interior pixels whose right neighbour is interior too, sampled inside the frame
    core = (maps.alpha == 1) & (maps.sample_x > 0) & (maps.sample_x < size - 1)
    pairs = core[:, :-1] & core[:, 1:]
    assert pairs.sum() > 600  # most of the drop: it lies well inside the frame
    slope = np.diff(out, axis=1)[pairs] * (size - 1)  # the ramp's own slope is 1
    expected = -2.0 if flip else 0.5
    assert np.allclose(slope, expected, atol=1e-6)
    # and what a drop shows comes from its neighbourhood: within zoom·r + r/2 of the pixel
    ys, xs = np.nonzero(maps.alpha > 0)
    reach = np.hypot(maps.sample_y[ys, xs] - ys, maps.sample_x[ys, xs] - xs)
    assert reach.max() <= (2.0 + 1.0) * 20.0 + 10.0 + 2.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("snow_density", (0.2, 0.1)),
        ("snow_layers", 0),
        ("snow_flake_size", (0.0, 3.0)),
        ("snow_veil", (0.0, 1.0)),
        ("raindrop_flip", 1.5),
        ("raindrop_zoom", (0.5, 2.0)),
        ("raindrop_radius", (-1.0, 5.0)),
        ("raindrop_background_blur", (1.0, 0.5)),
    ],
)
def test_a_bad_setting_names_its_field(field: str, value: object) -> None:
    kind = "snow" if field.startswith("snow") else "raindrops"
    with pytest.raises(ValueError, match=field):
        build_pair_synthesis(DegradationConfig(kind=kind, **{field: value}))
