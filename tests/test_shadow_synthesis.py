"""Shadow synthesis: a soft-edged matte and a darker, bluer umbra on a clean photo."""

from __future__ import annotations

import numpy as np
import pytest

from irctl.data.shadow import (
    ShadowParams,
    add_shadow,
    apply_shadow,
    penumbra_profile,
    shadow_mask,
    shadow_parameters,
)

ALWAYS = ShadowParams(no_shadow=0.0)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _max_gain_deviation(params: ShadowParams) -> float:
    """Largest |gain_c − 1| the documented ranges allow."""
    lo, hi = params.gain
    return max(1.0 - lo * (1.0 - params.tint), hi * (1.0 + params.tint) - 1.0)


@pytest.fixture()
def clean() -> np.ndarray:
    """A photo crop squeezed into [0.1, 0.8], so a gain ≤ 1.07 never clips and ratios are
    well defined (no zero pixels)."""
    from irctl.data.datasets import load_photo

    photo = load_photo("chelsea")[100:196, 150:262]
    return (0.1 + 0.7 * photo).astype(np.float32)


def test_deterministic_for_a_seed(clean: np.ndarray) -> None:
    a = add_shadow(clean, ALWAYS, _rng(3))
    b = add_shadow(clean, ALWAYS, _rng(3))
    c = add_shadow(clean, ALWAYS, _rng(4))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[2], c[2])
    shadow_image, target, mask = a
    assert shadow_image.dtype == target.dtype == mask.dtype == np.float32
    assert shadow_image.shape == clean.shape and mask.shape == clean.shape[:2]
    assert np.array_equal(target, clean)  # the target is the photo itself


def test_penumbra_profile_is_a_disc_occlusion_s_curve() -> None:
    s = np.linspace(-1.5, 1.5, 301)
    p = penumbra_profile(s)
    assert p[s <= -1.0].max() == 0.0 and p[s >= 1.0].min() == 1.0
    assert penumbra_profile(np.array([0.0]))[0] == pytest.approx(0.5)
    assert np.all(np.diff(p) >= 0.0)
    # Symmetric: what one side of the edge loses, the other gains.
    assert np.allclose(p + p[::-1], 1.0)


def test_mask_has_lit_umbra_and_penumbra() -> None:
    umbra = 0
    for seed in range(40):
        m = shadow_mask(96, 112, ALWAYS, _rng(seed))
        assert m.shape == (96, 112) and m.dtype == np.float32
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert (m == 0.0).any(), f"seed {seed}: no fully lit pixel"
        assert ((m > 0.0) & (m < 1.0)).any(), f"seed {seed}: hard edge, no penumbra"
        umbra += bool((m == 1.0).any())
    # Thin occluders whose penumbra swallows them (a far branch) cast no umbra: ~0.2% of draws.
    assert umbra >= 38


def test_umbra_ratio_is_the_attenuation_darker_and_bluer(clean: np.ndarray) -> None:
    h, w = clean.shape[:2]
    for seed in range(6):
        sample = shadow_parameters(h, w, ALWAYS, _rng(seed))
        shadow_image, _, mask = add_shadow(clean, ALWAYS, _rng(seed))
        assert np.array_equal(mask, sample.mask)
        a = sample.attenuation
        assert a[0] < a[1] < a[2] <= 0.95  # R darkest, B least attenuated: a bluer shadow
        lo, hi = ALWAYS.attenuation_red
        assert lo <= a[0] <= hi
        assert ALWAYS.blue_ratio[0] - 1e-6 <= a[2] / a[0] <= ALWAYS.blue_ratio[1] + 1e-6
        umbra = mask == 1.0
        assert umbra.sum() > 20
        ratio = shadow_image[umbra] / clean[umbra]  # (n, 3)
        assert np.allclose(ratio, a * sample.gain, rtol=1e-5)
        # Bluer even before undoing the gain: the tint cannot outweigh the blue ratio.
        assert np.all(ratio[:, 2] > ratio[:, 0])
        assert shadow_image[umbra].mean() < clean[umbra].mean()


