"""The authors' released DiffIR checkpoints: read safely, run exactly.

Parity data (tests/data/official/diffir-*, from shared/golden-official): the official DiffIRS2
built small with seeded weights, its recorded z_T, CPEN_S2 condition, IPR and output. The
checkpoints are stored as safetensors of their distinct tensors (the official files repeat the
denoiser and CPEN under ``diffusion.*``); each test writes the official file back with
``torch.save`` in the official layout — basicsr ``{"params", "params_ema"}`` (held to the official
SHA-256), or the inpainting model's PyTorch-Lightning checkpoint with a pickled omegaconf
``DictConfig`` in ``hyper_parameters``."""

from __future__ import annotations

import collections
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.models import load_restorer
from irctl.methods import build_restorer

OFFICIAL = Path(__file__).parent / "data" / "official"
runner = CliRunner()


class _DictConfig:
    """Pickled under omegaconf's name, as a Lightning checkpoint's ``hyper_parameters`` is:
    an object of a class irctl must neither import nor run."""

    def __init__(self, content: dict) -> None:
        self._content = content


def _write_official(case: str, name: str, out_dir: Path) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file

    stored = OFFICIAL / case / (Path(name).stem + ".safetensors")
    with safe_open(str(stored), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(stored))
    aliases = json.loads(meta["aliases"])
    filler = json.loads(meta.get("filler", "{}"))
    g = torch.Generator().manual_seed(0)

    def tensor(key: str) -> torch.Tensor:
        if key in tensors:
            return tensors[key]
        if key in aliases:
            return tensors[aliases[key]].clone()
        shape, dtype = filler[key]
        return torch.randn(shape, generator=g).to(getattr(torch, dtype))

    state = collections.OrderedDict((k, tensor(k)) for k in json.loads(meta["order"]))
    path = out_dir / case / name
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = meta["layout"]
    if layout == "lightning":
        package, module = types.ModuleType("omegaconf"), types.ModuleType("omegaconf.dictconfig")
        package.dictconfig, module.DictConfig = module, _DictConfig
        _DictConfig.__module__, _DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
        saved = {name: sys.modules.get(name) for name in ("omegaconf", "omegaconf.dictconfig")}
        sys.modules.update({"omegaconf": package, "omegaconf.dictconfig": module})
        try:
            torch.save(
                {
                    "epoch": int(meta["epoch"]),
                    "global_step": int(meta["global_step"]),
                    "pytorch-lightning_version": meta["pytorch-lightning_version"],
                    "state_dict": state,
                    "hyper_parameters": _DictConfig({"generator": {"kind": "DiffIRS2"}}),
                },
                path,
            )
        finally:
            for name, was in saved.items():
                if was is None:
                    del sys.modules[name]
                else:
                    sys.modules[name] = was
        return path
    if layout.startswith("basicsr params ("):  # params = params_ema + 0.01, as recorded
        params = collections.OrderedDict(
            (k, v + 0.01 if v.is_floating_point() else v.clone()) for k, v in state.items()
        )
        torch.save({"params": params, "params_ema": state}, path)
    else:
        torch.save({"params_ema": state}, path)
    official_sha = json.loads((OFFICIAL / case / "case.json").read_text())["files"][name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == official_sha, name
    return path


def _preset_for(case: str, out_dir: Path) -> Path:
    """An irctl preset of the golden case's sizes (official constructor arguments)."""
    kw = json.loads((OFFICIAL / case / "case.json").read_text())["kwargs"]
    scale = kw.get("scale", 1)
    output = "upscale" if "scale" in kw else ("plain" if kw["inp_channels"] == 4 else "residual")
    norm = {"WithBias": "with_bias", "BiasFree": "bias_free"}[kw["LayerNorm_type"]]
    task, kind = {
        "residual": ("deblur", "motion_blur"),
        "upscale": ("sr4", "bicubic_sr"),
        "plain": ("inpaint", "inpaint_mask"),
    }[output]
    text = f"""
name = "{case}-small"
task = "{task}"
method = "diffir"
[degradation]
kind = "{kind}"
[network]
width = {kw["dim"]}
blocks = {kw["num_blocks"]}
refinement_blocks = {kw["num_refinement_blocks"]}
heads = {kw["heads"]}
ffn_expansion = {kw["ffn_expansion_factor"]}
layer_norm = "{norm}"
in_channels = {kw["inp_channels"]}
out_channels = {kw["out_channels"]}
output = "{output}"
scale = {scale}
[prior]
encoder_blocks = {kw["n_encoder_res"]}
denoiser_blocks = {kw["n_denoise_res"]}
[diffusion]
T = {kw["timesteps"]}
linear_start = {kw["linear_start"]}
linear_end = {kw["linear_end"]}
[sampler]
name = "posterior_mean"
steps = {kw["timesteps"]}
tile = 0
"""
    path = out_dir / f"{case}.toml"
    path.write_text(text)
    return path


CASES = [
    ("diffir-deblur", "net_g.pth", "lq"),
    ("diffir-sr4", "DiffIRS2-GAN.pth", "lq"),
    ("diffir-inpaint", "best.ckpt", None),
]


@pytest.mark.parametrize(("case", "name", "lq_key"), CASES)
def test_official_diffir_reproduces_condition_ipr_and_output(
    tmp_path: Path, case: str, name: str, lq_key: str | None
) -> None:
    source = _write_official(case, name, tmp_path)
    out = tmp_path / f"{case}.safetensors"
    args = ["import", "--preset", str(_preset_for(case, tmp_path)), "--from", str(source)]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = {k: torch.from_numpy(v) for k, v in np.load(OFFICIAL / case / "io.npz").items()}
    if lq_key is None:  # inpainting: [image outside the hole, mask], mask 1 in the hole
        lq = torch.cat([io["img"] * (1 - io["mask"]), io["mask"]], dim=1)
        expected = io["pred"]
    else:
        lq, expected = io[lq_key], io["out"]
    with torch.no_grad():
        cond = restorer.prior_condition(lq, tile=0)
        ipr = restorer.ipr_chain(cond, io["z_t"])
        restored = restorer.dirformer(lq, ipr)
    for ours, theirs in ((cond, "cond"), (ipr, "ipr")):
        assert float((ours - io[theirs]).abs().max()) <= 1e-5, theirs
    assert restored.shape == expected.shape
    assert float((restored - expected).abs().max()) <= 1e-5
    if lq_key is None:
        inpainted = io["mask"] * restored + (1 - io["mask"]) * io["img"]
        assert float((inpainted - io["inpainted"]).abs().max()) <= 1e-5


def test_the_inpainting_checkpoints_pickled_config_is_never_run(
    tmp_path: Path, monkeypatch
) -> None:
    """The Lightning checkpoint names omegaconf's DictConfig: irctl reads the tensors without
    importing omegaconf or building the object (torch.load(weights_only=True) refuses the file)."""
    source = _write_official("diffir-inpaint", "best.ckpt", tmp_path)
    with pytest.raises(Exception, match=r"DictConfig|omegaconf|Unsupported global"):
        torch.load(source, weights_only=True)
    built = []
    monkeypatch.setattr(_DictConfig, "__setstate__", lambda self, s: built.append(s), raising=False)
    from irctl.io.torch_pickle import read_torch_file

    checkpoint = read_torch_file(source)
    assert "omegaconf" not in sys.modules and built == []
    assert not isinstance(checkpoint["hyper_parameters"], _DictConfig)
    assert len(checkpoint["state_dict"]) == 298


def test_a_damaged_duplicate_or_another_schedule_is_refused(tmp_path: Path) -> None:
    """The twin copies under ``diffusion.*`` must agree, and the DDPM buffers must be the
    preset's schedule: either error names the key."""
    source = _write_official("diffir-sr4", "DiffIRS2-GAN.pth", tmp_path)
    state = torch.load(source, weights_only=True)["params_ema"]
    preset = str(_preset_for("diffir-sr4", tmp_path))
    twin = dict(state)
    twin["diffusion.model.resmlp.0.bias"] = twin["diffusion.model.resmlp.0.bias"] + 1
    torch.save({"params_ema": twin}, tmp_path / "twin.pth")
    args = ["import", "--preset", preset, "--out", str(tmp_path / "x.safetensors")]
    result = runner.invoke(app, [*args, "--from", str(tmp_path / "twin.pth")])
    assert result.exit_code == 2 and "diffusion.model.resmlp.0.bias differs" in result.output
    schedule = runner.invoke(app, [*args, "--from", str(source), "--set", "diffusion.T=5"])
    assert schedule.exit_code == 2 and "diffusion.betas" in schedule.output


def test_the_ipr_ddpm_has_the_fact_sheets_coefficients() -> None:
    """β linear in √β from 0.1 to 0.99 over T = 4 (fact sheet §2), c1/c2 of the posterior mean
    (listed t = 3 … 0), and the last step returns the denoiser's x̂0 itself."""
    from irctl.diffusion import ddpm

    s = ddpm.ddpm_schedule(4, 0.1, 0.99)
    assert torch.allclose(
        s.betas, torch.tensor([0.1, 0.2943, 0.5910, 0.99], dtype=torch.float64), atol=1e-4
    )
    assert torch.allclose(
        s.alphas_cumprod,
        torch.tensor([0.9, 0.6351, 0.2598, 0.0026], dtype=torch.float64),
        atol=1e-4,
    )
    c1 = torch.tensor([0.5059, 0.6363, 0.7652, 1.0], dtype=torch.float64).flip(0)
    c2 = torch.tensor([0.0742, 0.3153, 0.2302, 0.0], dtype=torch.float64).flip(0)
    assert torch.allclose(s.posterior_mean_coef1, c1, atol=1e-4)
    assert torch.allclose(s.posterior_mean_coef2, c2, atol=1e-4)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    seen = []

    def model(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        return torch.full_like(z_t, 0.5)

    out = ddpm.sample_posterior_mean(model, z, s)
    assert seen == [3, 2, 1, 0] and torch.equal(out, torch.full_like(z, 0.5))


@pytest.mark.parametrize(
    ("preset", "entry"),
    [
        ("deblur-diffir-official", "diffir-deblur"),
        ("sr4-diffir-official", "diffir-sr-x4"),
        ("sr2-diffir-official", "diffir-sr-x2"),
        ("sr1-diffir-official", "diffir-sr-x1"),
        ("inpaint-diffir-places", "diffir-inpaint-places"),
        ("inpaint-diffir-celeba", "diffir-inpaint-places"),  # the same configuration
        ("inpaint-diffir-big", "diffir-inpaint-big"),
    ],
)
def test_official_size_diffir_presets_hold_exactly_the_released_keys(preset, entry) -> None:
    """A real download imports on the first try: DIRformer, CPEN_S2 and the denoiser in the
    official names give the released key set (less the ``diffusion.*`` twins and buffers, which
    the importer checks and drops) with its shapes and parameter count."""
    from irctl.io.state_dict import compare_keys
    from irctl.methods.official_keys import diffir_key_maps
    from irctl.presets import load_preset

    listing = json.loads((OFFICIAL / "official-keys.json").read_text())[entry]
    restorer = build_restorer(load_preset(preset))
    cfg = restorer.config
    maps = diffir_key_maps(cfg.prior.denoiser_blocks, cfg.network.output == "upscale")
    prefixes = {"dirformer": "G.", "cpen": "condition.", "denoiser": "denoise."}
    ours = {
        prefixes[name] + maps[name].to_official(k): v
        for name, module in restorer.restore_modules().items()
        for k, v in module.state_dict().items()
    }
    expected = {k: tuple(v) for k, v in listing["keys"].items() if not k.startswith("diffusion.")}
    report = compare_keys(ours, expected)
    assert report.ok, report.message()
    twins = {
        k for k in listing["keys"] if k.startswith(("diffusion.model.", "diffusion.condition."))
    }
    assert {
        k.replace("diffusion.model.", "denoise.").replace("diffusion.condition.", "condition.")
        for k in twins
    } <= set(ours)
    buffers = {
        k[len("diffusion.") :]
        for k in listing["keys"]
        if k.startswith("diffusion.") and k not in twins
    }
    assert buffers == set(restorer.schedule.buffers())
    params = sum(p.numel() for m in restorer.restore_modules().values() for p in m.parameters())
    assert params == listing["parameters"]
    kw = listing["kwargs"]
    assert (restorer.schedule.T, cfg.diffusion.linear_start, cfg.diffusion.linear_end) == (
        kw["timesteps"],
        kw["linear_start"],
        kw["linear_end"],
    )
