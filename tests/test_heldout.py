"""Held-out comparison tables: task metrics (shadow's LAB RMSE) are computed and tabulated."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from irctl.data.degrade import build_pair_synthesis
from irctl.engine.heldout import HeldoutPhoto, heldout_photos, markdown_table, run_heldout
from irctl.metrics.fidelity import rmse_lab
from irctl.presets import load_preset


def _photo(seed: int) -> HeldoutPhoto:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    lq = np.clip(gt / 255.0 * 0.6, 0, 1).astype(np.float32)  # a darker copy
    return HeldoutPhoto(f"p{seed}", gt, lq)


def test_extra_metrics_are_scored_and_tabulated() -> None:
    photos = [_photo(0), _photo(1)]
    identity_gt = {p.name: p.gt / 255.0 for p in photos}
    methods = {"oracle": lambda lq, _c: identity_gt[next(p.name for p in photos if p.lq is lq)]}
    rows = run_heldout(photos, methods, extra_metrics=("rmse-lab",))
    inputs = [r for r in rows if r.method == "input"]
    for row, photo in zip(inputs, photos, strict=True):
        expected = rmse_lab((photo.lq * 255).round().astype(np.uint8), photo.gt, max_value=255)
        assert row.extra["rmse-lab"] == pytest.approx(expected)
        assert row.extra["rmse-lab"] > 1.0
    assert all(r.extra["rmse-lab"] == 0.0 for r in rows if r.method == "oracle")
    table = markdown_table(rows, headers={"rmse-lab": "RMSE (LAB)"})
    header, _rule, input_line, oracle_line = table.strip().splitlines()
    assert header.split("|")[5].strip() == "RMSE (LAB)"
    mean_input = np.mean([r.extra["rmse-lab"] for r in inputs])
    assert input_line.split("|")[5].strip() == f"{mean_input:.2f}"
    assert oracle_line.split("|")[5].strip() == "0.00"


def test_table_without_extras_keeps_its_columns() -> None:
    rows = run_heldout([_photo(2)], {})
    assert markdown_table(rows).splitlines()[0] == (
        "| method | PSNR (dB) | gain over input (dB) | SSIM | seconds / image |"
    )


def test_shadow_synthesis_is_seeded_and_heldout_photos_always_have_a_shadow() -> None:
    import torch

    preset = load_preset("shadow-tiny")
    clean = torch.rand(4, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    synth = build_pair_synthesis(preset.degradation)
    a = synth(clean, torch.Generator().manual_seed(5))
    b = synth(clean, torch.Generator().manual_seed(5))
    assert torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)
    # The target is the photo, maybe with its channels reordered (recolour) and dimmed (a dark
    # scene): never brighter, and never anything but the photo's own pixels.
    orders = list(itertools.permutations(range(3)))
    for gt, photo in zip(a.gt, clean, strict=True):
        assert any(
            ((gt <= photo[list(order)] + 1e-6) & (gt >= 0.2 * photo[list(order)] - 1e-6)).all()
            for order in orders
        )
    assert not torch.equal(a.lq, synth(clean, torch.Generator().manual_seed(6)).lq)
    for photo in heldout_photos(preset):
        darkened = photo.lq.mean(axis=2) < photo.gt.mean(axis=2) / 255.0 * 0.8
        assert 0.03 < darkened.mean() < 0.7, photo.name  # a cast shadow, not a global gain


def test_hf_energy_ratio_known_values() -> None:
    """1 for the reference itself; a ×2 contrast scales the Laplacian's variance ×4 (the luma
    offset has no Laplacian); a blur lowers it, noise raises it."""
    from scipy import ndimage

    from irctl.metrics.fidelity import hf_energy_ratio

    rng = np.random.default_rng(0)
    gt = ndimage.gaussian_filter(rng.random((40, 48, 3)), (1.0, 1.0, 0)) * 0.4
    assert hf_energy_ratio(gt, gt, max_value=1.0) == pytest.approx(1.0)
    assert hf_energy_ratio(2.0 * gt, gt, max_value=1.0) == pytest.approx(4.0)
    blurred = ndimage.gaussian_filter(gt, (2.0, 2.0, 0))
    assert hf_energy_ratio(blurred, gt, max_value=1.0) < 0.2
    noisy = gt + 0.05 * rng.standard_normal(gt.shape)
    assert hf_energy_ratio(noisy, gt, max_value=1.0) > 1.5


def test_stereo_sr_heldout_cases_are_pairs_scored_per_view() -> None:
    """Stereo SR held-out cases hold L‖R; the table's first row is the bicubic ×4 upsampling,
    and each row's numbers are the mean of the two views' own."""
    from irctl.metrics.fidelity import psnr
    from irctl.tasks.base import upscaled_input

    preset = load_preset("stereo-sr-tiny").replace(
        data=load_preset("stereo-sr-tiny").data.__class__(test=("coffee",))
    )
    (photo,) = heldout_photos(preset)
    h, w = photo.gt.shape[:2]
    assert photo.gt.shape[2] == 6 and photo.views == 2 and h % 4 == 0 and w % 4 == 0
    assert photo.lq.shape == (h // 4, w // 4, 6)
    # The right view is a warped copy of the photo (or the photo is the right view): the two
    # views are alike but not equal.
    left, right = photo.gt[..., :3].astype(float), photo.gt[..., 3:].astype(float)
    assert 0.5 < np.abs(left - right).mean() < 40.0
    rows = run_heldout(
        [photo],
        {},
        extra_metrics=("hf-ratio",),
        input_label="bicubic ×4",
        input_fn=upscaled_input(4),
    )
    (row,) = rows
    assert row.method == "bicubic ×4"
    up8 = np.clip(np.rint(upscaled_input(4)(photo.lq, None) * 255), 0, 255).astype(np.uint8)
    per_view = [
        psnr(up8[..., s], photo.gt[..., s], max_value=255) for s in (slice(0, 3), slice(3, 6))
    ]
    assert row.psnr == pytest.approx(np.mean(per_view))
    assert 20.0 < row.psnr < 40.0
    assert 0.0 < row.extra["hf-ratio"] < 0.8  # bicubic lacks detail
    assert "gain over bicubic ×4" in markdown_table(rows, baseline="bicubic ×4")


def test_training_only_settings_do_not_split_a_table() -> None:
    """Models trained with different shadow-free or dark-scene shares are scored on the same
    held-out cases (those are always shadowed photos), so one table holds them; a different
    held-out degradation still does not."""
    import dataclasses

    from irctl.engine.heldout import heldout_setting

    base = load_preset("shadow-tiny")
    other = base.replace(
        degradation=dataclasses.replace(base.degradation, shadow_free=0.0, shadow_dark_scene=0.9)
    )
    assert heldout_setting(other) == heldout_setting(base)
    small = base.replace(data=dataclasses.replace(base.data, test=("chelsea",)))
    (a,) = heldout_photos(small)
    (b,) = heldout_photos(small.replace(degradation=other.degradation))
    assert np.array_equal(a.lq, b.lq) and np.array_equal(a.gt, b.gt)
    haze = base.replace(degradation=dataclasses.replace(base.degradation, kind="haze"))
    assert heldout_setting(haze) != heldout_setting(base)