def test_lit_pixels_differ_only_by_the_global_offset(clean: np.ndarray) -> None:
    h, w = clean.shape[:2]
    bound = _max_gain_deviation(ALWAYS)
    assert bound == pytest.approx(0.0608)
    for seed in range(6):
        sample = shadow_parameters(h, w, ALWAYS, _rng(seed))
        shadow_image, target, mask = add_shadow(clean, ALWAYS, _rng(seed))
        assert np.all(np.abs(sample.gain - 1.0) <= bound + 1e-6)
        lit = mask == 0.0
        assert lit.sum() > 20
        assert np.allclose(shadow_image[lit], clean[lit] * sample.gain, rtol=1e-6, atol=1e-7)
        assert np.all(np.abs(shadow_image[lit] - target[lit]) <= bound * target[lit] + 1e-6)


def test_no_shadow_draw_leaves_the_photo_but_for_the_offset(clean: np.ndarray) -> None:
    never = ShadowParams(no_shadow=1.0)
    bound = _max_gain_deviation(never)
    for seed in range(5):
        shadow_image, target, mask = add_shadow(clean, never, _rng(seed))
        assert not mask.any()
        assert np.array_equal(target, clean)
        assert np.all(np.abs(shadow_image - target) <= bound * target + 1e-6)
        gain = shadow_image / target
        assert np.allclose(gain, gain[0, 0], rtol=1e-5)  # one global gain per channel


def test_no_shadow_probability_is_honoured() -> None:
    params = ShadowParams()  # 10% shadow-free by default
    free = sum(not shadow_parameters(24, 24, params, _rng(seed)).has_shadow for seed in range(300))
    # Binomial(300, 0.1): mean 30, sd 5.2.
    assert 12 <= free <= 50


def test_dark_scene_dims_target_and_input_alike(clean: np.ndarray) -> None:
    """A dark-scene draw dims the target by a darker, bluer factor that varies smoothly over the
    frame, and the input is that target under the usual shadow and gain: the model is taught
    that a dim, blue region without an edge is content, not an umbra to lift."""
    dark = ShadowParams(no_shadow=1.0, dark_scene=1.0)
    bound = _max_gain_deviation(dark)
    lo, hi = dark.dark_scene_red
    h, w = clean.shape[:2]
    for seed in range(8):
        sample = shadow_parameters(h, w, dark, _rng(seed))
        s = sample.scene
        assert s.shape == (h, w, 3)
        # Darker and bluer everywhere, and the full factor is reached somewhere.
        assert np.all(s[..., 0] <= s[..., 1] + 1e-6) and np.all(s[..., 1] <= s[..., 2] + 1e-6)
        assert np.all(s <= 1.0) and lo - 1e-6 <= s[..., 0].min() <= hi + 1e-6
        # No edge: the steepest step between neighbours is far below a penumbra's, whose ramp
        # crosses the whole (1 − a) in at most ``softness[1]`` pixels.
        step = max(np.abs(np.diff(s, axis=0)).max(), np.abs(np.diff(s, axis=1)).max())
        depth = 1.0 - s.min()
        assert step <= 4.0 * depth / min(h, w) + 1e-6
        shadow_image, target = apply_shadow(clean, sample)
        assert np.allclose(target, clean * s, rtol=1e-6)
        assert np.all(np.abs(shadow_image - target) <= bound * target + 1e-6)


