"""Stereo views by forward warping, and the ×4 bicubic stereo-SR pairs made from them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irctl.data.stereo import (
    bicubic_downscale,
    disparity_from_photo,
    forward_warp,
    mod_crop,
    stereo_pair_from_photo,
    stereo_sr_pair,
    warp_view,
)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left"])
def test_zero_disparity_is_the_identity(direction: str) -> None:
    img = _texture(24, 40)
    res = forward_warp(img, np.zeros((24, 40), dtype=np.float32), direction)
    assert np.array_equal(res.image, img)
    assert res.valid.all()
    assert np.array_equal(res.disparity, np.zeros((24, 40), dtype=np.float32))


def test_constant_disparity_shifts_by_d_pixels() -> None:
    img = _texture(16, 40, seed=1)
    d = 3
    disp = np.full((16, 40), float(d))
    right = warp_view(img, disp, "left_to_right")  # left column x appears at x − d
    assert np.array_equal(right[:, : 40 - d], img[:, d:])
    left = warp_view(img, disp, "right_to_left")  # right column x appears at x + d
    assert np.array_equal(left[:, d:], img[:, : 40 - d])

    # Nothing lands on the last d columns; they repeat the nearest warped column.
    res = forward_warp(img, disp, "left_to_right")
    assert not res.valid[:, 40 - d :].any() and res.valid[:, : 40 - d].all()
    assert np.array_equal(res.image[:, 40 - d :], np.repeat(img[:, -1:], d, axis=1))

    # A sub-pixel shift interpolates linearly between the two source columns.
    half = warp_view(img, np.full((16, 40), 2.5), "left_to_right")
    expected = 0.5 * (img[:, 2:39] + img[:, 3:40])
    assert np.allclose(half[:, :37], expected, atol=1e-6)


def _two_planes() -> tuple[np.ndarray, np.ndarray]:
    """A textured background at disparity 2 and a flat red square at disparity 8."""
    img = _texture(32, 48, seed=2) * 0.5
    disp = np.full((32, 48), 2.0)
    img[8:24, 20:30] = (1.0, 0.0, 0.0)
    disp[8:24, 20:30] = 8.0
    return img, disp


def test_nearer_pixels_occlude_farther_ones() -> None:
    img, disp = _two_planes()
    res = forward_warp(img, disp, "left_to_right")
    fg_rows = slice(8, 24)
    # The square moves 8 px left, over background that (moving 2 px) also lands on cols 12–17.
    assert np.array_equal(res.image[fg_rows, 12:22], np.broadcast_to((1.0, 0.0, 0.0), (16, 10, 3)))
    assert np.array_equal(res.disparity[fg_rows, 12:22], np.full((16, 10), 8.0))
    # Without the z-buffer's ordering the background would show there.
    background = img[fg_rows, 14:20]
    assert not np.allclose(background, (1.0, 0.0, 0.0))
    # Background hidden behind the square in the left view (cols 22–27) is a disocclusion,
    # filled from the background side (col 28, disparity 2), not with the square's red.
    assert not res.valid[fg_rows, 22:28].any()
    assert np.array_equal(res.image[fg_rows, 22:28], np.repeat(img[fg_rows, 30:31], 6, axis=1))
    assert np.array_equal(res.disparity[fg_rows, 22:28], np.full((16, 6), 2.0))
    # Rows without the square are the background shifted by 2.
    assert np.array_equal(res.image[:8, :46], img[:8, 2:])


def test_warp_directions_mirror_each_other() -> None:
    img, disp = _two_planes()
    forward = warp_view(img, disp, "left_to_right")
    mirrored = warp_view(img[:, ::-1], disp[:, ::-1], "right_to_left")
    assert np.array_equal(forward, mirrored[:, ::-1])


def test_rejects_bad_direction_and_shapes() -> None:
    img = _texture(8, 8)
    with pytest.raises(ValueError):
        warp_view(img, np.zeros((8, 8)), "up")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        warp_view(img, np.zeros((8, 9)), "left_to_right")


@pytest.fixture(scope="module")
def motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middlebury 2014's motorcycle as scikit-image ships it (no download: the files are in the
    wheel, and ``stereo_motorcycle`` loads them without pooch)."""
    import skimage.data

    left, right, disp = skimage.data.stereo_motorcycle()
    return left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, disp


def test_motorcycle_disparity_conventions(motorcycle) -> None:
    left, right, disp = motorcycle
    assert left.shape == right.shape == (500, 741, 3)
    assert disp.shape == (500, 741) and disp.dtype == np.float32
    known = np.isfinite(disp)
    assert 0.05 < 1.0 - known.mean() < 0.1  # ~7% inf: pixels without ground truth
    assert disp[known].min() > 5.0 and disp[known].max() < 61.0  # pixels, positive


