"""The decoded image is held once: read_image lays its float pixels out channel-planar, so the
network's 1xCxHxW input is a view of them, not a copy (12 bytes per pixel less at the peak of a
tiled restore). A view means the methods must never write into their input: checked here for
every bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage

from irctl.engine.benchmark import benchmark_image
from irctl.engine.models import load_restorer, resolve_options
from irctl.engine.restore import restore_image
from irctl.io.images import read_image
from irctl.tasks import get_task

GOLDEN = Path(__file__).parent / "data" / "golden"
BUNDLED = json.loads((GOLDEN / "manifest.json").read_text())["presets"]


def _planar(pixels: np.ndarray) -> bool:
    return bool(pixels.transpose(2, 0, 1).flags.c_contiguous)


@pytest.mark.parametrize(
    ("suffix", "samples"),
    [
        (".png", np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3) * 2),
        (".tif", (np.arange(5 * 7 * 3, dtype=np.uint16).reshape(5, 7, 3) * 601)),
        (".tif", np.linspace(-0.5, 1.5, 5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)),
        (".png", np.arange(5 * 7, dtype=np.uint8).reshape(5, 7, 1) * 3),
    ],
)
def test_decoded_pixels_are_planar_with_the_same_values(tmp_path, suffix, samples):
    path = tmp_path / f"x{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, samples, photometric="rgb")
    else:
        PILImage.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples).save(path)
    pixels = read_image(path).pixels
    assert _planar(pixels)
    if samples.dtype.kind == "f":
        want = samples
    else:
        want = samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)
    assert pixels.shape == samples.shape and pixels.dtype == np.float32
    assert np.array_equal(pixels, want)  # bit for bit the values of an HxWxC conversion


def test_the_network_input_is_a_view_of_the_decoded_image(tmp_path):
    restorer = load_restorer(
        weights=None, preset="denoise-tiny", task=None, device=torch.device("cpu")
    )
    path = tmp_path / "in.png"
    PILImage.fromarray((np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)).save(
        path
    )
    image = read_image(path)
    seen: list[int] = []
    restore = restorer.restore

    def spy(lq, *args, **kwargs):
        seen.append(lq.data_ptr())
        return restore(lq, *args, **kwargs)

    restorer.restore = spy  # type: ignore[method-assign]
    options = resolve_options(restorer, steps=2, tile=0)
    restore_image(restorer, image, options, seed=0, device=torch.device("cpu"))
    assert seen == [image.pixels.ctypes.data]


@pytest.mark.parametrize("preset", sorted(BUNDLED))
@pytest.mark.parametrize("tile", [0, 32])
def test_no_bundled_model_writes_into_its_input(preset, tile):
    """Its input is the decoded image itself: an in-place update would corrupt what the
    output's range, alpha and metadata are taken from."""
    restorer = load_restorer(weights=None, preset=preset, task=None, device=torch.device("cpu"))
    task = get_task(restorer.preset.task)
    image = benchmark_image(48, 40, task=task)
    image.pixels = np.ascontiguousarray(image.pixels.transpose(2, 0, 1)).transpose(1, 2, 0)
    before = image.pixels.copy()
    sampling = restorer.sampling
    fixed = sampling is None or sampling.min_steps == sampling.max_steps
    steps = None if fixed else max(2, sampling.min_steps)
    options = resolve_options(restorer, steps=steps, tile=tile, overlap=8 if tile else None)
    cond = task.neutral_conditioning(restorer.preset)
    restore_image(restorer, image, options, seed=0, device=torch.device("cpu"), cond=cond)
    assert np.array_equal(image.pixels, before)
