"""What the second view adds to a stereo SR model: the held-out pairs restored as they are, and
with each view fed as its own partner (L‖L for the left output, R‖R for the right), so the
cross-view attention sees nothing it could not see in the view itself. The difference is what
the trained model takes from the other view (an inference-time ablation, not a model trained
without it).

    python tools/stereo_second_view.py --preset stereo-sr-regression-tiny
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from irctl.engine.heldout import (
    heldout_photos,
    markdown_table,
    model_method,
    run_heldout,
)
from irctl.engine.models import load_restorer
from irctl.methods.base import Conditioning, SampleOptions
from irctl.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="stereo-sr-regression-tiny")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    restorer = load_restorer(weights=None, preset=args.preset, task=None, device=device)
    if restorer.preset.task != "stereo-sr":
        parser.error(f"{args.preset} is not a stereo model")
    task = get_task(restorer.preset.task)
    bicubic, upscaled_input = task.input_row(restorer.preset.degradation)
    run = model_method(restorer, SampleOptions.from_preset(restorer.preset), 0, device)

    def alone(lq: np.ndarray, cond: Conditioning) -> np.ndarray:
        left, right = lq[..., :3], lq[..., 3:]
        out_left = run(np.concatenate([left, left], axis=2), cond)[..., :3]
        out_right = run(np.concatenate([right, right], axis=2), cond)[..., 3:]
        return np.concatenate([out_left, out_right], axis=2)

    rows = run_heldout(
        heldout_photos(restorer.preset),
        {f"{args.preset}, both views": run, f"{args.preset}, each view twice": alone},
        input_label=bicubic,
        input_fn=upscaled_input,
    )
    print(markdown_table(rows, baseline=bicubic))


if __name__ == "__main__":
    main()
