"""The preset's shared sections as dataclasses: task data, degradation, sampler runtime,
training recipe. A method's own tables (its network sizes, its diffusion settings) are parsed by
the method's dataclass (irctl/methods/), and loading a preset is irctl/presets.py's job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DegradationConfig:
    """How LQ images are synthesised from clean photos (training and held-out evaluation)."""

    kind: str = "gaussian_noise"  # one of irctl/data/degrade.py DEGRADATIONS
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
    #: set for a model conditioned on the NTIRE 2023 per-image disparity (the released
    #: latent-bokeh net): the value `restore` assumes for an image whose lens table has none,
    #: and the one synthetic training and held-out pairs are labelled with (they have no
    #: disparity of their own). None: lens codes only.
    bokeh_disparity: float | None = None
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

    # --- derain, deblur, sr4 and inpaint (IR-SDE's released tasks) ---
    # rain: sparse drops drawn as oriented, motion-blurred streaks and added to the photo
    # (irctl/data/rain.py); per image: this many drops per pixel, streak length (pixels),
    # direction (degrees from vertical), brightness, and 1..rain_layers layers of streaks
    rain_density: tuple[float, float] = (0.001, 0.004)
    rain_length: tuple[float, float] = (15.0, 45.0)
    rain_angle: tuple[float, float] = (-30.0, 30.0)
    rain_intensity: tuple[float, float] = (0.3, 0.7)
    rain_layers: int = 3
    # motion_blur: a random camera-shake trajectory rasterised into a kernel of this many pixels
    # across (irctl/data/blur.py), then Gaussian noise up to this std (0–255 units)
    blur_size: tuple[int, int] = (9, 31)
    blur_noise: float = 2.0
    # inpaint_mask: random strokes and boxes (irctl/data/masks.py) covering this share of the image,
    # drawn as on an image whose short side is mask_scale pixels (0: the image's own), so the
    # holes of a training crop and of a whole held-out photo can be the same size in pixels
    mask_fraction: tuple[float, float] = (0.1, 0.4)
    mask_scale: int = 0

    # --- realworld (DiffIR's released ×1 model): Real-ESRGAN's first-order chain at the input
    # size (irctl/data/realworld.py). Defaults are the official training settings, Zj-BinXia/
    # DiffIR DiffIR-RealSR/options/train_DiffIRS2_GAN_x1.yml (blur_kernel_size 21, so Real-
    # ESRGAN's odd sizes 7..21; blur_sigma; kernel_prob's iso and aniso weights, the other kernel
    # kinds left out; resize_prob, resize_range; gaussian_noise_prob, noise_range,
    # poisson_scale_range, gray_noise_prob; jpeg_range, applied to every image there)
    realworld_blur_size: tuple[int, int] = (7, 21)  # kernel pixels across (odd sizes)
    realworld_blur_sigma: tuple[float, float] = (0.2, 3.0)  # pixels; (0, 0): no blur
    realworld_kernel_prob: tuple[float, float] = (0.45, 0.25)  # isotropic, anisotropic weights
    realworld_resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep weights
    realworld_resize_range: tuple[float, float] = (0.15, 1.5)  # factor; (1, 1): no resize
    realworld_gaussian_noise_prob: float = 0.5  # else Poisson noise
    realworld_noise_range: tuple[float, float] = (1.0, 30.0)  # Gaussian std, 0–255 units
    realworld_poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    realworld_gray_noise_prob: float = 0.4  # one noise plane for all channels
    realworld_jpeg_range: tuple[float, float] = (30.0, 95.0)  # quality
    realworld_jpeg_prob: float = 1.0  # 0: no JPEG

    # --- desnow and raindrop (DTPM's weather tasks) ---
    # snow: Snow100K-like flake layers composited over a mild veil (irctl/data/snow.py; Liu et
    # al., DesnowNet, TIP 2018): K = J·(1 − a) + a·C per layer, after J·(1 − v) + v·C. Per image
    # rtv_texture (DTPM's stage I, not a task's degradation): the photo is the truth and its
    # RTV structure S (irctl/data/rtv.py, Xu et al. 2012) the input; the texture is x − S
    rtv_lam: float = 0.01
    rtv_sigma: float = 3.0
    rtv_sharpness: float = 0.02
    rtv_iterations: int = 4
    # 1..snow_layers layers, small far flakes to large near ones (log-spaced bands of
    # snow_flake_size, radius in pixels); each layer's flakes cover snow_density of the frame
    # (before overlap), are streaked up to snow_streak pixels along a fall direction drawn from
    # snow_angle (degrees from vertical) and blurred by depth; v from snow_veil
    snow_density: tuple[float, float] = (0.01, 0.05)
    snow_layers: int = 3
    snow_flake_size: tuple[float, float] = (0.6, 6.0)
    snow_veil: tuple[float, float] = (0.0, 0.25)
    snow_streak: tuple[float, float] = (0.0, 4.0)
    snow_angle: tuple[float, float] = (-30.0, 30.0)
    # raindrops: drops on the glass in front of the lens (irctl/data/raindrops.py; Qian et al.,
    # AttentiveGAN / RainDrop, CVPR 2018): per 256×256 pixels raindrop_count elliptical drops of
    # semi-major axis raindrop_radius (pixels) and axis ratio raindrop_aspect; each shows the
    # scene around it raindrop_zoom times its size, inverted for a raindrop_flip share of drops
    # (else magnified), blurred by raindrop_blur (Gaussian std, pixels), darkened by up to
    # raindrop_rim at its rim; the background outside the drops is blurred by
    # raindrop_background_blur (0: left exactly as the photo)
    raindrop_count: tuple[float, float] = (4.0, 20.0)
    raindrop_radius: tuple[float, float] = (5.0, 18.0)
    raindrop_aspect: tuple[float, float] = (1.0, 1.4)
    raindrop_zoom: tuple[float, float] = (1.5, 3.0)
    raindrop_flip: float = 0.8
    raindrop_blur: tuple[float, float] = (1.0, 2.5)
    raindrop_rim: tuple[float, float] = (0.1, 0.35)
    raindrop_background_blur: tuple[float, float] = (0.0, 0.8)

    # --- defocus and derain-dehaze (DTPM's other tasks) ---
    # defocus: DPDD-like defocus blur (irctl/data/defocus.py; Abuolaim & Brown, ECCV 2020). Per
    # image a depth proxy d in [0, 1] (a defocus_luminance share of the photo's smoothed
    # luminance, the rest a smooth random field), a focal plane from defocus_focus and r_max
    # from defocus_max_radius; each pixel becomes a uniform disc of radius r_max·|d − focus|
    # pixels (so at most r_max)
    defocus_max_radius: tuple[float, float] = (4.0, 12.0)
    defocus_focus: tuple[float, float] = (0.0, 1.0)
    defocus_luminance: tuple[float, float] = (0.3, 0.7)
    # rain_haze: Outdoor-Rain-like heavy rain (irctl/data/rain_haze.py; Li et al., CVPR 2019),
    # I = T·(J + S) + (1 − T)·A: the streaks S are the rain_* settings' and the transmission T
    # and airlight A the haze_* settings', so it has no settings of its own


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
    #: Pairs are synthesised on crops ``focus`` times the patch across and cut to a patch where
    #: the input differs most from the truth (irctl/data/datasets.py, ``PairedCropSampler``):
    #: for degradations that cover a small share of the photo (raindrops), which plain random
    #: crops mostly miss. 1: plain crops.
    focus: int = 1
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
    """A resolved preset: the shared sections every method reads, and ``model``, the method's
    own configuration (its dataclass, parsed from the method's tables such as ``[network]``
    and ``[diffusion]``: irctl/presets.py). ``preset.network`` and the like read those tables."""

    name: str
    task: str
    method: str
    description: str = ""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    weights: str | None = None  # relative to the presets folder
    default: bool = False  # the model `irctl restore --task <task>` uses
    model: Any = None  # the method's config dataclass

    def __getattr__(self, table: str) -> Any:
        """A table of the method's config (``preset.network``, ``preset.diffusion``)."""
        model = self.__dict__.get("model")
        if model is not None and table in {f.name for f in dataclasses.fields(model)}:
            return getattr(model, table)
        raise AttributeError(f"preset {self.__dict__.get('name')!r} has no section {table!r}")

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


#: The sections every preset shares, whatever its method.
SHARED_SECTIONS: dict[str, type] = {
    "degradation": DegradationConfig,
    "sampler": SamplerConfig,
    "train": TrainConfig,
    "data": DataConfig,
}


class PresetError(ValueError):
    """A preset that cannot be found or does not parse; the message says which and why."""


def parse_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """``cls`` from a TOML/JSON table: unknown keys are an error naming them, lists become
    tuples where the field's default is one, and fields whose default is a dataclass are parsed
    from their own sub-table (a method's config holding its ``[network]`` and ``[diffusion]``)."""
    if not isinstance(values, dict):
        raise PresetError(f"{where}: expected a table, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise PresetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    defaults = cls()
    converted = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            converted[key] = parse_dataclass(type(default), value, f"{where} [{key}]")
        elif isinstance(default, tuple):
            converted[key] = tuple(value)
        else:
            converted[key] = value
    try:
        return cls(**converted)
    except (TypeError, ValueError) as err:
        raise PresetError(f"{where}: {err}") from None
