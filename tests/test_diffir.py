"""DiffIR (irctl/methods/diffir.py): the prior once per image, tiling, seeds, three stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from irctl.engine.checkpoint import load_checkpoint, save_checkpoint
from irctl.engine.models import load_restorer
from irctl.engine.train import train
from irctl.methods import build_restorer
from irctl.methods.base import SampleOptions
from irctl.methods.diffir import pooled_features
from irctl.presets import preset_from_dict
from irctl.tiling import TileSettings


def tiny_diffir(**train_overrides: object) -> dict:
    """A DiffIR of a few thousand parameters on the denoising task (its data is the cheapest):
    IPR of 32 values (prior width 8)."""
    return {
        "name": "diffir-test",
        "task": "denoise",
        "method": "diffir",
        "degradation": {"kind": "gaussian_noise", "sigma": 25.0},
        "network": {
            "width": 4,
            "blocks": [1, 1, 1, 1],
            "refinement_blocks": 1,
            "ffn_expansion": 2.0,
            "prior_dim": 32,
        },
        "prior": {"width": 8, "encoder_blocks": 1, "denoiser_blocks": 1},
        "sampler": {"name": "posterior_mean", "steps": 4, "tile": 0, "tile_overlap": 8},
        "train": {
            "batch": 2,
            "patch": 32,
            "iterations": 2,
            "val_every": 0,
            "log_every": 1,
            "checkpoint_every": 2,
            **train_overrides,
        },
        "data": {"train": ["astronaut"], "val": ["camera"], "test": ["chelsea"]},
    }


@pytest.fixture()
def restorer():
    torch.manual_seed(0)
    r = build_restorer(preset_from_dict(tiny_diffir()))
    for module in r.modules().values():
        module.eval()
    return r


def _photo(h: int = 40, w: int = 56) -> torch.Tensor:
    from irctl.data.datasets import load_photo

    return torch.from_numpy(load_photo("chelsea")[:h, :w]).permute(2, 0, 1)[None].float()


def test_cpen_pooled_in_tiles_equals_the_whole_image(restorer) -> None:
    """The margins cover CPEN's receptive field, so only the summation order differs."""
    from irctl.methods.diffir import cpen_reach
    from irctl.nets.ipr import cpen_input

    x = cpen_input(torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1)), 4)
    reach = cpen_reach(restorer.cpen)
    with torch.no_grad():
        whole = pooled_features(restorer.cpen.features, x, 0, margin=0)
        tiled = pooled_features(restorer.cpen.features, x, 7, margin=reach)
        short = pooled_features(restorer.cpen.features, x, 7, margin=reach - 2)
    assert float((tiled - whole).abs().max()) < 1e-6
    assert float((short - whole).abs().max()) > 1e-6  # the margin is what makes it exact


def test_the_prior_is_computed_once_per_image_and_every_tile_gets_it(restorer) -> None:
    calls, priors = [], []
    restorer.cpen.mlp.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    restorer.dirformer.register_forward_pre_hook(lambda m, args: priors.append(args[1].clone()))
    options = SampleOptions(
        sampler="posterior_mean", steps=4, tiles=TileSettings(tile=16, overlap=8, batch=2)
    )
    lq = torch.cat([_photo(), _photo().flip(-1)])
    restorer.restore(lq, None, options, torch.Generator().manual_seed(0))
    assert calls == [2]  # one CPEN pass for the batch of two images, whatever the tiles
    rows = torch.cat(priors)
    assert len(priors) > 2 and rows.shape[0] > 4
    firsts = {tuple(r.tolist()) for r in rows}
    assert len(firsts) == 2  # two images, two IPRs, every tile of an image gets its own


def test_one_tile_over_the_image_is_the_untiled_result_and_the_seed_decides(restorer) -> None:
    lq = _photo(37, 51)  # not a multiple of 8: padded and cropped back
    untiled = SampleOptions("posterior_mean", 4, TileSettings(tile=0))
    covering = SampleOptions("posterior_mean", 4, TileSettings(tile=64, overlap=8))
    small = SampleOptions("posterior_mean", 4, TileSettings(tile=16, overlap=8))
    a = restorer.restore(lq, None, untiled, torch.Generator().manual_seed(3))
    b = restorer.restore(lq, None, covering, torch.Generator().manual_seed(3))
    c = restorer.restore(lq, None, untiled, torch.Generator().manual_seed(4))
    d = restorer.restore(lq, None, small, torch.Generator().manual_seed(3))
    assert a.shape == lq.shape and torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, d)  # transposed attention pools over the tile, not the image
    assert float((a - d).abs().max()) < 0.5


