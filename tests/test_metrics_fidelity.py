"""Fidelity metrics: BasicSR conventions, checked against scikit-image and an independent
re-implementation of BasicSR's ``_ssim`` (and, when OpenCV is installed, BasicSR's own code)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from irctl.metrics.fidelity import (
    LOWER_IS_BETTER,
    METRICS,
    crop_border,
    mae,
    max_value_for,
    psnr,
    rmse,
    rmse_lab,
    ssim,
    to_y_channel,
)

# --------------------------------------------------------------------------- fixtures


def _pair(dtype: type, shape: tuple[int, ...] = (40, 36, 3), seed: int = 0):
    """A ground truth and a noisy prediction of it, at the dtype's full range."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    gt = rng.integers(0, top + 1, shape, dtype=np.int64)
    noise = rng.normal(0.0, 0.05 * top, shape)
    pred = np.clip(np.rint(gt + noise), 0, top)
    return pred.astype(dtype), gt.astype(dtype)


def _reference_y(img: np.ndarray, top: float) -> np.ndarray:
    """Y written out channel by channel, independent of the implementation's matmul."""
    x = img.astype(np.float64) / top
    y = 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]
    return y / 255.0 * top


def _crop(img: np.ndarray, n: int) -> np.ndarray:
    return img[n:-n, n:-n] if n else img


