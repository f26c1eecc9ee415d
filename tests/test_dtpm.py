"""DTPM (irctl/methods/dtpm.py, irctl/nets/dtpm.py): the properties issue 17 names.

Zero-initialised adapters leave the prior unchanged; restoring is deterministic given the seed
and untiled-equal when a tile covers the image; the semantic code is computed once per image
however many tiles; stage II trains only the adapters, the predictor and the intro conv; stage I
learns from photos and their RTV structure whatever the task."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from irctl.config import Preset
from irctl.data.datasets import load_photos
from irctl.data.degrade import build_pair_synthesis
from irctl.data.rtv import RTVParams, rtv_smooth
from irctl.methods import build_restorer
from irctl.methods.base import SampleOptions
from irctl.methods.dtpm import DTPMRestorer
from irctl.nets.dtpm import ResNet18Encoder, TexturePriorConfig
from irctl.presets import load_preset, preset_from_dict, preset_to_dict
from irctl.tiling import TileSettings

PRESET = "desnow-dtpm-tiny"


def _restorer(**network: object) -> DTPMRestorer:
    data = preset_to_dict(load_preset(PRESET))
    data["network"].update(network)
    torch.manual_seed(0)
    restorer = build_restorer(preset_from_dict(data))
    assert isinstance(restorer, DTPMRestorer)
    # Stage-I-like weights: make every prior parameter matter (fresh AdaLN and residual
    # scales are zero, which would hide a wrong code or time path).
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in restorer.prior.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return restorer


def _options(tile: int, steps: int = 4) -> SampleOptions:
    return SampleOptions(sampler="ddim", steps=steps, tiles=TileSettings(tile, 16, 2))


def test_fresh_adapters_leave_the_prior_unchanged() -> None:
    r = _restorer()
    x = torch.randn(2, 3, 32, 48)
    cond = torch.randn(2, 3, 32, 48)
    y_eps = torch.randn(2, 3, 32, 48)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        code = r.semantic_code(cond)
        features = r.intro(x, cond)
        plain = r.prior(features, t, code)
        adapted = r.prior(features, t, code, r.adapters, y_eps)
        assert torch.equal(plain, adapted)
        # ... and they do act once M_out has weights (the test could not pass vacuously)
        for out in r.adapters.m_out:
            out.weight.normal_(0, 0.1)
        assert not torch.allclose(plain, r.prior(features, t, code, r.adapters, y_eps))


def test_adapters_follow_every_block_at_its_level() -> None:
    cfg = TexturePriorConfig(width=8, enc_blocks=(2, 1), middle_blocks=3, dec_blocks=(1, 2))
    assert cfg.block_levels() == [0, 0, 1, 2, 2, 2, 1, 0, 0]


def test_restore_is_deterministic_and_a_covering_tile_is_the_untiled_result() -> None:
    r = _restorer()
    lq = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    runs = [
        r.restore(lq, None, _options(tile), torch.Generator().manual_seed(seed))
        for tile, seed in ((0, 5), (0, 5), (64, 5), (0, 6))
    ]
    assert runs[0].shape == lq.shape
    assert torch.equal(runs[0], runs[1])  # same seed, same values
    assert torch.equal(runs[0], runs[2])  # a tile covering the (padded) image: untiled
    assert not torch.equal(runs[0], runs[3])  # the seed draws x_T


def test_the_semantic_code_is_computed_once_per_image_for_all_tiles() -> None:
    r = _restorer()
    calls: list[tuple[int, ...]] = []
    assert r.semantic is not None
    r.semantic.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    lq = torch.rand(2, 3, 96, 80, generator=torch.Generator().manual_seed(4))
    out = r.restore(lq, None, _options(32), torch.Generator().manual_seed(0))
    size = r.config.network.semantic_size
    assert calls == [(2, 3, size, size)]  # one call, both images, whole and resized
    assert out.shape == lq.shape


def test_semantic_none_is_the_ablation_without_a_code() -> None:
    r = _restorer(semantic="none")
    assert "semantic" not in r.modules()
    assert r.prior.code_mlp is None
    lq = torch.rand(1, 3, 32, 32)
    assert r.restore(lq, None, _options(0), torch.Generator().manual_seed(0)).shape == lq.shape


def test_resnet18_has_torchvisions_names_and_size() -> None:
    """11 176 512 parameters: torchvision's resnet18 (11 689 512) without its 1000-way fc."""
    net = ResNet18Encoder()
    names = set(net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == 11_176_512
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.bn2.bias",
    ):
        assert key in names
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 512)


def test_resnet18_without_its_weights_is_an_error_naming_the_file(tmp_path) -> None:
    missing = tmp_path / "resnet18.safetensors"
    r = _restorer(semantic="resnet18", semantic_weights=str(missing))
    with pytest.raises(ValueError, match=r"resnet18\.safetensors"):
        r.semantic_code(torch.zeros(1, 3, 32, 32))


