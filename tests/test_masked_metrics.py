"""Metrics of a region (an inpainting table's "inside the holes"): known values, and the
held-out tables reading the region from the task."""

from __future__ import annotations

import math

import numpy as np
import pytest

from irctl.data.masks import masked_input
from irctl.engine.heldout import HeldoutPhoto, markdown_table, run_heldout
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import masked_psnr, masked_ssim, psnr
from irctl.tasks import get_task


def _gt_and_hole(h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = rng.integers(20, 236, (h, w, 3), dtype=np.uint8)
    hole = np.zeros((h, w), dtype=bool)
    hole[12:28, 16:32] = True
    return gt, hole


def test_masked_psnr_scores_only_the_region() -> None:
    gt, hole = _gt_and_hole()
    off_inside = gt.astype(np.int16)
    off_inside[hole] += 10  # every channel of every hole pixel 10 levels off
    assert masked_psnr(off_inside, gt, hole, max_value=255) == pytest.approx(
        20 * math.log10(255 / 10)
    )
    # the same error spread over the image reads ~4 dB better: the region is ¼·⅓ of it
    assert psnr(off_inside, gt, max_value=255) > masked_psnr(off_inside, gt, hole, max_value=255)
    off_outside = gt.astype(np.int16)
    off_outside[~hole] += 10  # a perfect fill, wrong elsewhere
    assert masked_psnr(off_outside, gt, hole, max_value=255) == math.inf
    with pytest.raises(ValueError, match="no pixel"):
        masked_psnr(gt, gt, np.zeros_like(hole), max_value=255)
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(gt, gt, hole[:-1], max_value=255)


def test_masked_ssim_is_one_for_a_perfect_fill_and_falls_for_a_wrong_one() -> None:
    gt, hole = _gt_and_hole()
    far = gt.copy()
    far[:, :8] = 0  # wrong only > 5 px (the SSIM window's reach) away from the hole
    assert masked_ssim(far, gt, hole, max_value=255) == pytest.approx(1.0)
    grey = gt.copy()
    grey[hole] = 128
    inside = masked_ssim(grey, gt, hole, max_value=255)
    assert inside < 0.5  # a flat fill keeps no structure (only the edge windows see any)
    from irctl.metrics.fidelity import ssim

    assert ssim(grey, gt, max_value=255) > inside  # the whole image is mostly right


def test_held_out_tables_score_the_holes_the_task_names() -> None:
    gt, hole = _gt_and_hole()
    lq = masked_input(gt / np.float32(255.0), hole).astype(np.float32)
    photo = HeldoutPhoto("p", gt, lq)
    truth = gt / 255.0
    methods = {
        "perfect": lambda lq, _c: truth,
        "grey": lambda lq, _c: np.where(hole[..., None], 0.5, lq[..., :3]),
    }
    task = get_task("inpaint")
    rows = run_heldout(
        [photo],
        methods,
        extra_metrics=tuple(task.metrics),
        input_fn=lambda lq, _c: lq[..., :3],
        metric_mask=task.metric_mask,
    )
    by = {r.method: r for r in rows}
    assert by["perfect"].extra == {"psnr-mask": math.inf, "ssim-mask": pytest.approx(1.0)}
    expected = masked_psnr(np.where(hole[..., None], 128, gt), gt, hole, max_value=255)
    assert by["grey"].extra["psnr-mask"] == pytest.approx(expected)
    # outside the holes the input is the truth: its hole PSNR is that of black holes
    black = masked_psnr(np.where(hole[..., None], 0, gt), gt, hole, max_value=255)
    assert by["input"].extra["psnr-mask"] == pytest.approx(black)
    table = markdown_table(rows, headers=task.metrics)
    assert "PSNR in holes" in table.splitlines()[0]
    with pytest.raises(ValueError, match="need a mask"):  # a task without a region
        run_heldout(
            [photo], {}, extra_metrics=("psnr-mask",), metric_mask=get_task("deblur").metric_mask
        )


def test_navier_stokes_fills_the_holes_and_keeps_the_rest() -> None:
    gt, hole = _gt_and_hole()
    lq = masked_input(gt / np.float32(255.0), hole).astype(np.float32)
    out = CLASSICAL["navier-stokes"](lq, None)
    assert out.shape == gt.shape
    assert np.array_equal(np.rint(out[~hole] * 255).astype(np.uint8), gt[~hole])
    assert float(out[hole].mean()) > 0.2  # filled from the surroundings, not left black
