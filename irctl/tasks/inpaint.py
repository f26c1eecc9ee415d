"""Inpainting: each image comes with a mask file marking its holes; one restored image out.

The mask of ``photo.png`` is ``photo_mask.<ext>`` in the same folder (any image format irctl
reads; grey or RGB, alpha ignored), found among the inputs or, for an image given alone, on
disk beside it; files named ``*_mask.*`` are masks, never jobs of their own. A
mask marks holes in **white** (a pixel whose mean over its channels is ≥ ½), as OpenCV's
``inpaint``, LaMa and image editors do. The authors' own masks (``gt_keep_masks``, RePaint's)
are the other way round — white is kept — and must be inverted first.

The network sees exactly what the released IR-SDE inpainting model was trained on
(codes/utils/deg_utils.py ``mask_to``): the image with its holes set to white, and no other mark
of where they are (irctl/data/masks.py). The output is the model's whole image, known pixels
included, as the official test scores it (codes/config/inpainting/test.py writes and measures
``visuals["Output"]`` without pasting the input back): outside the holes a diffusion model
changes little, and pasting would show seams where it does.

A missing mask, an unreadable one, or one of another size than its image is one line naming
the file; the batch goes on.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irctl.data.masks import holes_from_mask, masked_input
from irctl.io.folders import output_path
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
        claimed: dict[Path, Path] = {}
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
            try:
                target = output_path(src, dst, src_root=src_root, ext=ext, suffix=suffix)
            except ValueError as err:
                plan.errors.append((src, str(err)))
                continue
            if target in claimed:
                plan.errors.append(
                    (src, f"output {target} is already the output of {claimed[target]}")
                )
                continue
            claimed[target] = src
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
        """The image (grey made RGB) with its holes white, as the official ``mask_to``."""
        return masked_input(as_rgb(images[IMAGE]), holes_from_mask(images[MASK].pixels))

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        """The photo with a centred hole a quarter of each side, filled white."""
        h, w = photo.shape[:2]
        holes = np.zeros((h, w), dtype=bool)
        holes[3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8] = True
        return masked_input(photo, holes)
