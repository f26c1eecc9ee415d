"""``train.focus``: pairs synthesised on larger crops and cut where the input is degraded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.data.batch import Batch
from irctl.data.datasets import PairedCropSampler, degraded_windows


def _spot(clean: torch.Tensor, g: torch.Generator) -> Batch:
    """A toy degradation as sparse as raindrops: one 6×6 white square per 64×64 pixels, so a
    16-px crop holds some of it about one time in seven, a 64-px crop always."""
    lq = clean.clone()
    for image in lq:
        top, left = (int(v) for v in torch.randint(0, 64 - 6, (2,), generator=g))
        image[:, top : top + 6, left : left + 6] = 1.0  # clipped by the crop's own size
    return Batch(lq=lq, gt=clean, known=[{"where": np.zeros(1)} for _ in lq])


def _photos() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(0.0, 0.5, (90, 110, 3)).astype(np.float32) for _ in range(3)]


def test_focused_crops_land_on_the_degradation_and_stay_aligned() -> None:
    """Plain 16-px crops mostly miss the sparse spots; focused ones always hold some of one,
    and outside it the input is the truth pixel for pixel (the two were cut at the same
    place); the draw is a function of the generator."""
    plain = PairedCropSampler(_photos(), _spot, patch=16, batch=64, use_augment=False)
    focused = PairedCropSampler(_photos(), _spot, patch=16, batch=64, use_augment=False, focus=4)
    hit = lambda b: (b.lq != b.gt).flatten(1).any(1)  # noqa: E731
    g = torch.Generator().manual_seed(3)
    plain_batch = plain.sample(g)
    focused_batch = focused.sample(torch.Generator().manual_seed(3))
    assert float(hit(plain_batch).float().mean()) < 0.5
    assert bool(hit(focused_batch).all())
    assert focused_batch.lq.shape == (64, 3, 16, 16) and focused_batch.known is None
    clean = focused_batch.lq != 1.0
    assert torch.equal(focused_batch.lq[clean], focused_batch.gt[clean])
    again = focused.sample(torch.Generator().manual_seed(3))
    assert torch.equal(again.lq, focused_batch.lq) and torch.equal(again.gt, focused_batch.gt)


def test_windows_are_drawn_by_degradation_and_uniformly_when_all_clean() -> None:
    gt = torch.zeros(200, 1, 8, 8)
    lq = gt.clone()
    lq[:, :, 0, 0] = 1.0  # only the windows holding the corner pixel are degraded
    cut = degraded_windows(Batch(lq=lq, gt=gt), 4, torch.Generator().manual_seed(0))
    assert bool((cut.lq[:, 0, 0, 0] == 1.0).all())  # the one window containing (0, 0)
    clean = degraded_windows(Batch(lq=gt, gt=gt), 4, torch.Generator().manual_seed(0))
    assert clean.lq.shape == (200, 1, 4, 4)


def test_focus_is_refused_where_it_cannot_work() -> None:
    with pytest.raises(ValueError, match="focus must be"):
        PairedCropSampler(_photos(), _spot, patch=16, batch=2, focus=0)
    with pytest.raises(ValueError, match="4 × the patch size 128"):
        PairedCropSampler(_photos(), _spot, patch=32, batch=2, focus=4)
    sr = Batch(lq=torch.zeros(1, 3, 8, 8), gt=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="the size of its output"):
        degraded_windows(sr, 4, torch.Generator())
