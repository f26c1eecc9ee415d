"""Task registry: the only place that maps a preset's ``task`` to what the task is."""

from __future__ import annotations

from irctl.symmetry import DIHEDRAL, FLIPS
from irctl.tasks.base import Task, TaskOption
from irctl.tasks.bokeh import BokehTask
from irctl.tasks.inpaint import InpaintTask
from irctl.tasks.sr import SRTask
from irctl.tasks.stereo import StereoTask

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("denoise", "additive Gaussian noise", classical=("bm3d",), symmetries=DIHEDRAL),
        Task("dehaze", "non-homogeneous haze", classical=("dcp",)),
        BokehTask("bokeh", "lens-to-lens bokeh transformation"),
        Task(
            "shadow",
            "cast shadow removal",
            metrics={"rmse-lab": "RMSE (LAB)"},
            # held-out shadows are always cast, on the photo as it is
            training_only=("shadow_free", "shadow_dark_scene", "shadow_recolour"),
            symmetries=DIHEDRAL,  # occluders and dimming gradients in random directions
        ),
        StereoTask(
            "stereo-sr", "stereo ×4 super-resolution", metrics={"hf-ratio": "HF energy ratio"}
        ),
        # Rain100H's numbers are on the BT.601 luma
        # streaks fall within 30° of vertical: any flip keeps them so, a transpose does not
        Task(
            "derain",
            "rain streak removal",
            metrics={"psnr-y": "PSNR-Y", "ssim-y": "SSIM-Y"},
            symmetries=FLIPS,
        ),
        Task(
            "deblur",
            "camera-shake motion deblurring",
            classical=("richardson-lucy-oracle", "blind-richardson-lucy", "unsharp-mask"),
            # DTPM's task too, whose claim is texture
            metrics={"hf-ratio": "HF energy ratio"},
            symmetries=DIHEDRAL,  # shake trajectories have no preferred direction
        ),
        # DTPM's DPDD task (single image): blur varies with depth; the oracle row deconvolves
        # with one disc of the case's median true CoC radius
        Task(
            "defocus",
            "defocus deblurring (disc blur growing with the distance from a focal plane)",
            classical=("richardson-lucy-disc-oracle", "unsharp-mask"),
            metrics={"hf-ratio": "HF energy ratio"},
        ),
        # SR benchmarks score the luma with `scale` pixels cropped from every edge (BasicSR)
        SRTask(
            "sr4",
            "single-image ×4 super-resolution",
            metrics={"psnr-y-crop4": "PSNR-Y (4-px crop)"},
            scale=4,
            symmetries=DIHEDRAL,
        ),
        SRTask(
            "sr2",
            "single-image ×2 super-resolution",
            metrics={"psnr-y-crop2": "PSNR-Y (2-px crop)"},
            scale=2,
            symmetries=DIHEDRAL,
        ),
        # DiffIR's ×1 real-world model: Real-ESRGAN's blind mixture, output at the input size
        Task(
            "realworld",
            "blind real-world restoration at the input size (blur, noise, resizing, JPEG)",
            symmetries=DIHEDRAL,
        ),
        # DTPM's weather tasks (Snow100K, RainDrop) (the HF energy ratio: DTPM's claim is
        # texture, fig. 1). Snow: bright outliers over a median background, inpainted, and a
        # plain median filter. Raindrops have no row: a drop is a blurred view of the scene,
        # not an outlier of one sign; the same detection made two-sided lost 3–7 dB to the
        # input on the held-out photos at its best setting, a 3-px median 0.7–3 dB
        Task(
            "desnow",
            "snow removal (flakes of several sizes and densities, and their veil)",
            classical=("median-inpaint", "median-filter"),
            metrics={"hf-ratio": "HF energy ratio"},
            symmetries=FLIPS,  # flakes fall within 30° of vertical, like rain
        ),
        Task(
            "raindrop",
            "adherent raindrop removal (refracting drops, blurred background)",
            metrics={"hf-ratio": "HF energy ratio"},
            symmetries=DIHEDRAL,  # drops of random orientation; each shows its view inverted
        ),
        # DTPM's Outdoor-Rain task: the dark channel prior lifts the veil, not the streaks
        Task(
            "derain-dehaze",
            "rain streaks and haze together, as Outdoor-Rain",
            classical=("dcp",),
            metrics={"hf-ratio": "HF energy ratio"},
        ),
        # the known pixels are the input's exactly (Task.complete): the holes are the score
        InpaintTask(
            "inpaint",
            "inpainting the holes a mask marks",
            classical=("telea", "navier-stokes"),
            metrics={"psnr-mask": "PSNR in holes", "ssim-mask": "SSIM in holes"},
            symmetries=DIHEDRAL,  # strokes and axis-aligned boxes: the mask turns with the image
        ),
    )
}


#: The task `irctl restore`, `benchmark` and `compare` use when none is given.
DEFAULT_TASK = "denoise"


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}") from None


def all_task_options() -> dict[str, tuple[TaskOption, list[str]]]:
    """Every task's restore flags, by keyword: the option and the tasks that take it."""
    options: dict[str, tuple[TaskOption, list[str]]] = {}
    for task in TASKS.values():
        for option in task.options:
            known, owners = options.setdefault(option.name, (option, []))
            if known != option:
                raise RuntimeError(f"tasks disagree on the option {option.name!r}")
            owners.append(task.name)
    return options
