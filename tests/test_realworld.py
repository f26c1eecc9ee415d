"""The realworld task and its degradation (irctl/data/realworld.py): Real-ESRGAN's first-order
chain at the input size, for DiffIR's released ×1 model (presets/sr1-diffir-official.toml) —
seeded, on the 8-bit grid, each step what it claims and each one switchable off, and a ×1
DIRformer restoring through `irctl restore` at the input's size."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.config import DegradationConfig
from irctl.data.datasets import load_photo
from irctl.data.degrade import DEGRADATIONS, build_pair_synthesis, quantize_8bit
from irctl.data.realworld import gaussian_kernel
from irctl.presets import load_preset, preset_to_dict

#: every step of the chain switched off: the photo comes back as its 8-bit self
OFF = {
    "realworld_blur_sigma": (0.0, 0.0),
    "realworld_resize_range": (1.0, 1.0),
    "realworld_noise_range": (0.0, 0.0),
    "realworld_poisson_scale_range": (0.0, 0.0),
    "realworld_jpeg_prob": 0.0,
}


def _crop(h: int = 96, w: int = 96) -> torch.Tensor:
    """A detailed crop (fur, an eye) of a shipped photo, already on the 8-bit grid."""
    photo = load_photo("chelsea")[60 : 60 + h, 100 : 100 + w]
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None]


def _degrade(clean: torch.Tensor, seed: int = 0, **fields: object) -> torch.Tensor:
    cfg = DegradationConfig(kind="realworld", **fields)
    pair = build_pair_synthesis(cfg)(clean, torch.Generator().manual_seed(seed))
    assert torch.equal(pair.gt, clean) and pair.lq.shape == clean.shape
    return pair.lq


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


def _on_8bit_grid(x: torch.Tensor) -> bool:
    return bool(torch.equal(x, quantize_8bit(x)))


# --------------------------------------------------------------------------- the chain


def test_the_synthesis_is_seeded_keeps_the_size_and_lands_on_the_8bit_grid() -> None:
    clean = _crop(64, 80)
    a, b = _degrade(clean, seed=5), _degrade(clean, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, _degrade(clean, seed=6))
    assert a.shape == (1, 3, 64, 80) and _on_8bit_grid(a)
    # a batch: each photo its own draw
    pair = _degrade(torch.cat([clean, clean]), seed=5)
    assert pair.shape == (2, 3, 64, 80) and not torch.equal(pair[0], pair[1])


def test_the_official_ranges_degrade_a_photo_visibly_but_not_beyond_recognition() -> None:
    clean = _crop()
    scores = [_psnr(_degrade(clean, seed=s), clean) for s in range(8)]
    assert all(math.isfinite(p) and 15.0 < p < 35.0 for p in scores), scores
    assert max(scores) - min(scores) > 3.0, "the damage is drawn per image, not fixed"


def test_every_step_switched_off_gives_the_photo_back() -> None:
    clean = _crop(48, 64)
    assert torch.equal(_degrade(clean, seed=3, **OFF), clean)
    # ... and keeping the size is the resize's "keep" draw as well as a factor of 1
    kept = {**OFF, "realworld_resize_range": (0.15, 1.5), "realworld_resize_prob": (0, 0, 1)}
    assert torch.equal(_degrade(clean, seed=3, **kept), clean)


def test_gaussian_kernels_sum_to_one_with_the_covariance_asked() -> None:
    iso = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert iso.shape == (21, 21) and iso.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(iso, iso.T, atol=1e-7)
    np.testing.assert_allclose(iso, iso[::-1, ::-1], atol=1e-7)
    theta, sx, sy = 0.6, 3.0, 1.0
    aniso = gaussian_kernel(41, sx, sy, theta).astype(np.float64)
    ys, xs = np.mgrid[-20:21, -20:21]
    cov = np.array(
        [
            [(aniso * xs * xs).sum(), (aniso * xs * ys).sum()],
            [(aniso * xs * ys).sum(), (aniso * ys * ys).sum()],
        ]
    )
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    np.testing.assert_allclose(cov, rot @ np.diag([sx**2, sy**2]) @ rot.T, atol=0.02)


def test_blur_alone_is_the_convolution_with_an_isotropic_kernel() -> None:
    from irctl.data.blur import convolve

    clean = _crop(48, 64)
    blur = {
        **OFF,
        "realworld_blur_sigma": (2.0, 2.0),
        "realworld_blur_size": (15, 15),
        "realworld_kernel_prob": (1.0, 0.0),
    }
    expected = quantize_8bit(convolve(clean, torch.from_numpy(gaussian_kernel(15, 2.0, 2.0, 0.0))))
    assert torch.equal(_degrade(clean, seed=1, **blur), expected)


def _detail(x: torch.Tensor) -> float:
    """Mean squared Laplacian: the image's high-frequency energy."""
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
    lap = lap - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float((lap**2).mean())


def test_a_down_scale_and_back_loses_detail_and_keeps_the_size() -> None:
    clean = _crop()
    down = {**OFF, "realworld_resize_range": (0.25, 1.0), "realworld_resize_prob": (0, 1, 0)}
    for seed in range(4):
        out = _degrade(clean, seed=seed, **down)
        assert out.shape == clean.shape and _detail(out) < 0.6 * _detail(clean)
        assert _psnr(out, clean) > 18.0  # the same picture, softer


