"""`irctl import`: the authors' released checkpoints, read safely and run exactly.

Parity data (tests/data/official/refusion-nafnet, from shared/golden-official): the official
Refusion ConditionalNAFNet built at width 8 with seeded random weights, saved as the official
code saves it, and its forward output on fixed inputs."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.models import load_restorer

OFFICIAL = Path(__file__).parent / "data" / "official"
REFUSION = OFFICIAL / "refusion-nafnet"
#: the golden case's sizes, with the official layer norm
SMALL = ["--set", "network.width=8", "--set", "network.enc_blocks=[1,1,1,2]"]
GAIN = ["--set", "network.layer_norm=gain"]

runner = CliRunner()


@pytest.fixture()
def official(tmp_path: Path):
    """``official(case_dir, "name.pth")``: the official checkpoint file, written with
    ``torch.save`` from its tensors (stored as ``name.safetensors`` with the key order in the
    metadata, so no pickle is tracked in the repository). torch 2.13 writes the very bytes the
    official code wrote: each file is held to the official SHA-256 in its case.json."""
    import collections
    import hashlib

    from safetensors import safe_open
    from safetensors.torch import load_file

    def write(case_dir: Path, name: str) -> Path:
        stored = case_dir / name.replace(".pth", ".safetensors")
        with safe_open(str(stored), framework="pt") as fh:
            order = json.loads(fh.metadata()["order"])
        tensors = load_file(str(stored))
        path = tmp_path / "official" / case_dir.name / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            torch.save(collections.OrderedDict((k, tensors[k]) for k in order), path)
        official_sha = json.loads((case_dir / "case.json").read_text())["files"][name]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == official_sha, name
        return path

    return write


def _import(source: Path, out: Path, *extra: str):
    args = ["import", "--preset", "denoise-tiny", "--from", str(source), "--out", str(out)]
    return runner.invoke(app, [*args, "--json", *extra])


def test_official_refusion_nafnet_reproduces_the_official_output(official, tmp_path: Path) -> None:
    out = tmp_path / "refusion.safetensors"
    result = _import(official(REFUSION, "refusion.pth"), out, *SMALL, *GAIN)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    case = json.loads((REFUSION / "case.json").read_text())
    assert report["sha256"] == {
        str(official(REFUSION, "refusion.pth")): case["files"]["refusion.pth"]
    }
    assert report["tensors"] == 200
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = np.load(REFUSION / "io.npz")
    with torch.no_grad():
        eps = restorer.net(
            torch.from_numpy(io["xt"]), torch.from_numpy(io["cond"]), torch.from_numpy(io["t"])
        )
    assert float((eps - torch.from_numpy(io["out"])).abs().max()) <= 1e-5
    # ... and the imported file restores like any checkpoint.
    src = tmp_path / "in"
    src.mkdir()
    from irctl.data.datasets import load_photo
    from irctl.io.images import write_image

    write_image(src / "a.png", load_photo("chelsea")[:40, :56], dtype=np.uint8)
    restored = runner.invoke(
        app,
        [
            "restore",
            "--weights",
            str(out),
            "--src",
            str(src),
            "--dst",
            str(tmp_path / "out"),
            "--steps",
            "2",
            "--threads",
            "1",
        ],
    )
    assert restored.exit_code == 0, restored.output
    assert (tmp_path / "out" / "a.png").is_file()


def test_a_checkpoint_of_other_sizes_names_the_first_mismatched_keys(
    official, tmp_path: Path
) -> None:
    out = tmp_path / "w.safetensors"
    result = _import(official(REFUSION, "refusion.pth"), out, *GAIN)  # denoise-tiny is width 16
    assert result.exit_code == 2 and not out.exists()
    line = result.output.strip()
    assert (
        "\n" not in line and "mis-shaped (time_mlp.1.weight is (64, 8), expected (128, 16)" in line
    )
    assert "unexpected (encoders.3.1.beta" in line
    layer_norm = _import(official(REFUSION, "refusion.pth"), out, *SMALL)
    assert layer_norm.exit_code == 2 and 'network.layer_norm = "gain"' in layer_norm.output


class _CallOnLoad:
    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def test_a_hostile_or_truncated_file_imports_nothing_and_runs_nothing(
    official, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    hostile = tmp_path / "evil.pth"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr(
            "archive/data.pkl", pickle.dumps({"w": _CallOnLoad(os.system, f"touch {marker}")})
        )
    out = tmp_path / "w.safetensors"
    result = _import(hostile, out, *SMALL, *GAIN)
    assert result.exit_code == 2 and "refused" in result.output
    assert not marker.exists() and not out.exists()
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes((official(REFUSION, "refusion.pth")).read_bytes()[:100_000])
    result = _import(truncated, out, *SMALL, *GAIN)
    assert result.exit_code == 2 and str(truncated) in result.output and not out.exists()
    assert len(result.output.strip().splitlines()) == 1


LATENT = OFFICIAL / "refusion-latent-dehaze"
#: the golden latent-dehazing case's sizes (official layout: gain layer norm, global skip)
LATENT_SMALL = [
    "--set", "latent.channels=4", "--set", "latent.mult=[4,8,8,16]",
    "--set", "latent.latent_channels=8", "--set", "latent.attention=true",
    "--set", "network.width=8", "--set", "network.layer_norm=gain",
    "--set", "network.global_skip=true",
]  # fmt: skip


def test_official_latent_dehazing_reproduces_encode_noise_and_decode(
    official, tmp_path: Path
) -> None:
    """Released as two files (compressor L, noise network G), given in any order."""
    out = tmp_path / "latent.safetensors"
    files = ["--from", str(official(LATENT, "latent-reffusion-dehazing.pth"))]
    files += ["--from", str(official(LATENT, "latent-dehazing.pth"))]
    args = ["import", "--preset", "dehaze-latent-tiny", *files, "--out", str(out)]
    result = runner.invoke(app, [*args, *LATENT_SMALL])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = np.load(LATENT / "io.npz")
    with torch.no_grad():
        latent, skips = restorer.compressor.encode(torch.from_numpy(io["lq"]))
        eps = restorer.net(
            torch.from_numpy(io["xt"]), torch.from_numpy(io["latent_lq"]), torch.from_numpy(io["t"])
        )
        decoded = restorer.compressor.decode(torch.from_numpy(io["xt"]), skips)
    h, w = io["lq"].shape[-2:]
    for ours, theirs in ((latent, "latent_lq"), (eps, "noise"), (decoded[..., :h, :w], "decoded")):
        assert float((ours - torch.from_numpy(io[theirs])).abs().max()) <= 1e-5, theirs
    one_file = ["import", "--preset", "dehaze-latent-tiny", *files[:2], "--out", str(out)]
    one = runner.invoke(app, [*one_file, *LATENT_SMALL])
    assert one.exit_code == 2 and "two files" in one.output


BOKEH = OFFICIAL / "refusion-latent-bokeh"
#: the golden latent-bokeh case's sizes (the official preset's layout at width 8)
BOKEH_SMALL = [
    "--set", "latent.channels=8", "--set", "network.width=8",
    "--set", "network.enc_blocks=[1,1,1,1]", "--set", "network.middle_blocks=1",
    "--set", "network.dec_blocks=[1,1,1,1]",
]  # fmt: skip


def test_official_latent_bokeh_reproduces_encode_noise_and_decode(official, tmp_path: Path) -> None:
    """The lens- and disparity-conditioned net, fed through irctl's own lens path: the
    challenge's meta.txt line gives the conditioning (the official dataset's ×10 lens codes
    160 and −18, disparity 25, are the network's scaling here)."""
    from irctl.conditioning import Conditioning
    from irctl.io.lens_meta import build_lens_conditioner

    out = tmp_path / "bokeh.safetensors"
    files = ["--from", str(official(BOKEH, "latent-bokeh.pth"))]
    files += ["--from", str(official(BOKEH, "latent-reffusion-bokeh.pth"))]
    args = ["import", "--preset", "bokeh-latent-official", *files, "--out", str(out)]
    result = runner.invoke(app, [*args, *BOKEH_SMALL])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    meta = tmp_path / "meta.txt"
    meta.write_text("00007, Sony50mmf16.0BS, Canon50mmf1.8BS, 25\n")
    lenses = build_lens_conditioner(
        meta=meta, src_root=None, src_lens=None, tgt_lens=None, preset_disparity=35.0
    )
    io = np.load(BOKEH / "io.npz")
    lq = torch.from_numpy(io["lq"])
    cond = restorer.condition(lq, lenses(tmp_path / "00007.png"))
    with torch.no_grad():
        latent, skips = restorer.compressor.encode(lq)
        eps = restorer.net(
            torch.from_numpy(io["xt"]),
            torch.from_numpy(io["latent_lq"]),
            torch.from_numpy(io["t"]),
            cond,
        )
        decoded = restorer.compressor.decode(torch.from_numpy(io["xt"]), skips)
    h, w = io["lq"].shape[-2:]
    for ours, theirs in ((latent, "latent_lq"), (eps, "noise"), (decoded[..., :h, :w], "decoded")):
        assert float((ours - torch.from_numpy(io[theirs])).abs().max()) <= 1e-5, theirs
    # the disparity matters: the preset's default (35) instead of the table's 25 changes ε̂
    other = restorer.condition(lq, Conditioning((16.0, -1.8, 35.0)))
    with torch.no_grad():
        moved = restorer.net(
            torch.from_numpy(io["xt"]),
            torch.from_numpy(io["latent_lq"]),
            torch.from_numpy(io["t"]),
            other,
        )
    assert float((moved - eps).abs().max()) > 1e-3
    # ... and restores a folder: the challenge's meta.txt beside the images gives lenses and
    # disparity; an image it does not list takes the flags.
    from irctl.data.datasets import load_photo
    from irctl.io.images import write_image

    src = tmp_path / "in"
    src.mkdir()
    for name in ("00007.png", "extra.png"):
        write_image(src / name, load_photo("chelsea")[:40, :56], dtype=np.uint8)
    (src / "meta.txt").write_text(meta.read_text())
    restore = ["restore", "--weights", str(out), "--src", str(src), "--dst", str(tmp_path / "o")]
    restored = runner.invoke(app, [*restore, "--steps", "2", "--disparity", "30"])
    assert restored.exit_code == 0, restored.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["00007.png", "extra.png"]


