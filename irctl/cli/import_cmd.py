"""`irctl import`: convert an official checkpoint (.pth/.ckpt) into an irctl checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from irctl.cli.common import EXIT_OK, EXIT_USAGE, checked, preset_option, stderr_console
from irctl.engine.options import check_overrides
from irctl.io.folders import check_output_file


def import_checkpoint(
    sources: list[Path] = typer.Option(
        ...,
        "--from",
        "-f",
        exists=True,
        dir_okay=False,
        help="The authors' checkpoint file (.pth, .ckpt); twice for a model released as two "
        "files (latent Refusion: compressor and noise network).",
    ),
    preset: str = preset_option(..., "The preset of the released model (name or .toml path)."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        dir_okay=False,
        help="The .safetensors file to write.",
        callback=checked(lambda path: check_output_file(path, (".safetensors",))),
    ),
    key: str = typer.Option(
        None,
        "--key",
        help="Where the weights sit in the file (e.g. params for BasicSR's non-EMA weights); "
        "default: found (params_ema, params, state_dict, ...), a module. prefix removed.",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a preset value, e.g. --set network.width=32 (repeatable).",
        callback=checked(check_overrides),
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Import the authors' released weights safely: the file's tensors are read without running
    any code from it (a pickle that tries to call anything is refused), every key and shape is
    checked against the preset's network, and OUT gets the weights with the preset embedded,
    ready for `irctl restore --weights OUT`.
    """
    from irctl.config import PresetError
    from irctl.engine.importer import import_official
    from irctl.engine.models import UsageError
    from irctl.presets import apply_overrides, load_preset

    console = stderr_console()
    try:
        resolved = apply_overrides(load_preset(preset), list(set_))
        result = import_official(list(sources), resolved, out, key=key)
    except (PresetError, UsageError) as err:
        console.print(f"error: {err}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    for path, digest in result.sha256.items():
        console.print(f"read {path} (sha256 {digest})", markup=False)
    console.print(
        f"imported {result.tensors} tensors ({result.parameters / 1e6:.2f} M parameters) → {out}",
        markup=False,
    )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "out": str(out),
                    "tensors": result.tensors,
                    "parameters": result.parameters,
                    "sha256": result.sha256,
                    "preset": resolved.name,
                }
            )
        )
    raise typer.Exit(EXIT_OK)
