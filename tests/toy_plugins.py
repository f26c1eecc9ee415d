"""A toy method and a toy task, written only against the plug-in interfaces (irctl/methods/base.py,
irctl/tasks/base.py, irctl/tiling.py): they prove that a method or a task lands as new files
plus one registry line. Nothing in irctl/ knows them; the tests register them with one line each
(``METHODS["toy"] = ToyRestorer``, ``TASKS["toy-guided"] = GUIDED``).

The toy method has its own preset table (``[toy]``), its own sampler family (one step), two
training stages with a module trained in both (``net``) and a frozen copy taken from the first
(``teacher``), and a global code computed once per image on the whole image (downscaled). The toy
task takes a second file per image (``x_guide.png`` beside ``x.png``) and writes two outputs per
job (``x.png`` and ``x_residual.png``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.io.folders import output_path
from irctl.io.images import Image
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions, Sampling
from irctl.tasks.base import Job, OutputImage, Plan, Task, as_rgb, in_layout_of
from irctl.tiling import PER_IMAGE, SHARED, SPATIAL

# --------------------------------------------------------------------------- the sampler family


def sample_one_step(model, x: Tensor, grid: list[int], noise, callback=None) -> Tensor:
    """The toy family's only sampler: x̂_0 = model(x_T, T) in a single step (k-diffusion's
    face: the model is a callable with its conditioning bound, the noise a callable)."""
    out = model(x + 0.0 * noise(x), grid[0])
    if callback is not None:
        callback(0, 1, out)
    return out


TOY_SAMPLERS = {"one-step": sample_one_step}


# --------------------------------------------------------------------------- the method


@dataclass(frozen=True)
class ToyTable:
    width: int = 4
    #: the global code is computed on the whole image, downscaled to at most this size
    code_size: int = 32


@dataclass(frozen=True)
class ToyConfig:
    toy: ToyTable = field(default_factory=ToyTable)


class PriorNet(nn.Module):
    """A global code per image: a conv, pooled over the whole (downscaled) image."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(6, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).mean(dim=(2, 3))


class ToyNet(nn.Module):
    """image‖guide (6 channels), a timestep, a per-image code → restored image (3 channels)."""

    multiple = 1
    #: the codes every restoring call received, one row per tile (the tests read them)
    codes_seen: ClassVar[list[Tensor]] = []

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(6, width, 3, padding=1)
        self.out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor, t: int, code: Tensor) -> Tensor:
        if code.shape[0] != x.shape[0]:
            raise ValueError(f"{code.shape[0]} codes for {x.shape[0]} tiles")
        if not self.training:
            ToyNet.codes_seen.append(code.detach().clone())
        h = torch.relu(self.inp(x)) * (1 + code[:, :, None, None])
        return x[:, :3] + self.out(h) * (1.0 + 0.1 * t)


class ToyRestorer(RestorerBase):
    config_class: ClassVar[type] = ToyConfig
    stages: ClassVar[list[str]] = ["prior", "restorer"]
    #: how often :meth:`condition` ran (the tests check: once per image)
    condition_calls: ClassVar[int] = 0

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: ToyConfig = preset.model
        width = self.config.toy.width
        self.prior = PriorNet(width)
        self.net = ToyNet(width)
        self.teacher = ToyNet(width)
        self.sampling = Sampling(
            samplers=tuple(TOY_SAMPLERS), max_steps=1, comparison=(("one-step", 1),)
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"prior": self.prior, "net": self.net, "teacher": self.teacher}

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        if stage == "prior":
            return {"prior": self.prior, "net": self.net}
        return {"net": self.net}  # fine-tuned again in the second stage

    def carried_over(self, stage: str) -> dict[str, str]:
        return {"teacher": "net"} if stage == "restorer" else {}

    def loss(self, batch: Batch, generator: torch.Generator, stage: str | None = None):
        x = torch.cat([batch.lq, batch.lq], dim=1)  # the guide of a synthetic pair: the LQ
        out = self.net(x, 1, self.prior(x))
        loss = (out - batch.gt).abs().mean()
        return loss, {"loss": float(loss.detach())}

    def condition(self, lq: Tensor, cond: Conditioning) -> Tensor:
        ToyRestorer.condition_calls += 1
        size = self.config.toy.code_size
        if max(lq.shape[-2:]) > size:
            lq = F.interpolate(lq, size=(size, size), mode="area")
        return self.prior(lq)

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: Tensor,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        tiled = options.tiles.on_grid(align=self.net.multiple).wrap(
            self.net, SPATIAL, SHARED, PER_IMAGE
        )
        sampler = TOY_SAMPLERS[options.sampler]

        def noise(x: Tensor) -> Tensor:
            return torch.randn(x.shape, generator=generator, dtype=x.dtype)

        step = (lambda i, n, _x: callback(i + 1, n)) if callback else None
        return sampler(lambda x, t: tiled(x, t, condition), lq, [1, 0], noise, step)


