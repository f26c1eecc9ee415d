"""Inpainting: each image comes with a mask file marking its holes; one restored image out.

The mask of ``photo.png`` is ``photo_mask.<ext>`` in the same folder (any image format irctl
reads; grey or RGB, alpha ignored), found among the inputs or, for an image given alone, on
disk beside it; files named ``*_mask.*`` are masks, never jobs of their own. A
mask marks holes in **white** (a pixel whose mean over its channels is ≥ ½), as OpenCV's
``inpaint``, LaMa and image editors do. The authors' own masks (``gt_keep_masks``, RePaint's)
are the other way round — white is kept — and must be inverted first.

The model input is ``[image·(1 − m), m]``: holes zeroed, the mask (1 in a hole) as a fourth
channel (irctl/data/masks.py); each method makes its network's form of it (DiffIR and LaMa take
it as it is; IR-SDE's released model wants white holes and no mask). Known pixels are copied back
from the file bit-exactly (:meth:`InpaintTask.complete`): a mask of zeros returns the input. The
official IR-SDE test writes the network's whole output instead; it differs only outside the
holes, where an inpainter has no business changing a pixel.

A missing mask, an unreadable one, or one of another size than its image is one line naming
the file; the batch goes on.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irctl.config import DegradationConfig
from irctl.data.masks import holes_from_mask, masked_input
from irctl.io.images import SUPPORTED_SUFFIXES, Image
from irctl.tasks.base import IMAGE, Job, Plan, Task, as_rgb

MASK = "mask"
MASK_SUFFIX = "_mask"


def masks_on_disk(src: Path) -> list[Path]:
    """``<stem>_mask.*`` image files beside ``src`` (an image given alone, or listed on
    stdin without its mask)."""
    try:
        return sorted(
            p
            for p in src.parent.glob(f"{glob.escape(src.stem)}{MASK_SUFFIX}.*")
            if p.suffix and p.name.lower().endswith(SUPPORTED_SUFFIXES) and p.is_file()
        )
    except OSError:
        return []


@dataclass(frozen=True)
class InpaintTask(Task):
    inputs: tuple[str, ...] = (IMAGE, MASK)
    outputs: tuple[str, ...] = (IMAGE,)

    def plan(
        self,
        files: list[Path],
        dst: Path,
        *,
        src_root: Path | None,
        ext: str | None,
        suffix: str,
    ) -> Plan:
        """One job per image with its ``<stem>_mask.*`` beside it; an image without one, or
        with several (``x_mask.png`` and ``x_mask.tif``), is an error line."""
        masks: dict[tuple[Path, str], list[Path]] = {}
        for f in files:
            if f.stem.endswith(MASK_SUFFIX):
                masks.setdefault((f.parent, f.stem[: -len(MASK_SUFFIX)]), []).append(f)
        plan = Plan()
        for src in files:
            if src.stem.endswith(MASK_SUFFIX):
                continue
            found = masks.get((src.parent, src.stem)) or masks_on_disk(src)
            if len(found) != 1:
                why = "no mask" if not found else f"{len(found)} masks"
                plan.errors.append(
                    (src, f"{why}: expected one {src.parent / (src.stem + MASK_SUFFIX)}.*")
                )
                continue
            target = plan.output_for(src, dst, src_root=src_root, ext=ext, suffix=suffix)
            if target is not None:
                plan.jobs.append(Job({IMAGE: src, MASK: found[0]}, {IMAGE: target}))
        return plan

    def read(self, job: Job) -> dict[str, Image] | str:
        """The image and its mask, or the one-line reason the job cannot run."""
        images = super().read(job)
        if isinstance(images, str):
            return images
        image, mask = images[IMAGE], images[MASK]
        if (mask.height, mask.width) != (image.height, image.width):
            return (
                f"mask {job.inputs[MASK]} is {mask.width}x{mask.height}, the image "
                f"{image.width}x{image.height}"
            )
        return images

    def model_input(self, images: dict[str, Image]) -> np.ndarray:
        """``[image·(1 − m), m]`` (grey made RGB)."""
        return masked_input(as_rgb(images[IMAGE]), holes_from_mask(images[MASK].pixels))

    def complete(self, restored: np.ndarray, model_input: np.ndarray) -> np.ndarray:
        """The known pixels of the input, exactly; the model's only in the holes."""
        holes = model_input[..., 3:4] >= 0.5
        return np.where(holes, restored, model_input[..., :3])

    def input_row(self, degradation: DegradationConfig) -> tuple[str, Callable | None]:
        """The image with its holes black."""
        return "input", lambda lq, _cond: lq[..., :3]

    def metric_mask(self, lq: np.ndarray) -> np.ndarray | None:
        """The holes: what an inpainter is scored on (the rest is the input's, exactly)."""
        return lq[..., 3] >= 0.5

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        """The photo with a centred hole a quarter of each side."""
        h, w = photo.shape[:2]
        holes = np.zeros((h, w), dtype=bool)
        holes[3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8] = True
        return masked_input(photo, holes)
