"""Inpainting: random hole masks, and the model input of an image and its holes.

irctl's mask files mark the *holes* in white (as OpenCV's ``inpaint``, LaMa and most editors
do). The model input is LaMa's and DiffIR's: ``[image·(1 − m), m]``, four channels, holes zeroed
and the mask m (1 in a hole) beside them (:func:`masked_input`). A method whose network wants
another form makes it from that: IR-SDE's released model was trained on the image with white
holes and no mask (Algolzw/image-restoration-sde, codes/utils/deg_utils.py ``mask_to``, whose
``gt_keep_masks`` are white where kept), which is ``image·(1 − m) + m``
(``network.holes = "white"``, irctl/methods/refusion.py).

Training masks (:func:`random_mask`) are free-form brush strokes and boxes, drawn until they
cover a drawn share of the image — in the spirit of the official thin/thick stroke masks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor


def masked_input(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``[image·(1 − m), m]``: ``image`` (H×W×3 float) with its holes zeroed and the mask m
    (``holes``, H×W bool) as a fourth channel. Known pixels are the image's exact values."""
    m = holes[..., None].astype(image.dtype)
    return np.concatenate([np.where(holes[..., None], 0.0, image).astype(image.dtype), m], axis=2)


#: what white marks in a mask file: a hole (OpenCV, LaMa, image editors) or a kept pixel (the
#: IR-SDE and RePaint masks, ``gt_keep_masks``)
MASK_WHITE = ("hole", "kept")


def holes_from_mask(mask: np.ndarray, white: str = "hole") -> np.ndarray:
    """A mask file's pixels (H×W×C float in [0, 1]) → H×W bool holes: with white = hole, a
    pixel whose mean over the channels is at least one half; with white = kept, exactly the
    other pixels, so an 8- or 16-bit mask read one way and its inverse read the other name the
    same holes (their channel means never sit at one half)."""
    if white not in MASK_WHITE:
        raise ValueError(f"a mask's white is one of {', '.join(MASK_WHITE)}, got {white!r}")
    white_pixels = mask.mean(axis=2) >= 0.5
    return white_pixels if white == "hole" else ~white_pixels


def random_mask(
    height: int,
    width: int,
    fraction: tuple[float, float],
    rng: np.random.Generator,
    *,
    scale: int = 0,
) -> np.ndarray:
    """An H×W bool hole mask covering a share drawn from ``fraction`` (lo ≤ share; it exceeds
    the drawn share by at most the last shape): brush strokes (random-walk polylines 4–
    ~8% of the short side thick) and, one time in four, a box of up to a third of each side.

    The sizes are those of an image whose sides are ``scale`` pixels (0: this one's own). A
    hole's difficulty is its size in pixels, so a model trained on crops must see the holes it
    will meet in whole photos: both are drawn with the same ``scale``."""
    target = rng.uniform(*fraction)
    canvas = np.zeros((height, width), dtype=np.uint8)
    extent_h, extent_w = (scale, scale) if scale > 0 else (height, width)
    short = min(extent_h, extent_w)
    for _ in range(10_000):
        if canvas.mean() >= target:
            break
        if rng.uniform() < 0.25:
            bh = int(rng.integers(max(2, short // 16), max(3, extent_h // 3) + 1))
            bw = int(rng.integers(max(2, short // 16), max(3, extent_w // 3) + 1))
            bh, bw = min(bh, height), min(bw, width)
            top, left = int(rng.integers(0, height - bh + 1)), int(rng.integers(0, width - bw + 1))
            canvas[top : top + bh, left : left + bw] = 1
            continue
        thickness = max(1, int(rng.uniform(0.04, 0.08) * short))
        point = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        angle = rng.uniform(0.0, 2.0 * np.pi)
        for _ in range(int(rng.integers(2, 6))):
            angle += rng.uniform(-np.pi / 2, np.pi / 2)
            step = rng.uniform(0.05, 0.25) * short
            end = point + step * np.array([np.cos(angle), np.sin(angle)])
            end = np.clip(end, 0, [width - 1, height - 1])
            cv2.line(canvas, tuple(int(v) for v in point), tuple(int(v) for v in end), 1, thickness)
            point = end
    return canvas.astype(bool)


#: hole-filling methods :func:`prefill_holes` offers ("none": the holes stay zero)
PREFILLS = ("none", "telea")


def opencv_inpaint(model_input: np.ndarray, method: int, radius: int = 5) -> np.ndarray:
    """OpenCV's inpainting (``cv2.INPAINT_TELEA`` or ``cv2.INPAINT_NS``, ``radius`` px) of the
    holes of an H×W×4 inpainting input ``[image·(1 − m), m]``, at 8 bits as OpenCV works:
    H×W×3 float32 in [0, 1] (known pixels rounded to 8 bits too)."""
    holes = (model_input[..., 3] >= 0.5).astype(np.uint8)
    image8 = np.rint(np.clip(model_input[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.inpaint(image8, holes, radius, method).astype(np.float32) / 255.0


def prefill_holes(model_input: Tensor, radius: int = 5) -> Tensor:
    """An N×4×H×W inpainting input ``[image·(1 − m), m]`` with its holes filled by OpenCV's
    Telea (:func:`opencv_inpaint`) instead of zeros; known pixels and the mask channel are the
    input's, bit for bit. A network given this starts from the classical fill and learns what
    to change in it (coarse-to-fine, as two-stage inpainters do), instead of painting every
    hole from black."""
    out = model_input.clone()
    for i, x in enumerate(model_input):
        inside = x[3] >= 0.5
        if not bool(inside.any()):
            continue
        filled = opencv_inpaint(x.permute(1, 2, 0).cpu().numpy(), cv2.INPAINT_TELEA, radius)
        fill = torch.from_numpy(filled).permute(2, 0, 1).to(out.device, out.dtype)
        out[i, :3] = torch.where(inside, fill, x[:3])
    return out
