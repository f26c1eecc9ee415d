"""Synthetic lens bokeh, rendered from a sharp (all-in-focus) photo and a depth proxy.

Thin-lens model: a point at depth d, with the lens focused at d_focus, images to a circle of
confusion whose diameter grows with the aperture (∝ 1/N, N the f-number) and with the defocus
|d − d_focus|. Here the radius in pixels is

    r(x) = max_radius · (1.8 / N) · |d(x) − d_focus|,

so ``max_radius`` is the blur at f/1.8 for the largest defocus, f/1.4 blurs ~1.3× more and f/16
is nearly sharp (r ≤ 0.9 px at max_radius 8).

Brands differ in the point-spread *shape*, a synthetic stand-in for the two brands' different
rendering in the NTIRE 2023 bokeh data (we have no real lens pairs): Sony is a uniform disc,
Canon a disc with a brighter rim ("soap-bubble" / onion-ring bokeh of spherical aberration), so
a lens-to-lens model must learn both aperture size and kernel shape from the lens codes.

Spatially varying blur is rendered by depth layers with normalised convolution (Knutsson &
Westin 1993): out = Σ_k blur_k(I·m_k) / Σ_k blur_k(m_k) with soft layer masks m_k. Dividing by
the blurred masks keeps flat regions flat (no dark halos where a layer ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from irctl.data.lenses import Lens, parse_lens

__all__ = [
    "RIM_GAIN",
    "bokeh_pair",
    "coc_radius",
    "disc_kernel",
    "layered_blur",
    "render_bokeh",
]

#: Weight of the outer ring relative to the disc's interior, per brand.
RIM_GAIN: dict[str, float] = {"Sony": 1.0, "Canon": 1.6}
#: f-number at which ``max_radius`` is the blur radius for the largest defocus.
REFERENCE_F_NUMBER = 1.8
#: Sub-samples per pixel side for the kernel's area coverage (anti-aliasing).
SUPERSAMPLE = 8


def coc_radius(defocus: float | Tensor, f_number: float, max_radius: float) -> float | Tensor:
    """Circle-of-confusion radius in pixels for a defocus |d − d_focus| in [0, 1] (thin lens)."""
    return max_radius * (REFERENCE_F_NUMBER / f_number) * defocus


def _rim_width(radius: float) -> float:
    """Width of the bright outer ring: a fifth of the radius, at least 0.75 px to be visible."""
    return max(0.75, 0.2 * radius)


def disc_kernel(radius: float, rim: float = 1.0) -> Tensor:
    """2-D float32 aperture kernel of odd size summing to 1.

    Each pixel's weight is the disc's area coverage of that pixel (estimated on an 8×8 sub-pixel
    grid), so the kernel changes smoothly with a sub-pixel radius. Sub-samples in the outer ring
    (within ``_rim_width`` of the edge) weigh ``rim`` (1 = uniform disc). A radius below 0.5 px
    is a delta: the disc then fits inside one pixel.
    """
    if radius < 0.5:
        return torch.ones((1, 1), dtype=torch.float32)
    half = math.ceil(radius - 0.5)  # pixel i is touched when |i| − 0.5 < radius
    size = 2 * half + 1
    sub = (torch.arange(size * SUPERSAMPLE, dtype=torch.float64) + 0.5) / SUPERSAMPLE - 0.5 - half
    yy, xx = torch.meshgrid(sub, sub, indexing="ij")
    dist = torch.sqrt(yy**2 + xx**2)
    inside = (dist <= radius).double()
    gain = torch.where(dist > radius - _rim_width(radius), rim, 1.0)
    weight = (inside * gain).view(size, SUPERSAMPLE, size, SUPERSAMPLE).sum(dim=(1, 3))
    return (weight / weight.sum()).float()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise convolution of every channel with ``kernel``, reflect-padded (replicate when
    the image is too small to reflect), output the same size as ``x``."""
    if kernel.numel() == 1:
        return x
    half = kernel.shape[-1] // 2
    mode = "reflect" if half < min(x.shape[-2:]) else "replicate"
    padded = F.pad(x, (half, half, half, half), mode=mode)
    c = x.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(padded, weight, groups=c)


def layered_blur(
    sharp: Tensor, position: Tensor, radii: Sequence[float], rim: float = 1.0
) -> Tensor:
    """Spatially varying disc blur of an N×C×H×W batch by normalised convolution over bins.

    ``position`` (N×1×H×W, in [0, len(radii) − 1]) places each pixel between bins k and k + 1
    with triangular (linear-interpolation) memberships, which sum to 1 at every pixel; bin k is
    blurred with :func:`disc_kernel` of radius ``radii[k]`` (``rim``: the ring's weight), and
    out = Σ_k blur_k(I·m_k) / Σ_k blur_k(m_k) (Knutsson & Westin 1993), so a layer's edge leaves
    no dark halo. A bin of radius < 0.5 px is a delta: pixels wholly in it keep their values.
    Shared by the bokeh and the defocus syntheses (irctl/data/defocus.py).
    """
    channels = sharp.shape[1]
    numerator = torch.zeros_like(sharp)
    denominator = torch.zeros_like(position)
    for k, radius in enumerate(radii):
        mask = (1.0 - (position - k).abs()).clamp_min(0.0)
        if not bool(mask.any()):
            continue  # an empty layer adds exactly zero to both sums
        kernel = disc_kernel(float(radius), rim)
        blurred = _blur(torch.cat([sharp * mask, mask], dim=1), kernel)
        numerator = numerator + blurred[:, :channels]
        denominator = denominator + blurred[:, channels:]
    # Every pixel lies in some layer whose kernel has a positive centre tap, so the
    # denominator is positive; the floor only guards against float underflow.
    return numerator / denominator.clamp_min(1e-12)


