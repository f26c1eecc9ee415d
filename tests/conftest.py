"""Shared fixtures. Never `import tests` (a third-party wheel ships a top-level `tests` package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from irctl.presets import apply_overrides, load_preset

TINY_OVERRIDES = [
    "network.width=8",
    "network.enc_blocks=[1, 1]",
    "network.dec_blocks=[1, 1]",
    "diffusion.T=20",
    "sampler.steps=20",
    "sampler.tile=0",
    "train.batch=2",
    "train.patch=32",
    "train.iterations=3",
    "train.val_every=0",
    "train.log_every=1",
    "train.checkpoint_every=3",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use tiny tensors, where intra-op threads on a 2-core machine only contend."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Refusion checkpoint trained for 3 steps (so no layer is still at its zero init)."""
    from irctl.engine.train import train

    preset = apply_overrides(load_preset("denoise-tiny"), TINY_OVERRIDES)
    out = tmp_path_factory.mktemp("tiny-run")
    return train(preset, out).weights


@pytest.fixture()
def photo_crops() -> list[np.ndarray]:
    """Small crops of a held-out photo, float32 HxWx3 in [0, 1]."""
    from irctl.data.datasets import load_photo

    photo = load_photo("chelsea")
    return [photo[y : y + 40, x : x + 48] for y, x in ((0, 0), (100, 150), (200, 300))]


@pytest.fixture()
def src_folder(tmp_path: Path, photo_crops: list[np.ndarray]) -> Path:
    """The crops as 8-bit PNGs img0…img2.png in ``tmp_path/src``."""
    from irctl.io.images import write_image

    src = tmp_path / "src"
    for i, crop in enumerate(photo_crops):
        write_image(src / f"img{i}.png", crop, dtype=np.uint8)
    return src


def save_array(path: Path, array: np.ndarray) -> Path:
    """Write an array with PIL (or tifffile for .tif) — an encoder independent of irctl's."""
    import tifffile
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    else:
        PILImage.fromarray(array).save(path)
    return path