def test_a_users_resnet18_file_loads(tmp_path) -> None:
    from safetensors.torch import save_file

    source = ResNet18Encoder()
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision's head: ignored
    path = tmp_path / "r18.safetensors"
    save_file(state, str(path))
    r = _restorer(semantic="resnet18", semantic_weights=str(path))
    assert r.semantic is not None
    assert torch.equal(
        r.semantic.state_dict()["layer3.1.conv2.weight"],
        source.state_dict()["layer3.1.conv2.weight"],
    )
    assert r.semantic_code(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_stage_one_learns_photos_and_their_rtv_structure() -> None:
    r = _restorer()
    deg = r.stage_degradation("prior")
    assert deg.kind == "rtv_texture" and not deg.quantize
    assert (deg.rtv_lam, deg.rtv_sigma, deg.rtv_iterations) == (0.01, 3.0, 4)
    assert r.stage_degradation("adapt") == r.preset.degradation
    photo = load_photos(["coins"], deg)[0]
    assert photo.shape[2] == 6
    crop = torch.from_numpy(np.ascontiguousarray(photo[:40, :48].transpose(2, 0, 1)))[None]
    pair = build_pair_synthesis(deg)(crop, torch.Generator().manual_seed(0))
    whole = load_photos(["coins"], r.preset.degradation)[0]
    assert np.array_equal(pair.gt[0].numpy().transpose(1, 2, 0), whole[:40, :48])
    structure = rtv_smooth(whole.astype(np.float64), RTVParams())
    np.testing.assert_allclose(
        pair.lq[0].numpy().transpose(1, 2, 0), structure[:40, :48], atol=1e-6
    )


def _small_preset(iterations: int = 2, **top: object) -> Preset:
    data = preset_to_dict(load_preset(PRESET))
    data["data"].update(train=["coins"], val=["coins"])
    data["train"].update(
        iterations=iterations, batch=2, patch=32, log_every=1, val_every=1, checkpoint_every=1
    )
    data["train"]["stages"] = {"adapt": {"iterations": iterations}}
    data.update(top)
    return preset_from_dict(data)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from irctl.engine.train import train

    out = tmp_path_factory.mktemp("dtpm-run")
    train(_small_preset(), out)
    return out


@pytest.mark.slow
def test_stage_two_trains_only_adapters_predictor_and_intro(trained_run: Path) -> None:
    from irctl.engine.checkpoint import load_checkpoint

    first = load_checkpoint(trained_run / "prior" / "weights.safetensors")
    second = load_checkpoint(trained_run / "weights.safetensors")
    for module in ("prior", "semantic"):
        a, b = first.module_state(module), second.module_state(module)
        assert a and a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), module
    for module in ("adapters", "predictor", "intro"):
        a, b = first.module_state(module), second.module_state(module)
        assert any(not torch.equal(a[k], b[k]) for k in a), module


@pytest.mark.slow
def test_one_texture_prior_serves_another_task(trained_run: Path, tmp_path: Path) -> None:
    """Stage I does not depend on the task or the initial predictor: a deblurring preset, and
    one with a narrower predictor, resume from the desnowing run's prior (and train only their
    own stage II); a different prior network is refused."""
    from irctl.engine.checkpoint import CheckpointError, load_checkpoint
    from irctl.engine.train import train

    deblur = _small_preset(task="deblur", degradation={"kind": "motion_blur"}, name="deblur-x")
    out = tmp_path / "deblur"
    shutil.copytree(trained_run / "prior", out / "prior")
    train(deblur, out, resume=True)
    prior = load_checkpoint(trained_run / "prior" / "weights.safetensors").module_state("prior")
    final = load_checkpoint(out / "weights.safetensors")
    assert final.preset.task == "deblur" and final.stage == "adapt"
    assert all(torch.equal(prior[k], final.module_state("prior")[k]) for k in prior)

    # the initial predictor is not stage I's: another size starts from the same prior
    small_predictor = preset_to_dict(deblur)
    small_predictor["predictor"]["width"] = 8
    out = tmp_path / "small-predictor"
    shutil.copytree(trained_run / "prior", out / "prior")
    train(preset_from_dict(small_predictor), out, resume=True)
    final = load_checkpoint(out / "weights.safetensors")
    assert final.module_state("predictor")["body.intro.weight"].shape[0] == 8
    assert all(torch.equal(prior[k], final.module_state("prior")[k]) for k in prior)

    wider = preset_to_dict(deblur)
    wider["network"]["width"] = 8
    other = tmp_path / "wider"
    shutil.copytree(trained_run / "prior", other / "prior")
    with pytest.raises(CheckpointError, match="different preset"):
        train(preset_from_dict(wider), other, resume=True)


def test_every_dtpm_preset_shares_one_texture_prior() -> None:
    """The bundled DTPM presets agree on everything stage I depends on, so one trained prior
    serves them all (README): a copied recipe drifting in one file would break that."""
    from irctl.engine.train import same_preset_until
    from irctl.presets import available_presets

    reference = load_preset(PRESET)
    names = [n for n in available_presets() if load_preset(n).method == "dtpm"]
    assert len(names) >= 5
    tasks = set()
    for name in names:
        preset = load_preset(name)
        restorer = build_restorer(preset)
        depends = restorer.stage_depends_on("prior")
        assert same_preset_until(reference, preset, restorer.stages, "prior", depends), name
        tasks.add(preset.task)
    assert {"desnow", "deblur", "defocus", "raindrop", "derain-dehaze"} <= tasks
