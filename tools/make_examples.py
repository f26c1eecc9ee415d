"""Write the bundled example inputs: each task's held-out LQ photos, exactly as `irctl compare`
synthesises them (tests check they agree), plus bokeh's per-image lens table.

    python tools/make_examples.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from irctl.data.lenses import LENSES
from irctl.engine.heldout import heldout_photos
from irctl.io.images import write_image
from irctl.presets import default_preset_for_task, load_preset

REPO = Path(__file__).resolve().parent.parent
#: task → folder of LQ inputs under examples/
EXAMPLES = {
    "denoise": "noisy",
    "dehaze": "hazy",
    "bokeh": "in",
    "shadow": "shadowed",
    "stereo-sr": "lr",
    "sr4": "lr",
    "deblur": "blurred",
    "desnow": "snowy",
    "defocus": "defocused",
    "derain-dehaze": "rainy",
    "inpaint": "holes",
}


def view_files(name: str, lq: np.ndarray) -> dict[str, np.ndarray]:
    """File name → pixels: one file per photo, a stereo case as <name>_L.png + <name>_R.png,
    an inpainting case ``[image·(1 − m), m]`` as <name>.png + its white-hole <name>_mask.png
    (the names `irctl restore` pairs)."""
    if lq.shape[2] == 3:
        return {f"{name}.png": lq}
    if lq.shape[2] == 4:
        return {f"{name}.png": lq[..., :3], f"{name}_mask.png": np.repeat(lq[..., 3:], 3, axis=2)}
    return {f"{name}_L.png": lq[..., :3], f"{name}_R.png": lq[..., 3:]}


def lens_name(code: float) -> str:
    return next(name for name, lens in LENSES.items() if abs(lens.code - code) < 1e-4)


def main() -> None:
    for task, folder in EXAMPLES.items():
        preset = load_preset(default_preset_for_task(task))
        out = REPO / "examples" / task / folder
        rows = []
        for photo in heldout_photos(preset):
            for file_name, pixels in view_files(photo.name, photo.lq).items():
                write_image(out / file_name, np.clip(pixels, 0.0, 1.0), dtype=np.uint8)
            if photo.cond.scalars:
                rows.append((f"{photo.name}.png", *(lens_name(c) for c in photo.cond.scalars)))
        if rows:
            with (out / "lenses.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["file", "src_lens", "tgt_lens"])
                writer.writerows(rows)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