# --------------------------------------------------------------------------- the task

GUIDE_SUFFIX = "_guide"


@dataclass(frozen=True)
class GuidedTask(Task):
    """Each image comes with a guide file found by name (``x.png`` + ``x_guide.png``); each job
    writes the restored image and a residual map (``x_residual.png``), both or neither."""

    inputs: tuple[str, ...] = ("image", "guide")
    outputs: tuple[str, ...] = ("image", "residual")

    def plan(self, files, dst, *, src_root, ext, suffix, options=None) -> Plan:
        guides = {
            (f.parent, f.stem[: -len(GUIDE_SUFFIX)]): f
            for f in files
            if f.stem.endswith(GUIDE_SUFFIX)
        }
        plan = Plan()
        for src in files:
            if src.stem.endswith(GUIDE_SUFFIX):
                continue
            guide = guides.get((src.parent, src.stem))
            if guide is None:
                plan.errors.append((src, f"no guide (expected {src.stem}{GUIDE_SUFFIX}.*)"))
                continue
            out = output_path(src, dst, src_root=src_root, ext=ext, suffix=suffix)
            residual = out.with_name(f"{out.stem}_residual{out.suffix}")
            plan.jobs.append(
                Job({"image": src, "guide": guide}, {"image": out, "residual": residual})
            )
        return plan

    def model_input(self, images: dict[str, Image]) -> np.ndarray:
        return np.concatenate([as_rgb(images["image"]), as_rgb(images["guide"])], axis=2)

    def model_output(
        self, restored: np.ndarray, images: dict[str, Image]
    ) -> dict[str, OutputImage]:
        image = images["image"]
        residual = np.clip(np.abs(restored - as_rgb(image)) * 4.0, 0.0, 1.0)
        return {
            "image": OutputImage(in_layout_of(restored, image), image.dtype, image.alpha),
            "residual": OutputImage(residual, np.dtype(np.uint8), None),
        }

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        return np.concatenate([photo, photo], axis=2)


GUIDED = GuidedTask("toy-guided", "a toy task with a guide file and two outputs")


def toy_preset_dict(**train: object) -> dict:
    """A toy preset as TOML would give it: the shared sections and the method's own [toy]."""
    return {
        "name": "toy",
        "task": "toy-guided",
        "method": "toy",
        "degradation": {"kind": "gaussian_noise", "sigma": 25.0},
        "toy": {"width": 4, "code_size": 16},
        "sampler": {"name": "one-step", "steps": 1, "tile": 0, "tile_overlap": 4, "tile_batch": 1},
        "train": {
            "batch": 2,
            "patch": 16,
            "iterations": 3,
            "val_every": 0,
            "log_every": 1,
            "checkpoint_every": 3,
            **train,
        },
        "data": {"train": ["astronaut"], "val": ["camera"], "test": ["chelsea"]},
    }


def write_case(folder: Path, stem: str, pixels: np.ndarray) -> None:
    """An image and its guide (the image's vertical flip, so the two differ)."""
    from irctl.io.images import write_image

    write_image(folder / f"{stem}.png", pixels, dtype=np.uint8)
    write_image(folder / f"{stem}{GUIDE_SUFFIX}.png", pixels[::-1].copy(), dtype=np.uint8)
