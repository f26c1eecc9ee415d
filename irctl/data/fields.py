"""Random spatial fields used as depth and density proxies.

The shipped photos have no depth maps, so haze (t = exp(−β·d)) and bokeh (circle of confusion
∝ |d − d_focus|) are driven by plausible random proxies instead: a smooth random field gives
patchy structure (dense / thin haze, near / far regions) and a vertical gradient gives the usual
outdoor layout (ground near at the bottom, sky far at the top).

Every field's correlation length is a fraction of the frame, not a number of pixels, so a
128-pixel training crop and a whole 400×600 test photo get statistically similar fields.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["depth_proxy", "normalize_per_sample", "smooth_field"]


def normalize_per_sample(x: Tensor) -> Tensor:
    """Min-max normalise each sample of an N×C×H×W tensor to [0, 1].

    A constant sample has no range to stretch; it maps to 0.5 (the middle of the range) rather
    than dividing by zero.
    """
    flat = x.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
    hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
    span = hi - lo
    constant = span <= 1e-12
    out = (x - lo) / torch.where(constant, torch.ones_like(span), span)
    return torch.where(constant, torch.full_like(out, 0.5), out).clamp(0.0, 1.0)


def _grid_size(height: int, width: int, cells: int) -> tuple[int, int]:
    """About ``cells`` cells along the shorter side, the same cell size along the longer one."""
    short = min(height, width)
    gh = max(1, round(cells * height / short))
    gw = max(1, round(cells * width / short))
    return gh, gw


def smooth_field(
    n: int, height: int, width: int, generator: torch.Generator, cells: int = 4
) -> Tensor:
    """N×1×H×W smooth random field in [0, 1] (value noise: uniform noise on a coarse grid,
    upsampled bicubically, then min-max normalised per sample).

    ``cells`` sets the correlation length as a fraction of the shorter side (~1/cells). The
    field is drawn on the CPU generator and returned on the CPU.
    """
    gh, gw = _grid_size(height, width, cells)
    coarse = torch.rand((n, 1, gh, gw), generator=generator, dtype=torch.float32)
    fine = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return normalize_per_sample(fine)


def depth_proxy(n: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """N×1×H×W depth proxy in [0, 1], 1 = far.

    Per sample, ``a·gradient + (1 − a)·field`` with ``a ~ U(0.3, 1)``: the vertical gradient puts
    the top of the frame far (sky and horizon, as in most outdoor photos) and the smooth field
    adds near / far blobs; the mix is re-normalised to [0, 1].
    """
    a = 0.3 + 0.7 * torch.rand((n, 1, 1, 1), generator=generator, dtype=torch.float32)
    rows = torch.linspace(1.0, 0.0, height, dtype=torch.float32) if height > 1 else torch.ones(1)
    gradient = rows.view(1, 1, height, 1).expand(n, 1, height, width)
    field = smooth_field(n, height, width, generator)
    return normalize_per_sample(a * gradient + (1.0 - a) * field)
