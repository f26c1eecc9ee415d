"""Held-out comparison tables: task metrics (shadow's LAB RMSE) are computed and tabulated."""

from __future__ import annotations

import numpy as np
import pytest

from irctl.config import load_preset
from irctl.data.degrade import build_pair_synthesis
from irctl.engine.heldout import HeldoutPhoto, heldout_photos, markdown_table, run_heldout
from irctl.metrics.fidelity import rmse_lab


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
    # The target is the photo, or (a dark-scene draw) the photo dimmed by one factor per channel.
    scale = a.gt.sum(dim=(2, 3), keepdim=True) / clean.sum(dim=(2, 3), keepdim=True)
    assert torch.allclose(a.gt, clean * scale, atol=1e-6)
    assert (scale <= 1.0 + 1e-6).all()
    assert not torch.equal(a.lq, synth(clean, torch.Generator().manual_seed(6)).lq)
    for photo in heldout_photos(preset):
        darkened = photo.lq.mean(axis=2) < photo.gt.mean(axis=2) / 255.0 * 0.8
        assert 0.03 < darkened.mean() < 0.7, photo.name  # a cast shadow, not a global gain