def test_steps_other_than_the_chain_are_refused(restorer) -> None:
    restorer.sampling.check("posterior_mean", 4)
    with pytest.raises(ValueError, match="always runs its 4 steps"):
        restorer.sampling.check("posterior_mean", 2)


def test_stage_two_starts_from_stage_ones_dirformer_and_restores_alone(tmp_path: Path) -> None:
    """stage1 trains CPEN_S1 + DIRformer; prior trains CPEN_S2 + denoiser with DIRformer
    frozen; stage2 (0 steps here) starts from both. The finished checkpoint restores."""
    preset = preset_from_dict(tiny_diffir(stages={"stage2": {"iterations": 0}}))
    result = train(preset, tmp_path)
    first = load_checkpoint(tmp_path / "stage1" / "weights.safetensors")
    prior = load_checkpoint(tmp_path / "prior" / "weights.safetensors")
    second = load_checkpoint(result.weights)
    torch.manual_seed(preset.train.seed)
    fresh = build_restorer(preset)
    for key, value in first.module_state("dirformer").items():
        assert not torch.equal(value, fresh.dirformer.state_dict()[key]) or "temperature" in key
        assert torch.equal(prior.module_state("dirformer")[key], value)
        assert torch.equal(second.module_state("dirformer")[key], value)
    for key, value in first.module_state("teacher").items():
        assert torch.equal(second.module_state("teacher")[key], value)
    moved = [
        k
        for k, v in prior.module_state("denoiser").items()
        if not torch.equal(v, first.module_state("denoiser")[k])
    ]
    assert moved  # the prior stage trained the denoiser
    restorer = load_restorer(
        weights=result.weights, preset=None, task=None, device=torch.device("cpu")
    )
    out = restorer.restore(
        _photo(), None, SampleOptions("posterior_mean", 4, TileSettings(tile=0)), None
    )
    assert out.shape == _photo().shape and torch.isfinite(out).all()
    # the teacher came along (irctl's checkpoints keep it): the ground-truth-IPR upper bound
    for key, value in restorer.teacher.state_dict().items():
        assert torch.equal(value, second.module_state("teacher")[key])
    (upper,) = restorer.oracle_runs().values()
    lq, gt = _photo(), _photo() * 0.5 + 0.25
    expected = restorer.dirformer(lq, restorer.teacher_ipr(lq, gt))
    assert torch.equal(upper(lq, gt), expected)
    odd = upper(_photo(37, 50), _photo(37, 50))  # padded to the DIRformer's multiple, cropped
    assert odd.shape == (1, 3, 37, 50) and torch.isfinite(odd).all()
    # a stage-2 file without the teacher (as the authors release them) restores, with no
    # upper bound to offer
    alone = tmp_path / "no-teacher.safetensors"
    save_checkpoint(alone, restorer.restore_modules(), preset, "stage2", 0)
    without = load_restorer(weights=alone, preset=None, task=None, device=torch.device("cpu"))
    assert without.oracle_runs() == {} and "teacher" not in without.loaded_modules


def test_a_later_stage_retrains_from_the_earlier_stages_with_another_recipe(
    tmp_path: Path,
) -> None:
    """Changing stage 2's recipe keeps stage 1 and the prior: `--stage stage2` starts from
    them; a change that stage 1 depends on is refused."""
    from irctl.engine.checkpoint import CheckpointError

    preset = preset_from_dict(tiny_diffir(stages={"stage2": {"iterations": 1}}))
    train(preset, tmp_path)
    first = load_checkpoint(tmp_path / "stage1" / "weights.safetensors")
    longer = preset_from_dict(tiny_diffir(stages={"stage2": {"iterations": 3, "lr": 5e-4}}))
    result = train(longer, tmp_path, stage="stage2", overwrite=True)
    assert result.step == 3 and load_checkpoint(result.weights).step == 3
    # stage 1's checkpoint is untouched and was the starting point
    again = load_checkpoint(tmp_path / "stage1" / "weights.safetensors")
    assert all(torch.equal(v, first.tensors[k]) for k, v in again.tensors.items())
    other = preset_from_dict(tiny_diffir(lr=5e-4, stages={"stage2": {"iterations": 3}}))
    with pytest.raises(CheckpointError, match="different preset"):
        train(other, tmp_path, stage="stage2", overwrite=True)


