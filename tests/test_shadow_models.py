"""The bundled shadow regression baseline leaves a photo without a shadow nearly unchanged, and
still removes cast shadows (so an identity map cannot pass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.engine.heldout import heldout_photos, model_method, run_heldout, unchanged_psnr
from irctl.engine.restore import load_restorer
from irctl.methods.base import SampleOptions

CPU = torch.device("cpu")

#: The held-out photo with neither a cast shadow nor a dark sky: `coffee`'s cup casts a real
#: shadow on the saucer (removing it is right), and `rocket`'s dusk sky is read as an umbra by
#: the tiny models (a known failure, README).
SHADOW_FREE_PHOTOS = ("chelsea",)
#: Given clean, it must come back within this PSNR of itself (measured: 31.7 dB; a checkpoint
#: of the same run at 1 000 steps, which still lifted the cat's dark background, gave 29.2 dB).
NEARLY_UNCHANGED_DB = 30.0
#: ... while cast shadows on the held-out photos are lifted by at least this much on average
#: (measured: +5.1 dB).
SHADOW_GAIN_DB = 3.0


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
