"""How much a shadow remover changes photos that have no shadow: PSNR of its output against
the untouched held-out photos (higher = left more alone; the README quotes these).

    python tools/shadow_free.py --preset shadow-regression-tiny
    python tools/shadow_free.py --weights runs/shadow-regression-tiny/weights.safetensors
    python tools/shadow_free.py --preset shadow-regression-tiny --sky-gradient

``--sky-gradient`` asks *what* in ``rocket`` is read as an umbra: a structureless vertical
gradient from its dusk sky's zenith colour to its horizon colour (no towers, no edge, nothing a
cast shadow has), restored untiled at several sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from irctl.data.datasets import load_photo
from irctl.engine.heldout import psnr_against_itself, unchanged_psnr
from irctl.engine.models import load_restorer
from irctl.io.images import to_dtype
from irctl.methods.base import Restorer, SampleOptions

#: Rows of ``rocket`` (427 px high) averaged for its sky's zenith and horizon colours, over
#: columns 100-250 (sky between the left tower and the rocket).
ZENITH_ROWS, HORIZON_ROWS, SKY_COLUMNS = slice(0, 10), slice(290, 300), slice(100, 250)


def sky_gradient(height: int) -> np.ndarray:
    """A height × 1.5·height float32 image: rocket's zenith colour at the top, fading linearly
    to its horizon colour at the bottom, identical along every row."""
    rocket = load_photo("rocket")
    zenith = rocket[ZENITH_ROWS, SKY_COLUMNS].mean(axis=(0, 1))
    horizon = rocket[HORIZON_ROWS, SKY_COLUMNS].mean(axis=(0, 1))
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = zenith * (1.0 - t) + horizon * t
    return np.broadcast_to(column, (height, height * 3 // 2, 3)).astype(np.float32)


def sky_gradient_psnr(restorer: Restorer, device: torch.device, height: int) -> float:
    """PSNR (8-bit) of the restorer's output of :func:`sky_gradient` against its input, untiled."""
    options = SampleOptions.from_preset(restorer.preset, tile=2 * height)
    gradient8 = {"sky": to_dtype(sky_gradient(height), np.uint8)}
    return psnr_against_itself(restorer, options, 0, device, gradient8)["sky"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shadow-regression-tiny")
    parser.add_argument("--weights", type=Path, help="a checkpoint instead of the bundled model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--sky-gradient", action="store_true", help="also restore rocket's sky without rocket"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    restorer = load_restorer(weights=args.weights, preset=args.preset, task=None, device=device)
    label = args.weights or restorer.preset.name
    options = SampleOptions.from_preset(restorer.preset)
    for name, value in unchanged_psnr(restorer, options, seed=0, device=device).items():
        print(f"{label} {name}: {value:.2f} dB against the shadow-free photo")
    if args.sky_gradient:
        for height in (128, 256, 512):
            value = sky_gradient_psnr(restorer, device, height)
            print(f"{label} rocket's sky as a plain gradient, {height} px high: {value:.2f} dB")


if __name__ == "__main__":
    main()
