"""Where a latent Refusion model loses quality: in its sampler or in its compressor.

For each held-out photo (as `irctl compare` synthesises it), untiled, with the preset's
sampler: the RMS distance to the ground-truth latent E(GT) of the input's latent E(LQ) and of the
sampled latent ẑ0, and the PSNR against the ground truth of D(E(LQ)), D(ẑ0), D(E(GT)) (the
ceiling) and D(E(GT) + Gaussian noise as far from E(GT) as ẑ0 is), all decoded with the LQ
skips. When the last two PSNRs agree, the sampler's error acts like plain noise in the latent.

    python tools/latent_error.py --preset bokeh-latent-tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from irctl.diffusion.mrsde import gaussian_noise
from irctl.engine.heldout import heldout_photos
from irctl.engine.models import load_restorer
from irctl.io.images import to_dtype
from irctl.methods.base import SampleOptions
from irctl.methods.refusion import bind_noise_model, sample_reverse
from irctl.metrics.fidelity import psnr
from irctl.nets.layers import pad_to_multiple


def _to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    """The 8-bit image `irctl compare` scores: cropped back, clipped, written as a file would."""
    return to_dtype(np.clip(x[0, :, :h, :w].permute(1, 2, 0).numpy(), 0.0, 1.0), np.uint8)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", help="latent preset with bundled weights")
    parser.add_argument("--weights", help="a latent checkpoint instead (e.g. from irctl train)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.preset or args.weights):
        parser.error("give --preset or --weights")
    weights = Path(args.weights) if args.weights else None
    restorer = load_restorer(
        weights=weights, preset=args.preset, task=None, device=torch.device("cpu")
    )
    compressor = restorer.compressor
    options = SampleOptions.from_preset(restorer.preset, tile=0)
    print("photo | rms E(LQ) | rms z0 | D(E(LQ)) dB | D(z0) dB | D(E(GT)) dB | D(E(GT)+noise) dB")
    for photo in heldout_photos(restorer.preset):
        h, w = photo.gt.shape[:2]
        lq = pad_to_multiple(
            torch.from_numpy(photo.lq).permute(2, 0, 1)[None], compressor.config.multiple
        )
        gt = pad_to_multiple(
            torch.from_numpy(photo.gt.astype(np.float32) / 255.0).permute(2, 0, 1)[None],
            compressor.config.multiple,
        )
        mu, skips = compressor.encode(lq)
        x0, _ = compressor.encode(gt)
        cond = restorer.condition(lq, photo.cond)
        model = bind_noise_model(restorer.net, mu, cond)
        generator = torch.Generator().manual_seed(args.seed)
        noise_fn = gaussian_noise(generator)
        z0 = sample_reverse(model, mu, restorer.schedule, options, noise_fn, None)
        noise = torch.randn(x0.shape, generator=generator)
        noisy_truth = x0 + noise * _rms(z0, x0) / float(noise.pow(2).mean().sqrt())
        scores = [
            psnr(_to_uint8(compressor.decode(z, skips), h, w), photo.gt, max_value=255)
            for z in (mu, z0, x0, noisy_truth)
        ]
        print(
            f"{photo.name} | {_rms(mu, x0):.4f} | {_rms(z0, x0):.4f} | "
            + " | ".join(f"{s:.2f}" for s in scores)
        )


if __name__ == "__main__":
    main()
