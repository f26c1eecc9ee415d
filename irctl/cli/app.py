"""The `irctl` Typer application: one module per command, this file only wires them up."""

from __future__ import annotations

import typer

from irctl import __version__
from irctl.cli import benchmark_cmd, compare_cmd, eval_cmd, import_cmd, restore_cmd, train_cmd
from irctl.cli.common import OneLineErrors

app = typer.Typer(
    name="irctl",
    cls=OneLineErrors,
    help=(
        "Restore images with diffusion models (Refusion / IR-SDE) in batch.\n\n"
        "Typical use: `irctl restore --task denoise --src noisy/ --dst clean/`, then "
        "`irctl eval --pred clean/ --gt reference/`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"irctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """irctl: batch image restoration with diffusion models."""


app.command("restore")(restore_cmd.restore)
app.command("eval")(eval_cmd.evaluate)
app.command("train")(train_cmd.train)
app.command("benchmark")(benchmark_cmd.benchmark)
app.command("compare")(compare_cmd.compare)
app.command("import")(import_cmd.import_checkpoint)


def main() -> None:
    app()
