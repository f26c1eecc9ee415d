"""Side-by-side crops of `irctl compare` outputs, for the README: one row per crop, one column per
method folder (ground truth last), each crop enlarged with nearest-neighbour so pixels stay
pixels.

    python tools/crops.py --results results/stereo-sr --crop coffee_L:220,150,96 \
        --crop rocket_R:300,200,96 --out results/stereo-sr/crops.png

Columns default to every method folder of the results (in table order, from per_image.csv),
then ``gt``. A crop is ``image:x,y,size`` (top-left corner and side, in output pixels).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from irctl.engine.heldout import folder_name

LABEL_HEIGHT = 14


def method_folders(results: Path) -> list[str]:
    """The compare run's method folders in table order, then the ground truth."""
    with (results / "per_image.csv").open() as fh:
        methods = [row["name"].split("/", 1)[1] for row in csv.DictReader(fh)]
    return [folder_name(m) for m in dict.fromkeys(methods)] + ["gt"]


def parse_crop(text: str) -> tuple[str, int, int, int]:
    image, _, box = text.partition(":")
    x, y, size = (int(v) for v in box.split(","))
    return image, x, y, size


def crop_grid(
    results: Path, crops: list[tuple[str, int, int, int]], folders: list[str], zoom: int
) -> Image.Image:
    tiles = []
    for image, x, y, size in crops:
        row = []
        for folder in folders:
            with Image.open(results / folder / f"{image}.png") as im:
                patch = np.asarray(im.convert("RGB"))[y : y + size, x : x + size]
            row.append(np.kron(patch, np.ones((zoom, zoom, 1), dtype=np.uint8)))
        tiles.append(row)
    side = tiles[0][0].shape[0]
    gap = 4
    width = len(folders) * (side + gap) - gap
    height = LABEL_HEIGHT + len(crops) * (side + gap) - gap
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for j, folder in enumerate(folders):
        draw.text((j * (side + gap) + 2, 1), folder[: side // 6], fill="black")
        for i, row in enumerate(tiles):
            sheet.paste(
                Image.fromarray(row[j]), (j * (side + gap), LABEL_HEIGHT + i * (side + gap))
            )
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, required=True, help="an `irctl compare --out` folder"
    )
    parser.add_argument("--crop", action="append", required=True, help="image:x,y,size")
    parser.add_argument("--methods", help="comma-separated method folders (default: all, then gt)")
    parser.add_argument("--zoom", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folders = args.methods.split(",") if args.methods else method_folders(args.results)
    sheet = crop_grid(args.results, [parse_crop(c) for c in args.crop], folders, args.zoom)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({', '.join(folders)})")


if __name__ == "__main__":
    main()
