"""The tasks of IR-SDE's released models: derain, deblur, sr4 (×4 SR at the output size) and
inpaint (an image and its mask) — their degradations, the inpaint task's files, sr4's input, and
`irctl restore` / `compare` end to end on tiny IR-SDE networks trained a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_array
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.config import DegradationConfig
from irctl.data.datasets import load_photo
from irctl.data.degrade import build_pair_synthesis
from irctl.io.images import Image, read_image
from irctl.tasks import get_task
from irctl.tasks.base import IMAGE
from irctl.tasks.inpaint import MASK

runner = CliRunner()


def _crop(h: int = 48, w: int = 64) -> torch.Tensor:
    photo = load_photo("chelsea")[100 : 100 + h, 150 : 150 + w]
    return torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None]


# --------------------------------------------------------------------------- degradations


def test_rain_only_brightens_and_streaks_are_long_and_oriented() -> None:
    cfg = DegradationConfig(kind="rain", rain_angle=(0.0, 0.0), rain_length=(21.0, 21.0))
    clean = _crop(96, 96)
    pair = build_pair_synthesis(cfg)(clean, torch.Generator().manual_seed(3))
    added = (pair.lq - pair.gt)[0].mean(0)
    assert float((pair.lq - pair.gt).min()) >= 0.0  # 8-bit rounding is monotonic: never darker
    assert torch.equal(pair.gt, clean)
    assert 0.01 < float((added > 2 / 255).float().mean()) < 0.9
    # vertical streaks: the rain layer varies far less down a column than along a row
    down = float((added[1:] - added[:-1]).abs().mean())
    across = float((added[:, 1:] - added[:, :-1]).abs().mean())
    assert down < 0.5 * across


def test_motion_kernels_sum_to_one_and_the_blur_is_their_convolution() -> None:
    from scipy import ndimage

    from irctl.data.blur import convolve, motion_blur, random_motion_kernel

    rng = np.random.default_rng(0)
    for size in (3, 9, 31):
        kernel = random_motion_kernel(size, rng)
        assert kernel.shape == (size, size) and kernel.min() >= 0.0
        assert abs(float(kernel.sum()) - 1.0) < 1e-5
    clean = _crop()
    kernel = random_motion_kernel(9, np.random.default_rng(1))
    ours = convolve(clean, torch.from_numpy(kernel))[0, 0].numpy()
    theirs = ndimage.convolve(clean[0, 0].numpy().astype(np.float64), kernel, mode="mirror")
    assert np.abs(ours - theirs).max() < 1e-5
    # the synthesis with no noise is exactly that blur with its own kernel
    blurred, (used,) = motion_blur(clean, np.random.default_rng(2), (9, 15), noise=0.0)
    expected = convolve(clean, torch.from_numpy(used))
    assert torch.allclose(blurred, expected, atol=1e-6)
    assert float((blurred - clean).abs().mean()) > 1e-3  # it did blur


def test_sr_pair_is_the_8bit_matlab_downscale() -> None:
    """LQ = the MATLAB ×1/4 of the mod-cropped photo, stored as 8 bits (DF2K's LR/x4)."""
    from irctl.data.degrade import quantize_8bit
    from irctl.data.resize import downscale

    clean = _crop(50, 66)  # not multiples of 4: mod-cropped to 48×64
    pair = build_pair_synthesis(DegradationConfig(kind="bicubic_sr", scale=4))(
        clean, torch.Generator()
    )
    hr = clean[..., :48, :64]
    assert torch.equal(pair.gt, hr) and pair.lq.shape[-2:] == (12, 16)
    assert torch.equal(pair.lq, quantize_8bit(downscale(hr, 4)))


def test_irsde_sr_mean_is_the_official_pytorch_bicubic_of_the_lr() -> None:
    """The released ×4 model was trained on ``F.interpolate(LR, 4, "bicubic")``: with
    ``upsampler = "torch"`` that is μ; Refusion's stereo SR keeps MATLAB's."""
    import torch.nn.functional as F

    from irctl.data.resize import upscale
    from irctl.methods.refusion import mean_state

    lr = _crop(12, 16)
    official = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(mean_state(4, lr, "torch"), official, atol=1e-6)
    assert torch.equal(mean_state(4, lr), upscale(lr, 4))
    assert not torch.allclose(mean_state(4, lr), official, atol=1e-3)


@pytest.mark.parametrize("fraction", [(0.1, 0.1), (0.3, 0.3), (0.05, 0.5)])
def test_masks_cover_the_share_asked_and_the_input_is_image_and_mask(fraction) -> None:
    from irctl.data.degrade import quantize_8bit
    from irctl.data.masks import random_mask

    rng = np.random.default_rng(0)
    for _ in range(5):
        holes = random_mask(128, 96, fraction, rng)
        assert fraction[0] <= holes.mean() <= fraction[1] + 0.12
    cfg = DegradationConfig(kind="inpaint_mask", mask_fraction=(0.2, 0.2))
    clean = _crop()
    pair = build_pair_synthesis(cfg)(clean, torch.Generator().manual_seed(0))
    assert pair.lq.shape[1] == 4 and torch.equal(pair.gt, clean)
    m = pair.lq[:, 3:]
    assert set(m.unique().tolist()) == {0.0, 1.0} and 0.15 <= float(m.mean()) <= 0.35
    assert torch.all(pair.lq[:, :3] * m == 0)  # holes zeroed
    known = (1 - m).expand_as(clean).bool()
    assert torch.equal(pair.lq[:, :3][known], quantize_8bit(clean)[known])


@pytest.mark.parametrize("kind", ["rain", "motion_blur", "bicubic_sr", "inpaint_mask"])
def test_each_synthesis_is_a_pure_function_of_the_generator(kind: str) -> None:
    synth = build_pair_synthesis(DegradationConfig(kind=kind))
    a = synth(_crop(), torch.Generator().manual_seed(5))
    b = synth(_crop(), torch.Generator().manual_seed(5))
    assert torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)


