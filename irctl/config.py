"""Presets (TOML) and their dataclasses.

A preset names everything a run needs: task, method, network sizes, diffusion settings, sampler
defaults, training recipe, dataset conventions and bundled weights. Checkpoints embed the resolved
preset (``preset_to_dict``) so ``irctl restore --weights X.safetensors`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class DegradationConfig:
    """How LQ images are synthesised from clean photos (training and held-out evaluation)."""

    kind: str = "gaussian_noise"  # gaussian_noise | haze | bokeh | shadow | stereo_sr
    sigma: float = 25.0  # noise std, 0–255 units
    quantize: bool = True  # round/clip to 8 bits, as a photo file is
    # haze: I = J·t + A(1 − t), t = exp(−β(x)·d(x)) (irctl/data/haze.py)
    haze_beta: tuple[float, float] = (1.0, 3.0)  # mean scattering coefficient, per image
    haze_airlight: tuple[float, float] = (0.75, 1.0)
    haze_nonhomogeneity: float = 0.7  # 0 = homogeneous; β(x) varies by ± half of this
    # bokeh: lens pairs drawn from these names; blur radius at f/1.8 for the farthest defocus
    lenses: tuple[str, ...] = ()
    bokeh_max_radius: float = 8.0  # pixels
    #: (source, target) lens `restore` assumes for an image with no lens metadata
    lens_default: tuple[str, ...] = ()
    #: held-out photo i is rendered with pair i (cycled), written "SRC>TGT"
    heldout_lenses: tuple[str, ...] = ()
    # shadow: cast shadows (irctl/data/shadow.py); this share of training photos gets none, so
    # a model learns to leave shadow-free photos alone
    shadow_free: float = 0.1
    # ... and this share is a dark scene (whole frame dimmed and blued, target too), so a dark
    # blue sky or a photo taken in shade is not mistaken for a cast shadow
    shadow_dark_scene: float = 0.0
    # ... and this share has its colour channels permuted (target too): the shipped colour
    # photos are warm, so otherwise every blue region in training is a shadow
    shadow_recolour: float = 0.0
    # stereo_sr: LR = MATLAB bicubic ×1/scale of each view (irctl/data/resize.py); views made
    # from a single photo get a synthetic disparity up to this fraction of the photo's width
    # (the shipped motorcycle pair's reaches 8%)
    scale: int = 4
    stereo_max_disparity: tuple[float, float] = (0.03, 0.08)


@dataclass(frozen=True)
class NetworkConfig:
    width: int = 16
    enc_blocks: tuple[int, ...] = (1, 1, 1, 1)
    middle_blocks: int = 1
    dec_blocks: tuple[int, ...] = (1, 1, 1, 1)
    #: Global per-image scalars the network is conditioned on (bokeh: source and target lens
    #: codes), each embedded like a timestep and projected to a per-block scale/shift.
    cond_scalars: int = 0
    #: 2 = stereo: images are L‖R pairs (6 channels) and the views exchange information through
    #: SCAM cross-attention (irctl/nets/stereo.py).
    views: int = 1
    #: stereo: one set of cross-attention weights for both views, so swapping the input views
    #: swaps the outputs exactly (the official code has separate left/right weights)
    tied_views: bool = False
    #: > 1: super-resolution by this factor; the input is the LR image and μ (Refusion) is its
    #: bicubic upsampling.
    upscale: int = 1
    #: "unet" (NAFNet, the sizes above) | "nafssr" (flat NAFSSR on the LR views: width and
    #: ``blocks``; a regression network for stereo SR)
    arch: str = "unet"
    blocks: int = 8
    #: initialise the U-Net's pixel-shuffle upsamplers with ICNR (irctl/nets/nafnet.py:icnr_):
    #: no checkerboard at the start of training. Only the initialisation changes, not the
    #: weights' layout, so either setting loads any checkpoint of the same sizes.
    icnr: bool = False


@dataclass(frozen=True)
class LatentConfig:
    """The U-Net compressor of latent Refusion (paper §4.1; irctl/nets/unet_latent.py): channels
    c_i = channels·[1, *mult], downscale factor 2^(len(mult) − 1)."""

    channels: int = 8
    mult: tuple[int, ...] = (1, 2, 4)
    latent_channels: int = 4
    blocks: int = 2
    attention: bool = False

    @property
    def factor(self) -> int:
        return 2 ** (len(self.mult) - 1)


@dataclass(frozen=True)
class DiffusionConfig:
    """Mean-reverting SDE settings; Refusion's defaults (paper §5.2, every refusion.yml)."""

    T: int = 100
    max_sigma: float = 50.0  # λ, 0–255 units
    schedule: str = "cosine"
    eps: float = 0.005


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "sde"
    steps: int = 100
    tile: int = 256
    tile_overlap: int = 32
    tile_batch: int = 4


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "lion"
    lr: float = 1e-3
    lr_min: float = 1e-7
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    batch: int = 8
    patch: int = 64
    iterations: int = 5000
    ema_decay: float = 0.995
    seed: int = 0
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 500
    #: Per-stage overrides of the keys above, e.g. ``[train.stages.compressor]`` with its own
    #: iterations and lr for latent Refusion's first stage.
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def for_stage(self, stage: str) -> TrainConfig:
        """The recipe for one training stage: this one with the stage's overrides applied."""
        overrides = dict(self.stages.get(stage, {}))
        known = {f.name for f in dataclasses.fields(self)} - {"stages"}
        unknown = set(overrides) - known
        if unknown:
            raise PresetError(
                f"[train.stages.{stage}]: unknown key(s) {', '.join(sorted(unknown))}"
            )
        for key, value in overrides.items():
            if isinstance(getattr(self, key), tuple):
                overrides[key] = tuple(value)
        return dataclasses.replace(self, **overrides, stages={})


