"""What every command shares: the stderr console and exit codes."""

from __future__ import annotations

from rich.console import Console

#: Exit codes: 0 all good, 1 some inputs failed (the rest were processed), 2 usage/config error.
EXIT_OK = 0
EXIT_PARTIAL_FAILURE = 1
EXIT_USAGE = 2


def stderr_console(quiet: bool = False) -> Console:
    """Logs and progress go to stderr so stdout stays clean for `--json`."""
    return Console(stderr=True, highlight=False, soft_wrap=True, quiet=quiet)
