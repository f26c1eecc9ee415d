"""Full-reference fidelity metrics (PSNR, SSIM, MAE, RMSE; RMSE in CIELAB) following BasicSR's
conventions.

Restoration papers (IR-SDE/Refusion, DiffIR, NAFNet, ...) report numbers computed with BasicSR's
``basicsr/metrics/psnr_ssim.py``. To make `irctl eval` numbers comparable with those papers we
reproduce its conventions rather than inventing our own:

* metrics run on the file's real bit-depth values (``[0, 255]`` for 8-bit, ``[0, 65535]`` for
  16-bit; ``[0, 1]`` for float files), in float64;
* ``crop_border`` pixels are removed from every edge *before* anything else (BasicSR crops, then
  converts to Y);
* ``y_channel`` evaluates the BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in
  ``[0, 1]``), *unrounded*, rescaled back to the input's value range (BasicSR's ``to_y_channel``);
  a grey image is its own Y;
* PSNR is ``10 log10(max² / MSE)`` and is ``inf`` for identical images (BasicSR returns
  ``float('inf')`` too);
* SSIM is Wang et al.'s 11x11 Gaussian (sigma 1.5) SSIM with population statistics, averaged over
  the valid region and then over channels (BasicSR's ``_ssim``).

Two documented, deliberate deviations, both far below anything a paper reports:

* BasicSR's ``to_y_channel`` stores Y as float32; we keep float64 (Y differs by at most
  ~2e-5 grey levels, PSNR by ~1e-8 dB).
* BasicSR hard-codes ``L = 255`` in PSNR and SSIM; we use ``max_value`` so 16-bit and float files
  get the same definition on their own scale (identical to BasicSR for 8-bit files).

:func:`rmse_lab` ("rmse-lab") is the shadow-removal metric (ISTD, SRD, NTIRE shadow removal) and
has its own conventions, documented on the function.

Every function here is pure: arrays in, float out, no state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "MetricFn",
    "crop_border",
    "mae",
    "masked_psnr",
    "masked_ssim",
    "max_value_for",
    "psnr",
    "rmse",
    "rmse_lab",
    "ssim",
    "to_y_channel",
]

#: BT.601 studio-swing luma weights for (R, G, B) in [0, 1]; output is on the 0..255 scale.
#: Same numbers as BasicSR's ``rgb2ycbcr(..., y_only=True)`` (its ``bgr2ycbcr`` lists them
#: in B, G, R order because OpenCV loads BGR; our arrays are RGB).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
_Y_OFFSET = 16.0

#: SSIM window: 11x11 Gaussian, sigma 1.5 (Wang et al. 2004, BasicSR ``_ssim``).
_SSIM_SIGMA = 1.5
_SSIM_WINDOW = 11


class MetricFn(Protocol):
    """Signature shared by every entry of :data:`METRICS`."""

    def __call__(
        self,
        pred: ArrayLike,
        gt: ArrayLike,
        *,
        max_value: float,
        crop_border: int = 0,
        y_channel: bool = False,
    ) -> float: ...


def max_value_for(dtype: DTypeLike) -> float:
    """Peak value of a sample type: uint8 → 255, uint16 → 65535, any float → 1.0.

    PSNR's peak and SSIM's dynamic range L must match the scale the pixels are on; BasicSR
    assumes 8-bit (255), we derive it from the file's sample type instead.
    """
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return 255.0
    if dt == np.uint16:
        return 65535.0
    if np.issubdtype(dt, np.floating):
        return 1.0
    raise ValueError(f"unsupported sample type {dt}: expected uint8, uint16 or a float type")


def crop_border(img: NDArray, n: int) -> NDArray:
    """Drop ``n`` pixels from each spatial edge (first two axes), like BasicSR's ``crop_border``.

    Super-resolution benchmarks exclude the border because models cannot reconstruct it from
    context; the same trimming is applied to prediction and ground truth before any metric.
    """
    if n < 0:
        raise ValueError(f"crop_border must be >= 0, got {n}")
    if n == 0:
        return img
    h, w = img.shape[:2]
    if 2 * n >= h or 2 * n >= w:
        raise ValueError(f"crop_border={n} leaves no pixels of a {w}x{h} image")
    return img[n:-n, n:-n, ...]


def to_y_channel(img: ArrayLike, max_value: float) -> NDArray[np.float64]:
    """BT.601 luma of an RGB image, unrounded, on the input's own ``[0, max_value]`` scale.

    Mirrors BasicSR's ``to_y_channel``: scale to [0, 1], take
    ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (a 0..255-scale value), divide by 255 and
    multiply back by the peak, so 8-bit white maps to 235 and black to 16. Computed in float64
    (BasicSR stores float32; the difference is at most ~2e-5 grey levels).

    ``HxWx3`` → ``HxWx1``. A grey image (``HxW`` or ``HxWx1``) is its own luma and is returned
    as float64 unchanged, which is what BasicSR does for single-channel input.
    """
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        return arr
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"the Y channel needs an RGB (HxWx3) or grey image, got shape {arr.shape}")
    y = (arr / max_value) @ _Y_WEIGHTS + _Y_OFFSET  # 0..255 scale, like BasicSR
    return (y / 255.0 * max_value)[..., None]


def _prepare(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    border: int,
    y_channel: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shared preprocessing for every metric: validate, HxWxC float64, crop, optional Y.

    Kept in one place so PSNR, SSIM, MAE and RMSE can never disagree about what was compared.
    ``HxW`` and ``HxWx1`` are treated as the same (grey) shape.
    """
    a = np.asarray(pred)
    b = np.asarray(gt)
    for label, arr in (("prediction", a), ("ground truth", b)):
        if arr.ndim not in (2, 3):
            raise ValueError(f"{label} must be HxW or HxWxC, got shape {arr.shape}")
    if a.ndim == 2:
        a = a[..., None]
    if b.ndim == 2:
        b = b[..., None]
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: prediction is {_describe(a.shape)}, "
            f"ground truth is {_describe(b.shape)}"
        )
    if not max_value > 0:
        raise ValueError(f"max_value must be > 0, got {max_value}")
    a = crop_border(a, border).astype(np.float64, copy=False)
    b = crop_border(b, border).astype(np.float64, copy=False)
    if y_channel:
        a = to_y_channel(a, max_value)
        b = to_y_channel(b, max_value)
    return a, b


