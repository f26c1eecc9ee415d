"""Cast shadows on a shadow-free photo: (shadow image, shadow-free image) pairs for shadow removal.

The target task is the NTIRE 2023 shadow-removal track (WSRD; Refusion's "deshadow" model): a
shadow image in, the shadow-free image out, no mask given. We have no real pairs, so shadows are
cast synthetically on the shipped photos with the usual per-channel shadow model (Finlayson et
al.; Le & Samaras, ICCV 2019):

    I_c(x) = J_c(x) · (1 − m(x)·(1 − a_c)),

with J the clean photo, m ∈ [0, 1] the shadow matte (1 in the umbra, 0 where lit, a soft ramp in
the penumbra) and a_c the fraction of light left in the umbra per channel. The umbra is lit by the
sky alone, which is bluer than direct sunlight, so a_R < a_G < a_B: shadows are darker *and*
bluer.

Occluders are random irregular shapes: star polygons (foliage, corners), Fourier blobs, thin bars
with branches (poles, branches) and half-planes (a building's edge), unioned. The penumbra is the
part of the sun's disc an edge hides: with s the signed distance to the occluder's outline over
half the penumbra width, the hidden fraction of a disc is (arccos(−s) + s·√(1 − s²))/π. Its width
grows with the occluder-to-ground distance, which varies over a scene, so it varies over the frame
(a smooth field between two drawn widths).

Refusion's paper (§5.3) notes that every real training pair also differs in overall luminance
(and slightly in position) between input and ground truth, because the two were captured at
different moments. That is modelled as a small random per-channel gain (exposure / white-balance
drift) applied to the **input**: the target stays the unmodified photo, which is what the held-out
metrics compare against, and it keeps "the shadow-free image" well defined. A model trained on
these pairs sees the same nuisance as on the real ones (it cannot predict a random gain, so it
learns to keep the input's global level). The position shift is not modelled: it only blurs what a
pixel loss can learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = [
    "ShadowParams",
    "ShadowSample",
    "add_shadow",
    "apply_shadow",
    "penumbra_profile",
    "shadow_mask",
    "shadow_parameters",
]

#: Largest umbra transmittance of any channel: a shadow must stay visibly darker than the light.
MAX_ATTENUATION = 0.95
#: Correlation length (cells along the shorter side) of the field that wobbles the outlines.
JITTER_CELLS = 8
#: Correlation length of the field that varies the penumbra width over the frame.
SOFTNESS_CELLS = 3
#: Correlation length of the field that shapes a dark scene's dimming (frame-scale: no edges).
SCENE_CELLS = 2
#: The non-identity orders of the three colour channels (``recolour``).
PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
#: Occluder sets drawn before giving up on one that leaves part of the canvas lit.
MAX_REDRAWS = 20


@dataclass(frozen=True)
class ShadowParams:
    """Ranges the per-image shadow is drawn from (a value is drawn uniformly within each range).

    ``shapes``: how many occluders are unioned, inclusive (the first is always a large one —
    polygon, blob or half-plane — so there is nearly always an umbra; the others may also be thin
    bars; a shadow narrower than its penumbra has no umbra, as a far branch's, ~0.2% of draws).
    ``softness``: penumbra width in pixels, the 0 → 1 ramp of the matte; two widths are drawn
    and a smooth field blends between them over the frame. ``area``: the fraction of the frame
    whose matte is ≥ 0.5 is clamped into this range (the outline is grown or shrunk to fit), so
    no draw is all-lit or all-shadow. ``jitter``: amplitude in pixels of the smooth noise that
    wobbles the outlines (irregular edges rather than clean polygons).
    ``attenuation_red``: a_R, the red channel's umbra transmittance (0.2 = a hard noon shadow,
    0.6 = a hazy day's faint one). ``blue_ratio``: a_B / a_R > 1, the skylight's blueness;
    a_G = a_R · ratio^γ with γ ~ U(0.3, 0.7) lies between; every a_c is capped at 0.95.
    ``gain``: global luminance gain of the input relative to the target (capture drift, §5.3 of
    the paper), and ``tint``: largest extra per-channel gain deviation (white-balance drift), so
    the input's channel c is scaled by gain·(1 + t_c), t_c ~ U(−tint, tint).
    ``no_shadow``: probability of an image with no shadow at all (input = target up to the gain),
    so a model learns to leave shadow-free photos alone.
    ``dark_scene``: probability that the scene itself (target and input alike) is dimmed and
    blued by a factor drawn as an umbra's with a red transmittance in ``dark_scene_red`` — a
    photo taken in shade or at dusk. The dimming varies smoothly over the frame (a gradient in a
    random direction mixed with a frame-scale field, from a random floor up to the full factor):
    a dusk sky darkens towards the zenith, a room towards its corners, with no edge anywhere.
    Without it every dark-blue region a model sees in training is a cast shadow, and it lifts a
    night sky or a dark corner; with a *uniform* dimming only, it learns to tell a dim frame from
    a shadow by global statistics, and still lifts the dark half of a frame. What sets a cast
    shadow apart is its edge (a penumbra of ``softness`` pixels), so that is all this leaves.
    ``recolour``: probability that the photo's colour channels are permuted before anything
    else (target too). The shipped colour photos are warm (red ≥ blue everywhere), so without
    it the only blue regions a model ever sees are shadows, and it greys a blue sky.
    """

    shapes: tuple[int, int] = (1, 4)
    softness: tuple[float, float] = (1.0, 10.0)
    area: tuple[float, float] = (0.05, 0.6)
    jitter: tuple[float, float] = (0.0, 3.0)
    attenuation_red: tuple[float, float] = (0.2, 0.6)
    blue_ratio: tuple[float, float] = (1.1, 1.6)
    gain: tuple[float, float] = (0.96, 1.04)
    tint: float = 0.02
    no_shadow: float = 0.1
    dark_scene: float = 0.0
    dark_scene_red: tuple[float, float] = (0.25, 0.9)
    recolour: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.area
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"area range must lie in [0, 1], got {self.area}")
        if self.shapes[0] < 1 or self.shapes[1] < self.shapes[0]:
            raise ValueError(f"shapes must be a range of positive counts, got {self.shapes}")
        if self.softness[0] <= 0.0 or self.softness[1] < self.softness[0]:
            raise ValueError(f"softness must be positive widths in pixels, got {self.softness}")
        if self.blue_ratio[0] < 1.0:
            raise ValueError(f"blue_ratio must be ≥ 1 (shadows are bluer), got {self.blue_ratio}")
        if not 0.0 <= self.no_shadow <= 1.0:
            raise ValueError(f"no_shadow is a probability, got {self.no_shadow}")
        if not 0.0 <= self.dark_scene <= 1.0:
            raise ValueError(f"dark_scene is a probability, got {self.dark_scene}")
        if not 0.0 <= self.recolour <= 1.0:
            raise ValueError(f"recolour is a probability, got {self.recolour}")


@dataclass(frozen=True)
class ShadowSample:
    """One draw: matte H×W float32 in [0, 1] (all zero for a shadow-free draw), the umbra
    transmittance per channel (3,), the input's per-channel gain (3,) and the scene's own
    dimming: ones (3,) unless the draw is a dark scene, then a smooth H×W×3 field; ``channels``
    is the order the photo's channels are taken in (identity unless the draw recolours it)."""

    mask: np.ndarray
    attenuation: np.ndarray
    gain: np.ndarray
    scene: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))
    channels: tuple[int, int, int] = (0, 1, 2)

    @property
    def has_shadow(self) -> bool:
        return bool(self.mask.any())


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _field(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """H×W smooth field in [0, 1] from :func:`irctl.data.fields.smooth_field` (frame-relative
    correlation length), driven by a torch generator seeded from ``rng`` so the draw stays a pure
    function of the numpy generator."""
    import torch

    from irctl.data.fields import smooth_field

    g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return smooth_field(1, h, w, g, cells=cells)[0, 0].numpy().astype(np.float64)


def penumbra_profile(s: np.ndarray) -> np.ndarray:
    """Hidden fraction of a uniform disc light (the sun) whose centre lies ``s`` radii inside a
    straight occluder edge: 0 for s ≤ −1 (fully lit), 1 for s ≥ 1 (umbra), ½ on the edge.

    The area of a circular segment gives (arccos(−s) + s·√(1 − s²))/π, an S-curve that is exactly
    0 and 1 at the ends (no long tails as a Gaussian blur would leave).
    """
    s = np.clip(s, -1.0, 1.0)
    return (np.arccos(-s) + s * np.sqrt(1.0 - s * s)) / math.pi


# --- occluder outlines, as polygons in (row, col) canvas coordinates --------------------------


def _rotate(rows: np.ndarray, cols: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    return c * rows - s * cols, s * rows + c * cols


def _star_polygon(
    centre: tuple[float, float], radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """3–9 vertices at random angles and radii: an irregular, possibly non-convex polygon."""
    n = int(rng.integers(3, 10))
    angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, n))
    radii = radius * rng.uniform(0.4, 1.0, n)
    return centre[0] + radii * np.sin(angles), centre[1] + radii * np.cos(angles)


def _blob(
    centre: tuple[float, float], radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth lumpy outline r(θ) = r₀(1 + Σₖ aₖ cos(kθ + φₖ)), k = 2…5, stretched and rotated:
    organic shapes (bushes, people, rocks) that are neither ellipses nor polygons."""
    theta = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0.0, 0.6 / k) * np.cos(k * theta + rng.uniform(0.0, 2.0 * math.pi))
    r = radius * np.clip(r, 0.25, None)
    rows = r * np.sin(theta) * rng.uniform(0.4, 1.0)
    cols = r * np.cos(theta)
    rows, cols = _rotate(rows, cols, rng.uniform(0.0, math.pi))
    return centre[0] + rows, centre[1] + cols


def _half_plane(
    centre: tuple[float, float], size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Everything on one side of a (possibly kinked) line through ``centre``: the shadow of a
    wall or a building edge that covers part of the frame."""
    angle = rng.uniform(0.0, 2.0 * math.pi)
    kink = rng.uniform(-0.5, 0.5) if rng.random() < 0.5 else 0.0
    far = 4.0 * size
    # Local frame: "across" (rows) is the line's normal, shadow on the positive side; "along"
    # (cols) runs through the centre, its negative half bent by the kink angle.
    across = np.array([far * math.sin(kink), 0.0, 0.0, far, far])
    along = np.array([-far * math.cos(kink), 0.0, far, far, -far])
    rows, cols = _rotate(across, along, angle)
    return centre[0] + rows, centre[1] + cols


def _bar_polygons(
    centre: tuple[float, float], short: float, diagonal: float, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A thin long rectangle (pole, trunk, cable) and, half the time, 1–3 thinner branches."""

    def bar(
        start: tuple[float, float], angle: float, length: float, width: float
    ) -> tuple[np.ndarray, np.ndarray]:
        d_r, d_c = math.sin(angle), math.cos(angle)
        n_r, n_c = -d_c * width / 2.0, d_r * width / 2.0
        end = (start[0] + d_r * length, start[1] + d_c * length)
        rows = np.array([start[0] + n_r, end[0] + n_r, end[0] - n_r, start[0] - n_r])
        cols = np.array([start[1] + n_c, end[1] + n_c, end[1] - n_c, start[1] - n_c])
        return rows, cols

    angle = rng.uniform(0.0, math.pi)
    length = rng.uniform(0.4, 1.2) * diagonal
    width = rng.uniform(0.015, 0.06) * short
    start = (
        centre[0] - math.sin(angle) * length / 2.0,
        centre[1] - math.cos(angle) * length / 2.0,
    )
    polys = [bar(start, angle, length, width)]
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            t = rng.uniform(0.2, 0.9) * length
            fork = (start[0] + math.sin(angle) * t, start[1] + math.cos(angle) * t)
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(math.radians(20), math.radians(70))
            polys.append(
                bar(
                    fork,
                    angle + turn,
                    rng.uniform(0.2, 0.5) * length,
                    width * rng.uniform(0.4, 0.8),
                )
            )
    return polys


def _occluders(
    h: int, w: int, pad: int, count: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Polygons for ``count`` occluders on the padded canvas; centres lie in the frame."""
    short, diagonal = float(min(h, w)), math.hypot(h, w)
    polys: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(count):
        centre = (pad + rng.uniform(0.0, h), pad + rng.uniform(0.0, w))
        kinds = ("star", "blob", "half") if i == 0 else ("star", "blob", "half", "bar", "bar")
        kind = kinds[int(rng.integers(0, len(kinds)))]
        if kind == "bar":
            polys.extend(_bar_polygons(centre, short, diagonal, rng))
            continue
        radius = rng.uniform(0.15, 0.45) * short
        make = {"star": _star_polygon, "blob": _blob, "half": _half_plane}[kind]
        polys.append(make(centre, radius if kind != "half" else diagonal, rng))
    return polys


def _signed_distance(inside: np.ndarray) -> np.ndarray:
    """Distance in pixels to the outline, positive inside; the outline lies halfway between an
    inside and an outside pixel, hence the ±½."""
    if inside.all() or not inside.any():
        big = float(sum(inside.shape))
        return np.full(inside.shape, big if inside.all() else -big)
    d_in = ndimage.distance_transform_edt(inside)
    d_out = ndimage.distance_transform_edt(~inside)
    return np.where(inside, d_in - 0.5, -(d_out - 0.5))


def _clamp_area(sd: np.ndarray, area: tuple[float, float]) -> np.ndarray:
    """Shift the signed distance so the fraction of pixels with sd ≥ 0 lies within ``area``:
    a uniform grow / shrink of every outline, which keeps the shapes but fixes the coverage.

    The zero level goes on the k-th largest value (growing) or midway between the k-th largest
    and the next larger distinct value (shrinking), so tied values cannot push the count past the
    bound.
    """
    n = sd.size
    flat = np.sort(sd.ravel())[::-1]  # descending: flat[k - 1] is the k-th largest
    covered = int(np.count_nonzero(sd >= 0.0))
    k_lo, k_hi = math.ceil(area[0] * n), math.floor(area[1] * n)
    if covered < k_lo and k_lo > 0:
        return sd - flat[k_lo - 1]  # the k_lo largest become ≥ 0
    if covered > k_hi:
        if k_hi == 0:
            return sd - flat[0] - 1.0
        below = flat[k_hi]  # the (k_hi + 1)-th largest must end up < 0
        larger = flat[flat > below]
        above = float(larger.min()) if larger.size else below + 1.0
        return sd - 0.5 * (below + above)
    return sd


def shadow_mask(h: int, w: int, params: ShadowParams, rng: np.random.Generator) -> np.ndarray:
    """H×W float32 shadow matte in [0, 1]: 0 lit, 1 umbra, a soft penumbra in between.

    Always casts a shadow (the no-shadow draw is :func:`shadow_parameters`'s decision). The
    occluders are rasterised on a canvas padded by the widest penumbra, so an outline just
    outside the frame still shades its edge, then: union → signed distance → smooth-noise wobble
    of the outline (``jitter`` px) → area clamp → disc-light penumbra of a width that varies
    smoothly over the frame between two draws from ``softness``.
    """
    from skimage.draw import polygon as fill_polygon

    pad = math.ceil(params.softness[1] + params.jitter[1]) + 2
    canvas = (h + 2 * pad, w + 2 * pad)
    count = int(rng.integers(params.shapes[0], params.shapes[1] + 1))
    for _ in range(MAX_REDRAWS):
        inside = np.zeros(canvas, dtype=bool)
        for rows, cols in _occluders(h, w, pad, count, rng):
            rr, cc = fill_polygon(rows, cols, shape=canvas)
            inside[rr, cc] = True
        # A union that covers the whole canvas (two half-planes) has no outline to measure
        # distances from; the area clamp would then shape the matte from the jitter noise alone.
        if not inside.all():
            break
    sd = _signed_distance(inside)[pad : pad + h, pad : pad + w]
    amplitude = _uniform(rng, params.jitter)
    sd = sd + amplitude * (2.0 * _field(h, w, rng, JITTER_CELLS) - 1.0)
    sd = _clamp_area(sd, params.area)
    w_a, w_b = _uniform(rng, params.softness), _uniform(rng, params.softness)
    width = w_a + (w_b - w_a) * _field(h, w, rng, SOFTNESS_CELLS)
    return penumbra_profile(2.0 * sd / width).astype(np.float32)


def _attenuation(
    params: ShadowParams, rng: np.random.Generator, red: tuple[float, float] | None = None
) -> np.ndarray:
    """(a_R, a_G, a_B) with a_R < a_G < a_B ≤ 0.95: darker and bluer umbra (skylight only);
    ``red`` overrides the range a_R is drawn from."""
    a_r = _uniform(rng, params.attenuation_red if red is None else red)
    ratio = _uniform(rng, params.blue_ratio)
    gamma = float(rng.uniform(0.3, 0.7))
    a = np.array([a_r, a_r * ratio**gamma, a_r * ratio], dtype=np.float64)
    return np.minimum(a, MAX_ATTENUATION).astype(np.float32)


def _scene_dimming(h: int, w: int, params: ShadowParams, rng: np.random.Generator) -> np.ndarray:
    """H×W×3 float32 dimming of a dark scene: 1 − f·(1 − a) with a an umbra-like (darker, bluer)
    factor and f a smooth profile whose maximum is 1 (the full factor is reached somewhere) and
    whose minimum is a floor ~ U(0, 1) (1 = uniform dimming). f mixes a linear gradient in a
    random direction (sky towards the zenith, light fall-off across a room) with a frame-scale
    smooth field, so its steepest step is a fraction of the frame, never a penumbra's."""
    a = _attenuation(params, rng, red=params.dark_scene_red).astype(np.float64)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = math.sin(angle) * rows + math.cos(angle) * cols
    span = np.ptp(ramp)
    ramp = (ramp - ramp.min()) / span if span > 0 else np.ones_like(ramp)
    mix = float(rng.uniform(0.0, 1.0))
    profile = mix * ramp + (1.0 - mix) * _field(h, w, rng, SCENE_CELLS)
    lo, hi = profile.min(), profile.max()
    profile = (profile - lo) / (hi - lo) if hi > lo else np.ones_like(profile)
    floor = float(rng.uniform(0.0, 1.0))
    f = floor + (1.0 - floor) * profile
    return (1.0 - f[..., None] * (1.0 - a)).astype(np.float32)


def shadow_parameters(
    h: int, w: int, params: ShadowParams, rng: np.random.Generator
) -> ShadowSample:
    """Draw one image's shadow: first whether it has any (``no_shadow``), then matte,
    attenuation and the input's gain (the gain is drawn for shadow-free images too), then, only
    when ``dark_scene`` > 0 (so draws without it are unchanged), whether the scene is dark, and
    only when ``recolour`` > 0, whether its channels are permuted (one of the 5 non-identity
    orders)."""
    shadowless = bool(rng.random() < params.no_shadow)
    if shadowless:
        mask = np.zeros((h, w), dtype=np.float32)
        attenuation = np.ones(3, dtype=np.float32)
    else:
        mask = shadow_mask(h, w, params, rng)
        attenuation = _attenuation(params, rng)
    tint = rng.uniform(-params.tint, params.tint, 3)
    gain = (_uniform(rng, params.gain) * (1.0 + tint)).astype(np.float32)
    scene = np.ones(3, dtype=np.float32)
    if params.dark_scene > 0.0 and rng.random() < params.dark_scene:
        scene = _scene_dimming(h, w, params, rng)
    channels = (0, 1, 2)
    if params.recolour > 0.0 and rng.random() < params.recolour:
        channels = PERMUTATIONS[int(rng.integers(0, len(PERMUTATIONS)))]
    return ShadowSample(
        mask=mask, attenuation=attenuation, gain=gain, scene=scene, channels=channels
    )


def apply_shadow(clean: np.ndarray, sample: ShadowSample) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) for an H×W×3 photo in [0, 1]: target = clean·s (clean's channels taken in
    the draw's order; s = the scene's dimming, ones for most draws, per pixel for a dark scene),
    input = clip(target·(1 − m(1 − a))·gain) (float32 copies)."""
    photo = np.asarray(clean, dtype=np.float32)[..., list(sample.channels)]
    target = (photo * sample.scene).astype(np.float32)
    m = sample.mask[..., None]
    shadowed = target * (1.0 - m * (1.0 - sample.attenuation))
    shadow_image = np.clip(shadowed * sample.gain, 0.0, 1.0).astype(np.float32)
    return shadow_image, target


def add_shadow(
    clean: np.ndarray, params: ShadowParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training pair from one clean H×W×3 float photo in [0, 1]: (shadow input, shadow-free
    target, matte H×W). Deterministic for a given generator state; the matte is returned for
    inspection and tests (the task itself gives the network no mask)."""
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"add_shadow expects an H×W×3 image, got shape {clean.shape}")
    sample = shadow_parameters(clean.shape[0], clean.shape[1], params, rng)
    shadow_image, target = apply_shadow(clean, sample)
    return shadow_image, target, sample.mask
