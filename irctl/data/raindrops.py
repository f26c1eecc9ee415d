"""Synthetic raindrops stuck to the lens or the glass in front of it, as the RainDrop dataset's.

RainDrop (Qian et al., "Attentive Generative Adversarial Network for Raindrop Removal from A
Single Image", CVPR 2018; the raindrop benchmark DTPM reports, test_a) photographed each scene
through a glass pane sprayed with water and again through a clean one. Its paper's model is
I = (1 − M)⊙B + R: where the mask M is 0 the image is the background B; inside a drop it is R,
light the drop gathers from a wider part of the scene than the drop covers and refracts — a
water drop is a small, strong lens, so it shows a minified (usually inverted, fish-eye) view
of its surroundings — and since the camera is focused on the scene and the drop is close to
the lens, that view is out of focus. The drop's curved edge bends light out of the lens, so the
rim is darker, and its outline is soft. (The shipped pairs also show the whole background a
little softer than the clean shot; the synthesis makes that a setting, mild by default.)

This renders that model. Each drop is an ellipse (random radius, aspect ratio, orientation) at
a random place; inside it, pixel p shows the photo at c + d + m·(p − c) — c the drop's centre,
d a small random displacement, m = −zoom for an inverting drop (a view ``zoom`` times the
drop's size, flipped through its centre) or +1/zoom for a merely magnifying one — blurred by a
Gaussian, darkened towards the rim, and blended over the (optionally blurred) background with a
soft edge. Where drops overlap the one with the larger alpha wins.

Everything here is a pure function of its inputs and a NumPy generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

#: ``count`` is per this many pixels (a 256×256 crop), so a larger image gets more drops
COUNT_AREA = 256 * 256


@dataclass(frozen=True)
class RaindropParams:
    """The drops' ranges (DegradationConfig's ``raindrop_*`` fields hold the defaults)."""

    count: tuple[float, float] = (4.0, 20.0)  # drops per 256×256 pixels
    radius: tuple[float, float] = (5.0, 18.0)  # semi-major axis, pixels
    aspect: tuple[float, float] = (1.0, 1.4)  # major / minor axis
    zoom: tuple[float, float] = (1.5, 3.0)  # the refracted view's size over the drop's
    flip: float = 0.8  # share of drops that invert their view
    blur: tuple[float, float] = (1.0, 2.5)  # Gaussian std of the drop's content, pixels
    rim: tuple[float, float] = (0.1, 0.35)  # darkening at the rim
    background_blur: tuple[float, float] = (0.0, 0.8)  # Gaussian std of the background, pixels

    def check(self) -> None:
        """Raise ValueError naming the degradation field that cannot work."""
        for name in ("count", "radius", "aspect", "zoom", "blur", "rim", "background_blur"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"degradation.raindrop_{name} must be 0 ≤ lo ≤ hi, got {lo, hi}")
        if self.radius[0] < 1:
            raise ValueError(f"degradation.raindrop_radius must be ≥ 1 pixel, got {self.radius}")
        if self.aspect[0] < 1:
            raise ValueError(f"degradation.raindrop_aspect must be ≥ 1, got {self.aspect}")
        if self.zoom[0] < 1:
            raise ValueError(f"degradation.raindrop_zoom must be ≥ 1, got {self.zoom}")
        if self.rim[1] > 1:
            raise ValueError(f"degradation.raindrop_rim must be ≤ 1, got {self.rim}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"degradation.raindrop_flip is a share in [0, 1], got {self.flip}")


@dataclass(frozen=True)
class DropMaps:
    """One image's drops: alpha (H×W, 0 outside every drop), where each pixel samples the
    photo from (``sample_y``, ``sample_x``; the pixel itself outside drops), and the rim's
    shading (1 outside drops)."""

    alpha: np.ndarray
    sample_y: np.ndarray
    sample_x: np.ndarray
    shade: np.ndarray


def drop_maps(
    height: int, width: int, rng: np.random.Generator, params: RaindropParams
) -> DropMaps:
    """Draw one image's drops."""
    sample_y, sample_x = np.mgrid[0:height, 0:width].astype(np.float64)
    alpha = np.zeros((height, width))
    shade = np.ones((height, width))
    count = round(rng.uniform(*params.count) * height * width / COUNT_AREA)
    rim = rng.uniform(*params.rim)
    for _ in range(count):
        a = rng.uniform(*params.radius)
        b = a / rng.uniform(*params.aspect)
        theta = rng.uniform(0.0, np.pi)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        zoom = rng.uniform(*params.zoom)
        m = -zoom if rng.uniform() < params.flip else 1.0 / zoom
        shift = rng.uniform(0.0, 0.5 * a)
        phi = rng.uniform(0.0, 2 * np.pi)
        dy, dx = shift * np.sin(phi), shift * np.cos(phi)
        reach = int(np.ceil(a + 1))
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        oy, ox = ys - cy, xs - cx
        u = (ox * np.cos(theta) + oy * np.sin(theta)) / a
        v = (-ox * np.sin(theta) + oy * np.cos(theta)) / b
        rho = np.hypot(u, v)  # 0 at the centre, 1 on the outline
        # soft outline: alpha ramps from 0 to 1 over the outermost ~1.5 pixels
        mine = np.clip((1.0 - rho) * b / 1.5, 0.0, 1.0)
        wins = mine > alpha[y0:y1, x0:x1]
        alpha[y0:y1, x0:x1][wins] = mine[wins]
        sample_y[y0:y1, x0:x1][wins] = (cy + dy + m * oy)[wins]
        sample_x[y0:y1, x0:x1][wins] = (cx + dx + m * ox)[wins]
        ring = 1.0 - rim * np.exp(-(((rho - 0.85) / 0.12) ** 2))
        shade[y0:y1, x0:x1][wins] = ring[wins]
    return DropMaps(alpha=alpha, sample_y=sample_y, sample_x=sample_x, shade=shade)


def render_drops(
    photo: np.ndarray, maps: DropMaps, drop_blur: float, background_blur: float
) -> np.ndarray:
    """A C×H×W photo seen through ``maps``' drops: out-of-focus refracted views blended over
    the background, which is the photo (blurred by ``background_blur`` when > 0) wherever
    alpha is 0."""
    out = np.empty_like(photo)
    for c, channel in enumerate(photo):
        background = (
            ndimage.gaussian_filter(channel, background_blur, mode="reflect")
            if background_blur > 0
            else channel
        )
        refracted = ndimage.map_coordinates(
            channel, [maps.sample_y, maps.sample_x], order=1, mode="mirror"
        )
        if drop_blur > 0:
            refracted = ndimage.gaussian_filter(refracted, drop_blur, mode="reflect")
        out[c] = background * (1.0 - maps.alpha) + refracted * maps.shade * maps.alpha
    return out


def add_raindrops(
    clean: Tensor, rng: np.random.Generator, params: RaindropParams
) -> tuple[Tensor, Tensor]:
    """Each image of the N×C×H×W batch in [0, 1] seen through its own drops: the batch and the
    drops' alpha, N×1×H×W."""
    rainy, masks = [], []
    for image in clean:
        photo = image.detach().cpu().double().numpy()
        maps = drop_maps(photo.shape[-2], photo.shape[-1], rng, params)
        drop_blur = rng.uniform(*params.blur)
        background_blur = rng.uniform(*params.background_blur)
        out = render_drops(photo, maps, drop_blur, background_blur)
        rainy.append(torch.from_numpy(out).to(image))
        masks.append(torch.from_numpy(maps.alpha)[None].to(image))
    return torch.stack(rainy), torch.stack(masks)
