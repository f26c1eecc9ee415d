"""IR-SDE (the ICML 2023 U-Net under Refusion's SDE) as a method of its own: it trains,
restores through the CLI, and tiles exactly when a tile covers the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.train import train
from irctl.io.images import read_image, write_image
from irctl.presets import load_preset, preset_from_dict, preset_to_dict


def _tiny_irsde() -> dict:
    data = preset_to_dict(load_preset("shadow-irsde-official"))
    data["network"] = {"nf": 8, "depth": 2}
    data["diffusion"]["T"] = 10
    data["sampler"].update(steps=2, tile=0)
    data["train"].update(
        batch=2, patch=32, iterations=2, val_every=0, log_every=1, checkpoint_every=2
    )
    return data


def test_irsde_trains_and_restores_with_exact_covering_tiles(tmp_path: Path) -> None:
    from irctl.data.datasets import load_photo

    weights = train(preset_from_dict(_tiny_irsde()), tmp_path / "run").weights
    src = tmp_path / "in"
    write_image(src / "a.png", load_photo("coffee")[:36, :44], dtype=np.uint8)
    outputs = {}
    for tile in ("0", "48", "16"):
        dst = tmp_path / f"out-{tile}"
        result = CliRunner().invoke(
            app,
            ["restore", "--weights", str(weights), "--src", str(src), "--dst", str(dst),
             "--tile", tile, "--tile-overlap", "4", "--threads", "1"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[tile] = read_image(dst / "a.png").pixels
    assert np.array_equal(outputs["0"], outputs["48"])  # a tile covering the image is exact
    assert outputs["16"].shape == outputs["0"].shape


def test_irsde_network_pads_odd_sizes_and_crops_back() -> None:
    from irctl.nets.irsde_unet import IRSDEUNet, IRSDEUNetConfig

    net = IRSDEUNet(IRSDEUNetConfig(nf=8, depth=3)).eval()
    x, mu = torch.rand(2, 3, 19, 27), torch.rand(2, 3, 19, 27)
    with torch.no_grad():
        out = net(x, mu, torch.tensor([3, 7]))
        single = net(x[1:], mu[1:], 7)
    assert out.shape == x.shape
    assert torch.allclose(out[1:], single, atol=1e-5)  # each image with its own timestep


def test_irsde_denoising_trains_and_restores_from_the_noise_level(tmp_path: Path) -> None:
    """The denoising SDE starts at the timestep of degradation.sigma: a cleaner photo would
    start earlier; the model trains on x_t = x_0 + σ̄_t ε and restores through the CLI."""
    from irctl.data.datasets import load_photo
    from irctl.methods import build_restorer

    data = preset_to_dict(load_preset("denoise-irsde-official"))
    data["network"] = {"nf": 8, "depth": 2}
    data["diffusion"]["T"] = 20
    data["sampler"].update(tile=0, steps=20)
    data["train"].update(
        batch=2, patch=32, iterations=2, val_every=0, log_every=1, checkpoint_every=2
    )
    preset = preset_from_dict(data)
    restorer = build_restorer(preset)
    quieter = build_restorer(preset.replace(degradation=preset.degradation.__class__(sigma=12.0)))
    assert 0 < quieter.start_timestep() < restorer.start_timestep() <= 20
    weights = train(preset, tmp_path / "run").weights
    src = tmp_path / "in"
    write_image(src / "a.png", load_photo("coffee")[:36, :44], dtype=np.uint8)
    result = CliRunner().invoke(
        app,
        [
            "restore",
            "--weights",
            str(weights),
            "--src",
            str(src),
            "--dst",
            str(tmp_path / "out"),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out" / "a.png").pixels.shape == (36, 44, 3)