@dataclass(frozen=True)
class DataConfig:
    """Photos shipped by scikit-image, split once: the test photos are never trained on."""

    source: str = "skimage"
    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    method: str
    description: str = ""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    weights: str | None = None  # relative to the presets folder
    default: bool = False  # the model `irctl restore --task <task>` uses

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


_SECTIONS: dict[str, type] = {
    "degradation": DegradationConfig,
    "network": NetworkConfig,
    "latent": LatentConfig,
    "diffusion": DiffusionConfig,
    "sampler": SamplerConfig,
    "train": TrainConfig,
    "data": DataConfig,
}


class PresetError(ValueError):
    """A preset that cannot be found or does not parse; the message says which and why."""


def presets_dir() -> Path:
    """Where the presets live: inside the wheel (``irctl/presets``) or, for a source checkout
    or editable install, the repository's top-level ``presets/``."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "presets", package_dir.parent / "presets"):
        if candidate.is_dir():
            return candidate
    raise PresetError("the presets folder is missing from this installation")


def available_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def _build_section(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    converted = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        converted[key] = tuple(value) if isinstance(default, tuple) else value
    return cls(**converted)


def preset_from_dict(data: dict[str, Any], where: str = "preset") -> Preset:
    data = dict(data)
    for key in ("name", "task", "method"):
        if key not in data:
            raise PresetError(f"{where}: missing required key {key!r}")
    sections = {
        name: _build_section(cls, data.pop(name, {}), f"{where} [{name}]")
        for name, cls in _SECTIONS.items()
    }
    top = {f.name for f in dataclasses.fields(Preset)} - set(_SECTIONS)
    unknown = set(data) - top
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    preset = Preset(**data, **sections)
    _check_consistency(preset, where)
    return preset


def _check_consistency(preset: Preset, where: str) -> None:
    """Settings that must agree across sections (a wrong one would train a useless model)."""
    net, deg = preset.network, preset.degradation
    if net.views not in (1, 2):
        raise PresetError(f"{where}: network.views must be 1 or 2, got {net.views}")
    if net.arch not in ("unet", "nafssr"):
        raise PresetError(f"{where}: network.arch must be unet or nafssr, got {net.arch!r}")
    if deg.kind == "stereo_sr" and (net.views, net.upscale) != (2, deg.scale):
        raise PresetError(
            f"{where}: a stereo_sr degradation needs network.views = 2 and network.upscale = "
            f"degradation.scale = {deg.scale}, got views {net.views}, upscale {net.upscale}"
        )


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists); inverse of ``preset_from_dict``."""
    return json.loads(json.dumps(dataclasses.asdict(preset)))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a preset by name (``denoise-tiny``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = presets_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise PresetError(
                f"no preset named {name_or_path!r}; available: {', '.join(available_presets())}"
            )
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PresetError(f"{path}: {err}") from err
    return preset_from_dict(data, where=str(path))


def apply_overrides(preset: Preset, overrides: list[str]) -> Preset:
    """Apply ``section.key=value`` overrides (value parsed as TOML, bare words as strings)."""
    data = preset_to_dict(preset)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise PresetError(f"override {item!r} is not of the form section.key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        *parents, leaf = key.strip().split(".")
        # train.stages.<stage>.<key> may name a stage or key not set yet: for_stage() checks it.
        in_stage = len(parents) >= 2 and parents[-2] == "stages"
        node = data
        for depth, parent in enumerate(parents):
            if isinstance(node.get(parent), dict):
                node = node[parent]
            elif depth > 0 and parents[depth - 1] == "stages":
                node = node.setdefault(parent, {})
            else:
                raise PresetError(f"override {item!r}: no section {parent!r}")
        if leaf not in node and not in_stage:
            raise PresetError(f"override {item!r}: unknown key {leaf!r}")
        node[leaf] = value
    return preset_from_dict(data, where="preset with overrides")


def default_preset_for_task(task: str) -> str:
    """The preset marked ``default = true`` for ``task``, else ``<task>-tiny``."""
    for name in available_presets():
        preset = load_preset(name)
        if preset.task == task and preset.default:
            return name
    if (presets_dir() / f"{task}-tiny.toml").is_file():
        return f"{task}-tiny"
    tasks = sorted({load_preset(n).task for n in available_presets()})
    raise PresetError(f"no model for task {task!r}; tasks: {', '.join(tasks)}")


def preset_for_task(task: str, method: str | None = None) -> str:
    """The preset ``irctl restore --task T [--method M]`` uses: the task's default without a
    method, else the task's preset of that method that ships weights (the default one first)."""
    if method is None:
        return default_preset_for_task(task)
    ours = [p for p in map(load_preset, available_presets()) if p.task == task]
    if not ours:
        return default_preset_for_task(task)  # raises: no model for this task, naming the tasks
    bundled = [p for p in ours if p.method == method and (w := weights_path(p)) and w.is_file()]
    if not bundled:
        methods = sorted({p.method for p in ours if (w := weights_path(p)) and w.is_file()})
        raise PresetError(
            f"no bundled {method!r} model for task {task!r}; methods: {', '.join(methods)}"
        )
    return sorted(bundled, key=lambda p: (not p.default, p.name))[0].name


def weights_path(preset: Preset) -> Path | None:
    """The bundled weights file a preset names, if any."""
    return presets_dir() / preset.weights if preset.weights else None
