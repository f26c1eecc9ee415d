"""Stereo super-resolution (NTIRE 2022/2023 stereo SR; Refusion §5.1): a left/right pair of LR
views in, the pair ×scale out, both files or neither.

Views are paired by name (irctl/io/stereo.py: ``scene_L``/``scene_R``, ``_left``/``_right``, or
``L/``/``R/`` folders) and given to the model as one L‖R array (6 channels); outputs are named
``<stem>_L``/``<stem>_R`` and written as one commit with the left view as marker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from irctl.config import DegradationConfig
from irctl.io.images import DEFAULT_MAX_PIXELS, Image, ImageReadError, read_image
from irctl.io.stereo import output_paths, pair_views
from irctl.tasks.base import (
    Job,
    OutputImage,
    Plan,
    Task,
    as_rgb,
    in_layout_of,
    scaled_alpha,
    upscaled_input,
)

if TYPE_CHECKING:
    from torch import Tensor

LEFT, RIGHT = "left", "right"


@dataclass(frozen=True)
class StereoTask(Task):
    inputs: tuple[str, ...] = (LEFT, RIGHT)
    outputs: tuple[str, ...] = (LEFT, RIGHT)
    noun: str = "pairs"
    view_suffixes: tuple[str, ...] = ("_L", "_R")
    #: a mirrored left view is a right view: only the vertical flip keeps a rectified pair one
    symmetries: tuple[str, ...] = ("identity", "vflip")

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
        """Pair the inputs and map each pair to ``dst/<stem><suffix>_L.<ext>`` and ``..._R``.
        Unpaired, ambiguous or colliding inputs become errors (one line each)."""
        pairs, errors = pair_views(files, src_root)
        plan = Plan(errors=list(errors))
        for pair in pairs:
            named = replace(pair, relative=pair.relative.with_name(pair.relative.name + suffix))
            try:
                left_dst, right_dst = output_paths(named, dst, ext or pair.left.suffix)
            except ValueError as err:
                plan.errors.append((pair.left, str(err)))
                continue
            plan.jobs.append(
                Job({LEFT: pair.left, RIGHT: pair.right}, {LEFT: left_dst, RIGHT: right_dst})
            )
        return plan

    def read(self, job: Job, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Image] | str:
        """Both views, or the one-line reason the pair cannot be restored (each view is held
        to ``max_pixels`` before it is decoded)."""
        views = {}
        for role, path in job.inputs.items():
            try:
                views[role] = read_image(path, max_pixels=max_pixels)
            except ImageReadError as err:
                return err.reason if role == LEFT else f"right view {path}: {err.reason}"
            except Exception as err:
                return f"cannot read {path}: {err}"
        left, right = views[LEFT], views[RIGHT]
        if left.pixels.shape[:2] != right.pixels.shape[:2]:
            return (
                f"the views differ in size: {left.width}x{left.height} (L) vs "
                f"{right.width}x{right.height} (R, {job.inputs[RIGHT]})"
            )
        return views

    def model_input(self, images: dict[str, Image]) -> np.ndarray:
        """L‖R on the channel axis (grey views made RGB)."""
        return np.concatenate([as_rgb(images[LEFT]), as_rgb(images[RIGHT])], axis=2)

    def model_output(
        self, restored: np.ndarray, images: dict[str, Image]
    ) -> dict[str, OutputImage]:
        """Each view in its own layout and range, its alpha scaled to the output size."""
        factor = restored.shape[0] // images[LEFT].height
        outputs = {}
        for role, planes in ((LEFT, restored[..., :3]), (RIGHT, restored[..., 3:])):
            view = images[role]
            outputs[role] = OutputImage(
                in_layout_of(planes, view),
                view.dtype,
                scaled_alpha(view.alpha, factor),
                view.meta.scaled(factor),
            )
        return outputs

    def patch_multiple(self, degradation: DegradationConfig) -> int:
        return degradation.scale

    def output_scale(self, degradation: DegradationConfig) -> int:
        """Each view comes out ``degradation.scale`` times larger (the stereo SR factor)."""
        return degradation.scale

    def augment(self, crop: Tensor, flags: Tensor) -> Tensor:
        """Vertical flips and mirrors that swap the views: no transpose (irctl/data/datasets.py)."""
        from irctl.data.datasets import augment_stereo

        return augment_stereo(crop, flags)

    def input_row(self, degradation: DegradationConfig) -> tuple[str, Callable | None]:
        """An SR input is smaller than its ground truth: its row is the bicubic upsampling
        (MATLAB ``imresize``), the classical method an SR model has to beat."""
        return f"bicubic ×{degradation.scale}", upscaled_input(degradation.scale)

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        """L‖R with the right view the photo shifted by 2% of its width (constant disparity);
        the size is each view's (an SR model's input size)."""
        right = np.roll(photo, -max(1, photo.shape[1] // 50), axis=1)
        return np.concatenate([photo, right], axis=2)
