"""Every shipped preset names photos that exist here, and never trains on the ones it tests on."""

from __future__ import annotations

import numpy as np
import pytest

from irctl.data.datasets import load_photo, load_photos
from irctl.presets import available_presets, load_preset


@pytest.mark.parametrize("name", available_presets())
def test_preset_splits_are_shipped_photos_and_disjoint(name: str) -> None:
    preset = load_preset(name)
    data = preset.data
    assert not set(data.test) & set(data.train), "a held-out photo is trained on"
    assert not set(data.val) & set(data.train), "the validation photo is trained on"
    # what training and `irctl compare` load: RGB photos, or L‖R pairs for stereo presets
    names = sorted({*data.train, *data.val, *data.test})
    channels = 6 if preset.degradation.kind == "stereo_sr" else 3
    for image in load_photos(names, preset.degradation):
        assert image.ndim == 3 and image.shape[2] == channels and image.dtype == np.float32


def test_unknown_photo_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="no photo named 'no_such_photo'"):
        load_photo("no_such_photo")
