"""Synthetic degradations: how a clean photo becomes a training pair (LQ, GT[, conditioning]).

Each synthesis is a pure function of (clean batch in [0,1], generator), so training batches and
held-out test inputs are reproducible from a seed. Noise, haze and shadows degrade the photo,
which is the ground truth; bokeh renders both sides from the photo (one lens each) and returns
the lens codes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from irctl.config import DegradationConfig
from irctl.data.batch import Batch
from irctl.data.haze import HazeParams
from irctl.data.rtv import RTVParams

_P = TypeVar("_P")

#: clean NCHW batch, generator → training pair.
PairSynthesis = Callable[[Tensor, torch.Generator], Batch]

DEGRADATIONS = (
    "gaussian_noise",
    "haze",
    "bokeh",
    "shadow",
    "stereo_sr",
    "bicubic_sr",
    "motion_blur",
    "rain",
    "inpaint_mask",
    "realworld",
    "snow",
    "raindrops",
    "rtv_texture",
    "defocus",
    "rain_haze",
)


def quantize_8bit(x: Tensor) -> Tensor:
    """Round and clip to the 256 levels of an 8-bit file: what a user's photo holds."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def gaussian_noise(
    clean: Tensor, generator: torch.Generator, sigma: float, quantize: bool
) -> Tensor:
    """Additive white Gaussian noise of std ``sigma`` (0–255 units), optionally stored as 8 bits."""
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = clean + noise.to(clean.device) * (sigma / 255.0)
    return quantize_8bit(noisy) if quantize else noisy


def _noise_pair(cfg: DegradationConfig) -> PairSynthesis:
    return lambda clean, g: Batch(lq=gaussian_noise(clean, g, cfg.sigma, cfg.quantize), gt=clean)


def _haze_params(cfg: DegradationConfig) -> HazeParams:
    """The haze ranges of the preset's ``haze_*`` settings (haze and rain_haze share them)."""
    from irctl.data.haze import HazeParams

    return HazeParams(
        beta=cfg.haze_beta, airlight=cfg.haze_airlight, nonhomogeneity=cfg.haze_nonhomogeneity
    )


def _haze_pair(cfg: DegradationConfig) -> PairSynthesis:
    from irctl.data.haze import add_haze

    params = _haze_params(cfg)

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        hazy = add_haze(clean, g, params)
        return Batch(lq=quantize_8bit(hazy) if cfg.quantize else hazy, gt=clean)

    return synth


def _bokeh_pair(cfg: DegradationConfig, fixed: tuple[str, str] | None = None) -> PairSynthesis:
    from irctl.data.bokeh import bokeh_pair
    from irctl.data.lenses import parse_lens

    if len(cfg.lenses) < 2:
        raise ValueError("a bokeh degradation needs at least two lenses in degradation.lenses")
    for name in cfg.lenses:
        parse_lens(name)  # unknown names fail when the preset is used, not mid-training

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        lq, gt, codes = bokeh_pair(clean, g, cfg.lenses, cfg.bokeh_max_radius, fixed)
        if cfg.bokeh_disparity is not None:
            label = torch.full_like(codes[:, :1], cfg.bokeh_disparity)
            codes = torch.cat([codes, label], dim=1)
        if cfg.quantize:
            lq, gt = quantize_8bit(lq), quantize_8bit(gt)
        return Batch(lq=lq, gt=gt, cond=codes)

    return synth