STEREO = OFFICIAL / "refusion-stereo"
STEREO_SMALL = [
    "--set", "network.width=8", "--set", "network.enc_blocks=[1,1,1,2]",
    "--set", "network.layer_norm=gain", "--set", "network.tied_views=false",
    "--set", "network.scam_resize=scale_factor",
]  # fmt: skip


def test_official_stereo_network_reproduces_the_official_output(official, tmp_path: Path) -> None:
    out = tmp_path / "stereo.safetensors"
    args = [
        "import",
        "--preset",
        "stereo-sr-tiny",
        "--from",
        str(official(STEREO, "reffusion-ssr.pth")),
    ]
    result = runner.invoke(app, [*args, "--out", str(out), *STEREO_SMALL])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = np.load(STEREO / "io.npz")
    with torch.no_grad():
        eps = restorer.net(
            torch.from_numpy(io["xt"]), torch.from_numpy(io["cond"]), torch.from_numpy(io["t"])
        )
    assert float((eps - torch.from_numpy(io["out"])).abs().max()) <= 1e-5
    tied = runner.invoke(app, [*args, "--out", str(out), *STEREO_SMALL[:6]])
    assert tied.exit_code == 2 and "scam_resize" in tied.output


@pytest.mark.parametrize(
    ("preset", "released"),
    [
        ("shadow-refusion-official", {"net": "refusion-nafnet"}),
        ("stereo-sr-refusion-official", {"net": "refusion-stereo-sr"}),
        ("shadow-irsde-official", {"net": "irsde-deshadow"}),
        (
            "bokeh-latent-official",
            {"compressor": "refusion-latent-bokeh.L", "net": "refusion-latent-bokeh.G"},
        ),
        ("denoise-irsde-official", {"net": "irsde-denoise"}),
        ("derain-irsde-official", {"net": "irsde-derain"}),
        ("deblur-irsde-official", {"net": "irsde-deblur"}),
        ("sr4-irsde-official", {"net": "irsde-sisr"}),
        ("inpaint-irsde-official", {"net": "irsde-inpaint"}),
        (
            "dehaze-latent-official",
            {"compressor": "refusion-latent-dehaze.L", "net": "refusion-latent-dehaze.G"},
        ),
    ],
)
def test_official_size_presets_hold_exactly_the_released_keys_and_shapes(
    official, preset, released
) -> None:
    """A real download imports on the first try: each module of the preset, in the official
    names, has exactly the released key set and shapes (shared/golden-official/official-keys
    .json), the official parameter count, and the test config's SDE settings."""
    from irctl.io.state_dict import compare_keys
    from irctl.methods import build_restorer
    from irctl.methods.official_keys import (
        IRSDE_UNET,
        REFUSION_LATENT_BOKEH,
        REFUSION_NAFNET,
        REFUSION_STEREO,
        compressor_key_map,
    )
    from irctl.presets import load_preset

    listing = json.loads((OFFICIAL / "official-keys.json").read_text())
    restorer = build_restorer(load_preset(preset))
    config = restorer.preset
    nafnet = REFUSION_STEREO if getattr(config.network, "views", 1) == 2 else REFUSION_NAFNET
    if getattr(config.network, "cond_scalars", 0) == 3:
        nafnet = REFUSION_LATENT_BOKEH
    key_maps = {
        "net": IRSDE_UNET if config.method.startswith("irsde") else nafnet,
        "compressor": compressor_key_map(len(config.latent.mult))
        if "compressor" in released
        else None,
    }
    for module_name, entry in released.items():
        module = restorer.modules()[module_name]
        key_map = key_maps[module_name]
        ours = {key_map.to_official(k): v for k, v in module.state_dict().items()}
        expected = {k: tuple(v) for k, v in listing[entry]["keys"].items()}
        report = compare_keys(ours, expected)
        assert report.ok, f"{entry}: {report.message()}"
        assert sum(p.numel() for p in module.parameters()) == listing[entry]["parameters"]
        sde = listing[entry]["sde"]
        if sde is not None:
            d = config.diffusion
            assert (d.T, d.max_sigma) == (sde["T"], sde["max_sigma"])
            assert d.schedule == sde.get("schedule", "cosine")
            assert getattr(d, "eps", 0.04) == sde.get("eps", 0.04)  # the denoising SDE's 0.04
            if "sampling_mode" in sde:  # the deraining test samples the posterior
                assert config.sampler.name == sde["sampling_mode"]


