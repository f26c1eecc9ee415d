"""Inpainting: each image comes with a mask file marking its holes; one restored image out.

The mask of ``photo.png`` is ``photo_mask.<ext>`` in the same folder (any image format irctl
reads; grey or RGB, alpha ignored), found among the inputs or, for an image given alone, on
disk beside it; files named ``*_mask.*`` are masks, never jobs of their own. With
``--mask-dir M`` the masks live apart instead, as datasets keep them: ``M/<sub>/photo_mask.*``
or ``M/<sub>/photo.*``, where ``<sub>`` is the image's subfolder under ``--src``. A
mask marks holes in **white** (a pixel whose mean over its channels is ≥ ½), as OpenCV's
``inpaint``, LaMa and image editors do. The authors' own masks (``gt_keep_masks``, RePaint's)
are the other way round — white is kept — and take ``--mask-white kept``.

The model input is ``[image·(1 − m), m]``: holes zeroed, the mask (1 in a hole) as a fourth
channel (irctl/data/masks.py); each method makes its network's form of it (DiffIR and LaMa take
it as it is; IR-SDE's released model wants white holes and no mask). Known pixels are copied back
from the file bit-exactly (:meth:`InpaintTask.complete`): a mask of zeros returns the input. The
official IR-SDE test writes the network's whole output instead; it differs only outside the
holes, where an inpainter has no business changing a pixel.

``--mask-white kept`` reads every mask of the run the other way round, white = kept, so the
IR-SDE and RePaint masks work as they ship; the holes are then exactly the pixels that are not
white, and a mask and its inverse restore the same bytes.

A missing mask, an unreadable one, or one of another size than its image is one line naming
the file; the batch goes on.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from irctl.config import DegradationConfig, Preset
from irctl.data.masks import MASK_WHITE, holes_from_mask, masked_input
from irctl.io.images import DEFAULT_MAX_PIXELS, SUPPORTED_SUFFIXES, Image
from irctl.tasks.base import IMAGE, Conditioner, Job, Plan, Task, TaskOption, as_rgb

MASK = "mask"
MASK_SUFFIX = "_mask"


MASK_DIR = TaskOption(
    "mask_dir",
    "--mask-dir",
    "inpaint: the folder holding the masks, <stem>_mask.* or <stem>.* in the image's subfolder "
    "under --src (default: <stem>_mask.* beside each image).",
    Path,
)

MASK_WHITE_OPTION = TaskOption(
    "mask_white",
    "--mask-white",
    "inpaint: what white marks in the masks: hole (the default; OpenCV, LaMa, image editors) "
    "or kept (the IR-SDE and RePaint masks).",
)


def masks_on_disk(src: Path, folder: Path | None = None, *, same_stem: bool = False) -> list[Path]:
    """``<stem>_mask.*`` image files beside ``src`` (an image given alone, or listed on
    stdin without its mask), or in ``folder``; with ``same_stem`` also ``<stem>.*`` there
    (never ``src`` itself)."""
    folder = src.parent if folder is None else folder
    patterns = [f"{glob.escape(src.stem)}{MASK_SUFFIX}.*"]
    if same_stem:
        patterns.append(f"{glob.escape(src.stem)}.*")
    try:
        found = {
            p
            for pattern in patterns
            for p in folder.glob(pattern)
            if p.suffix and p.name.lower().endswith(SUPPORTED_SUFFIXES) and p.is_file()
        }
        return sorted(p for p in found if not (p.exists() and src.exists() and p.samefile(src)))
    except OSError:
        return []


def mask_folder(src: Path, mask_dir: Path, src_root: Path | None) -> Path:
    """Where ``src``'s mask lies under ``mask_dir``: the subfolder ``src`` has under
    ``src_root`` (the top of ``mask_dir`` for an image outside it or given alone)."""
    if src_root is not None:
        try:
            return mask_dir / src.parent.relative_to(src_root)
        except ValueError:
            pass
    return mask_dir


@dataclass(frozen=True)
class InpaintTask(Task):
    inputs: tuple[str, ...] = (IMAGE, MASK)
    outputs: tuple[str, ...] = (IMAGE,)
    options: tuple[TaskOption, ...] = (MASK_DIR, MASK_WHITE_OPTION)
    #: what white marks in this run's masks (:data:`irctl.data.masks.MASK_WHITE`)
    mask_white: str = "hole"

    def configured(self, values: Mapping[str, Any]) -> InpaintTask:
        """Reading masks as ``--mask-white`` says; any other value is a usage error."""
        white = values.get("mask_white")
        if white is None:
            return self
        if white not in MASK_WHITE:
            raise ValueError(f"--mask-white {white}: use one of {', '.join(MASK_WHITE)}")
        return dataclasses.replace(self, mask_white=white)

    def conditioner(
        self, preset: Preset, src_root: Path | None, values: dict[str, Any]
    ) -> Conditioner:
        """No conditioning; a ``--mask-dir`` that is not a folder is a usage error up front."""
        mask_dir = values.get("mask_dir")
        if mask_dir is not None and not Path(mask_dir).is_dir():
            raise ValueError(f"--mask-dir {mask_dir}: not a folder")
        return super().conditioner(preset, src_root, values)

    def plan(
        self,
        files: list[Path],
        dst: Path,
        *,
        src_root: Path | None,
        ext: str | None,
        suffix: str,
        options: Mapping[str, Any] = MappingProxyType({}),
    ) -> Plan:
        """One job per image with its ``<stem>_mask.*`` beside it (or in ``--mask-dir``); an
        image without one, or with several (``x_mask.png`` and ``x_mask.tif``), is an error
        line."""
        mask_dir = options.get("mask_dir")
        masks: dict[tuple[Path, str], list[Path]] = {}
        for f in files:
            if f.stem.endswith(MASK_SUFFIX):
                masks.setdefault((f.parent, f.stem[: -len(MASK_SUFFIX)]), []).append(f)
        plan = Plan()
        for src in files:
            if src.stem.endswith(MASK_SUFFIX):
                continue
            if mask_dir is not None:
                folder = mask_folder(src, Path(mask_dir), src_root)
                found = masks_on_disk(src, folder, same_stem=True)
                expected = f"{folder / (src.stem + MASK_SUFFIX)}.* or {folder / src.stem}.*"
            else:
                found = masks.get((src.parent, src.stem)) or masks_on_disk(src)
                expected = f"{src.parent / (src.stem + MASK_SUFFIX)}.*"
            if len(found) != 1:
                why = "no mask" if not found else f"{len(found)} masks"
                plan.errors.append((src, f"{why}: expected one {expected}"))
                continue
            target = plan.output_for(src, dst, src_root=src_root, ext=ext, suffix=suffix)
            if target is not None:
                plan.jobs.append(Job({IMAGE: src, MASK: found[0]}, {IMAGE: target}))
        return plan

    def read(self, job: Job, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Image] | str:
        """The image and its mask, or the one-line reason the job cannot run."""
        images = super().read(job, max_pixels=max_pixels)
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
        holes = holes_from_mask(images[MASK].pixels, self.mask_white)
        return masked_input(as_rgb(images[IMAGE]), holes)

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
