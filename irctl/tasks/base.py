"""What a task is: its named inputs and outputs, how they are found and written, its own restore
options, how a held-out table scores it, and what `benchmark` feeds it.

The engine runs every task through one streaming loop (irctl/engine/restore.py) and never
knows a task's name or traits: a job is named input files and named output files, the task reads
them (in the reader threads), turns them into the model's input array and conditioning, and turns
the model's output back into files. :class:`Task` is the single-image task (one ``image`` in, one
out) that most tasks are; tasks with more files (a stereo pair, an image and its mask) or their
own flags (bokeh's lenses) subclass it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from irctl.conditioning import Conditioning
from irctl.config import DegradationConfig, Preset
from irctl.io.folders import output_path
from irctl.io.images import DEFAULT_MAX_PIXELS, Image, ImageReadError, read_image
from irctl.io.metadata import ImageMeta
from irctl.io.names import json_name, shown
from irctl.io.verify import HeaderError, image_size
from irctl.symmetry import MIRROR

if TYPE_CHECKING:
    from torch import Tensor

IMAGE = "image"


@dataclass(frozen=True)
class Job:
    """One unit of work: named input files and named output files. The first output is the
    commit marker of an atomic multi-file write (irctl/io/outputs.py); ``src`` and ``dst``
    name the first input and output in one-line messages."""

    inputs: dict[str, Path]
    outputs: dict[str, Path]

    @property
    def src(self) -> Path:
        return next(iter(self.inputs.values()))

    @property
    def dst(self) -> Path:
        return next(iter(self.outputs.values()))

    def describe(self) -> str:
        """'src → dst', or with several files all inputs and all outputs; names escaped to
        one printable line (irctl/io/names.py)."""
        return f"{' + '.join(map(shown, self.inputs.values()))} → " + " + ".join(
            map(shown, self.outputs.values())
        )

    def as_json(self) -> dict[str, str]:
        """``src``/``dst`` for the first files, ``src_<role>``/``dst_<role>`` for the others,
        each as printable text plus ``<key>_hex``, its exact bytes (irctl/io/names.py)."""
        row = {**json_name("src", self.src), **json_name("dst", self.dst)}
        for role, path in list(self.inputs.items())[1:]:
            row.update(json_name(f"src_{role}", path))
        for role, path in list(self.outputs.items())[1:]:
            row.update(json_name(f"dst_{role}", path))
        return row


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)  # every output already there (a resume)
    errors: list[tuple[Path, str]] = field(default_factory=list)  # inputs with no valid job
    claimed: dict[Path, Path] = field(default_factory=dict, repr=False)  # output → its input

    def output_for(
        self, src: Path, dst: Path, *, src_root: Path | None, ext: str | None, suffix: str
    ) -> Path | None:
        """``src``'s output file under ``dst``, claimed for it; None, with the reason among the
        errors, when its name maps to no output or another input already has that output."""
        try:
            target = output_path(src, dst, src_root=src_root, ext=ext, suffix=suffix)
        except ValueError as err:
            self.errors.append((src, str(err)))
            return None
        if target in self.claimed:
            self.errors.append(
                (src, f"output {target} is already the output of {self.claimed[target]}")
            )
            return None
        self.claimed[target] = src
        return target


@dataclass(frozen=True)
class OutputImage:
    """One file to write: float pixels in the layout and range to store, its sample type, an
    alpha channel carried over from the input (or None), and the input's metadata (ICC
    profile, EXIF, DPI) so the restored file is still the same photo."""

    pixels: np.ndarray
    dtype: np.dtype
    alpha: np.ndarray | None
    meta: ImageMeta = field(default_factory=ImageMeta)


@dataclass(frozen=True)
class TaskOption:
    """A restore flag of one task (``--src-lens`` for bokeh): the CLI offers it, and giving it
    to a model of another task is a usage error."""

    name: str  # the keyword the task receives, a Python identifier
    flag: str  # the command-line flag
    help: str
    type: type = str


#: A job's conditioning, built in a reader thread: raises ValueError (one line) when the job
#: lacks what the model needs.
Conditioner = Callable[[Job], Conditioning]


def as_rgb(image: Image) -> np.ndarray:
    """HxWxC float pixels with grey replicated to the three channels the models are trained on."""
    pixels = image.pixels
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def in_layout_of(out: np.ndarray, image: Image) -> np.ndarray:
    """Restored HxWx3 float pixels in ``image``'s channel layout (grey again) and value range
    (float files may exceed [0, 1] and keep their own range; integer files are clipped)."""
    if image.channels == 1:
        out = out.mean(axis=2, keepdims=True)
    if image.dtype == np.float32:
        lo, hi = min(0.0, float(image.pixels.min())), max(1.0, float(image.pixels.max()))
        return np.clip(out, lo, hi)
    return np.clip(out, 0.0, 1.0)


def scaled_alpha(alpha: np.ndarray | None, factor: int) -> np.ndarray | None:
    """An input's alpha at the output size: unchanged, or for an upscaling model resized with
    the same MATLAB-bicubic kernel and clipped to the alpha's range."""
    if alpha is None or factor == 1:
        return alpha
    import torch

    from irctl.data.resize import upscale

    full = 1.0 if alpha.dtype.kind == "f" else float(np.iinfo(alpha.dtype).max)
    scaled = upscale(torch.from_numpy(alpha.astype(np.float64) / full), factor).numpy()
    scaled = np.clip(scaled, 0.0, 1.0) * full
    if alpha.dtype.kind != "f":
        scaled = np.rint(scaled)
    return scaled.astype(alpha.dtype)


