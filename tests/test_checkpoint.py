"""Checkpoints (irctl/engine/checkpoint.py) and presets (irctl/config.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from irctl.config import Preset, PresetError
from irctl.engine.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    load_modules,
    read_metadata,
    save_checkpoint,
    state_path,
)
from irctl.methods import build_restorer
from irctl.methods.base import SampleOptions
from irctl.methods.refusion import RefusionRestorer
from irctl.methods.regression import RegressionRestorer
from irctl.presets import apply_overrides, load_preset, preset_from_dict, preset_to_dict
from irctl.tiling import TileSettings


@pytest.fixture
def tiny() -> Preset:
    return apply_overrides(load_preset("denoise-tiny"), ["network.width=8"])


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Fresh NAFNets have β = γ = 0 (blocks are identities); give every tensor random values so a
    weight that fails to load makes a difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


# --- round trip ----------------------------------------------------------------------------------


def test_round_trip_tensors_preset_stage_step(tmp_path, tiny):
    restorer = RefusionRestorer(tiny)
    _randomise(restorer.net, 0)
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, restorer.modules(), tiny, "diffusion", 1234)
    ckpt = load_checkpoint(path)
    assert ckpt.stage == "diffusion" and ckpt.step == 1234
    assert ckpt.preset == tiny
    assert preset_to_dict(ckpt.preset) == preset_to_dict(tiny)
    original = restorer.net.state_dict()
    assert set(ckpt.tensors) == {f"net.{k}" for k in original}
    for k, v in original.items():
        assert torch.equal(ckpt.tensors[f"net.{k}"], v), k
    assert set(ckpt.module_state("net")) == set(original)
    meta = read_metadata(path)
    assert meta["format"] == FORMAT
    assert json.loads(meta["preset"]) == preset_to_dict(tiny)
    assert not list(tmp_path.glob("*.partial"))  # the atomic save cleaned up


def test_loaded_refusion_restores_bit_identically(tmp_path, tiny):
    original = RefusionRestorer(tiny)
    _randomise(original.net, 1)
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, original.modules(), tiny, original.stages[-1], 0)

    ckpt = load_checkpoint(path)
    loaded = build_restorer(ckpt.preset)
    assert isinstance(loaded, RefusionRestorer)
    before = loaded.restore(
        torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0)),
        None,
        SampleOptions("sde", 3, TileSettings(tile=0)),
        torch.Generator().manual_seed(5),
    )
    load_modules(loaded.modules(), ckpt)

    lq = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    opts = SampleOptions(sampler="sde", steps=3, tiles=TileSettings(tile=0))
    a = original.restore(lq, None, opts, torch.Generator().manual_seed(5))
    b = loaded.restore(lq, None, opts, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.allclose(a, before)  # the loaded weights, not the fresh init, made b
    # Same seed → same output; another seed → another sample.
    c = loaded.restore(lq, None, opts, torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_loaded_regression_restores_bit_identically(tmp_path):
    preset = apply_overrides(load_preset("denoise-regression-tiny"), ["network.width=8"])
    original = build_restorer(preset)
    assert isinstance(original, RegressionRestorer)
    _randomise(original.net, 2)
    path = tmp_path / "r.safetensors"
    save_checkpoint(path, original.modules(), preset, original.stages[-1], 7)
    ckpt = load_checkpoint(path)
    assert ckpt.stage == "regression"
    loaded = build_restorer(ckpt.preset)
    load_modules(loaded.modules(), ckpt)
    lq = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(1))
    opts = SampleOptions(tiles=TileSettings(tile=0))
    assert torch.equal(original.restore(lq, None, opts, None), loaded.restore(lq, None, opts, None))


def test_state_path():
    from pathlib import Path

    assert state_path(Path("a/weights.safetensors")) == Path("a/weights.state.safetensors")


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".PT", ".ckpt", ".bin"])
def test_pickle_suffixes_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_renamed_to_safetensors_is_refused(tmp_path, zipfile):
    path = tmp_path / "sneaky.safetensors"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)


def test_non_irctl_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"net.weight": torch.ones(3)}, str(path))
    with pytest.raises(CheckpointError, match="not an irctl checkpoint"):
        load_checkpoint(path)
    path2 = tmp_path / "other_meta.safetensors"
    save_file({"net.weight": torch.ones(3)}, str(path2), metadata={"format": "pt"})
    with pytest.raises(CheckpointError):
        load_checkpoint(path2)


def test_garbage_and_missing_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"abc")
    with pytest.raises(CheckpointError):
        load_checkpoint(short)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(bytes(range(1, 65)))
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)


def _header_length(path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def _checkpoint_with_header(tmp_path, preset: Preset, target_mod: int, modulus: int):
    """A genuine irctl checkpoint whose safetensors header length ≡ target (mod modulus), made by
    padding the preset description (the header is JSON padded to a multiple of 8 bytes)."""
    modules = {"net": torch.nn.Linear(2, 2)}
    path = tmp_path / "w.safetensors"

    def save(k: int) -> int:
        save_checkpoint(path, modules, preset.replace(description="d" * k), "diffusion", 1)
        return _header_length(path)

    base = save(0)
    k = (target_mod - base) % modulus
    for extra in range(-8, 9):
        if k + extra >= 0 and save(k + extra) % modulus == target_mod:
            return path, k + extra
    raise AssertionError("could not reach the header length")


def test_valid_checkpoint_whose_header_starts_like_a_pickle_loads(tmp_path, tiny):
    path, k = _checkpoint_with_header(tmp_path, tiny, 0x80, 256)
    assert path.read_bytes()[:1] == b"\x80"
    assert set(load_file(str(path))) == {"net.weight", "net.bias"}  # a valid safetensors file
    ckpt = load_checkpoint(path)
    assert ckpt.preset.description == "d" * k


def test_valid_checkpoint_whose_header_starts_like_a_zip_loads(tmp_path, tiny):
    path, k = _checkpoint_with_header(tmp_path, tiny, 0x4B50, 65536)
    assert path.read_bytes()[:2] == b"PK"
    assert set(load_file(str(path))) == {"net.weight", "net.bias"}
    assert load_checkpoint(path).preset.description == "d" * k


def test_checkpoint_with_ordinary_header_loads(tmp_path, tiny):
    """Control for the two tests above: same construction, a header byte that is not 0x80."""
    path, k = _checkpoint_with_header(tmp_path, tiny, 0x88, 256)
    assert load_checkpoint(path).preset.description == "d" * k


def test_weights_for_a_different_network_size_are_refused(tmp_path, tiny):
    path = tmp_path / "w8.safetensors"
    save_checkpoint(path, RefusionRestorer(tiny).modules(), tiny, "diffusion", 0)
    ckpt = load_checkpoint(path)
    bigger = RefusionRestorer(apply_overrides(tiny, ["network.width=16"]))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_modules(bigger.modules(), ckpt)
    deeper = RefusionRestorer(apply_overrides(tiny, ["network.middle_blocks=2"]))
    with pytest.raises(CheckpointError):
        load_modules(deeper.modules(), ckpt)
    # A checkpoint without the module at all.
    with pytest.raises(CheckpointError, match="no weights"):
        load_modules({"other": torch.nn.Linear(2, 2)}, ckpt)


def test_truncated_state_is_refused(tmp_path, tiny):
    restorer = RefusionRestorer(tiny)
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, restorer.modules(), tiny, "diffusion", 0)
    tensors = load_file(str(path))
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    save_file(tensors, str(path), metadata=read_metadata(path))
    with pytest.raises(CheckpointError):
        load_modules(RefusionRestorer(tiny).modules(), load_checkpoint(path))


# --- presets -------------------------------------------------------------------------------------


def test_load_preset_denoise_tiny():
    p = load_preset("denoise-tiny")
    assert p.name == "denoise-tiny" and p.method == "refusion" and p.task == "denoise"
    assert p.diffusion.T == 100 and p.diffusion.max_sigma == 50.0
    assert p.diffusion.schedule == "cosine" and p.diffusion.eps == 0.005
    assert p.network.width == 16 and p.network.enc_blocks == (1, 1, 1, 1)
    assert p.train.betas == (0.9, 0.99) and isinstance(p.train.betas, tuple)
    assert p.data.val == ("motorcycle_right",)
    assert not set(p.data.test) & set(p.data.train)  # held-out photos are never trained on


def test_unknown_preset_name():
    with pytest.raises(PresetError, match="no preset named"):
        load_preset("no-such-preset")


def test_apply_overrides():
    base = load_preset("denoise-tiny")
    p = apply_overrides(
        base,
        [
            "network.width=8",
            "train.lr=3e-5",
            "network.enc_blocks=[2, 1]",
            "network.dec_blocks=[1, 1]",
            "sampler.name=ode",
            "description=hello world",
        ],
    )
    assert p.network.width == 8 and base.network.width == 16  # base untouched
    assert p.train.lr == 3e-5
    assert p.network.enc_blocks == (2, 1)  # lists become tuples, as when loaded
    assert p.sampler.name == "ode"  # bare words are strings
    assert p.description == "hello world"
    assert p.diffusion == base.diffusion and p.data == base.data


@pytest.mark.parametrize(
    "override",
    ["network.depth=3", "nosection.width=8", "network", "colour=blue", "network.width.x=1"],
)
def test_apply_overrides_rejects_unknown_keys(override):
    with pytest.raises(PresetError):
        apply_overrides(load_preset("denoise-tiny"), [override])


@pytest.mark.parametrize("name", ["denoise-tiny", "denoise-regression-tiny"])
def test_preset_dict_round_trip(name):
    p = apply_overrides(load_preset(name), ["network.width=8", "train.betas=[0.8, 0.95]"])
    d = preset_to_dict(p)
    assert json.loads(json.dumps(d)) == d  # JSON-able
    back = preset_from_dict(d)
    assert back == p
    assert dataclasses.asdict(back) == dataclasses.asdict(p)


def test_preset_from_dict_rejects_bad_input():
    d = preset_to_dict(load_preset("denoise-tiny"))
    with pytest.raises(PresetError, match="missing"):
        preset_from_dict({k: v for k, v in d.items() if k != "method"})
    with pytest.raises(PresetError, match="unknown"):
        preset_from_dict({**d, "extra": 1})
    with pytest.raises(PresetError, match="unknown"):
        preset_from_dict({**d, "train": {**d["train"], "warmup": 5}})


def test_checkpoints_are_readable_by_others_as_the_umask_allows(tmp_path):
    import os
    import stat

    from irctl.engine.checkpoint import atomic_save

    path = tmp_path / "w.safetensors"
    atomic_save({"x": torch.zeros(2)}, path, {"format": "test"})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