# --------------------------------------------------------------------------- sr4


def test_sr4_output_is_four_times_the_file_and_the_alpha_follows() -> None:
    task = get_task("sr4")
    lr = load_photo("chelsea")[:10, :12]
    alpha = np.full((10, 12), 200, dtype=np.uint8)
    alpha[:, :6] = 50
    image = Image(pixels=lr[..., :1].copy(), alpha=alpha, dtype=np.dtype(np.uint8))  # grey
    x = task.model_input({IMAGE: image})
    assert x.shape == (10, 12, 3)  # the model gets the LR; reaching 4× is the method's job
    restored = np.repeat(np.repeat(x, 4, axis=0), 4, axis=1)
    (out,) = task.model_output(restored, {IMAGE: image}).values()
    assert out.pixels.shape == (40, 48, 1) and out.alpha.shape == (40, 48)
    assert out.alpha.dtype == np.uint8 and out.alpha[0, 0] == 50 and out.alpha[0, -1] == 200


# --------------------------------------------------------------------------- inpaint files


def _write_case(folder: Path, stem: str, *, mask_shape: tuple[int, int] | None = (24, 32)) -> None:
    pixels = (load_photo("chelsea")[:24, :32] * 255).astype(np.uint8)
    save_array(folder / f"{stem}.png", pixels)
    if mask_shape is not None:
        mask = np.zeros(mask_shape, dtype=np.uint8)
        mask[8:16, 10:20] = 255
        save_array(folder / f"{stem}_mask.png", mask)


def test_inpaint_plans_each_image_with_its_mask_and_names_a_missing_one(tmp_path: Path) -> None:
    task = get_task("inpaint")
    _write_case(tmp_path, "a")
    _write_case(tmp_path, "b", mask_shape=None)
    files = sorted(tmp_path.iterdir())
    plan = task.plan(files, tmp_path / "out", src_root=tmp_path, ext=None, suffix="")
    assert [(j.inputs[IMAGE].name, j.inputs[MASK].name) for j in plan.jobs] == [
        ("a.png", "a_mask.png")
    ]
    assert [j.dst.name for j in plan.jobs] == ["a.png"]
    ((path, reason),) = plan.errors
    assert path.name == "b.png" and "no mask" in reason and "b_mask" in reason
    # an image given alone finds its mask on disk
    alone = task.plan([tmp_path / "a.png"], tmp_path / "o", src_root=None, ext=None, suffix="")
    assert alone.jobs[0].inputs[MASK] == tmp_path / "a_mask.png"


