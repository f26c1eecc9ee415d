"""The 4-pixel grid in `irctl compare` outputs: grid_amplitude (irctl/metrics/artifacts.py, RMS of
the 4-periodic pattern in 8-bit luma levels) of every method folder's images, beside the ground
truth's, mean over the held-out photos.

    python tools/grid.py results/shadow results/dehaze
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from irctl.metrics.artifacts import grid_amplitude


def folder_amplitudes(folder: Path) -> dict[str, float]:
    amplitudes = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as im:
            amplitudes[path.stem] = grid_amplitude(np.asarray(im.convert("RGB")), max_value=255)
    return amplitudes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="`irctl compare --out` folders")
    args = parser.parse_args()
    for results in args.results:
        folders = sorted(p for p in results.iterdir() if p.is_dir())
        folders = [p for p in folders if any(p.glob("*.png"))]
        folders.sort(key=lambda p: p.name != "gt")  # ground truth first
        for folder in folders:
            values = folder_amplitudes(folder)
            each = ", ".join(f"{name} {value:.2f}" for name, value in values.items())
            print(f"{results}/{folder.name}: {np.mean(list(values.values())):.2f} ({each})")


if __name__ == "__main__":
    main()