def _describe(shape: tuple[int, ...]) -> str:
    h, w, c = shape
    return f"{w}x{h} with {c} channel{'s' if c != 1 else ''}"


def psnr(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(max_value² / MSE)`` (BasicSR
    ``calculate_psnr``). Identical inputs give ``inf``, without a divide-by-zero warning.
    """
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    return _psnr_db(float(np.mean((a - b) ** 2)), max_value)


def _psnr_db(mse: float, max_value: float) -> float:
    """10 log10(max² / MSE); ``inf`` for a zero MSE, without a divide-by-zero warning."""
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value * max_value / mse)


def ssim(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Structural similarity, BasicSR's ``calculate_ssim`` definition.

    scikit-image with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` filters
    with the same normalised 11-tap Gaussian (truncate 3.5 → radius 5), uses population
    (co)variances and ``C1=(0.01 L)², C2=(0.03 L)²``, and averages the SSIM map after cropping
    ``(11 - 1) // 2 = 5`` pixels per edge: exactly BasicSR's ``filter2D(...)[5:-5, 5:-5]`` valid
    region (the two differ only in how they pad the border that is then discarded). Channels are
    averaged, as in BasicSR. Inputs are cast to float64 first; scikit-image would otherwise
    compute float32 inputs in float32.
    """
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    mean, _map = _ssim_and_map(a, b, max_value)
    return mean


def _ssim_and_map(a: NDArray, b: NDArray, max_value: float) -> tuple[float, NDArray]:
    """:func:`ssim`'s BasicSR-equal SSIM of two prepared H×W×C images: the mean over the valid
    region and the per-pixel, per-channel map it averages."""
    h, w = a.shape[:2]
    if h < _SSIM_WINDOW or w < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels "
            f"(after crop_border), got {w}x{h}"
        )
    mean, full = structural_similarity(
        a,
        b,
        data_range=max_value,
        channel_axis=2,
        gaussian_weights=True,
        sigma=_SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(mean), full


def mae(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Mean absolute error on the ``[0, max_value]`` scale (same preprocessing as PSNR).

    ``max_value`` is only used by the Y conversion; it is accepted for a uniform signature.
    """
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    return float(np.mean(np.abs(a - b)))


def rmse(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Root mean squared error on the ``[0, max_value]`` scale (``sqrt`` of PSNR's MSE)."""
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    return math.sqrt(float(np.mean((a - b) ** 2)))


def rmse_lab(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Root mean squared error in CIELAB, the shadow-removal papers' "RMSE" (metric "rmse-lab").

    Exactly: crop ``crop_border`` pixels per edge, scale both images to ``[0, 1]`` by
    ``max_value`` (so 8-bit, 16-bit and float files agree), convert each with
    ``skimage.color.rgb2lab`` (sRGB, D65 white, 2° observer — the same transform as MATLAB's
    ``makecform('srgb2lab')``), then ``sqrt(mean((ΔL² + Δa² + Δb²) / 3))`` with the mean over all
    pixels: one mean of the squared difference over every L, a and b value of the image, then
    the square root. L is on its 0..100 scale, so pure black vs pure white (ΔL = 100, a and b
    ~0) gives ``sqrt(100² / 3) ≈ 57.74``. Identical images give 0. Per image; `irctl eval`
    averages images like any other metric.

    Not the same number as the ISTD MATLAB evaluation scripts many shadow-removal papers copy
    (e.g. ShadowFormer's ``measure_shadow.m``): despite the "RMSE" label, those compute a
    per-pixel *mean absolute* LAB error summed over the three channels, after resizing every
    image to 256x256, and usually also report it inside/outside a shadow mask. This function
    is a true RMSE on the full-resolution image, so compare its values only with each other or
    with papers that state the same definition.

    Needs colour: a grey image raises ``ValueError`` ("rmse-lab needs colour ..."). The
    ``y_channel`` flag does not apply (LAB uses all three channels) and is ignored, so one
    ``--y-channel`` run can still report rmse-lab next to luma PSNR. Float inputs are not
    clipped (rgb2lab is defined beyond [0, 1]).
    """
    del y_channel  # LAB is a colour space: the Y-only flag of the other metrics does not apply
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=False)
    if a.shape[2] != 3:
        got = "a grey image" if a.shape[2] == 1 else f"{a.shape[2]} channels"
        raise ValueError(f"rmse-lab needs colour (RGB) images, got {got}")
    lab_a = rgb2lab(a / max_value)
    lab_b = rgb2lab(b / max_value)
    return math.sqrt(float(np.mean((lab_a - lab_b) ** 2)))


def hf_energy_ratio(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = True,
) -> float:
    """High-frequency energy of the prediction relative to the ground truth: the variance of
    the Laplacian of the prediction's luma (BT.601 Y, or the grey image) over the same for the
    ground truth. 1 means as much fine detail as the reference; a bicubic upsampling is far
    below 1 (blur), grain or ringing pushes it above. A detail measure, not a fidelity one:
    it says nothing about *where* the detail is, so read it beside PSNR/SSIM/LPIPS.

    The Laplacian is the 3×3 five-point stencil with mirrored borders (``scipy.ndimage.laplace``,
    mode ``reflect``). ``y_channel`` is always applied to colour images (the energy of a colour
    image is that of its luma).
    """
    from scipy import ndimage

    del y_channel
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=False)
    if a.shape[2] == 3:
        a, b = to_y_channel(a, max_value), to_y_channel(b, max_value)
    energy_pred = float(np.var(ndimage.laplace(a[..., 0], mode="reflect")))
    energy_gt = float(np.var(ndimage.laplace(b[..., 0], mode="reflect")))
    if energy_gt == 0.0:
        raise ValueError("hf-ratio is undefined for a ground truth without any detail (flat)")
    return energy_pred / energy_gt


def _region(mask: ArrayLike, shape: tuple[int, ...], crop: int) -> NDArray[np.bool_]:
    """A metric's H×W boolean region, checked against the image's size, cropped like it."""
    region = np.asarray(mask, dtype=bool)
    if region.shape != shape[:2]:
        raise ValueError(f"the mask is {region.shape[::-1]} (WxH), the image {shape[1::-1]}")
    return crop_border(region, crop)


def masked_psnr(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """PSNR over the pixels ``mask`` (H×W, true = scored) selects: the MSE of every channel
    of those pixels only (an inpainting table's "inside the holes"). ``inf`` for a perfect
    fill; an empty region raises ``ValueError`` (there is nothing to score)."""
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    region = _region(mask, np.asarray(pred).shape, crop_border)
    if not region.any():
        raise ValueError("the mask selects no pixel: nothing to score")
    return _psnr_db(float(np.mean((a[region] - b[region]) ** 2)), max_value)


def masked_ssim(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike,
    *,
    max_value: float,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """SSIM (:func:`ssim`'s window and constants) averaged over the pixels ``mask`` selects
    instead of the whole valid region: the SSIM map of each channel, its 5-pixel border
    dropped as :func:`ssim` drops it, the mean over the selected pixels and channels. Each
    window still sees its neighbourhood, so pixels next to a hole's edge count their known
    neighbours. 1.0 for a perfect fill; a region empty after the border raises ``ValueError``."""
    a, b = _prepare(pred, gt, max_value=max_value, border=crop_border, y_channel=y_channel)
    _mean, full = _ssim_and_map(a, b, max_value)
    region = _region(mask, np.asarray(pred).shape, crop_border)
    pad = (_SSIM_WINDOW - 1) // 2
    valid = region[pad:-pad, pad:-pad]
    if not valid.any():
        raise ValueError("the mask selects no pixel SSIM scores (5 pixels from the edge)")
    return float(np.mean(full[pad:-pad, pad:-pad][valid]))


#: Metric name → function; read-only so no caller can change what "psnr" means for everyone.
METRICS: Mapping[str, MetricFn] = MappingProxyType(
    {"psnr": psnr, "ssim": ssim, "mae": mae, "rmse": rmse, "rmse-lab": rmse_lab}
)

#: Metrics of :data:`METRICS` for which a smaller value is better (for ranking, e.g. a contact
#: sheet's best and worst images); the others (PSNR, SSIM) are higher-is-better.
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse", "rmse-lab"})
