"""Single-image super-resolution whose network works at the output size (IR-SDE's SISR).

IR-SDE's released ×4 model is not an upscaling network: its code upsamples the LR image with
PyTorch's bicubic before anything else (codes/config/sisr/test.py: ``LQ = util.upscale(LQ,
scale)``, codes/utils/deg_utils.py), and the SDE then restores at the HR size with μ that
upsampling. So this task makes that upsampled array its model input (:meth:`model_input`), and
the model's output is ``scale`` times the file's size; alpha is resized with it (``scaled_alpha``
in irctl/tasks/base.py). Held-out and training pairs come as that input already
(``bicubic_sr``, irctl/data/degrade.py), so the table's first row is the bicubic upsampling —
the classical baseline an SR model has to beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from irctl.config import DegradationConfig
from irctl.io.images import Image
from irctl.tasks.base import IMAGE, Task, as_rgb


def upsampled(pixels: np.ndarray, factor: int) -> np.ndarray:
    """H×W×C float → (factor·H)×(factor·W)×C with the official PyTorch bicubic."""
    import torch

    from irctl.data.resize import torch_bicubic_upscale

    planes = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))
    return torch_bicubic_upscale(planes, factor).numpy().transpose(1, 2, 0)


@dataclass(frozen=True)
class UpsampledSRTask(Task):
    """×``scale`` SR: one LR image in, one image ``scale`` times larger out."""

    scale: int = 4

    def model_input(self, images: dict[str, Image]) -> np.ndarray:
        """The LR image (grey made RGB) upsampled ×scale as the official code does."""
        return upsampled(as_rgb(images[IMAGE]), self.scale)

    def patch_multiple(self, degradation: DegradationConfig) -> int:
        return self.scale

    def input_row(self, degradation: DegradationConfig) -> tuple[str, Callable | None]:
        """The held-out LQ is the model's input, the bicubic upsampling itself."""
        return f"bicubic ×{self.scale}", None

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        """The photo as the LR file: the size ``benchmark`` reports is the input's, and the
        network runs at ``scale`` times it."""
        return upsampled(photo, self.scale)