IRSDE = OFFICIAL / "irsde-unet"


def test_official_irsde_unet_reproduces_the_official_output(official, tmp_path: Path) -> None:
    out = tmp_path / "irsde.safetensors"
    args = [
        "import",
        "--preset",
        "shadow-irsde-official",
        "--from",
        str(official(IRSDE, "ir-sde.pth")),
    ]
    small = ["--set", "network.nf=8", "--set", "network.depth=4"]
    result = runner.invoke(app, [*args, "--out", str(out), *small])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = np.load(IRSDE / "io.npz")
    with torch.no_grad():
        eps = restorer.net(
            torch.from_numpy(io["xt"]), torch.from_numpy(io["cond"]), torch.from_numpy(io["t"])
        )
    assert float((eps - torch.from_numpy(io["out"])).abs().max()) <= 1e-5
    wrong = runner.invoke(app, [*args, "--out", str(out), "--set", "network.nf=8"])
    assert wrong.exit_code == 2 and "missing" in wrong.output  # depth 5 has a level more


def test_official_irsde_denoising_network_reproduces_the_official_output(
    official, tmp_path: Path
) -> None:
    """The denoising-SDE network sees x_t alone and has full attention in its middle."""
    case = OFFICIAL / "irsde-unet-denoising"
    out = tmp_path / "denoise.safetensors"
    args = [
        "import",
        "--preset",
        "denoise-irsde-official",
        "--from",
        str(official(case, "ir-sde.pth")),
    ]
    small = ["--set", "network.nf=8", "--set", "network.depth=4"]
    result = runner.invoke(app, [*args, "--out", str(out), *small])
    assert result.exit_code == 0, result.output
    restorer = load_restorer(weights=out, preset=None, task=None, device=torch.device("cpu"))
    io = np.load(case / "io.npz")
    with torch.no_grad():
        eps = restorer.net(torch.from_numpy(io["x"]), torch.from_numpy(io["t"]))
    assert float((eps - torch.from_numpy(io["out"])).abs().max()) <= 1e-5
