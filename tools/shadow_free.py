"""How much a shadow remover changes photos that have no shadow: PSNR of its output against
the untouched held-out photos (higher = left more alone; the README quotes these).

    python tools/shadow_free.py --preset shadow-regression-tiny
    python tools/shadow_free.py --weights runs/shadow-regression-tiny/weights.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from irctl.engine.heldout import unchanged_psnr
from irctl.engine.restore import load_restorer
from irctl.methods.base import SampleOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shadow-regression-tiny")
    parser.add_argument("--weights", type=Path, help="a checkpoint instead of the bundled model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    restorer = load_restorer(weights=args.weights, preset=args.preset, task=None, device=device)
    label = args.weights or restorer.preset.name
    options = SampleOptions.from_preset(restorer.preset)
    for name, value in unchanged_psnr(restorer, options, seed=0, device=device).items():
        print(f"{label} {name}: {value:.2f} dB against the shadow-free photo")


if __name__ == "__main__":
    main()
