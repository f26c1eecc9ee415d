"""Latent Refusion (irctl/methods/latent_refusion.py): tiling exactness, odd sizes, the two
training stages, and restore through the CLI (formats kept, lens errors for bokeh)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_array
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.checkpoint import CheckpointError, load_checkpoint
from irctl.engine.models import load_restorer
from irctl.engine.train import train
from irctl.io.images import read_image
from irctl.methods import build_restorer
from irctl.methods.base import Conditioning, SampleOptions
from irctl.nets.unet_latent import CompressorConfig, UNetCompressor
from irctl.presets import apply_overrides, load_preset
from irctl.tiling import TileSettings

runner = CliRunner()

LATENT_TINY = [
    "latent.channels=4",
    "latent.blocks=1",
    "network.width=8",
    "network.enc_blocks=[1, 1]",
    "network.dec_blocks=[1, 1]",
    "diffusion.T=10",
    "sampler.steps=4",
    "sampler.tile=0",
    "train.batch=2",
    "train.patch=64",
    "train.iterations=2",
    "train.val_every=0",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.stages.compressor.patch=32",
    "train.stages.compressor.iterations=3",
]


def _randomised(preset_overrides: list[str], name: str = "dehaze-latent-tiny"):
    """A restorer whose every parameter is random (zero-initialised residual scales would make
    whole blocks the identity and hide wiring bugs)."""
    preset = apply_overrides(load_preset(name), preset_overrides)
    restorer = build_restorer(preset)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in restorer.modules().values():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return restorer


def _restore(restorer, lq, tile: int, overlap: int = 16, cond=None) -> torch.Tensor:
    options = SampleOptions("posterior", 3, TileSettings(tile=tile, overlap=overlap, batch=2))
    condition = restorer.condition(lq, cond or Conditioning())
    return restorer.restore(lq, condition, options, torch.Generator().manual_seed(5))


def test_tile_covering_the_image_equals_the_untiled_path_exactly():
    restorer = _randomised(LATENT_TINY)
    lq = torch.rand(1, 3, 75, 122, generator=torch.Generator().manual_seed(1))
    untiled = _restore(restorer, lq, tile=0)
    assert untiled.shape == lq.shape
    assert torch.equal(_restore(restorer, lq, tile=128), untiled)


def test_small_tiles_differ_only_by_a_bounded_amount():
    """Smaller tiles change the output through the receptive field only (NAFNet's global channel
    attention makes it the whole tile): measured, not zero, and far below the pixel range."""
    restorer = _randomised(LATENT_TINY)
    lq = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(2))
    diff = (_restore(restorer, lq, tile=64, overlap=32) - _restore(restorer, lq, tile=0)).abs()
    assert 0 < float(diff.max()) < 0.5


def test_restore_keeps_odd_sizes_and_dtype():
    restorer = _randomised(LATENT_TINY)
    for h, w in ((33, 47), (67, 101)):
        lq = torch.rand(1, 3, h, w)
        assert _restore(restorer, lq, tile=0).shape == (1, 3, h, w)
        assert _restore(restorer, lq, tile=32, overlap=8).shape == (1, 3, h, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compressor_round_trip_on_an_odd_size(dtype):
    model = UNetCompressor(CompressorConfig(channels=4, blocks=1)).to(dtype)
    x = torch.rand(1, 3, 667, 1001, dtype=dtype)
    with torch.no_grad():
        z, skips = model.encode(x)
        y = model.decode(z, skips)
    assert z.shape == (1, 4, *model.latent_size(667, 1001)) == (1, 4, 168, 252)
    assert y.shape == x.shape and y.dtype == dtype


@pytest.mark.parametrize("mult,factor", [((1, 2, 4), 4), ((1, 2, 2, 4), 8)])
def test_compressor_factor(mult, factor):
    cfg = CompressorConfig(channels=4, mult=mult, blocks=1)
    z, _ = UNetCompressor(cfg).encode(torch.rand(1, 3, 64, 96))
    assert cfg.factor == factor and z.shape[-2:] == (64 // factor, 96 // factor)


def test_decoder_uses_the_skips_and_the_latent():
    model = UNetCompressor(CompressorConfig(channels=4, blocks=1))
    a, b = torch.rand(2, 1, 3, 32, 48)
    with torch.no_grad():
        z_a, h_a = model.encode(a)
        z_b, h_b = model.encode(b)
        base = model.decode(z_a, h_a)
        assert not torch.allclose(model.decode(z_a, h_b), base)  # other skips
        assert not torch.allclose(model.decode(z_b, h_a), base)  # other latent


def test_compressor_without_attention_is_local_and_with_attention_is_not():
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    y = x.clone()
    y[..., -1, -1] += 1.0  # bottom-right corner
    for attention in (False, True):
        torch.manual_seed(0)
        model = UNetCompressor(CompressorConfig(channels=4, blocks=1, attention=attention))
        with torch.no_grad():
            same = torch.equal(model(x)[..., :16, :16], model(y)[..., :16, :16])
        assert same is (not attention)


def test_two_stage_training_freezes_the_compressor_and_restores(tmp_path: Path):
    preset = apply_overrides(load_preset("dehaze-latent-tiny"), LATENT_TINY)
    out = tmp_path / "run"
    result = train(preset, out)
    assert result.weights == out / "weights.safetensors" and result.step == 2
    first = load_checkpoint(out / "compressor" / "weights.safetensors")
    final = load_checkpoint(result.weights)
    assert (first.stage, first.step, final.stage) == ("compressor", 3, "diffusion")
    # The diffusion stage ships the compressor exactly as the first stage left it.
    for key, value in first.module_state("compressor").items():
        assert torch.equal(final.module_state("compressor")[key], value)
    assert final.module_state("net")
    restorer = load_restorer(
        weights=result.weights, preset=None, task=None, device=torch.device("cpu")
    )
    lq = torch.rand(1, 3, 40, 56)
    assert _restore(restorer, lq, tile=0).shape == lq.shape
    with pytest.raises(CheckpointError, match="compressor' stage"):
        load_restorer(
            weights=out / "compressor" / "weights.safetensors",
            preset=None,
            task=None,
            device=torch.device("cpu"),
        )
    # Resuming a finished two-stage run is a no-op; the diffusion stage alone needs stage 1.
    assert train(preset, out, resume=True).step == 2
    with pytest.raises(CheckpointError, match="needs the 'compressor' stage"):
        train(preset, tmp_path / "other", stage="diffusion")


@pytest.fixture(scope="module")
def latent_weights(tmp_path_factory) -> Path:
    preset = apply_overrides(load_preset("dehaze-latent-tiny"), LATENT_TINY)
    return train(preset, tmp_path_factory.mktemp("latent")).weights


def test_folder_of_mixed_formats_keeps_each_format_and_depth(latent_weights: Path, tmp_path: Path):
    from irctl.data.datasets import load_photo

    photo = load_photo("coffee")[:50, :70]
    src = tmp_path / "src"
    save_array(src / "a.png", (photo * 255).round().astype(np.uint8))
    save_array(src / "b.tif", (photo * 65535).round().astype(np.uint16))
    save_array(src / "c.jpg", (photo * 255).round().astype(np.uint8))
    dst = tmp_path / "dst"
    result = runner.invoke(
        app, ["restore", "--weights", str(latent_weights), "--src", str(src), "--dst", str(dst)]
    )
    assert result.exit_code == 0, result.output
    expected = {"a.png": np.uint8, "b.tif": np.uint16, "c.jpg": np.uint8}
    assert sorted(p.name for p in dst.iterdir()) == sorted(expected)
    for name, dtype in expected.items():
        image = read_image(dst / name)
        assert image.dtype == dtype and image.pixels.shape == (50, 70, 3)
    assert (dst / "c.jpg").read_bytes()[:2] == b"\xff\xd8"  # still a JPEG


def test_bokeh_restorer_needs_lenses_and_uses_them():
    restorer = _randomised([*LATENT_TINY, "network.cond_scalars=2"])
    lq = torch.rand(1, 3, 40, 56)
    with pytest.raises(ValueError, match="needs 2 conditioning"):
        _restore(restorer, lq, tile=0)
    a = _restore(restorer, lq, tile=0, cond=Conditioning(scalars=(16.0, 1.8)))
    b = _restore(restorer, lq, tile=0, cond=Conditioning(scalars=(1.8, 16.0)))
    assert not torch.allclose(a, b)
    # Tiles see the same per-image lens condition as the whole image does.
    c = _restore(restorer, lq, tile=128, cond=Conditioning(scalars=(16.0, 1.8)))
    assert torch.equal(a, c)


def test_lens_options_on_a_model_without_lenses_are_a_usage_error(latent_weights, tmp_path):
    src = tmp_path / "src"
    save_array(src / "a.png", np.zeros((16, 16, 3), np.uint8))
    result = runner.invoke(
        app,
        [
            "restore",
            "--weights",
            str(latent_weights),
            "--src",
            str(src),
            "--dst",
            str(tmp_path / "d"),
            "--src-lens",
            "Sony50mmf1.8BS",
            "--tgt-lens",
            "Sony50mmf16.0BS",
        ],
    )
    assert result.exit_code == 2 and "takes no --src-lens" in result.stderr


@pytest.fixture(scope="module")
def bokeh_weights(tmp_path_factory) -> Path:
    """A bokeh checkpoint with random weights: a few training steps leave the lens embedding
    so close to its initialisation that a lens change moves outputs by less than 1e-6."""
    from irctl.engine.checkpoint import save_checkpoint

    restorer = _randomised(LATENT_TINY, name="bokeh-latent-tiny")
    path = tmp_path_factory.mktemp("bokeh") / "weights.safetensors"
    save_checkpoint(path, restorer.modules(), restorer.preset, "diffusion", 2)
    return path


def test_bokeh_cli_refuses_an_unknown_lens_listing_the_known_ones(bokeh_weights, tmp_path):
    from irctl.data.lenses import LENSES

    src = tmp_path / "src"
    save_array(src / "a.png", np.zeros((16, 16, 3), np.uint8))
    args = ["restore", "--weights", str(bokeh_weights), "--src", str(src), "--dst", str(tmp_path)]
    result = runner.invoke(
        app, [*args, "--src-lens", "Leica35mmf2", "--tgt-lens", "Sony50mmf1.8BS"]
    )
    assert result.exit_code == 2
    assert "unknown lens 'Leica35mmf2'" in result.stderr
    assert all(name in result.stderr for name in LENSES)


def test_bokeh_cli_takes_lenses_per_image_and_per_run(bokeh_weights, tmp_path):
    from irctl.data.datasets import load_photo

    photo = (load_photo("chelsea")[:48, :64] * 255).round().astype(np.uint8)
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        save_array(src / f"{name}.png", photo)
    (src / "lenses.csv").write_text(
        "file,src_lens,tgt_lens\n"
        "a.png,Sony50mmf16.0BS,Sony50mmf1.8BS\n"
        "b.png,Sony50mmf16.0BS,Sony50mmf1.8BS\n"
        "c.png,Canon50mmf1.4BS,Sony50mmf16.0BS\n"
    )

    def run(dst: Path, *extra: str) -> dict[str, np.ndarray]:
        args = ["restore", "--weights", str(bokeh_weights), "--src", str(src), "--dst", str(dst)]
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        return {p.stem: read_image(p).pixels for p in sorted(dst.iterdir())}

    per_image = run(tmp_path / "table")
    assert sorted(per_image) == ["a", "b", "c"]  # lenses.csv is metadata, not an image
    assert np.array_equal(per_image["a"], per_image["b"])  # same photo, lenses and seed
    assert not np.array_equal(per_image["a"], per_image["c"])  # other lenses
    # The table wins over the run's lenses for the files it lists.
    (src / "lenses.csv").unlink()
    per_run = run(
        tmp_path / "flags", "--src-lens", "Canon50mmf1.4BS", "--tgt-lens", "Sony50mmf16.0BS"
    )
    assert np.array_equal(per_run["a"], per_image["c"])