def test_inpainting_through_the_cli_keeps_known_pixels_and_names_a_missing_mask(
    tmp_path: Path,
) -> None:
    """A tiny DiffIR inpainter, trained one step per stage, restores a folder: a mask of zeros
    gives the file back byte for byte, holes are filled, an image without a mask is one line
    and the batch goes on (exit 1)."""
    import numpy as np
    from typer.testing import CliRunner

    from irctl.cli.app import app
    from irctl.data.datasets import load_photo
    from irctl.io.images import read_image, write_image

    data = tiny_diffir(iterations=1, checkpoint_every=1)
    data.update(
        task="inpaint",
        degradation={"kind": "inpaint_mask", "mask_fraction": [0.1, 0.2]},
        network={**data["network"], "in_channels": 4, "output": "plain"},
    )
    weights = train(preset_from_dict(data), tmp_path / "run").weights
    src = tmp_path / "in"
    src.mkdir()
    photo = load_photo("coffee")[:40, :56]
    write_image(src / "zero.png", photo, dtype=np.uint8)
    write_image(src / "zero_mask.png", np.zeros((40, 56, 1), np.float32), dtype=np.uint8)
    write_image(src / "hole.png", photo, dtype=np.uint8)
    mask = np.zeros((40, 56, 1), np.float32)
    mask[10:20, 20:40] = 1.0
    write_image(src / "hole_mask.png", mask, dtype=np.uint8)
    write_image(src / "lonely.png", photo, dtype=np.uint8)
    args = ["restore", "--weights", str(weights), "--src", str(src), "--dst", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 1, result.output
    assert "lonely.png" in result.output and "no mask" in result.output
    out_zero = read_image(tmp_path / "o" / "zero.png").pixels
    assert np.array_equal(out_zero, read_image(src / "zero.png").pixels)
    out_hole = read_image(tmp_path / "o" / "hole.png").pixels
    keep = mask[..., 0] == 0.0
    assert np.array_equal(out_hole[keep], read_image(src / "hole.png").pixels[keep])
    assert not np.array_equal(out_hole[~keep], read_image(src / "hole.png").pixels[~keep])
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["hole.png", "zero.png"]


def test_restore_reports_the_priors_share_of_the_time_and_benchmark_shows_it(restorer) -> None:
    """The paper's point: the diffusion runs on 256 values, so it costs almost nothing beside
    DIRformer. The method reports its phases; `benchmark`'s table prints them."""
    from irctl.engine.benchmark import BenchmarkRow, markdown_table

    restorer.restore(_photo(), None, SampleOptions("posterior_mean", 4, TileSettings(tile=0)), None)
    assert set(restorer.phase_seconds) == {"prior", "dirformer"}
    assert all(v > 0 for v in restorer.phase_seconds.values())
    row = BenchmarkRow(56, 40, 0, 1, 4, "posterior_mean", 2.0, 0.001, 10.0, None, None)
    plain = markdown_table([row])
    assert "phases" not in plain  # methods without phases keep the old table
    row.phases = {"prior": 0.5, "dirformer": 1.5}
    line = markdown_table([row]).splitlines()[-1]
    assert line.endswith("| prior 0.5 (25.0 %), dirformer 1.5 (75.0 %) |")


@pytest.mark.parametrize("mode", ["nearest", "bicubic"])
def test_the_upscale_heads_skip_is_the_chosen_upsampling_of_the_input(mode: str) -> None:
    """With its last convolution zeroed, the ×4 head returns exactly its skip: the official
    nearest-neighbour enlargement, or bicubic for irctl's own SR models."""
    import torch.nn.functional as F

    from irctl.nets.dirformer import DIRformer, DIRformerConfig

    cfg = DIRformerConfig(
        width=4,
        blocks=(1, 1, 1, 1),
        refinement_blocks=1,
        output="upscale",
        scale=4,
        prior_dim=8,
        skip_upsampler=mode,
    )
    net = DIRformer(cfg).eval()
    torch.nn.init.zeros_(net.output.weight)
    torch.nn.init.zeros_(net.output.bias)
    lr = _photo(16, 24)
    with torch.no_grad():
        out = net(lr, torch.randn(1, 8))
    kwargs = {"align_corners": False} if mode == "bicubic" else {}
    assert torch.equal(out, F.interpolate(lr, scale_factor=4, mode=mode, **kwargs))
    with pytest.raises(ValueError, match="skip_upsampler"):
        DIRformerConfig(output="upscale", scale=4, skip_upsampler="lanczos")


def _tiny_inpainter():
    data = tiny_diffir()
    data.update(
        task="inpaint",
        degradation={"kind": "inpaint_mask", "mask_fraction": [0.2, 0.3]},
        network={**data["network"], "in_channels": 4, "output": "plain"},
    )
    torch.manual_seed(0)
    return build_restorer(preset_from_dict(data))


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_an_inpainters_loss_is_taken_on_what_restoring_writes(stage: str) -> None:
    """Known pixels are copied back at restore time, so the DIRformer's output there must not
    move the loss: changing it leaves the loss unchanged, while a change inside the holes moves
    it; ``written`` keeps the input's known pixels and the output's holes."""
    from irctl.data.batch import Batch
    from irctl.data.degrade import build_pair_synthesis

    r = _tiny_inpainter()
    clean = _photo(32, 32)
    pair = build_pair_synthesis(r.preset.degradation)(clean, torch.Generator().manual_seed(1))
    batch = Batch(lq=pair.lq, gt=pair.gt)
    holes = pair.lq[:, 3:4]
    assert 0 < float(holes.mean()) < 1
    real = r.dirformer.forward

    def loss_with(offset: torch.Tensor) -> float:
        r.dirformer.forward = lambda lq, ipr: real(lq, ipr) + offset
        try:
            loss, _ = r.loss(batch, torch.Generator().manual_seed(2), stage)
        finally:
            r.dirformer.forward = real
        return float(loss.detach())

    base = loss_with(torch.zeros(()))
    assert loss_with(5.0 * (1 - holes)) == pytest.approx(base, abs=1e-7)
    assert abs(loss_with(0.5 * holes) - base) > 1e-3
    written = r.written(pair.lq, torch.full_like(clean, 7.0))
    assert torch.equal(
        written[(1 - holes).expand_as(clean).bool()],
        pair.lq[:, :3][(1 - holes).expand_as(clean).bool()],
    )
    assert torch.all(written[holes.expand_as(clean).bool()] == 7.0)


def test_prefilled_holes_are_teleas_and_known_pixels_stay_exact() -> None:
    """``prefill_holes`` puts OpenCV's Telea fill in the holes (the classical baseline's own
    values, here called directly on the 8-bit image) and leaves known pixels and the mask
    bit-exact; a mask of zeros changes nothing."""
    import cv2
    import numpy as np

    from irctl.config import DegradationConfig
    from irctl.data.masks import prefill_holes
    from irctl.methods.classical import telea_inpaint

    photo = _photo(32, 40)
    x = torch.cat([photo, torch.zeros(1, 1, 32, 40)], dim=1)
    x[:, 3, 8:20, 10:30] = 1.0
    x[:, :3] *= 1 - x[:, 3:]
    filled = prefill_holes(x)
    holes = x[0, 3] == 1.0
    telea = telea_inpaint(x[0].permute(1, 2, 0).numpy(), DegradationConfig())
    image8 = np.rint(x[0, :3].permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    direct = cv2.inpaint(image8, holes.numpy().astype(np.uint8), 5, cv2.INPAINT_TELEA) / 255.0
    np.testing.assert_array_equal(telea, direct.astype(np.float32))
    assert torch.equal(filled[:, 3], x[:, 3])
    assert torch.equal(filled[0, :3][:, ~holes], x[0, :3][:, ~holes])
    np.testing.assert_array_equal(
        filled[0, :3].permute(1, 2, 0).numpy()[holes.numpy()], telea[holes.numpy()]
    )
    assert float(filled[0, :3][:, holes].mean()) > 0.1  # not the zeros it started from
    clear = x.clone()
    clear[:, 3] = 0.0
    assert torch.equal(prefill_holes(clear), clear)


def test_a_prefilled_residual_inpainter_adds_to_the_fill_and_needs_the_mask_channel() -> None:
    """With ``[holes] prefill = "telea"`` and the residual head, the DIRformer's output is the
    Telea-filled image plus what it learnt (its last conv zeroed: exactly the fill); a prefill
    without the inpainting input is refused."""
    from irctl.data.masks import prefill_holes
    from irctl.presets import PresetError

    data = tiny_diffir()
    data.update(
        task="inpaint",
        degradation={"kind": "inpaint_mask", "mask_fraction": [0.2, 0.3]},
        network={**data["network"], "in_channels": 4, "output": "residual"},
        holes={"prefill": "telea"},
    )
    torch.manual_seed(0)
    r = build_restorer(preset_from_dict(data))
    torch.nn.init.zeros_(r.dirformer.output.weight)
    photo = _photo(32, 40)
    x = torch.cat([photo, torch.zeros(1, 1, 32, 40)], dim=1)
    x[:, 3, 4:14, 6:26] = 1.0
    x[:, :3] *= 1 - x[:, 3:]
    options = SampleOptions(sampler="posterior_mean", steps=4, tiles=TileSettings(tile=0))
    out = r.restore(x, None, options, torch.Generator().manual_seed(0))
    assert torch.equal(out, prefill_holes(x)[:, :3])
    data["network"]["in_channels"] = 3
    data["degradation"] = {"kind": "gaussian_noise"}
    with pytest.raises((ValueError, PresetError), match="prefill"):
        build_restorer(preset_from_dict(data))


def test_the_bundled_inpainter_fills_before_tiling_so_a_covering_tile_is_untiled() -> None:
    """``inpaint-diffir-tiny`` (Telea prefill + residual head): the fill is computed on the
    whole image before any tile, so one tile over the image gives the untiled bytes, and a
    hole wider than a tile is still filled from its real borders (tiles differ only through
    the DIRformer's receptive field)."""
    r = load_restorer(
        weights=None, preset="inpaint-diffir-tiny", task=None, device=torch.device("cpu")
    )
    photo = _photo(37, 51)
    x = torch.cat([photo, torch.zeros(1, 1, 37, 51)], dim=1)
    x[:, 3, 6:30, 10:40] = 1.0  # a hole wider than the 16-px tiles below
    x[:, :3] *= 1 - x[:, 3:]

    def run(tile: int) -> torch.Tensor:
        options = SampleOptions("posterior_mean", 4, TileSettings(tile=tile, overlap=8))
        return r.restore(x, None, options, torch.Generator().manual_seed(0))

    untiled, covering, small = run(0), run(64), run(16)
    assert torch.equal(untiled, covering)
    holes = x[0, 3] > 0.5
    assert not torch.equal(untiled, small)
    # the small tiles see the same Telea fill, so they stay close inside the hole
    assert float((untiled - small)[0][:, holes].abs().mean()) < 0.05


@pytest.mark.slow
def test_compare_scores_a_stage_one_checkpoint_by_its_upper_bound_alone(tmp_path: Path) -> None:
    """`irctl compare` on a stage-1 (or prior-stage) checkpoint gives the DiffIR_S1 row only,
    the same numbers as the finished model's upper bound when stage 2 left the DIRformer as
    it was; restoring still needs stage 2; a stage file that scores nothing is a usage error."""
    import json

    from typer.testing import CliRunner

    from irctl.cli.app import app

    preset = preset_from_dict(tiny_diffir(stages={"stage2": {"iterations": 0}}))
    result = train(preset, tmp_path / "run")
    runner = CliRunner()

    def rows(weights: Path) -> dict[str, float]:
        args = ["compare", "--models", str(weights), "--classical", "", "--json"]
        out = runner.invoke(app, [*args, "--out", str(tmp_path / weights.parent.name)])
        assert out.exit_code == 0, out.output
        table = json.loads(out.stdout.strip().splitlines()[-1])
        table = table["rows"] if isinstance(table, dict) else table
        return {r["method"]: r["psnr"] for r in table if r["photo"] == "chelsea"}

    stage1 = rows(tmp_path / "run" / "stage1" / "weights.safetensors")
    prior = rows(tmp_path / "run" / "prior" / "weights.safetensors")
    finished = rows(result.weights)
    bound = "given the ground-truth IPR (upper bound)"
    assert list(stage1) == ["input", f"diffir-test after stage1 {bound}"]
    assert list(prior.values()) == list(stage1.values())  # the prior stage froze both
    assert finished[f"diffir-test {bound}"] == stage1[f"diffir-test after stage1 {bound}"]
    restore = ["restore", "--weights", str(tmp_path / "run" / "stage1" / "weights.safetensors")]
    out = runner.invoke(app, [*restore, "--src", "examples/denoise/noisy", "--dst", "unused"])
    assert out.exit_code == 2 and "needs the finished 'stage2' stage" in out.output
    # a prior-stage file without the DIRformer has no upper bound to score
    r = load_restorer(weights=result.weights, preset=None, task=None, device=torch.device("cpu"))
    bare = tmp_path / "bare.safetensors"
    save_checkpoint(bare, {"cpen": r.cpen, "denoiser": r.denoiser}, preset, "prior", 0)
    out = runner.invoke(app, ["compare", "--models", str(bare), "--out", str(tmp_path / "b")])
    assert out.exit_code == 2 and "scores nothing before the finished 'stage2'" in out.output
