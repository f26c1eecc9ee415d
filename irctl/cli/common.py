"""What every command shares: the stderr console and exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

try:  # Typer >= 0.26 vendors Click under a private name and does not re-export its exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # older Typer (pyproject allows >= 0.12) depends on Click itself
    from click.exceptions import ClickException  # type: ignore[no-redef]

#: Exit codes: 0 all good, 1 some inputs failed (the rest were processed), 2 usage/config error.
EXIT_OK = 0
EXIT_PARTIAL_FAILURE = 1
EXIT_USAGE = 2


#: Width of a console that is not a terminal (a log file, a pipe, CI): Rich would assume 80
#: columns and cut tables there (the benchmark's nine columns); nothing is padded to it.
UNWRAPPED_WIDTH = 1000


def stderr_console(quiet: bool = False) -> Console:
    """Logs and progress go to stderr so stdout stays clean for `--json`. Written to a file or
    a pipe, nothing is cut or wrapped at 80 columns (``COLUMNS`` still wins when set)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True, quiet=quiet)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = UNWRAPPED_WIDTH
    return console


def checked(check: Callable[[Any], object]) -> Callable[[Any], Any]:
    """An option callback running ``check`` (irctl.engine.options, irctl.io.folders) on the
    value as Typer parses it, before the command starts: its one-line ValueError becomes a
    usage error (exit 2) naming the option. Returns the value unchanged; not given (None)
    is not checked."""

    def callback(value: Any) -> Any:
        if value is None:
            return value
        try:
            check(value)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        return value

    return callback


def task_option(help: str) -> Any:
    """``--task/-t`` (default: the default task), checked as it is parsed."""
    from irctl.engine.options import check_task
    from irctl.tasks import DEFAULT_TASK

    return typer.Option(DEFAULT_TASK, "--task", "-t", help=help, callback=checked(check_task))


def preset_option(default: Any, help: str) -> Any:
    """``--preset/-p`` (a bundled preset's name or a .toml path), checked as it is parsed;
    ``...`` as the default makes it required."""
    from irctl.engine.options import check_preset

    return typer.Option(default, "--preset", "-p", help=help, callback=checked(check_preset))


def tile_layout_option() -> Any:
    """``--tile-layout`` (default even), checked as it is parsed."""
    from irctl.engine.options import check_tile_layout

    return typer.Option(
        "even",
        "--tile-layout",
        help="even: tiles shrunk to cover the image with the fewest pixels; full: every tile "
        "exactly --tile pixels, so memory and tensor shapes do not change with the image size "
        "(more pixels computed).",
        callback=checked(check_tile_layout),
    )


def self_ensemble_option() -> Any:
    """``--self-ensemble``: average the restorations of the image's symmetric versions."""
    return typer.Option(
        False,
        "--self-ensemble",
        help="Restore the image under every flip/rotation its task allows (8 for deblur, "
        "denoise, SR and inpainting; 2 or 4 where the degradation has an up) and average "
        "them, turned back: a little more fidelity for that many times the time.",
    )


def weights_option(help: str) -> Any:
    """``--weights/-w``: an existing checkpoint file."""
    return typer.Option(None, "--weights", "-w", exists=True, dir_okay=False, help=help)


def markdown_safe(text: str) -> str:
    """Help text as literal text under Typer's Markdown rendering, which drops ``<stem>`` and
    ``<preset>`` as HTML tags (the help then says ``runs/`` and ``_mask.*``)."""
    return text.replace("<", "\\<")


class _OneLineMain:
    """A command-line mistake (bad value, unknown or missing option) is one ``error:`` line on
    stderr and exit 2, like every other usage error of irctl, instead of Typer's multi-line
    box: scripts and logs read one line per problem. ``--help`` is untouched."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # the caller handles errors itself
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(1)
        except ClickException as err:
            sys.stderr.write(f"error: {one_line(err, args)}\n")
            sys.exit(err.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def one_line(err: ClickException, args: Sequence[str] = ()) -> str:
    """Click's message on one line, with the value given (Typer's range messages leave it
    out), the command it concerns and where its help is."""
    message = " ".join(err.format_message().split())
    value = given_value(args, getattr(err, "param", None))
    if value is not None and repr(value) not in message and value not in message:
        message = f"{message.rstrip('.')} (got {value!r})"
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)"
    return message


def given_value(args: Sequence[str], param: Any) -> str | None:
    """The last value given on the command line to ``param`` (``--opt V`` or ``--opt=V``)."""
    names = set(getattr(param, "opts", ())) if param is not None else set()
    value = None
    for i, arg in enumerate(args):
        name, eq, rest = arg.partition("=")
        if eq and name in names and name.startswith("--"):
            value = rest
        elif arg in names and i + 1 < len(args):
            value = args[i + 1]
    return value


class OneLineErrors(_OneLineMain, TyperGroup):
    """The app's group (irctl/cli/app.py): its commands' parse errors are one line."""


class OneLineCommand(_OneLineMain, TyperCommand):
    """The same for a command run on its own (a one-command Typer app, as tests build)."""
