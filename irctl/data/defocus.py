"""Synthetic single-image defocus blur, as DPDD's: a sharp photo refocused by a thin lens.

DPDD (Abuolaim & Brown, "Defocus Deblurring Using Dual-Pixel Data", ECCV 2020; the defocus
benchmark DTPM reports, single-image protocol of Restormer) pairs a wide-aperture shot, whose
scene away from the focal plane is blurred, with a narrow-aperture (all-in-focus) shot of the
same scene. Its blur is spatially varying: each point spreads into a circle of confusion (CoC)
whose radius grows with its distance from the focal plane, and the aperture makes the spread a
near-uniform disc (a "pillbox"), not a Gaussian.

The shipped photos are all-in-focus and have no depth, so this renders that model from a proxy:

- **Depth** (:func:`defocus_depth`): per photo, w·L + (1 − w)·R, re-normalised to [0, 1], with L
  the photo's smoothed luminance (:func:`irctl.data.bokeh.luminance_depth`) and R the smooth
  random field with a vertical gradient of the haze synthesis (:func:`irctl.data.fields.
  depth_proxy`), w drawn per photo. L follows the photo's edges, so an object keeps one depth
  and the blur changes at its outline, as a real depth discontinuity does (R alone would blur
  half an object); R decorrelates the blur from brightness, so a model cannot learn "bright is
  blurred" — a cue the real DPDD photos do not have — and must read the blur off the image,
  which is what the blind task asks.
- **CoC** (:func:`coc_map`): the proxy is read as a normalised inverse depth (disparity), for
  which the thin lens gives a CoC radius exactly linear in the defocus:
  r(x) = r_max·|d(x) − d_focus| pixels, with the focal plane d_focus and the per-photo maximum
  r_max drawn from their ranges (so r ≤ r_max everywhere).
- **Rendering** (:func:`render_defocus`): uniform-disc (pillbox) kernels by depth layers, one
  layer per pixel of radius, composited by normalised convolution — the bokeh synthesis'
  :func:`irctl.data.bokeh.layered_blur`. A pixel at the focal plane is left exactly as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from irctl.data.bokeh import layered_blur, luminance_depth
from irctl.data.fields import depth_proxy, normalize_per_sample

__all__ = ["DefocusParams", "add_defocus", "coc_map", "defocus_depth", "render_defocus"]

#: Spacing of the rendering's layers in CoC radius (pixels): between two layers' disc radii a
#: pixel's blur is interpolated linearly, so 1 px keeps the error below a pixel of radius.
LAYER_STEP = 1.0


@dataclass(frozen=True)
class DefocusParams:
    """The defocus ranges (DegradationConfig's ``defocus_*`` fields hold the defaults)."""

    max_radius: tuple[float, float] = (4.0, 12.0)  # r_max: CoC radius (px) at |d − focus| = 1
    focus: tuple[float, float] = (0.0, 1.0)  # the focal plane's depth in the [0, 1] proxy
    luminance: tuple[float, float] = (0.3, 0.7)  # share w of the luminance cue in the proxy

    def check(self) -> None:
        """Raise ValueError naming the degradation field that cannot work."""
        for name in ("max_radius", "focus", "luminance"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"degradation.defocus_{name} must be 0 ≤ lo ≤ hi, got {lo, hi}")
        for name in ("focus", "luminance"):
            if getattr(self, name)[1] > 1:
                raise ValueError(
                    f"degradation.defocus_{name} lies in [0, 1], got {getattr(self, name)}"
                )


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand((n, 1, 1, 1), generator=generator, dtype=torch.float32)


def defocus_depth(clean: Tensor, generator: torch.Generator, share: Tensor) -> Tensor:
    """N×1×H×W depth proxy in [0, 1] for an N×3×H×W batch: ``share``·luminance depth +
    (1 − ``share``)·random depth field (``share`` N×1×1×1), re-normalised per photo."""
    n, _, height, width = clean.shape
    field = depth_proxy(n, height, width, generator).to(clean.device)
    lum = luminance_depth(clean).float()
    w = share.to(clean.device)
    return normalize_per_sample(w * lum + (1.0 - w) * field)


def coc_map(depth: Tensor, focus: Tensor, max_radius: Tensor) -> Tensor:
    """Thin-lens CoC radius in pixels, r = r_max·|d − d_focus| (``focus`` and ``max_radius``
    broadcast per photo, N×1×1×1)."""
    return max_radius * (depth - focus).abs()


def render_defocus(sharp: Tensor, coc: Tensor) -> Tensor:
    """An N×C×H×W sharp batch blurred by uniform discs of per-pixel radius ``coc`` (N×1×H×W,
    pixels): layers every :data:`LAYER_STEP` px of radius, composited by normalised
    convolution. Where ``coc`` is 0 the pixel keeps its value exactly."""
    coc = coc.to(device=sharp.device, dtype=sharp.dtype)
    top = float(coc.max()) if coc.numel() else 0.0
    radii = [k * LAYER_STEP for k in range(math.ceil(top / LAYER_STEP) + 1)]
    return layered_blur(sharp, coc / LAYER_STEP, radii, rim=1.0)


def add_defocus(
    clean: Tensor, generator: torch.Generator, params: DefocusParams
) -> tuple[Tensor, Tensor]:
    """Each photo of the N×3×H×W batch in [0, 1] refocused with its own draws (share of the
    luminance cue, focal plane, r_max, then the random depth field): the blurred batch (not
    quantised) and the CoC radius map, N×1×H×W pixels — what the synthesis knew."""
    n = clean.shape[0]
    share = _uniform(n, params.luminance, generator)
    focus = _uniform(n, params.focus, generator).to(clean.device)
    max_radius = _uniform(n, params.max_radius, generator).to(clean.device)
    depth = defocus_depth(clean, generator, share)
    coc = coc_map(depth, focus, max_radius)
    return render_defocus(clean, coc), coc
