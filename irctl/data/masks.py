"""Inpainting: random hole masks, and the masked image IR-SDE's released inpainting model sees.

The official code (Algolzw/image-restoration-sde, codes/utils/deg_utils.py ``mask_to``) reads a
mask whose white pixels are kept (its folder is ``gt_keep_masks``, RePaint's masks), scales it to
[0, 1], and forms the network's input as ``mask·image + (1 − mask)``: holes are filled with white
(1.0) and the network has no other sign of where they are. irctl's mask files mark the *holes*
in white instead (as OpenCV's ``inpaint``, LaMa and most editors do); :func:`masked_input` takes
that convention and builds the official input.

Training masks (:func:`random_mask`) are free-form brush strokes and boxes, drawn until they
cover a drawn share of the image — in the spirit of the official thin/thick stroke masks.
"""

from __future__ import annotations

import cv2
import numpy as np


def masked_input(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The official inpainting input: ``image`` (H×W×C float) with every hole pixel set to
    white, ``keep·image + (1 − keep)`` with keep = 1 − holes (``holes``: H×W bool)."""
    keep = (~holes)[..., None].astype(image.dtype)
    return keep * image + (1.0 - keep)


def holes_from_mask(mask: np.ndarray) -> np.ndarray:
    """A mask file's pixels (H×W×C float in [0, 1]) → H×W bool holes: a pixel whose mean over
    the channels is at least one half (white = hole)."""
    return mask.mean(axis=2) >= 0.5


def random_mask(
    height: int, width: int, fraction: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """An H×W bool hole mask covering a share drawn from ``fraction`` (lo ≤ share; it exceeds
    the drawn share by at most the last shape): brush strokes (random-walk polylines 4–
    ~8% of the short side thick) and, one time in four, a box."""
    target = rng.uniform(*fraction)
    canvas = np.zeros((height, width), dtype=np.uint8)
    short = min(height, width)
    for _ in range(10_000):
        if canvas.mean() >= target:
            break
        if rng.uniform() < 0.25:
            # a box of up to a third of each side, no bigger than what is missing
            bh = int(rng.integers(max(2, short // 16), max(3, height // 3) + 1))
            bw = int(rng.integers(max(2, short // 16), max(3, width // 3) + 1))
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