def upscaled_input(factor: int) -> Callable[[np.ndarray, object], np.ndarray]:
    """(LR H×W×C float, conditioning) → its MATLAB-bicubic ×factor upsampling."""

    def bicubic(lq: np.ndarray, _cond: object) -> np.ndarray:
        import torch

        from irctl.data.resize import upscale

        planes = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))
        return upscale(planes, factor).numpy().transpose(1, 2, 0)

    return bicubic


@dataclass(frozen=True)
class Task:
    """A single-image task: every input file is an ``image``, restored into one output file of
    the same name under the destination folder.

    ``classical``: the classical methods a user would otherwise run (irctl/methods/classical.py),
    the baseline rows of ``irctl compare``; ``metrics``: metrics its literature reports beside
    PSNR/SSIM (metric name → column header)."""

    name: str
    description: str = ""
    classical: tuple[str, ...] = ()
    metrics: dict[str, str] = field(default_factory=dict)

    inputs: tuple[str, ...] = (IMAGE,)
    outputs: tuple[str, ...] = (IMAGE,)
    options: tuple[TaskOption, ...] = ()
    noun: str = "images"  # what a job is called in messages
    #: a held-out case's views (every 3 channels), by file-name suffix
    view_suffixes: tuple[str, ...] = ("",)
    #: degradation settings only training draws from: models differing only in these share
    #: one held-out table
    training_only: tuple[str, ...] = ()
    #: the symmetries (irctl/symmetry.py) that leave the degradation's statistics unchanged:
    #: what ``--self-ensemble`` averages over. The mirror alone unless the task says more: a
    #: depth that recedes upward (haze, bokeh, defocus) has an "up"
    symmetries: tuple[str, ...] = MIRROR

    # --- finding and reading jobs (io) -----------------------------------------------------

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
        """Map inputs to outputs; two inputs mapping to one output is an error for the second.
        ``options``: the task's option values (flag keyword → value, None when not given).
        Every job is planned, done or not: which are done is the engine's business (after
        sharding, so that ranks agree on the list whatever is already on disk)."""
        plan = Plan()
        for src in files:
            target = plan.output_for(src, dst, src_root=src_root, ext=ext, suffix=suffix)
            if target is not None:
                plan.jobs.append(Job({IMAGE: src}, {IMAGE: target}))
        return plan

    def read(self, job: Job, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Image] | str:
        """Every input of the job decoded, or the one-line reason it cannot be restored.
        ``max_pixels``: the largest image to decode (0: no limit), checked from each file's
        header before decoding (irctl/io/images.py)."""
        images = {}
        for role, path in job.inputs.items():
            try:
                images[role] = read_image(path, max_pixels=max_pixels)
            except ImageReadError as err:
                return err.reason if path == job.src else f"{role} {path}: {err.reason}"
        return images

    def configured(self, values: Mapping[str, Any]) -> Task:
        """The task as the run's option ``values`` (flag name → value, None when not given)
        make it read its inputs: itself unless an option changes that (inpainting's
        ``--mask-white``). Raises ValueError (a usage error) for a value that cannot work."""
        return self

    def conditioner(
        self, preset: Preset, src_root: Path | None, values: dict[str, Any]
    ) -> Conditioner:
        """Each job's conditioning from the task's option ``values`` (flag name → value, None
        when not given) and files; raises ValueError (a usage error) when the options cannot
        work, before any image is read."""
        return lambda _job: Conditioning()

    # --- the model's side -------------------------------------------------------------------

    def model_input(self, images: dict[str, Image]) -> np.ndarray:
        """The model's input array (H×W×C float) for one job's decoded inputs."""
        return as_rgb(images[IMAGE])

    def complete(self, restored: np.ndarray, model_input: np.ndarray) -> np.ndarray:
        """The model's output (H'×W'×C float) finished with what the task guarantees from its
        input, in restores and held-out tables alike (inpainting: the known pixels, exactly)."""
        return restored

    def model_output(
        self, restored: np.ndarray, images: dict[str, Image]
    ) -> dict[str, OutputImage]:
        """The job's output files from the model's output (H'×W'×C float, H' a multiple of the
        input's height for an upscaling model)."""
        image = images[IMAGE]
        factor = restored.shape[0] // image.height
        return {
            IMAGE: OutputImage(
                in_layout_of(restored, image),
                image.dtype,
                scaled_alpha(image.alpha, factor),
                image.meta.scaled(factor),
            )
        }

    def output_scale(self, degradation: DegradationConfig) -> int:
        """How many times larger than its input an output is (an SR task's scale; 1 here)."""
        return 1

    def output_sizes(
        self, job: Job, degradation: DegradationConfig
    ) -> dict[str, tuple[int, int] | None]:
        """The (width, height) each output of ``job`` must have, read from the inputs' headers
        (nothing decoded), so a resume can tell a complete output from a wrong one: an output's
        same-named input (or the first input) × :meth:`output_scale`. None: unknown (the input
        is unreadable), the output's size is then not checked."""
        scale = self.output_scale(degradation)
        sizes: dict[str, tuple[int, int] | None] = {}
        for role in job.outputs:
            try:
                width, height = image_size(job.inputs.get(role, job.src))
            except (HeaderError, OSError):
                sizes[role] = None
                continue
            sizes[role] = (width * scale, height * scale)
        return sizes

    def megapixels(self, images: dict[str, Image]) -> float:
        """Input megapixels restored (the images that have an output of their own)."""
        return sum(images[r].height * images[r].width for r in self.outputs if r in images) / 1e6

    # --- training data, held-out tables, benchmark ------------------------------------------

    def patch_multiple(self, degradation: DegradationConfig) -> int:
        """Training crops must be a multiple of this (an SR task's scale)."""
        return 1

    def augment(self, crop: Tensor, flags: Tensor) -> Tensor:
        """A random symmetry of a training crop that keeps the pair valid (the 8 dihedral
        ones for a single image)."""
        from irctl.data.datasets import augment

        return augment(crop, flags)

    def input_row(self, degradation: DegradationConfig) -> tuple[str, Callable | None]:
        """The first row of a held-out table: its label and how the LQ input becomes an image
        comparable to the ground truth (None: the input itself)."""
        return "input", None

    def metric_mask(self, lq: np.ndarray) -> np.ndarray | None:
        """The pixels (H×W bool) a held-out case's masked metrics (``psnr-mask``,
        ``ssim-mask``) score, from its model input; None: the task has no such region."""
        return None

    def benchmark_input(self, photo: np.ndarray) -> np.ndarray:
        """The model input ``irctl benchmark`` times, made from one resized photo."""
        return photo

    def neutral_conditioning(self, preset: Preset) -> Conditioning:
        """Conditioning for inputs that come without any (``irctl benchmark``)."""
        return Conditioning()