def test_recolour_permutes_the_channels_of_target_and_input(clean: np.ndarray) -> None:
    """A recoloured draw takes the photo's channels in another order, for the target and
    (under the shadow) the input alike; the permutation is drawn last, so the shadow, gain and
    scene of a seed do not depend on ``recolour`` (presets without it keep their pairs)."""
    always = ShadowParams(no_shadow=1.0, recolour=1.0)
    seen = set()
    for seed in range(40):
        sample = shadow_parameters(*clean.shape[:2], always, _rng(seed))
        assert sorted(sample.channels) == [0, 1, 2] and sample.channels != (0, 1, 2)
        seen.add(sample.channels)
        shadow_image, target = apply_shadow(clean, sample)
        assert np.array_equal(target, clean[..., list(sample.channels)])
        gain = shadow_image / np.maximum(target, 1e-6)
        lit = target > 0.05
        for c in range(3):  # one global gain per channel: the input is the same recoloured photo
            assert np.allclose(gain[..., c][lit[..., c]], sample.gain[c], rtol=1e-4)
    assert len(seen) == 5
    for seed in range(3):
        plain = shadow_parameters(*clean.shape[:2], ShadowParams(dark_scene=0.5), _rng(seed))
        mixed = shadow_parameters(
            *clean.shape[:2], ShadowParams(dark_scene=0.5, recolour=1.0), _rng(seed)
        )
        assert plain.channels == (0, 1, 2) and mixed.channels != (0, 1, 2)
        for name in ("mask", "attenuation", "gain", "scene"):
            assert np.array_equal(getattr(plain, name), getattr(mixed, name))


def test_dark_scene_off_keeps_the_draws_of_a_seed(clean: np.ndarray) -> None:
    """``dark_scene`` = 0 consumes no extra random numbers, so presets without it synthesise
    exactly the pairs they were trained on; with it, a scene is dimmed about as often as asked."""
    for seed in range(3):
        a = add_shadow(clean, ALWAYS, _rng(seed))
        b = add_shadow(clean, ShadowParams(no_shadow=0.0, dark_scene=0.0), _rng(seed))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    some = ShadowParams(dark_scene=0.3)
    dimmed = sum(
        bool((shadow_parameters(24, 24, some, _rng(seed)).scene < 1.0).any()) for seed in range(300)
    )
    # Binomial(300, 0.3): mean 90, sd 7.9.
    assert 60 <= dimmed <= 120


def test_shadow_area_stays_in_the_documented_range() -> None:
    lo, hi = ALWAYS.area
    fractions = []
    for seed in range(150):
        m = shadow_mask(64, 80, ALWAYS, _rng(seed))
        fractions.append(float((m >= 0.5).mean()))
    f = np.array(fractions)
    assert f.min() >= lo and f.max() <= hi
    # Not all clamped to one end: the draws spread over the range.
    assert np.percentile(f, 25) < 0.25 < np.percentile(f, 75)

    # Without the outline jitter the signed distances tie a lot; the clamp must still hold.
    for narrow in (
        ShadowParams(area=(0.2, 0.3), no_shadow=0.0),
        ShadowParams(area=(0.2, 0.3), jitter=(0.0, 0.0), no_shadow=0.0),
    ):
        for seed in range(20):
            frac = float((shadow_mask(48, 48, narrow, _rng(seed)) >= 0.5).mean())
            assert 0.2 <= frac <= 0.3


def test_input_stays_in_range_even_when_the_gain_would_clip() -> None:
    white = np.ones((32, 40, 3), dtype=np.float32)
    bright = ShadowParams(gain=(1.04, 1.04), no_shadow=0.0)
    shadow_image, _, _ = add_shadow(white, bright, _rng(0))
    assert shadow_image.min() >= 0.0 and shadow_image.max() <= 1.0
    sample = shadow_parameters(32, 40, bright, _rng(0))
    again, target = apply_shadow(white, sample)
    assert np.array_equal(again, shadow_image) and np.array_equal(target, white)


def test_rejects_bad_inputs_and_ranges() -> None:
    with pytest.raises(ValueError):
        add_shadow(np.zeros((8, 8), dtype=np.float32), ALWAYS, _rng(0))
    with pytest.raises(ValueError):
        ShadowParams(area=(0.5, 0.2))
    with pytest.raises(ValueError):
        ShadowParams(blue_ratio=(0.8, 1.2))
    with pytest.raises(ValueError):
        ShadowParams(shapes=(0, 2))
