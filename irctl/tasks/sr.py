"""Single-image ×scale super-resolution: one LR image in, one image ``scale`` times larger out
(alpha resized with it, ``scaled_alpha`` in irctl/tasks/base.py).

The model gets the LR image itself; how it reaches the output size is the method's business:
IR-SDE's released ×4 model upsamples it with PyTorch's bicubic and restores at the output size
(``network.upsampler = "torch"``, irctl/methods/refusion.py ``mean_state``), DiffIR's DIRformer
runs at the LR size and ends in sub-pixel convolutions. Held-out and training pairs are the
MATLAB-bicubic ×1/scale of a photo, stored as 8 bits (``bicubic_sr``, irctl/data/degrade.py), and
the table's first row is the bicubic upsampling (MATLAB ``imresize``) — the classical method an SR
model has to beat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from irctl.config import DegradationConfig
from irctl.tasks.base import Task, upscaled_input


@dataclass(frozen=True)
class SRTask(Task):
    """×``scale`` SR of single images."""

    scale: int = 4

    def patch_multiple(self, degradation: DegradationConfig) -> int:
        return self.scale

    def output_scale(self, degradation: DegradationConfig) -> int:
        return self.scale

    def input_row(self, degradation: DegradationConfig) -> tuple[str, Callable | None]:
        """The LR input upsampled with MATLAB's bicubic, comparable to the ground truth."""
        return f"bicubic ×{self.scale}", upscaled_input(self.scale)