def test_gaussian_noise_has_the_std_asked_and_grey_noise_is_one_plane() -> None:
    flat = torch.full((1, 3, 64, 64), 0.5)  # mid-grey: no clipping
    noise = {**OFF, "realworld_gaussian_noise_prob": 1.0, "realworld_noise_range": (10.0, 10.0)}
    colour = _degrade(flat, seed=2, realworld_gray_noise_prob=0.0, **noise) - flat
    assert float(colour.std()) * 255 == pytest.approx(10.0, rel=0.1)
    assert float((colour[:, 0] - colour[:, 1]).abs().mean()) > 5 / 255
    grey = _degrade(flat, seed=2, realworld_gray_noise_prob=1.0, **noise) - flat
    assert float(grey.std()) * 255 == pytest.approx(10.0, rel=0.1)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_poisson_noise_grows_with_the_brightness() -> None:
    """Shot noise: variance ∝ level, level/256 for an image of 256 distinct levels."""
    levels = torch.arange(256.0).reshape(16, 16).repeat(4, 4) / 255.0  # every level, 64×64
    dark, bright = torch.full((64, 64), 51 / 255), torch.full((64, 64), 204 / 255)
    image = torch.cat([levels, dark, bright], dim=-1)[None, None].expand(1, 3, 64, 192)
    poisson = {
        **OFF,
        "realworld_gaussian_noise_prob": 0.0,
        "realworld_poisson_scale_range": (1.0, 1.0),
        "realworld_gray_noise_prob": 0.0,
    }
    noise = _degrade(image, seed=4, **poisson) - image
    std_dark, std_bright = float(noise[..., 64:128].std()), float(noise[..., 128:].std())
    assert std_bright / std_dark == pytest.approx(2.0, rel=0.1)  # √(0.8 / 0.2)
    assert std_dark == pytest.approx(math.sqrt(0.2 / 256), rel=0.1)


def test_jpeg_blocks_on_the_8x8_grid_and_a_higher_quality_is_closer() -> None:
    clean = _crop(96, 96)

    def jpeg(q: float) -> torch.Tensor:
        return _degrade(
            clean, seed=0, **{**OFF, "realworld_jpeg_prob": 1.0}, realworld_jpeg_range=(q, q)
        )

    low, high = jpeg(10), jpeg(90)
    assert _on_8bit_grid(low) and not torch.equal(low, clean)
    assert _psnr(high, clean) > _psnr(low, clean) + 5.0
    # blocking: the error jumps across the 8×8 block borders more than inside the blocks
    error = (low - clean)[0].mean(0)
    steps = (error[:, 1:] - error[:, :-1]).abs().mean(0)  # column c → c + 1
    borders = steps[7::8].mean()
    inside = torch.cat([steps[i::8] for i in range(7)]).mean()
    assert float(borders) > 1.5 * float(inside)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("realworld_resize_range", (0.5, 0.8), "must hold 1"),
        ("realworld_jpeg_range", (0.0, 50.0), "1..100"),
        ("realworld_noise_range", (30.0, 1.0), "lo ≤ hi"),
        ("realworld_kernel_prob", (0.0, 0.0), "non-negative weights"),
        ("realworld_blur_size", (8, 8), "no odd size"),
    ],
)
def test_ranges_that_cannot_work_fail_when_the_preset_is_used(field, value, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        build_pair_synthesis(DegradationConfig(kind="realworld", **{field: value}))
    assert field in str(err.value)


# --------------------------------------------------------------------------- task and preset


def test_the_task_and_degradation_are_registered_and_the_preset_uses_the_official_ranges() -> None:
    from irctl.tasks import get_task
    from irctl.tasks.base import Task

    task = get_task("realworld")
    assert type(task) is Task and task.classical == () and "real-world" in task.description
    assert "realworld" in DEGRADATIONS
    preset = load_preset("sr1-diffir-official")
    assert (preset.task, preset.method, preset.weights) == ("realworld", "diffir", None)
    assert (preset.network.output, preset.network.scale) == ("upscale", 1)
    defaults = DegradationConfig(kind="realworld")
    for f in dataclasses.fields(DegradationConfig):
        if f.name.startswith("realworld_"):
            assert getattr(preset.degradation, f.name) == getattr(defaults, f.name), f.name


def test_a_tiny_x1_diffir_restores_through_the_cli_at_the_inputs_size(tmp_path: Path) -> None:
    """The released configuration at a tiny width (the same head: unshuffle by 4, two ×2
    sub-pixel convolutions back), one training step per stage on the realworld pairs, then
    `irctl restore` on a 64×64 image and on one the DIRformer has to pad."""
    from irctl.engine.train import train
    from irctl.io.images import read_image, write_image
    from irctl.presets import preset_from_dict

    torch.set_num_threads(1)
    data = preset_to_dict(load_preset("sr1-diffir-official"))
    data["network"].update(width=4, blocks=[1, 1, 1, 1], refinement_blocks=1, heads=[1, 1, 1, 1])
    data["network"]["prior_dim"] = 32
    data["prior"].update(width=8, encoder_blocks=1)
    data["train"].update(
        batch=2, patch=32, iterations=1, val_every=0, log_every=1, checkpoint_every=1
    )
    data["data"] = {"train": ["astronaut"], "val": ["camera"], "test": ["chelsea"]}
    weights = train(preset_from_dict(data), tmp_path / "run").weights
    src = tmp_path / "in"
    src.mkdir()
    photo = load_photo("coffee")
    write_image(src / "square.png", photo[:64, :64], dtype=np.uint8)
    write_image(src / "odd.png", photo[:37, :50], dtype=np.uint8)
    args = ["restore", "--weights", str(weights), "--src", str(src), "--dst", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    for name, shape in (("square.png", (64, 64, 3)), ("odd.png", (37, 50, 3))):
        out = read_image(tmp_path / "o" / name).pixels
        assert out.shape == shape and np.isfinite(out).all()