def _numpy_rng(g: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded from the torch one, for syntheses written in NumPy: the pair
    stays a pure function of the torch generator's state."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return np.random.default_rng(seed)


def _shadow_pair(cfg: DegradationConfig, heldout: bool = False) -> PairSynthesis:
    """Cast shadows (irctl/data/shadow.py) on each photo of the batch. Held-out photos always
    get one: a shadow-free held-out case would only measure the input's gain."""
    from irctl.data.shadow import ShadowParams, add_shadow

    if heldout:
        params = ShadowParams(no_shadow=0.0)
    else:
        params = ShadowParams(
            no_shadow=cfg.shadow_free,
            dark_scene=cfg.shadow_dark_scene,
            recolour=cfg.shadow_recolour,
        )

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        rng = _numpy_rng(g)
        shadowed, targets = [], []
        for photo in clean:
            pixels = photo.permute(1, 2, 0).cpu().numpy()
            lq, gt, _mask = add_shadow(pixels, params, rng)
            shadowed.append(torch.from_numpy(lq).permute(2, 0, 1))
            targets.append(torch.from_numpy(gt).permute(2, 0, 1))
        lq = torch.stack(shadowed).to(clean.device, clean.dtype)
        gt = torch.stack(targets).to(clean.device, clean.dtype)
        return Batch(lq=quantize_8bit(lq) if cfg.quantize else lq, gt=gt)

    return synth


def _bicubic_lr_pair(cfg: DegradationConfig) -> PairSynthesis:
    """SR: the photo (or stereo_sr's L‖R pair, N×6×H×W, :func:`irctl.data.datasets.
    load_stereo_photo`) cropped to multiples of the scale; the LR is its MATLAB bicubic
    ×1/scale (NTIRE's degradation, DF2K's LR/x4 files), stored as 8 bits."""
    from irctl.data.resize import downscale

    s = cfg.scale

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        h, w = clean.shape[-2:]
        hr = clean[..., : h - h % s, : w - w % s]
        lq = downscale(hr, s)
        return Batch(lq=quantize_8bit(lq) if cfg.quantize else lq, gt=hr)

    return synth


def _motion_blur_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Camera-shake blur, one random trajectory kernel per photo, plus slight sensor noise
    (irctl/data/blur.py); each photo's kernel is kept for the oracle deconvolution baseline."""
    from irctl.data.blur import motion_blur

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        blurred, kernels = motion_blur(clean, _numpy_rng(g), cfg.blur_size, cfg.blur_noise)
        return Batch(
            lq=quantize_8bit(blurred) if cfg.quantize else blurred,
            gt=clean,
            known=[{"kernel": k} for k in kernels],
        )

    return synth


def _params_from(cfg: DegradationConfig, prefix: str, params_class: type[_P]) -> _P:
    """A degradation module's parameter dataclass filled from the ``<prefix><field>`` settings
    of the preset's degradation table, then checked (``check()``, when it has one) so that a
    range that cannot work fails when the preset is used, not mid-training."""
    values = {f.name: getattr(cfg, prefix + f.name) for f in dataclasses.fields(params_class)}
    params = params_class(**values)
    check = getattr(params, "check", None)
    if check is not None:
        check()
    return params


def _photo_pair(
    cfg: DegradationConfig, degrade: Callable[[Tensor, np.random.Generator], Tensor]
) -> PairSynthesis:
    """The photo is the ground truth; ``degrade(clean, rng)`` makes the LQ (a NumPy generator
    seeded from the torch one), stored as 8 bits when the preset quantises."""

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        lq = degrade(clean, _numpy_rng(g))
        return Batch(lq=quantize_8bit(lq) if cfg.quantize else lq, gt=clean)

    return synth


def _rain_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Rain100H-like streaks added to each photo (irctl/data/rain.py)."""
    from irctl.data.rain import RainParams, add_rain

    params = _params_from(cfg, "rain_", RainParams)
    return _photo_pair(cfg, lambda clean, rng: add_rain(clean, rng, params))


def _inpaint_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Random stroke-and-box holes (irctl/data/masks.py); the LQ is the model input
    ``[image·(1 − m), m]`` (4 channels), the photo stored as 8 bits."""
    from irctl.data.masks import random_mask

    if cfg.mask_scale < 0:
        raise ValueError(
            f"degradation.mask_scale must be ≥ 0 (0: each image's own), got {cfg.mask_scale}"
        )

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        rng = _numpy_rng(g)
        h, w = clean.shape[-2:]
        holes = np.stack(
            [
                random_mask(h, w, cfg.mask_fraction, rng, scale=cfg.mask_scale)
                for _ in range(len(clean))
            ]
        )
        m = torch.from_numpy(holes)[:, None].to(clean.device, clean.dtype)
        photo = quantize_8bit(clean) if cfg.quantize else clean
        return Batch(lq=torch.cat([photo * (1.0 - m), m], dim=1), gt=clean)

    return synth


def _realworld_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Real-ESRGAN's first-order chain at the photo's size, drawn per photo: blur, a random
    resize and back, noise, JPEG (irctl/data/realworld.py), stored as 8 bits."""
    from irctl.data.realworld import RealWorldParams, degrade_realworld

    params = _params_from(cfg, "realworld_", RealWorldParams)
    return _photo_pair(cfg, lambda clean, rng: degrade_realworld(clean, rng, params))


def _snow_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Snow100K-like flake layers over a mild veil on each photo (irctl/data/snow.py)."""
    from irctl.data.snow import SnowParams, add_snow

    params = _params_from(cfg, "snow_", SnowParams)
    return _photo_pair(cfg, lambda clean, rng: add_snow(clean, rng, params)[0])


def _raindrops_pair(cfg: DegradationConfig) -> PairSynthesis:
    """RainDrop-like refracting, out-of-focus drops on each photo (irctl/data/raindrops.py)."""
    from irctl.data.raindrops import RaindropParams, add_raindrops

    params = _params_from(cfg, "raindrop_", RaindropParams)
    return _photo_pair(cfg, lambda clean, rng: add_raindrops(clean, rng, params)[0])


def _defocus_pair(cfg: DegradationConfig) -> PairSynthesis:
    """DPDD-like defocus: uniform-disc blur by a depth proxy's distance from a drawn focal
    plane (irctl/data/defocus.py); each photo's CoC radius map (pixels) is kept for the oracle
    deconvolution baseline."""
    from irctl.data.defocus import DefocusParams, add_defocus

    params = _params_from(cfg, "defocus_", DefocusParams)

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        blurred, coc = add_defocus(clean, g, params)
        return Batch(
            lq=quantize_8bit(blurred) if cfg.quantize else blurred,
            gt=clean,
            known=[{"coc": c[0].detach().cpu().numpy().astype(np.float32)} for c in coc],
        )

    return synth


def _rain_haze_pair(cfg: DegradationConfig) -> PairSynthesis:
    """Outdoor-Rain-like heavy rain, I = T·(J + S) + (1 − T)·A (irctl/data/rain_haze.py): the
    streaks of the ``rain_*`` settings under the haze of the ``haze_*`` ones. Draw order: the
    streaks' NumPy seed first (as the rain pair draws it), then the haze, so with β = 0 a pair
    is the rain pair of the same seed."""
    from irctl.data.rain import RainParams
    from irctl.data.rain_haze import add_rain_haze

    rain = _params_from(cfg, "rain_", RainParams)
    haze = _haze_params(cfg)

    def synth(clean: Tensor, g: torch.Generator) -> Batch:
        rainy, _streaks, _haze = add_rain_haze(clean, _numpy_rng(g), g, rain, haze)
        return Batch(lq=quantize_8bit(rainy) if cfg.quantize else rainy, gt=clean)

    return synth


def rtv_params(cfg: DegradationConfig) -> RTVParams:
    """The RTV smoothing settings of a ``rtv_texture`` degradation (its ``rtv_*`` keys)."""
    return _params_from(cfg, "rtv_", RTVParams)


def _rtv_texture_pair(cfg: DegradationConfig) -> PairSynthesis:
    """DTPM's stage-I pairs: crops of photo ‖ its RTV structure (6 channels, smoothed once
    per whole photo by :func:`irctl.data.datasets.load_photos`, since RTV costs seconds per
    megapixel), split into LQ = the structure y_s and GT = the photo x_g. Never quantised:
    the texture x_g − y_s is what is learnt, and 8-bit rounding would add its own."""

    def synth(pair: Tensor, g: torch.Generator) -> Batch:
        if pair.shape[1] != 6:
            raise ValueError("rtv_texture pairs are photo ‖ structure crops (6 channels)")
        return Batch(lq=pair[:, 3:].contiguous(), gt=pair[:, :3].contiguous())

    return synth


def build_pair_synthesis(cfg: DegradationConfig, heldout_index: int | None = None) -> PairSynthesis:
    """The training synthesis; with ``heldout_index`` the one for that held-out photo (bokeh:
    the preset's ``heldout_lenses`` pair for it, so the held-out cases cover chosen directions
    rather than whatever a seed draws)."""
    if cfg.kind == "bokeh":
        pairs = [tuple(p.split(">")) for p in cfg.heldout_lenses]
        if heldout_index is not None and pairs:
            src, tgt = pairs[heldout_index % len(pairs)]
            return _bokeh_pair(cfg, (src, tgt))
        return _bokeh_pair(cfg)
    if cfg.kind == "shadow":
        return _shadow_pair(cfg, heldout=heldout_index is not None)
    builders = {
        "gaussian_noise": _noise_pair,
        "haze": _haze_pair,
        "stereo_sr": _bicubic_lr_pair,
        "bicubic_sr": _bicubic_lr_pair,
        "motion_blur": _motion_blur_pair,
        "rain": _rain_pair,
        "inpaint_mask": _inpaint_pair,
        "realworld": _realworld_pair,
        "snow": _snow_pair,
        "raindrops": _raindrops_pair,
        "rtv_texture": _rtv_texture_pair,
        "defocus": _defocus_pair,
        "rain_haze": _rain_haze_pair,
    }
    if cfg.kind not in builders:
        raise ValueError(f"unknown degradation {cfg.kind!r}; known: {', '.join(DEGRADATIONS)}")
    return builders[cfg.kind](cfg)
