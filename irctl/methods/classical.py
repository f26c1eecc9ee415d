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


CLASSICAL: dict[str, ClassicalMethod] = {"bm3d": bm3d_denoise, "dcp": dcp_dehaze}
#: The classical method a user of each task would otherwise pick (none exists for a lens-to-lens
#: bokeh transform: the input itself is the baseline there).
CLASSICAL_FOR_TASK: dict[str, str] = {"denoise": "bm3d", "dehaze": "dcp"}
