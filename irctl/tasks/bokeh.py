"""Lens-to-lens bokeh transformation (NTIRE 2023): one image in, one out, conditioned on the
lens it was taken with and the lens it should look taken with. The lenses come from a table in
the source folder, the run's flags or the preset's default (irctl/io/lens_meta.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irctl.conditioning import Conditioning
from irctl.config import Preset
from irctl.data.lenses import parse_lens
from irctl.io.lens_meta import build_lens_conditioner
from irctl.tasks.base import Conditioner, Task, TaskOption

LENS_OPTIONS = (
    TaskOption(
        "src_lens",
        "--src-lens",
        "bokeh: the lens every input was taken with (e.g. Sony50mmf16.0BS).",
    ),
    TaskOption("tgt_lens", "--tgt-lens", "bokeh: the lens the outputs should look taken with."),
    TaskOption(
        "lens_meta",
        "--lens-meta",
        "bokeh: per-image lenses, CSV (file,src_lens,tgt_lens[,disparity]), JSON, or the NTIRE "
        "challenge's meta.txt (default: lenses.csv, lenses.json or meta.txt in --src).",
        Path,
    ),
    TaskOption(
        "disparity",
        "--disparity",
        "bokeh, models conditioned on it (the released latent-bokeh net): the NTIRE blur-strength "
        "disparity of every input without one in the lens table.",
        float,
    ),
)


@dataclass(frozen=True)
class BokehTask(Task):
    options: tuple[TaskOption, ...] = LENS_OPTIONS

    def conditioner(
        self, preset: Preset, src_root: Path | None, values: dict[str, Any]
    ) -> Conditioner:
        lenses = build_lens_conditioner(
            meta=values.get("lens_meta"),
            src_root=src_root,
            src_lens=values.get("src_lens"),
            tgt_lens=values.get("tgt_lens"),
            preset_default=preset.degradation.lens_default,
            disparity=values.get("disparity"),
            preset_disparity=preset.degradation.bokeh_disparity,
        )
        return lambda job: lenses(job.src)

    def neutral_conditioning(self, preset: Preset) -> Conditioning:
        """The preset's default lens pair, else its first lens to itself (the identity
        transform), and its default disparity if the model takes one: the network costs the
        same for any values."""
        deg = preset.degradation
        names = deg.lens_default or (deg.lenses[0],) * 2
        codes = tuple(parse_lens(name).code for name in names)
        extra = () if deg.bokeh_disparity is None else (deg.bokeh_disparity,)
        return Conditioning(scalars=codes + extra)
