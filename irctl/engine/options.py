"""Option values checked before anything runs: each check raises one ``ValueError`` line that
names the value and what is allowed, and returns the value (parsed where it is a list).

The CLI calls these from its option callbacks, so a typo costs nothing: no model is loaded and
no image is read before every option of the command has been checked. What only the loaded
model can say (its samplers, its steps, its tile multiple) is checked right after loading, by
:func:`irctl.engine.models.resolve_options`, still before the first image is read."""

from __future__ import annotations

from pathlib import Path

import torch

from irctl.engine.benchmark import parse_size
from irctl.engine.evaluate import validate_metrics
from irctl.methods import METHODS
from irctl.methods.classical import CLASSICAL
from irctl.presets import load_preset
from irctl.tasks import TASKS
from irctl.tiling import TILE_LAYOUTS


def check_task(name: str) -> str:
    """A task of the registry: a typo must not fall back to the default task's model."""
    if name not in TASKS:
        raise ValueError(f"{name!r} is not a task; choose {', '.join(TASKS)}")
    return name


def check_method(name: str) -> str:
    """A method of the registry (whether the task ships one is said once the task is known)."""
    if name not in METHODS:
        raise ValueError(f"{name!r} is not a method; choose {', '.join(METHODS)}")
    return name


def check_tile_layout(name: str) -> str:
    """``--tile-layout``: one of the tiler's layouts (irctl/tiling.py)."""
    if name not in TILE_LAYOUTS:
        raise ValueError(f"{name!r} is not a tile layout; choose {', '.join(TILE_LAYOUTS)}")
    return name


def check_preset(name: str) -> str:
    """A bundled preset's name or a .toml file that parses (PresetError is a ValueError)."""
    load_preset(name)
    return name


def check_checkpoint(path: Path) -> Path:
    """An irctl safetensors checkpoint, by its header alone (no tensor is read): a pickle, or
    a safetensors file without an embedded preset, is refused (CheckpointError is a
    ValueError)."""
    from irctl.engine.checkpoint import FORMAT, CheckpointError, read_metadata

    if read_metadata(path).get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not an irctl checkpoint")
    return path


def check_device(name: str) -> str:
    """auto, cpu, cuda or cuda:N — and a CUDA device only where there is one."""
    if name == "auto":
        return name
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name!r}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name!r}: this machine has {count} CUDA device(s), cuda:0..")
    return name


def check_metrics(text: str) -> list[str]:
    """Comma-separated metric names: the fidelity metrics and the perceptual ones (whether
    the perceptual extra is installed is said later, per metric, in one line)."""
    try:
        from irctl.metrics.perceptual import PERCEPTUAL_METRICS
    except ImportError:  # an install without the perceptual bridge: fidelity metrics only
        PERCEPTUAL_METRICS = ()

    return validate_metrics(text.split(","), extra_names=PERCEPTUAL_METRICS)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'256,6000x4000' → [(256, 256), (6000, 4000)]."""
    try:
        sizes = [parse_size(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes:
        raise ValueError(f"{text!r}: expected comma-separated sizes like 1024 or 6000x4000")
    return sizes


def parse_tiles(text: str) -> list[int]:
    """'0,256' → [0, 256]: tile sizes, 0 for untiled (the model's multiple is checked once it
    is loaded)."""
    try:
        tiles = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        tiles = []
    if not tiles or min(tiles) < 0:
        raise ValueError(f"{text!r}: tile sizes must be >= 0 (0 = untiled), comma-separated")
    return tiles


def parse_names(text: str) -> list[str]:
    """'a, b' → ['a', 'b']; nothing named is an error, not a silent empty list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"{text!r}: expected comma-separated names")
    return names


def check_models(text: str) -> list[str]:
    """Presets (bundled weights) or existing .safetensors files, comma-separated."""
    names = parse_names(text)
    for name in names:
        if name.endswith(".safetensors"):
            if not Path(name).is_file():
                raise ValueError(f"{name!r}: no such checkpoint file")
        else:
            load_preset(name)
    return names


def check_classical(text: str) -> list[str]:
    """Classical baselines by name, comma-separated; '' asks for none (compare's rows are then
    the models and the input only)."""
    names = [n.strip() for n in text.split(",") if n.strip()]  # '' = no baseline at all
    unknown = [n for n in names if n not in CLASSICAL]
    if unknown:
        raise ValueError(f"unknown classical method {unknown[0]!r}; choose {', '.join(CLASSICAL)}")
    return names


def parse_sampler_runs(text: str) -> list[tuple[str, int]]:
    """'sde:100,posterior:20' → [('sde', 100), ('posterior', 20)]; steps >= 1 (the sampler
    names and T are the model's, checked once it is loaded)."""
    runs = []
    for item in text.split(","):
        name, colon, steps = item.strip().partition(":")
        if not item.strip():
            continue
        if not (name and colon and steps.strip().isdigit() and int(steps) >= 1):
            raise ValueError(f"{item.strip()!r}: expected sampler:steps pairs such as sde:100")
        runs.append((name, int(steps)))
    if not runs:
        raise ValueError(f"{text!r}: expected sampler:steps pairs such as sde:100")
    return runs


def check_overrides(items: list[str]) -> list[str]:
    """``--set section.key=value``: the form here; the key itself once the preset is known."""
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not of the form section.key=value")
    return items
