"""Stereo pairs from single photos, and their ×4 bicubic low-resolution versions (stereo SR).

The target task is NTIRE 2023 stereo super-resolution (Flickr1024; Refusion's stereo model): a
rectified left/right pair, each view bicubically downscaled ×4, in; both HR views out. The stereo
network takes the two views as one 6-channel image L‖R, so pairs are stacked that way here.

We have one real rectified pair (``skimage.data.stereo_motorcycle``, Middlebury 2014, used by the
tests to check the warp) and otherwise single photos. A second view of a photo is synthesised by
**forward warping** it with a disparity map defined in the photo's own view, the only map one can
make up for a single photo (a backward warp would need the disparity in the view that does not
exist yet). Conventions, as Middlebury's: disparity ≥ 0 in pixels, larger = nearer, and a point at
column x of the left view is at column x − d(x) of the right view (so x + d from right to left).

The warp treats each row as a piecewise-linear surface: neighbouring source pixels whose
disparities differ by at most ``max_step`` are joined, and the segment between them is sampled at
every integer target column it crosses (linear interpolation of colour and disparity, so a
sub-pixel disparity gives a sub-pixel shift). Larger jumps are depth edges and are not joined.
Where several surfaces land on one target pixel the nearest (largest disparity) wins: a z-buffer,
so foreground objects occlude the background. Target pixels nothing lands on are disocclusions
(background that the foreground hid in the source view) and are filled from the background side:
the hole takes the colour of whichever bordering pixel is farther (smaller disparity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from irctl.data.resize import downscale

__all__ = [
    "WarpResult",
    "bicubic_downscale",
    "disparity_from_photo",
    "forward_warp",
    "mod_crop",
    "stereo_pair_from_photo",
    "stereo_sr_pair",
    "warp_view",
]

Direction = Literal["left_to_right", "right_to_left"]


@dataclass(frozen=True)
class WarpResult:
    """A forward warp's output: the synthesised view (H×W×C float32), its disparity map in the
    *target* view (H×W float32, holes filled like the image) and which target pixels received a
    source pixel (H×W bool; False = disoccluded or outside the source's field of view)."""

    image: np.ndarray
    disparity: np.ndarray
    valid: np.ndarray


def _shift_sign(direction: Direction) -> int:
    if direction == "left_to_right":
        return -1
    if direction == "right_to_left":
        return 1
    raise ValueError(f"direction must be 'left_to_right' or 'right_to_left', got {direction!r}")


def forward_warp(
    image: np.ndarray, disparity: np.ndarray, direction: Direction, max_step: float = 1.0
) -> WarpResult:
    """Forward-warp an H×W×C image (or H×W) by an H×W disparity map defined in its own view.

    ``direction`` names the source and target views: left → right moves a pixel from column x to
    x − d, right → left to x + d. Neighbours whose disparities differ by ≤ ``max_step`` px are one
    surface (interpolated between them; with max_step ≤ 1 a surface never folds over itself);
    the z-buffer keeps the largest disparity per target pixel. Isolated pixels (no joined
    neighbour) still land at their nearest target column, with a z-priority lowered by max_step
    so that any surface at about the same depth wins over them. Non-finite disparities (as
    Middlebury's ``inf`` for unknown depth) mark pixels that are not warped at all.
    """
    sign = _shift_sign(direction)
    squeeze = image.ndim == 2
    src = np.asarray(image, dtype=np.float64)
    if squeeze:
        src = src[..., None]
    h, w, c = src.shape
    disp = np.asarray(disparity, dtype=np.float64)
    if disp.shape != (h, w):
        raise ValueError(f"disparity shape {disp.shape} does not match the image's {(h, w)}")
    finite = np.isfinite(disp)
    d = np.where(finite, disp, 0.0)
    cols = np.arange(w, dtype=np.float64)[None, :]
    target = cols + sign * d
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))

    keys, prios, values = [], [], []

    # Joined segments (x, x + 1), sampled at each integer target column they cross.
    joined = finite[:, :-1] & finite[:, 1:] & (np.abs(d[:, 1:] - d[:, :-1]) <= max_step)
    r = rows[:, :-1][joined]
    x0, x1 = target[:, :-1][joined], target[:, 1:][joined]
    d0, d1 = d[:, :-1][joined], d[:, 1:][joined]
    v0, v1 = src[:, :-1][joined], src[:, 1:][joined]
    lo, hi = np.minimum(x0, x1), np.maximum(x0, x1)
    first = np.ceil(lo)
    span = x1 - x0
    steps = int(np.max(np.floor(hi) - first, initial=-1)) + 1
    for k in range(steps):
        t = first + k
        ok = (t <= hi) & (t >= 0) & (t <= w - 1)
        safe = np.where(np.abs(span) > 1e-12, span, 1.0)
        alpha = np.where(np.abs(span) > 1e-12, (t - x0) / safe, 0.0)[ok, None]
        keys.append(r[ok] * w + t[ok].astype(np.int64))
        prios.append(((1.0 - alpha) * d0[ok, None] + alpha * d1[ok, None])[:, 0])
        values.append((1.0 - alpha) * v0[ok] + alpha * v1[ok])

    # Every finite pixel also splats to its nearest column, behind any surface near its depth.
    t = np.rint(target)
    ok = finite & (t >= 0) & (t <= w - 1)
    keys.append(rows[ok] * w + t[ok].astype(np.int64))
    prios.append(d[ok] - max_step)
    values.append(src[ok])
    n_splats = int(ok.sum())  # the last n_splats candidates

    key = np.concatenate(keys)
    prio = np.concatenate(prios)
    value = np.concatenate(values, axis=0)
    out = np.zeros((h * w, c), dtype=np.float64)
    out_disp = np.zeros(h * w, dtype=np.float64)
    valid = np.zeros(h * w, dtype=bool)
    if key.size:
        order = np.lexsort((prio, key))  # by target pixel, then by disparity, ascending
        last = np.r_[key[order][1:] != key[order][:-1], True]
        win = order[last]  # the nearest candidate of each target pixel
        out[key[win]] = value[win]
        # Store the surface's own disparity (undo the isolated splats' lowered priority).
        out_disp[key[win]] = prio[win]
        valid[key[win]] = True
        isolated = win >= key.size - n_splats
        out_disp[key[win][isolated]] += max_step
    out = out.reshape(h, w, c)
    out_disp = out_disp.reshape(h, w)
    valid = valid.reshape(h, w)
    out, out_disp = _fill_holes(out, out_disp, valid, src)
    image_out = out[..., 0] if squeeze else out
    return WarpResult(
        image=image_out.astype(np.float32), disparity=out_disp.astype(np.float32), valid=valid
    )