def test_warping_the_left_view_reproduces_the_right_one(motorcycle) -> None:
    left, right, disp = motorcycle
    res = forward_warp(left, disp, "left_to_right")
    seen = res.valid  # pixels a left pixel with known disparity landed on (not occluded)
    assert 0.8 < seen.mean() < 0.9
    warped_err = float(np.abs(res.image - right)[seen].mean())
    plain_err = float(np.abs(left - right)[seen].mean())
    # Observed: 0.0187 vs 0.149 (ratio 0.126). What remains is the two cameras' exposure and
    # vignetting differences and the sub-pixel resampling, so assert about 1.5× the observed
    # error and ratio: a wrong sign or an off-by-one shift lands far outside both.
    assert warped_err < 0.03
    assert warped_err < 0.2 * plain_err
    # Middlebury's disparity lives in the left view and moves pixels left (x − d) into the
    # right view; the opposite direction is worse than no warp at all (observed 0.186).
    wrong = forward_warp(left, disp, "right_to_left")
    assert float(np.abs(wrong.image - right)[wrong.valid].mean()) > 5 * warped_err


def test_bicubic_downscale_of_a_constant_is_constant() -> None:
    img = np.full((50, 45, 3), 0.37, dtype=np.float32)
    low = bicubic_downscale(img, 4)
    assert low.shape == (12, 11, 3) and low.dtype == np.float32
    assert np.allclose(low, 0.37, atol=1e-6)
    assert bicubic_downscale(img[..., 0], 4).shape == (12, 11)


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack(
        [
            0.5 + 0.3 * np.sin(2 * np.pi * xx / 17 + c) * np.cos(2 * np.pi * yy / 13)
            for c in range(3)
        ],
        axis=2,
    ).astype(np.float32)


def _pil_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    chans = [Image.fromarray(img[..., c], mode="F").resize(size, Image.BICUBIC) for c in range(3)]
    return np.stack([np.asarray(ch) for ch in chans], axis=2)


def test_bicubic_downscale_undoes_a_bicubic_upscale_of_a_smooth_image() -> None:
    small = _smooth(32, 40)
    big = _pil_resize(small, (160, 128))
    back = bicubic_downscale(big, 4)
    assert back.shape == small.shape
    # Observed: 5e-4 in the interior, 4.5e-3 at the border (mirror padding of the upscale's
    # edge), mean 4.5e-4.
    assert np.abs(back - small)[2:-2, 2:-2].max() < 2e-3
    assert np.abs(back - small).max() < 1e-2


def test_bicubic_downscale_matches_pil_away_from_the_border() -> None:
    """The MATLAB port and PIL use the same kernel (Keys, a = −0.5) stretched ×4; only the
    border handling differs (MATLAB mirrors, PIL renormalises)."""
    img = _texture(64, 80, seed=5)
    ours = bicubic_downscale(img, 4)
    pil = _pil_resize(img, (20, 16))
    assert np.abs(ours - pil)[2:-2, 2:-2].max() < 1e-5


def test_stereo_sr_pair_shapes_and_stacking() -> None:
    left, right = _texture(50, 70, seed=6), _texture(50, 70, seed=7)
    lq, gt = stereo_sr_pair(left, right, 4)
    assert lq.shape == (12, 17, 6) and gt.shape == (48, 68, 6)
    assert lq.dtype == gt.dtype == np.float32
    assert np.array_equal(gt[..., :3], mod_crop(left, 4))
    assert np.array_equal(gt[..., 3:], mod_crop(right, 4))
    assert np.array_equal(lq[..., 3:], bicubic_downscale(right, 4))
    q, _ = stereo_sr_pair(left, right, 4, quantize=True)
    assert np.allclose(q * 255.0, np.round(q * 255.0), atol=1e-4)
    with pytest.raises(ValueError):
        stereo_sr_pair(left, right[:-1], 4)


def test_disparity_proxy_range_and_layout() -> None:
    grey = np.full((48, 64, 3), 0.5, dtype=np.float32)  # no luminance cue: layout only
    d = disparity_from_photo(grey, 16.0, np.random.default_rng(0))
    assert d.shape == (48, 64) and d.dtype == np.float32
    assert d.min() >= 0.0 and d.max() == pytest.approx(16.0)
    assert d[-8:].mean() > d[:8].mean()  # the bottom of the frame is nearer
    again = disparity_from_photo(grey, 16.0, np.random.default_rng(0))
    assert np.array_equal(d, again)


def test_stereo_pair_from_photo() -> None:
    from irctl.data.datasets import load_photo

    photo = load_photo("astronaut")[::4, ::4][:96, :128]
    sides = set()
    for seed in range(6):
        left, right = stereo_pair_from_photo(photo, 12.0, np.random.default_rng(seed))
        assert left.shape == right.shape == photo.shape
        photo_left = np.array_equal(left, photo)
        assert photo_left != np.array_equal(right, photo)  # exactly one view is the photo
        sides.add(photo_left)
        again = stereo_pair_from_photo(photo, 12.0, np.random.default_rng(seed))
        assert np.array_equal(again[0], left) and np.array_equal(again[1], right)
        left_t, right_t = stereo_pair_from_photo(
            photo, 12.0, np.random.default_rng(seed), trim=True
        )
        cut = math.ceil(12.0)
        assert left_t.shape == right_t.shape == (96, 128 - cut, 3)
        keep = slice(0, 128 - cut) if photo_left else slice(cut, None)
        assert np.array_equal(left_t, left[:, keep]) and np.array_equal(right_t, right[:, keep])
    assert sides == {True, False}
