"""The deblurring table's baselines: Richardson–Lucy given the case's true kernel (an oracle)
and unsharp masking; and the held-out motion-blur cases keeping the kernel they were made with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irctl.config import DegradationConfig
from irctl.data.blur import convolve, random_motion_kernel, richardson_lucy
from irctl.data.datasets import load_photo
from irctl.engine.heldout import heldout_photos
from irctl.methods.classical import CLASSICAL
from irctl.metrics.fidelity import psnr
from irctl.presets import load_preset


def _crop() -> np.ndarray:
    return load_photo("chelsea")[60:188, 120:248].astype(np.float32)


def _chw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def test_richardson_lucy_with_a_delta_kernel_is_the_identity() -> None:
    image = _chw(np.clip(_crop(), 1e-3, 1.0))
    delta = torch.zeros(5, 5)
    delta[2, 2] = 1.0
    assert torch.allclose(richardson_lucy(image, delta, 10), image, atol=1e-6)


def test_richardson_lucy_given_the_true_kernel_undoes_much_of_the_blur() -> None:
    sharp = _crop()
    kernel = random_motion_kernel(15, np.random.default_rng(3))
    blurred = convolve(_chw(sharp), torch.from_numpy(kernel))[0].numpy().transpose(1, 2, 0)
    blurred8 = np.round(np.clip(blurred, 0, 1) * 255) / 255
    out = CLASSICAL["richardson-lucy-oracle"](blurred8, DegradationConfig(), {"kernel": kernel})
    before, after = psnr(blurred8, sharp, max_value=1.0), psnr(out, sharp, max_value=1.0)
    assert after > before + 2.0, (before, after)
    with pytest.raises(ValueError, match="true blur kernel"):
        CLASSICAL["richardson-lucy-oracle"](blurred8, DegradationConfig())


def test_unsharp_masking_keeps_flat_areas_and_steepens_edges() -> None:
    flat = np.full((32, 32, 3), 0.4, dtype=np.float32)
    assert np.allclose(CLASSICAL["unsharp-mask"](flat, DegradationConfig()), flat, atol=1e-6)
    edge = np.zeros((32, 32, 3), dtype=np.float32)
    edge[:, 16:] = 0.8
    soft = np.stack(
        [np.convolve(np.pad(r, 3, mode="edge"), np.ones(7) / 7, "valid") for r in edge[..., 0]]
    )
    soft = np.repeat(soft[..., None], 3, axis=2).astype(np.float32)
    sharp = CLASSICAL["unsharp-mask"](soft, DegradationConfig())
    assert np.abs(np.diff(sharp[16, :, 0])).max() > np.abs(np.diff(soft[16, :, 0])).max()


def test_held_out_blur_cases_keep_the_kernel_that_made_them() -> None:
    preset = load_preset("deblur-diffir-tiny")
    small = preset.replace(data=preset.data.__class__(test=("coffee",)))
    (photo,) = heldout_photos(small)
    kernel = photo.known["kernel"]
    assert kernel.ndim == 2 and kernel.shape[0] % 2 == 1 and kernel.sum() == pytest.approx(1.0)
    reblurred = convolve(_chw(photo.gt / np.float32(255.0)), torch.from_numpy(kernel))[0]
    lq = photo.lq.transpose(2, 0, 1)
    # the same blur up to the synthesis' sensor noise (≤ 2/255) and 8-bit rounding
    assert np.abs(reblurred.numpy() - lq).mean() < 2.5 / 255
    other = random_motion_kernel(kernel.shape[0], np.random.default_rng(0))
    wrong = convolve(_chw(photo.gt / np.float32(255.0)), torch.from_numpy(other))[0]
    assert np.abs(wrong.numpy() - lq).mean() > 2 * np.abs(reblurred.numpy() - lq).mean()