def _fill_holes(
    out: np.ndarray, disp: np.ndarray, valid: np.ndarray, src: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fill each row's unfilled pixels from the nearest filled pixel on the farther side.

    A disocclusion is background that the foreground hid, so of the two pixels bordering the hole
    the one with the smaller disparity is the better guess; at the frame's edge only one side
    exists. A row that received nothing (no finite disparity) keeps the source row.
    """
    h, w = valid.shape
    idx = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    right = np.minimum.accumulate(np.where(valid, idx, w)[:, ::-1], axis=1)[:, ::-1]
    has_left, has_right = left >= 0, right < w
    rows = np.arange(h)[:, None]
    d_left = np.where(has_left, disp[rows, np.clip(left, 0, w - 1)], np.inf)
    d_right = np.where(has_right, disp[rows, np.clip(right, 0, w - 1)], np.inf)
    pick = np.where(d_left <= d_right, left, right)
    fillable = ~valid & (has_left | has_right)
    rr, cc = np.nonzero(fillable)
    out = out.copy()
    disp = disp.copy()
    out[rr, cc] = out[rr, pick[rr, cc]]
    disp[rr, cc] = disp[rr, pick[rr, cc]]
    empty = ~valid.any(axis=1)
    out[empty] = src[empty]
    return out, disp


def warp_view(
    image: np.ndarray, disparity: np.ndarray, direction: Direction, max_step: float = 1.0
) -> np.ndarray:
    """The other view of a rectified pair: :func:`forward_warp`'s image (float32).

    ``disparity`` is in ``image``'s own view (≥ 0, larger = nearer); ``direction`` is
    ``"left_to_right"`` when ``image`` is the left view, ``"right_to_left"`` when it is the right.
    """
    return forward_warp(image, disparity, direction, max_step).image


def disparity_from_photo(
    image: np.ndarray, max_disparity: float, rng: np.random.Generator
) -> np.ndarray:
    """A synthetic proxy disparity map (H×W float32, in pixels, larger = nearer) for one photo.

    Not a depth estimate: a plausible stand-in so a warped second view has the structure real
    stereo pairs have (a disparity range, smooth surfaces, occlusions). Depth in [0, 1] mixes
    :func:`irctl.data.fields.depth_proxy` (near bottom, far top, smooth blobs) with
    :func:`irctl.data.bokeh.luminance_depth` (smoothed luminance, bright = far: aerial perspective
    and skies), weight a ~ U(0.3, 0.8) on the former; the luminance term puts depth edges on image
    edges, where real occlusions are. Then d = max_disparity · (n₀ + (1 − n₀)·(1 − depth)) with a
    near floor n₀ ~ U(0, 0.25) (not every scene reaches infinity).
    """

    from irctl.data.bokeh import luminance_depth
    from irctl.data.fields import depth_proxy

    h, w = image.shape[:2]
    g = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    proxy = depth_proxy(1, h, w, g)[0, 0].numpy().astype(np.float64)
    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    lum = luminance_depth(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None])
    lum_depth = lum[0, 0].numpy().astype(np.float64)
    a = float(rng.uniform(0.3, 0.8))
    depth = a * proxy + (1.0 - a) * lum_depth
    span = depth.max() - depth.min()
    depth = (depth - depth.min()) / span if span > 1e-12 else np.full_like(depth, 0.5)
    floor = float(rng.uniform(0.0, 0.25))
    return (max_disparity * (floor + (1.0 - floor) * (1.0 - depth))).astype(np.float32)


def stereo_pair_from_photo(
    image: np.ndarray, max_disparity: float, rng: np.random.Generator, trim: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) float32 views from one H×W×3 photo.

    The photo is the left or the right view with equal probability (the other is warped), so a
    network cannot learn that one side is always the synthetic, smoother one. Near the side the
    second camera looks past, the warped view has columns no source pixel reaches (filled by edge
    replication); ``trim`` drops ⌈max_disparity⌉ columns there from both views, which stay
    rectified and equally wide (W − ⌈max_disparity⌉): use it with a crop that much wider.
    """
    photo = np.asarray(image, dtype=np.float32)
    disparity = disparity_from_photo(photo, max_disparity, rng)
    photo_is_left = bool(rng.random() < 0.5)
    if photo_is_left:
        left, right = photo.copy(), warp_view(photo, disparity, "left_to_right")
    else:
        left, right = warp_view(photo, disparity, "right_to_left"), photo.copy()
    if trim:
        cut = math.ceil(max_disparity)
        if cut >= photo.shape[1]:
            raise ValueError(f"cannot trim {cut} columns from a {photo.shape[1]}-wide photo")
        # Left → right leaves the right view's right edge empty; right → left the left's left edge.
        keep = slice(0, photo.shape[1] - cut) if photo_is_left else slice(cut, None)
        left, right = left[:, keep], right[:, keep]
    return left, right


def mod_crop(image: np.ndarray, factor: int) -> np.ndarray:
    """Crop the bottom and right so H and W are multiples of ``factor`` (BasicSR's ``mod_crop``):
    the HR that exactly matches a ×factor LR."""
    h, w = image.shape[:2]
    return image[: h - h % factor, : w - w % factor]


def bicubic_downscale(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """The ×``factor`` LR of an H×W(×C) float image: MATLAB ``imresize(x, 1/factor, 'bicubic')``.

    NTIRE stereo SR (as Flickr1024 and most SR benchmarks) made its LR images with MATLAB's
    antialiased bicubic, so that is the degradation a model must learn to invert; this is a
    float port (no 8-bit rounding; see :func:`stereo_sr_pair`'s ``quantize``). It equals PIL's
    ``BICUBIC`` resize in the interior (same kernel and stretch) and differs only within a few
    pixels of the border, where MATLAB mirrors the image and PIL renormalises the clipped kernel.
    H and W are first cropped to multiples of ``factor`` (:func:`mod_crop`).
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    x = mod_crop(np.asarray(image, dtype=np.float64), factor)
    if factor == 1:
        return x.astype(np.float32)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"image {image.shape[:2]} is smaller than the factor {factor}")
    planes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, (0, 1), (-2, -1))))
    low = downscale(planes, factor).numpy()
    return np.moveaxis(low, (-2, -1), (0, 1)).astype(np.float32)


def stereo_sr_pair(
    left: np.ndarray, right: np.ndarray, factor: int = 4, quantize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) for stereo SR: L‖R stacked on the channel axis, as the stereo network takes them.

    Both views are mod-cropped to multiples of ``factor``; HR is (H, W, 6), LR (H/f, W/f, 6)
    from :func:`bicubic_downscale`. ``quantize`` rounds and clips the LR to 8 bits, as the
    benchmark's LR PNG files are.
    """
    if left.shape != right.shape:
        raise ValueError(f"left {left.shape} and right {right.shape} views differ in shape")
    if left.ndim != 3:
        raise ValueError(f"views must be H×W×C, got shape {left.shape}")
    gt_l = mod_crop(np.asarray(left, dtype=np.float32), factor)
    gt_r = mod_crop(np.asarray(right, dtype=np.float32), factor)
    lq = np.concatenate([bicubic_downscale(gt_l, factor), bicubic_downscale(gt_r, factor)], axis=2)
    if quantize:
        lq = np.round(np.clip(lq, 0.0, 1.0) * 255.0) / 255.0
    gt = np.concatenate([gt_l, gt_r], axis=2)
    return lq.astype(np.float32), gt
