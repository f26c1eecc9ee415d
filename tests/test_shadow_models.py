"""The bundled shadow regression baseline leaves a photo without a shadow nearly unchanged, and
still removes cast shadows (so an identity map cannot pass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.engine.heldout import heldout_photos, model_method, run_heldout, unchanged_psnr
from irctl.engine.models import load_restorer
from irctl.methods.base import Conditioning, SampleOptions
from irctl.metrics.artifacts import grid_amplitude

CPU = torch.device("cpu")

#: The held-out photo with neither a cast shadow nor a dark sky: `coffee`'s cup casts a real
#: shadow on the saucer (removing it is right), and `rocket`'s dusk sky is read as an umbra by
#: the tiny models (a known failure, README).
SHADOW_FREE_PHOTOS = ("chelsea",)
#: Given clean, it must come back within this PSNR of itself (measured: 31.4 dB; the same
#: recipe without ICNR gave 31.7 dB, and a 1 000-step checkpoint of that run, which still
#: lifted the cat's dark background, 29.2 dB).
NEARLY_UNCHANGED_DB = 30.0
#: ... while cast shadows on the held-out photos are lifted by at least this much on average
#: (measured: +6.9 dB).
SHADOW_GAIN_DB = 3.0
#: ... and its outputs carry no pixel-shuffle grid: mean grid_amplitude (8-bit luma levels) of
#: the held-out outputs (measured: 0.15 with ICNR-initialised upsamplers, 0.44 without; the
#: ground truth 0.07).
GRID_AMPLITUDE = 0.3


@pytest.fixture(scope="module")
def regression():
    restorer = load_restorer(weights=None, preset="shadow-regression-tiny", task=None, device=CPU)
    return restorer, SampleOptions.from_preset(restorer.preset)


def test_a_shadow_free_photo_is_left_nearly_unchanged(regression) -> None:
    restorer, options = regression
    values = unchanged_psnr(restorer, options, seed=0, device=CPU, names=SHADOW_FREE_PHOTOS)
    assert set(values) == set(SHADOW_FREE_PHOTOS)
    for name, value in values.items():
        assert value >= NEARLY_UNCHANGED_DB, f"{name}: {value:.2f} dB"


def test_cast_shadows_are_still_removed(regression) -> None:
    restorer, options = regression
    run = model_method(restorer, options, seed=0, device=CPU)
    rows = run_heldout(heldout_photos(restorer.preset), {"regression": run})
    psnr_of = {(row.photo, row.method): row.psnr for row in rows}
    names = restorer.preset.data.test
    gains = [psnr_of[name, "regression"] - psnr_of[name, "input"] for name in names]
    assert np.mean(gains) >= SHADOW_GAIN_DB, gains


def test_outputs_carry_no_pixel_grid(regression) -> None:
    restorer, options = regression
    run = model_method(restorer, options, seed=0, device=CPU)
    amplitudes = [
        grid_amplitude(np.clip(run(photo.lq, Conditioning()), 0.0, 1.0), max_value=1.0)
        for photo in heldout_photos(restorer.preset)
    ]
    assert np.mean(amplitudes) <= GRID_AMPLITUDE, amplitudes