def render_bokeh(
    sharp: Tensor, depth: Tensor, focus: Tensor, lens: Lens, max_radius: float, layers: int = 8
) -> Tensor:
    """Render ``lens``'s bokeh on an N×C×H×W sharp batch, depth N×1×H×W in [0,1], focus (N,).

    The defocus |d − d_focus| is split into ``layers`` bins centred on k/(layers − 1) with
    triangular (linear-interpolation) memberships, which sum to 1 at every pixel; the in-focus
    bin k = 0 has a delta kernel, so pixels at the focus depth keep their sharpness.
    """
    if layers < 2:
        raise ValueError(f"render_bokeh needs at least 2 depth layers, got {layers}")
    focus = focus.to(device=sharp.device, dtype=sharp.dtype).view(-1, 1, 1, 1)
    defocus = (depth.to(device=sharp.device, dtype=sharp.dtype) - focus).abs().clamp(0.0, 1.0)
    radii = [float(coc_radius(k / (layers - 1), lens.f_number, max_radius)) for k in range(layers)]
    return layered_blur(sharp, defocus * (layers - 1), radii, RIM_GAIN[lens.brand])


def luminance_depth(clean: Tensor, sigma: float = 3.0) -> Tensor:
    """A depth proxy the network can read off the image: smoothed luminance, bright = far.

    The shipped photos have no depth maps. A random depth field (``fields.depth_proxy``) would
    make the sharp → bokeh direction unlearnable: nothing in an all-in-focus photo would say
    where to blur. Brightness is a weak but real depth cue (aerial perspective: sky and distant
    scenery are lighter), and it survives the blur, so both directions of the transform are
    functions of the input. Gaussian-smoothed (σ in pixels) so that objects keep one depth.
    """
    luma = (0.299 * clean[:, 0:1] + 0.587 * clean[:, 1:2] + 0.114 * clean[:, 2:3]).float()
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=clean.device)
    g = torch.exp(-0.5 * (taps / sigma) ** 2)
    g = g / g.sum()
    pad_mode = "reflect" if min(luma.shape[-2:]) > radius else "replicate"
    smooth = F.conv2d(F.pad(luma, (radius, radius, 0, 0), mode=pad_mode), g.view(1, 1, 1, -1))
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode=pad_mode), g.view(1, 1, -1, 1))
    return ((smooth - 0.25) / 0.6).clamp(0.0, 1.0).to(clean.dtype)


def bokeh_pair(
    clean: Tensor,
    generator: torch.Generator,
    lens_names: tuple[str, ...],
    max_radius: float,
    fixed: tuple[str, str] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A lens-to-lens training pair from an N×3×H×W all-in-focus batch.

    Per sample: depth from :func:`luminance_depth` with the focus at depth 0 (dark, near
    regions sharp; the defocus grows with distance, as a portrait lens focused on the
    foreground), and an ordered pair of distinct lenses (uniform over ordered pairs). Returns
    (rendered with the source lens, rendered with the target lens, codes N×2 float32 =
    [source code, target code]). Samples sharing a lens are rendered in one call. ``fixed``
    names the (source, target) pair for every sample instead (the held-out cases).
    """
    lenses = [parse_lens(name) for name in lens_names]
    if len(lenses) < 2:
        raise ValueError("bokeh_pair needs at least two lenses")
    n = clean.shape[0]
    depth = luminance_depth(clean)
    focus = torch.zeros(n)
    if fixed is not None:
        lenses = [parse_lens(fixed[0]), parse_lens(fixed[1])]
        src, tgt = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    else:
        src = torch.randint(0, len(lenses), (n,), generator=generator)
        tgt = (src + torch.randint(1, len(lenses), (n,), generator=generator)) % len(lenses)

    def render(choice: Tensor) -> Tensor:
        out = torch.empty_like(clean)
        for j in choice.unique().tolist():
            rows = (choice == j).nonzero().flatten()
            rows_dev = rows.to(clean.device)
            out[rows_dev] = render_bokeh(
                clean[rows_dev], depth[rows], focus[rows], lenses[j], max_radius
            )
        return out

    codes = torch.tensor(
        [[lenses[s].code, lenses[t].code] for s, t in zip(src.tolist(), tgt.tolist(), strict=True)],
        dtype=torch.float32,
    )
    return render(src), render(tgt), codes.to(clean.device)
