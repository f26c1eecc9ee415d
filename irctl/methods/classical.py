"""Classical methods a user would otherwise run, for side-by-side tables (not diffusion models).

Each takes the LQ image (HxWx3 float in [0,1]) and the preset's degradation settings, which a
classical method may need as a known parameter (BM3D's noise sigma).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from irctl.config import DegradationConfig

ClassicalMethod = Callable[[np.ndarray, DegradationConfig], np.ndarray]


def bm3d_denoise(lq: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """BM3D (Dabov et al. 2007; the `bm3d` package, Mäkinen et al. 2020) with the true sigma,
    on RGB through its colour-space variant — the strongest classical Gaussian denoiser."""
    try:
        import bm3d
    except ImportError as err:  # optional extra
        raise RuntimeError(
            "BM3D needs the optional package: pip install 'irctl[classical]'"
        ) from err
    return np.asarray(bm3d.bm3d_rgb(lq, degradation.sigma / 255.0), dtype=np.float32)


def dcp_dehaze(lq: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """He et al.'s dark channel prior with guided-filter refinement (irctl/methods/dcp.py); it
    needs no parameter of the degradation."""
    from irctl.methods.dcp import dark_channel_prior

    return dark_channel_prior(lq)


def richardson_lucy_guess(lq: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """Richardson–Lucy deconvolution (30 iterations, scikit-image) with a *guessed* kernel: an
    isotropic Gaussian of σ = ⅙ of the mean kernel size of ``degradation.blur_size``.

    Not blind and not oracle: RL needs the blur kernel, which a user with a shaken photo does
    not have, and a held-out case keeps no record of the random trajectory it was blurred with.
    The guess is what one would type in without estimating the kernel; a blind kernel estimate
    would do better on strong shake, and the true kernel better still, so this row is a floor
    for classical deblurring, not its best."""
    from skimage.restoration import richardson_lucy

    size = round(sum(degradation.blur_size) / 2) | 1
    sigma = size / 6.0
    r = np.arange(size) - size // 2
    g = np.exp(-(r**2) / (2.0 * sigma**2))
    psf = np.outer(g, g)
    psf /= psf.sum()
    planes = [
        richardson_lucy(np.clip(lq[..., c], 0.0, 1.0).astype(np.float64), psf, num_iter=30)
        for c in range(lq.shape[2])
    ]
    return np.stack(planes, axis=2).astype(np.float32)


def telea_inpaint(lq: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """OpenCV's Telea inpainting (Telea 2004, fast marching; radius 5) of the holes of an
    inpainting input ``[image·(1 − m), m]`` (irctl/data/masks.py)."""
    import cv2

    holes = (lq[..., 3] >= 0.5).astype(np.uint8)
    image8 = np.rint(np.clip(lq[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.inpaint(image8, holes, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


def navier_stokes_inpaint(lq: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """OpenCV's Navier–Stokes inpainting (Bertalmio et al. 2001; radius 5) of the holes of an
    inpainting input ``[image·(1 − m), m]``: Telea's counterpart, transporting isophotes."""
    import cv2

    holes = (lq[..., 3] >= 0.5).astype(np.uint8)
    image8 = np.rint(np.clip(lq[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.inpaint(image8, holes, 5, cv2.INPAINT_NS).astype(np.float32) / 255.0


CLASSICAL: dict[str, ClassicalMethod] = {
    "bm3d": bm3d_denoise,
    "dcp": dcp_dehaze,
    "richardson-lucy": richardson_lucy_guess,
    "telea": telea_inpaint,
    "navier-stokes": navier_stokes_inpaint,
}
#: The classical method a user of each task would otherwise pick (none exists for a lens-to-lens
#: bokeh transform: the input itself is the baseline there; for SR the input row is the bicubic
#: upsampling; none simple and honest for rain streaks).
CLASSICAL_FOR_TASK: dict[str, str] = {
    "denoise": "bm3d",
    "dehaze": "dcp",
    "deblur": "richardson-lucy",
    "inpaint": "telea",
}
