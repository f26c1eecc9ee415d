"""How much a shadow remover changes photos that have no shadow: PSNR of its output against
the untouched held-out photos (higher = left more alone; the README quotes these).

    python tools/shadow_free.py --preset shadow-regression-tiny
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from irctl.data.datasets import load_photo
from irctl.engine.restore import load_restorer, restore_image
from irctl.io.images import Image, to_dtype
from irctl.methods.base import SampleOptions
from irctl.metrics.fidelity import psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shadow-regression-tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    restorer = load_restorer(weights=None, preset=args.preset, task=None, device=device)
    options = SampleOptions.from_preset(restorer.preset)
    for name in restorer.preset.data.test:
        photo = to_dtype(load_photo(name), np.uint8)
        image = Image(pixels=photo / np.float32(255.0), alpha=None, dtype=np.dtype(np.uint8))
        out = restore_image(restorer, image, options, seed=0, device=device)
        value = psnr(to_dtype(np.clip(out, 0.0, 1.0), np.uint8), photo, max_value=255)
        print(f"{args.preset} {name}: {value:.2f} dB against the shadow-free photo")


if __name__ == "__main__":
    main()
