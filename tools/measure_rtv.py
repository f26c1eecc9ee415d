"""Time RTV smoothing (irctl/data/rtv.py, the texture split of DTPM) on a shipped photo resized
to each size: the numbers behind the README's "a 1-megapixel image in seconds" (issue 17 asks
for a measured row, not a timed test).

Each size is the photo `irctl benchmark` times (``chelsea``, resized as 8 bits), timed in this
process after one small warm-up call, ``--repeats`` times (the median is reported), with the
reference parameters (λ 0.01, σ 3, sharpness 0.02, 4 iterations). Also reported: the
edge-preservation figure a user cares about, the share of the photo's high-frequency energy
left in the structure S (low: the texture went to the residual).

Usage: python tools/measure_rtv.py [--sizes 512,1024,2048] [--threads 1] [--repeats 1]
       [--markdown results/rtv-cpu.md] [--json results/rtv-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from irctl.data.rtv import RTVParams, rtv_smooth
from irctl.engine.benchmark import benchmark_image
from irctl.metrics.fidelity import hf_energy_ratio


def measure(size: int, repeats: int) -> dict[str, float]:
    image = benchmark_image(size).pixels  # the held-out photo `irctl benchmark` times
    seconds = []
    structure = image
    for _ in range(repeats):
        tic = time.perf_counter()
        structure = rtv_smooth(image, RTVParams())
        seconds.append(time.perf_counter() - tic)
    return {
        "size": size,
        "megapixels": size * size / 1e6,
        "seconds": statistics.median(seconds),
        "hf_ratio_structure": hf_energy_ratio(structure, image, max_value=1.0),
    }


def markdown(rows: list[dict[str, float]], threads: int) -> str:
    lines = [
        f"| size | megapixels | seconds ({threads} thread{'s' if threads > 1 else ''}) "
        "| HF energy left in the structure |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}² | {r['megapixels']:.2f} | {r['seconds']:.2f} "
            f"| {r['hf_ratio_structure']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # warm-up: the first calls pay for kernel set-up
    rtv_smooth(benchmark_image(64).pixels, RTVParams())
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = measure(size, args.repeats)
        print(f"{size}²: {row['seconds']:.2f} s", flush=True)
        rows.append(row)
    table = markdown(rows, args.threads)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
