"""Ship a finished training run as a preset's bundled weights.

    python tools/bundle_weights.py runs/shadow-tiny presets/shadow-tiny.toml

The preset must name its weights file (``weights = "weights/<name>.safetensors"``) and be the
run's preset in everything that shapes the model (a trial run under another ``name``,
``description`` or ``default`` flag ships under the preset's): the tool refuses a run trained
with other settings or for
fewer steps than the preset's ``iterations`` (its last stage's, ``[train.stages.<stage>]``). It writes the run's EMA weights with the preset's
``weights`` entry embedded (so the checkpoint's preset is the shipped TOML, which the tests
check) and the run's ``log.jsonl`` beside them (every stage's, in order). The tensors are copied unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from irctl.engine.checkpoint import atomic_save, checkpoint_metadata, load_checkpoint
from irctl.engine.train import stage_dir
from irctl.methods import build_restorer
from irctl.presets import load_preset, weights_path


def bundle(run: Path, preset_path: Path) -> Path:
    preset = load_preset(preset_path)
    target = weights_path(preset)
    if target is None:
        raise SystemExit(
            f'{preset_path}: add a `weights = "weights/{preset.name}.safetensors"` line'
        )
    ckpt = load_checkpoint(run / "weights.safetensors")
    labels = {"name", "description", "default", "weights"}  # what names a model, not shapes it
    if ckpt.preset.replace(**{k: getattr(preset, k) for k in labels}) != preset:
        raise SystemExit(f"{run} was trained with settings other than {preset_path}")
    iterations = preset.train.for_stage(ckpt.stage).iterations  # the last stage's own recipe
    if ckpt.step != iterations:
        raise SystemExit(f"{run} stopped at step {ckpt.step}, the preset trains {iterations}")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt.tensors, target, checkpoint_metadata(preset, ckpt.stage, ckpt.step))
    stages = build_restorer(preset).stages
    logs = [stage_dir(run, stages, stage) / "log.jsonl" for stage in stages]
    with target.with_name(f"{preset.name}.log.jsonl").open("w") as out:
        for log in logs:  # every stage's, in order (a multi-stage run keeps each in its folder)
            if log.is_file():
                out.write(log.read_text())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an `irctl train --out` folder")
    parser.add_argument("preset", type=Path, help="the preset TOML, with its weights line")
    args = parser.parse_args()
    print(f"wrote {bundle(args.run, args.preset)}")


if __name__ == "__main__":
    main()