def _basicsr_ssim_channel(img: np.ndarray, img2: np.ndarray, top: float) -> float:
    """BasicSR ``_ssim`` without OpenCV: 11x11 Gaussian (sigma 1.5) window, valid region."""
    c1 = (0.01 * top) ** 2
    c2 = (0.03 * top) ** 2
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, window, mode="reflect")[5:-5, 5:-5]

    mu1, mu2 = filt(img), filt(img2)
    sigma1_sq = filt(img**2) - mu1**2
    sigma2_sq = filt(img2**2) - mu2**2
    sigma12 = filt(img * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / (
        (mu1**2 + mu2**2 + c1) * (sigma1_sq + sigma2_sq + c2)
    )
    return float(ssim_map.mean())


def _basicsr_ssim(pred, gt, top: float, border: int = 0, y: bool = False) -> float:
    a = _crop(pred, border).astype(np.float64)
    b = _crop(gt, border).astype(np.float64)
    if y:
        a, b = _reference_y(a, top)[..., None], _reference_y(b, top)[..., None]
    return float(
        np.mean([_basicsr_ssim_channel(a[..., i], b[..., i], top) for i in range(a.shape[2])])
    )


# --------------------------------------------------------------------------- basics


def test_max_value_for() -> None:
    assert max_value_for(np.uint8) == 255.0
    assert max_value_for(np.uint16) == 65535.0
    assert max_value_for(np.float32) == 1.0
    assert max_value_for("float64") == 1.0
    with pytest.raises(ValueError, match="unsupported"):
        max_value_for(np.int32)


def test_y_channel_white_and_black_8bit() -> None:
    white = np.full((2, 2, 3), 255, np.uint8)
    black = np.zeros((2, 2, 3), np.uint8)
    np.testing.assert_allclose(to_y_channel(white, 255.0), 235.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(to_y_channel(black, 255.0), 16.0, rtol=0, atol=1e-12)
    assert to_y_channel(white, 255.0).shape == (2, 2, 1)


def test_y_channel_16bit_is_the_8bit_formula_rescaled() -> None:
    white = np.full((1, 1, 3), 65535, np.uint16)
    np.testing.assert_allclose(to_y_channel(white, 65535.0), 235.0 / 255.0 * 65535, rtol=1e-12)
    pred, _ = _pair(np.uint16, (4, 5, 3))
    np.testing.assert_allclose(
        to_y_channel(pred, 65535.0)[..., 0], _reference_y(pred, 65535.0), rtol=1e-12
    )


def test_y_channel_of_grey_is_the_grey_values() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(to_y_channel(grey, 255.0), grey.astype(np.float64))
    with pytest.raises(ValueError, match="RGB"):
        to_y_channel(np.zeros((3, 3, 4)), 255.0)


def test_crop_border() -> None:
    img = np.arange(6 * 7).reshape(6, 7)
    np.testing.assert_array_equal(crop_border(img, 0), img)
    np.testing.assert_array_equal(crop_border(img, 2), img[2:-2, 2:-2])
    with pytest.raises(ValueError, match="leaves no pixels"):
        crop_border(img, 3)
    with pytest.raises(ValueError, match=">= 0"):
        crop_border(img, -1)


def test_shape_mismatch_is_a_clear_value_error() -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    for other in (np.zeros((8, 9, 3), np.uint8), np.zeros((8, 8), np.uint8)):
        for fn in METRICS.values():
            with pytest.raises(ValueError, match="shape mismatch"):
                fn(a, other, max_value=255.0)


def test_grey_2d_and_hwc1_are_the_same_image() -> None:
    pred, gt = _pair(np.uint8, (20, 20))
    assert psnr(pred, gt, max_value=255) == psnr(pred[..., None], gt, max_value=255)


# --------------------------------------------------------------------------- PSNR


@pytest.mark.parametrize("d", [1, 3, 17])
def test_psnr_constant_offset_is_exact(d: int) -> None:
    gt = np.full((16, 16, 3), 100, np.uint8)
    pred = gt + np.uint8(d)
    assert psnr(pred, gt, max_value=255.0) == 10 * math.log10(255**2 / d**2)


def test_psnr_identical_is_inf_without_warning() -> None:
    img, _ = _pair(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr(img, img, max_value=255.0) == math.inf
        assert rmse(img, img, max_value=255.0) == 0.0
        assert mae(img, img, max_value=255.0) == 0.0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("border", [0, 4])
@pytest.mark.parametrize("y", [False, True])
def test_psnr_matches_skimage(dtype: type, border: int, y: bool) -> None:
    pred, gt = _pair(dtype)
    top = max_value_for(dtype)
    a, b = _crop(pred, border).astype(np.float64), _crop(gt, border).astype(np.float64)
    if y:
        a, b = _reference_y(a, top), _reference_y(b, top)
    expected = peak_signal_noise_ratio(b, a, data_range=top)
    got = psnr(pred, gt, max_value=top, crop_border=border, y_channel=y)
    assert got == pytest.approx(expected, abs=1e-6)


def test_mae_rmse_values_and_crop() -> None:
    gt = np.zeros((10, 10), np.uint8)
    pred = gt.copy()
    pred[0, :] = 10  # only the border row differs
    assert mae(pred, gt, max_value=255) == pytest.approx(1.0)
    assert rmse(pred, gt, max_value=255) == pytest.approx(math.sqrt(10.0))
    assert mae(pred, gt, max_value=255, crop_border=1) == 0.0
    assert rmse(pred, gt, max_value=255, crop_border=1) == 0.0


def test_rmse_is_consistent_with_psnr() -> None:
    pred, gt = _pair(np.uint16)
    r = rmse(pred, gt, max_value=65535.0, y_channel=True)
    assert psnr(pred, gt, max_value=65535.0, y_channel=True) == pytest.approx(
        20 * math.log10(65535.0 / r), abs=1e-9
    )


# --------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one() -> None:
    img, _ = _pair(np.uint16)
    assert ssim(img, img, max_value=65535.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, max_value=65535.0, y_channel=True) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("border", [0, 4])
@pytest.mark.parametrize("y", [False, True])
def test_ssim_matches_skimage_and_basicsr_reference(dtype: type, border: int, y: bool) -> None:
    pred, gt = _pair(dtype, seed=1)
    top = max_value_for(dtype)
    a, b = _crop(pred, border).astype(np.float64), _crop(gt, border).astype(np.float64)
    if y:
        a, b = _reference_y(a, top), _reference_y(b, top)
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    if a.ndim == 3:
        kwargs["channel_axis"] = 2
    expected_skimage = structural_similarity(a, b, data_range=top, **kwargs)
    expected_basicsr = _basicsr_ssim(pred, gt, top, border, y)

    got = ssim(pred, gt, max_value=top, crop_border=border, y_channel=y)
    assert got == pytest.approx(expected_skimage, abs=1e-6)
    # Same window, same valid region, same constants: agreement to rounding error.
    assert got == pytest.approx(expected_basicsr, abs=1e-12)


def test_ssim_matches_basicsr_opencv_code() -> None:
    """BasicSR's ``_ssim`` verbatim in spirit: cv2 kernel, ``filter2D``, ``[5:-5, 5:-5]``."""
    cv2 = pytest.importorskip("cv2")
    pred, gt = _pair(np.uint8, (48, 44, 3), seed=2)
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(3):
        img, img2 = pred[..., i].astype(np.float64), gt[..., i].astype(np.float64)
        mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
        mu2 = cv2.filter2D(img2, -1, window)[5:-5, 5:-5]
        s1 = cv2.filter2D(img**2, -1, window)[5:-5, 5:-5] - mu1**2
        s2 = cv2.filter2D(img2**2, -1, window)[5:-5, 5:-5] - mu2**2
        s12 = cv2.filter2D(img * img2, -1, window)[5:-5, 5:-5] - mu1 * mu2
        ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / (
            (mu1**2 + mu2**2 + c1) * (s1 + s2 + c2)
        )
        values.append(ssim_map.mean())
    assert ssim(pred, gt, max_value=255.0) == pytest.approx(float(np.mean(values)), abs=1e-12)


def test_ssim_float32_input_is_computed_in_float64() -> None:
    pred, gt = _pair(np.uint8, seed=3)
    as_float = ssim(pred.astype(np.float32) / 255, gt.astype(np.float32) / 255, max_value=1.0)
    assert as_float == pytest.approx(ssim(pred, gt, max_value=255.0), abs=1e-7)


def test_ssim_too_small_after_crop_is_a_value_error() -> None:
    img = np.zeros((20, 20), np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim(img, img, max_value=255.0, crop_border=5)


def test_registry_is_read_only_and_uniform() -> None:
    assert set(METRICS) == {"psnr", "ssim", "mae", "rmse", "rmse-lab"}
    assert METRICS["rmse-lab"] is rmse_lab
    assert {"mae", "rmse", "rmse-lab"} == LOWER_IS_BETTER
    assert LOWER_IS_BETTER.issubset(METRICS)
    with pytest.raises(TypeError):
        METRICS["psnr"] = mae  # type: ignore[index]
    pred, gt = _pair(np.uint8)
    for fn in METRICS.values():
        assert isinstance(fn(pred, gt, max_value=255.0, crop_border=1, y_channel=True), float)


# --------------------------------------------------------------------------- RMSE in LAB


def test_rmse_lab_identical_is_zero() -> None:
    pred, _ = _pair(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rmse_lab(pred, pred, max_value=255.0) == 0.0


def test_rmse_lab_black_vs_white_is_l_difference_over_three_channels() -> None:
    """ΔL = 100 and a, b stay ~0, so the mean over the three LAB values is 100² / 3."""
    black = np.zeros((4, 5, 3), np.uint8)
    white = np.full((4, 5, 3), 255, np.uint8)
    value = rmse_lab(black, white, max_value=255.0)
    assert value == pytest.approx(math.sqrt(100.0**2 / 3.0), rel=1e-6)  # 57.735...
    # Exactly, with skimage's white point (a, b of white are ~1e-3, not 0):
    _, a_w, b_w = rgb2lab(np.ones((1, 1, 3)))[0, 0]
    assert value == pytest.approx(math.sqrt((100.0**2 + a_w**2 + b_w**2) / 3.0), abs=1e-9)
    assert rmse_lab(white, black, max_value=255.0) == value  # symmetric


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("border", [0, 3])
def test_rmse_lab_matches_a_direct_skimage_computation(dtype: type, border: int) -> None:
    pred, gt = _pair(dtype, seed=4)
    top = max_value_for(dtype)
    lab_p = rgb2lab(_crop(pred, border).astype(np.float64) / top)
    lab_g = rgb2lab(_crop(gt, border).astype(np.float64) / top)
    expected = np.sqrt(np.mean((lab_p - lab_g) ** 2))
    got = rmse_lab(pred, gt, max_value=top, crop_border=border)
    assert got == pytest.approx(expected, rel=1e-12)
    # Per-pixel mean over L, a, b of the squared difference, then mean over pixels: same thing.
    per_pixel = ((lab_p - lab_g) ** 2).sum(axis=2) / 3.0
    assert got == pytest.approx(math.sqrt(per_pixel.mean()), rel=1e-12)


def test_rmse_lab_is_scale_free_and_ignores_y_channel() -> None:
    pred, gt = _pair(np.uint8, seed=5)
    value = rmse_lab(pred, gt, max_value=255.0)
    as_16 = rmse_lab(
        pred.astype(np.uint16) * np.uint16(257),
        gt.astype(np.uint16) * np.uint16(257),
        max_value=65535.0,
    )
    as_float = rmse_lab(pred / 255.0, gt / 255.0, max_value=1.0)
    assert as_16 == pytest.approx(value, rel=1e-12)
    assert as_float == pytest.approx(value, rel=1e-12)
    assert rmse_lab(pred, gt, max_value=255.0, y_channel=True) == value


def test_rmse_lab_needs_colour() -> None:
    pred, gt = _pair(np.uint8, (20, 20))
    for a, b in ((pred, gt), (pred[..., None], gt[..., None])):
        with pytest.raises(ValueError, match="rmse-lab needs colour"):
            rmse_lab(a, b, max_value=255.0)
