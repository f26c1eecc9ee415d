"""`irctl benchmark`: seconds per image, megapixels per second, peak memory, tiling error."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from irctl.cli.common import (
    EXIT_USAGE,
    checked,
    preset_option,
    self_ensemble_option,
    stderr_console,
    task_option,
    tile_layout_option,
    weights_option,
)
from irctl.config import PresetError
from irctl.engine.options import (
    check_device,
    check_preset,
    parse_names,
    parse_sizes,
    parse_tiles,
)
from irctl.io.folders import check_output_file


def benchmark(
    task: str = task_option("Task whose bundled model to time."),
    preset: str = preset_option(None, "Preset with bundled weights."),
    weights: Path = weights_option("A .safetensors checkpoint."),
    sizes: str = typer.Option(
        "256,1024",
        "--sizes",
        help="Image sizes, comma-separated: 1024 (square) or WIDTHxHEIGHT, e.g. 6000x4000.",
        callback=checked(parse_sizes),
    ),
    tiles: str = typer.Option(
        "256",
        "--tiles",
        help="Tile sizes to time, comma-separated (0 = untiled).",
        callback=checked(parse_tiles),
    ),
    steps: int = typer.Option(
        None, "--steps", min=1, help="Sampling steps (default: the preset's)."
    ),
    sampler: str = typer.Option(None, "--sampler", help="One of the model's samplers."),
    tile_overlap: int = typer.Option(
        None, "--tile-overlap", min=0, help="Overlap between tiles, below each tile."
    ),
    tile_batch: int = typer.Option(
        None, "--tile-batch", min=1, help="Tiles per network call (default: the preset's)."
    ),
    tile_layout: str = tile_layout_option(),
    self_ensemble: bool = self_ensemble_option(),
    compare_untiled: bool = typer.Option(
        True,
        "--compare-untiled/--no-compare-untiled",
        help="Also run untiled and report the max abs difference of each tiled output.",
    ),
    flops: str = typer.Option(
        None,
        "--flops",
        help="Count GMACs per image and per step at 256² for these presets (comma-separated), "
        "then the benchmarked model; the last column compares each to it.",
        callback=checked(lambda text: [check_preset(name) for name in parse_names(text)]),
    ),
    random_weights: bool = typer.Option(
        False,
        "--random-weights",
        help="Time a --preset whose weights are not here (e.g. an official size) with seeded "
        "random weights: speed and memory only, the outputs mean nothing.",
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(
        "auto", "--device", help="auto | cpu | cuda | cuda:N.", callback=checked(check_device)
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    out: Path = typer.Option(
        None,
        "--out",
        dir_okay=False,
        help="Write the results as JSON to this file.",
        callback=checked(check_output_file),
    ),
    markdown: Path = typer.Option(
        None,
        "--markdown",
        dir_okay=False,
        help="Write the table as Markdown here.",
        callback=checked(check_output_file),
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Measure restore speed, peak memory and the error tiling introduces.

    A held-out photo is resized to each size and restored with each tile size, each in a fresh
    process: seconds per image, megapixels per second, peak memory (the process's peak RSS on
    CPU, torch included; max allocated on CUDA) and the largest absolute difference between the
    tiled and the untiled output (pixel values in [0,1]). A size or tile that runs out of
    memory is a row saying so; the others are still measured, and the exit code is 1.
    """
    import torch

    from irctl.engine.benchmark import (
        ModelSpec,
        flops_markdown,
        markdown_table,
        restore_flops,
        rows_as_dicts,
        run_benchmark,
        size_label,
        tile_label,
    )
    from irctl.engine.checkpoint import CheckpointError
    from irctl.engine.device import resolve_device
    from irctl.engine.models import load_restorer, resolve_options

    console = stderr_console()
    try:
        torch_device = resolve_device(device)
        restorer = load_restorer(
            weights=weights,
            preset=preset,
            task=task,
            device=torch_device,
            random_weights=random_weights,
        )
    except (CheckpointError, PresetError, ValueError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if threads:
        torch.set_num_threads(threads)
    size_list, tile_list = parse_sizes(sizes), parse_tiles(tiles)
    try:
        defaults = resolve_options(restorer, sampler=sampler, steps=steps)
        steps, sampler = defaults.steps, defaults.sampler
        for tile in tile_list:  # checked here, not in a measuring process minutes later
            resolve_options(
                restorer,
                tile=tile,
                overlap=tile_overlap,
                tile_batch=tile_batch,
                tile_layout=tile_layout,
            )
        others = [
            load_restorer(weights=None, preset=name.strip(), task=None, device=torch_device)
            for name in (flops or "").split(",")
            if name.strip()
        ]
    except (CheckpointError, PresetError, ValueError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    console.print(
        f"benchmarking {restorer.preset.name} on {torch_device} "
        f"({torch.get_num_threads()} threads): sampler {sampler}, {steps} steps"
    )
    table = Table(title=f"irctl benchmark — {restorer.preset.name}, {torch_device}")
    for col in (
        "size",
        "tile",
        "per call",
        "steps",
        "s / image",
        "MP/s",
        "peak MiB",
        "max |Δ|",
        "PSNR Δ",
    ):
        table.add_column(col, justify="right")

    def on_row(row) -> None:
        size, tile = size_label(row.size, row.height), tile_label(row)
        where = f"{size} tile {tile}"
        if row.error is not None:
            console.print(f"  {where}: {row.error}", markup=False)
            table.add_row(size, tile, "—", str(row.steps), row.error, "—", "—", "—", "—")
            return
        diff = "—" if row.max_abs_diff_vs_untiled is None else f"{row.max_abs_diff_vs_untiled:.2e}"
        agreement = "—" if row.psnr_vs_untiled is None else f"{row.psnr_vs_untiled:.1f} dB"
        console.print(
            f"  {where}: {row.seconds:.2f} s, {row.peak_memory_mib:.0f} MiB peak", markup=False
        )
        table.add_row(
            size,
            tile,
            str(row.tile_batch) if row.tile else "—",
            str(row.steps),
            f"{row.seconds:.2f}",
            f"{row.megapixels_per_second:.4f}",
            f"{row.peak_memory_mib:.0f}",
            diff,
            agreement,
        )

    # The parent loaded the model once to validate the options; each measurement reloads it in
    # a fresh process, from the same weights (an explicit --weights, else the preset's).
    spec = ModelSpec(
        weights=str(weights) if weights else None,
        preset=None if weights else (preset if random_weights else restorer.preset.name),
        task=task,
        device=str(torch_device),
        threads=torch.get_num_threads(),
        random_weights=random_weights,
    )
    rows = run_benchmark(
        spec,
        restorer.preset,
        sizes=size_list,
        tiles=tile_list,
        steps=steps,
        sampler=sampler,
        overlap=tile_overlap,
        tile_batch=tile_batch,
        tile_layout=tile_layout,
        self_ensemble=self_ensemble,
        seed=seed,
        compare_untiled=compare_untiled,
        on_row=on_row,
    )
    console.print(table)
    flops_rows = []
    if flops is not None:
        for r in [*others, restorer]:
            flops_rows.append(restore_flops(r, 256, resolve_options(r)))
        console.print(flops_markdown(flops_rows), markup=False)
    result = {
        "preset": restorer.preset.name,
        "device": str(torch_device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows_as_dicts(rows),
        "flops": [asdict(r) for r in flops_rows],
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(
            markdown_table(rows) + (f"\n{flops_markdown(flops_rows)}" if flops_rows else "")
        )
    if json_out:
        typer.echo(json.dumps(result))
    failed = [r for r in rows if r.error is not None]
    if failed:
        console.print(f"{len(failed)} of {len(rows)} measurements could not run (see above)")
        raise typer.Exit(1)