def test_mask_dir_finds_masks_apart_in_the_images_subfolders(tmp_path: Path) -> None:
    """--mask-dir M: ``M/<sub>/x_mask.*`` or ``M/<sub>/x.*`` for ``src/<sub>/x.png``; masks
    beside the images are then not used; none or two is one error line naming where."""
    task = get_task("inpaint")
    src, masks = tmp_path / "src", tmp_path / "masks"
    (src / "sub").mkdir(parents=True)
    (masks / "sub").mkdir(parents=True)
    _write_case(src, "a")  # a_mask.png beside it: ignored with --mask-dir
    _write_case(src / "sub", "b", mask_shape=None)
    _write_case(src, "c", mask_shape=None)
    _write_case(src, "d", mask_shape=None)
    mask = np.zeros((24, 32), dtype=np.uint8)
    save_array(masks / "a.png", mask)  # same stem
    save_array(masks / "sub" / "b_mask.png", mask)  # the _mask suffix
    save_array(masks / "d.png", mask)
    save_array(masks / "d_mask.tif", mask)  # two masks for d
    files = sorted(p for p in src.rglob("*.png"))
    plan = task.plan(
        files, tmp_path / "o", src_root=src, ext=None, suffix="", options={"mask_dir": masks}
    )
    found = {j.src.name: j.inputs[MASK] for j in plan.jobs}
    assert found == {"a.png": masks / "a.png", "b.png": masks / "sub" / "b_mask.png"}
    reasons = {path.name: reason for path, reason in plan.errors}
    assert set(reasons) == {"c.png", "d.png"}
    assert reasons["c.png"].startswith("no mask") and str(masks / "c_mask") in reasons["c.png"]
    assert reasons["d.png"].startswith("2 masks")
    # the image itself is never its own mask when --mask-dir is its folder
    same = task.plan(
        [src / "c.png"],
        tmp_path / "o",
        src_root=src,
        ext=None,
        suffix="",
        options={"mask_dir": src},
    )
    assert not same.jobs and "no mask" in same.errors[0][1]


def test_mask_dir_is_an_option_of_inpainting_only(tmp_path: Path) -> None:
    _write_case(tmp_path, "a")
    args = ["restore", "--task", "denoise", "--src", str(tmp_path), "--dst", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--mask-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--mask-dir" in result.output
    assert not (tmp_path / "o").exists()


def test_inpaint_input_is_image_and_mask_and_known_pixels_come_back_exactly(tmp_path) -> None:
    """[image·(1 − m), m] in; the known pixels of the output are the file's (a mask of zeros
    returns the input bit-exactly); a mis-sized mask is one line."""
    from irctl.data.masks import masked_input
    from irctl.io.images import write_image
    from irctl.methods.refusion import mean_state

    task = get_task("inpaint")
    _write_case(tmp_path, "a")
    _write_case(tmp_path, "c", mask_shape=(20, 32))
    plan = task.plan(sorted(tmp_path.iterdir()), tmp_path / "o", src_root=None, ext=None, suffix="")
    by_name = {j.src.name: j for j in plan.jobs}
    images = task.read(by_name["a.png"])
    x = task.model_input(images)
    assert x.shape == (24, 32, 4)
    assert np.all(x[8:16, 10:20, :3] == 0.0) and np.all(x[8:16, 10:20, 3] == 1.0)
    assert np.array_equal(x[:8, :, :3], images[IMAGE].pixels[:8]) and np.all(x[:8, :, 3] == 0)
    # IR-SDE's released model sees the image with white holes (the official mask_to)
    white = mean_state(1, torch.from_numpy(x.transpose(2, 0, 1))[None], holes="white")[0]
    assert torch.all(white[:, 8:16, 10:20] == 1.0)
    assert torch.equal(white[:, :8], torch.from_numpy(images[IMAGE].pixels[:8].transpose(2, 0, 1)))
    restored = np.full((24, 32, 3), 0.3, dtype=np.float32)
    done = task.complete(restored, x)
    assert np.all(done[8:16, 10:20] == 0.3) and np.array_equal(done[:8], images[IMAGE].pixels[:8])
    (out,) = task.model_output(done, images).values()
    written = tmp_path / "w.png"
    write_image(written, out.pixels, dtype=np.uint8)
    file_pixels = read_image(tmp_path / "a.png").pixels
    assert np.array_equal(read_image(written).pixels[:8], file_pixels[:8])
    empty = masked_input(images[IMAGE].pixels, np.zeros((24, 32), dtype=bool))
    assert np.array_equal(task.complete(restored, empty), images[IMAGE].pixels)
    reason = task.read(by_name["c.png"])
    assert isinstance(reason, str) and "\n" not in reason and "c_mask.png is 32x20" in reason


# --------------------------------------------------------------------------- end to end

TINY_IRSDE = [
    "network.nf=4",
    "network.depth=2",
    "diffusion.T=4",
    "sampler.steps=2",
    "sampler.tile=0",
    "train.batch=1",
    "train.patch=32",
    "train.iterations=1",
    "train.val_every=0",
    "train.log_every=1",
    "train.checkpoint_every=1",
    'data.train=["camera"]',
    'data.test=["coins"]',
]


def _tiny_weights(preset_name: str, out: Path) -> Path:
    from irctl.engine.train import train
    from irctl.presets import apply_overrides, load_preset

    return train(apply_overrides(load_preset(preset_name), TINY_IRSDE), out).weights


@pytest.mark.slow
def test_restore_inpaint_and_sr4_end_to_end(tmp_path: Path) -> None:
    """Train each official preset's layout at a tiny size for one step, restore: inpaint
    writes one image per image+mask and reports the missing mask; sr4 writes 4× the input."""
    src = tmp_path / "in"
    _write_case(src, "a")
    _write_case(src, "b", mask_shape=None)
    weights = _tiny_weights("inpaint-irsde-official", tmp_path / "inpaint")
    args = ["restore", "--weights", str(weights), "--src", str(src), "--threads", "1", "--json"]
    result = runner.invoke(app, [*args, "--dst", str(tmp_path / "out")])
    assert result.exit_code == 1  # one job failed (a partial failure) ...
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]  # ... one ran
    assert "no mask" in result.output
    assert read_image(tmp_path / "out" / "a.png").pixels.shape == (24, 32, 3)
    # --mask-dir: b's mask kept apart; a folder that is not there is refused up front
    masks = tmp_path / "masks"
    save_array(masks / "b.png", np.full((24, 32), 255, dtype=np.uint8))
    result = runner.invoke(app, [*args, "--dst", str(tmp_path / "o2"), "--mask-dir", str(masks)])
    assert result.exit_code == 1 and "no mask" in result.output  # a's mask is not in masks/
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["b.png"]
    result = runner.invoke(app, [*args, "--dst", str(tmp_path / "o3"), "--mask-dir", "nowhere"])
    assert result.exit_code == 2 and "--mask-dir nowhere: not a folder" in result.output
    assert not (tmp_path / "o3").exists()

    lr = tmp_path / "lr"
    save_array(lr / "x.png", (load_photo("coffee")[:12, :20] * 255).astype(np.uint8))
    weights = _tiny_weights("sr4-irsde-official", tmp_path / "sr4")
    args = ["restore", "--weights", str(weights), "--src", str(lr), "--threads", "1"]
    result = runner.invoke(app, [*args, "--dst", str(tmp_path / "hr")])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "hr" / "x.png").pixels.shape == (48, 80, 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "first_row", "baselines"),
    [
        ("derain-irsde-official", "input", ()),
        (
            "deblur-irsde-official",
            "input",
            ("richardson-lucy-oracle", "blind-richardson-lucy", "unsharp-mask"),
        ),
        ("sr4-irsde-official", "bicubic ×4", ()),
        ("inpaint-irsde-official", "input", ("telea", "navier-stokes")),
    ],
)
def test_compare_builds_the_held_out_table(preset, first_row, baselines, tmp_path: Path) -> None:
    weights = _tiny_weights(preset, tmp_path / "w")
    args = ["compare", "--models", str(weights), "--samplers", "sde:2", "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "table")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    rows = rows["rows"] if isinstance(rows, dict) else rows
    methods = list(dict.fromkeys(r["method"] for r in rows))
    assert methods[0] == first_row and len(methods) == 2 + len(baselines)
    assert tuple(methods[1 : 1 + len(baselines)]) == baselines
    assert all(np.isfinite(r["psnr"]) for r in rows)


def test_mask_scale_draws_the_same_holes_in_pixels_at_any_image_size() -> None:
    """With ``scale`` the strokes and boxes are those of a scale×scale image, whatever the size
    of the one drawn on: on 512×384 photos no hole reaches much farther than a 64-px image's
    widest shape allows (a 21-px box is 11 px from its edge to its centre; overlapping shapes a
    little more), while the image's own scale makes holes three times as wide; a crop of the
    scale's own size draws exactly the unscaled mask."""
    import cv2

    from irctl.data.masks import random_mask

    def widest(holes: np.ndarray) -> float:
        return float(cv2.distanceTransform(holes.astype(np.uint8), cv2.DIST_L2, 5).max())

    scaled = [
        random_mask(384, 512, (0.3, 0.3), np.random.default_rng(s), scale=64) for s in range(6)
    ]
    own = [random_mask(384, 512, (0.3, 0.3), np.random.default_rng(s)) for s in range(6)]
    assert all(0.3 <= h.mean() <= 0.42 for h in scaled)
    assert max(widest(h) for h in scaled) <= 16
    assert min(widest(h) for h in own) > 30
    for s in range(3):
        a = random_mask(64, 64, (0.2, 0.3), np.random.default_rng(s), scale=64)
        assert np.array_equal(a, random_mask(64, 64, (0.2, 0.3), np.random.default_rng(s)))
    with pytest.raises(ValueError, match="mask_scale"):
        build_pair_synthesis(DegradationConfig(kind="inpaint_mask", mask_scale=-1))


def test_holes_from_mask_reads_white_as_holes_or_as_kept_pixels() -> None:
    from irctl.data.masks import holes_from_mask

    mask = np.array([0, 127, 128, 255], dtype=np.float64).reshape(1, 4, 1) / 255
    assert holes_from_mask(mask).tolist() == [[False, False, True, True]]
    assert holes_from_mask(mask, "kept").tolist() == [[True, True, False, False]]
    assert np.array_equal(holes_from_mask(1.0 - mask, "kept"), holes_from_mask(mask))
    with pytest.raises(ValueError, match="hole, kept"):
        holes_from_mask(mask, "black")


def test_mask_white_kept_restores_an_inverted_mask_to_the_same_bytes(tmp_path: Path) -> None:
    """The bundled inpainter on a white-hole mask, and on its inverse with --mask-white kept:
    the same output bytes; the inverse read as holes fills other pixels; a nonsense value is a
    usage error before anything is written."""
    hole, kept = tmp_path / "hole", tmp_path / "kept"
    pixels = (load_photo("chelsea")[40:104, 60:156] * 255).astype(np.uint8)
    mask = np.zeros(pixels.shape[:2], dtype=np.uint8)
    mask[20:40, 30:70] = 255
    for folder, m in ((hole, mask), (kept, 255 - mask)):
        save_array(folder / "a.png", pixels)
        save_array(folder / "a_mask.png", m)
    args = ["restore", "--task", "inpaint", "--threads", "1"]
    runs = {
        "default": [*args, "--src", str(hole), "--dst", str(tmp_path / "o1")],
        "kept": [*args, "--src", str(kept), "--dst", str(tmp_path / "o2"), "--mask-white", "kept"],
        "inverse as holes": [*args, "--src", str(kept), "--dst", str(tmp_path / "o3")],
    }
    out = {}
    for name, argv in runs.items():
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        out[name] = read_image(Path(argv[argv.index("--dst") + 1]) / "a.png").pixels
    assert np.array_equal(out["kept"], out["default"])
    known = np.round(out["default"][mask == 0] * 255).astype(np.uint8)
    assert np.array_equal(known, pixels[mask == 0])  # the known pixels, exactly
    assert not np.array_equal(out["inverse as holes"], out["default"])
    result = runner.invoke(
        app, [*args, "--src", str(kept), "--dst", str(tmp_path / "o4"), "--mask-white", "black"]
    )
    assert result.exit_code == 2 and "--mask-white black: use one of hole, kept" in result.output
    assert not (tmp_path / "o4").exists()
