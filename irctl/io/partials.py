"""Partial files: every output is written under a temp name beside it and renamed into place,
so a killed run never leaves a truncated file under a real name; a later run removes the temp
files whose writers are gone.

The temp name ``.{name}.{pid}.{hex}.partial`` carries the writer's pid, so runs sharing an
output folder (shards, a rerun beside a live one) never delete each other's files in flight.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_name(name: str) -> str:
    """The temp name a file called ``name`` is written under: hidden, the writer's pid and a
    random tag (so shards never collide), cut to stay under common 255-byte name limits."""
    return f".{name[:200]}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def atomic_write_bytes(destination: Path, data: bytes) -> None:
    """Write via a temp file in the same directory (same filesystem, so replace is atomic)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(partial_name(destination.name))
    created = False
    try:
        with open(temporary, "xb") as handle:
            created = True
            handle.write(data)
        os.replace(temporary, destination)
    except BaseException:
        if created:
            temporary.unlink(missing_ok=True)
        raise


def remove_stale_partials(
    directory: str | os.PathLike[str],
    *,
    min_age_s: float = 0.0,
    pid_of: Callable[[str], int | None] | None = None,
) -> list[Path]:
    """Delete temp files left in ``directory`` (recursively) by a killed run.

    Only files named like :func:`atomic_write_bytes`'s temp files are touched (``pid_of`` reads the
    writer's pid from another naming, e.g. irctl/io/outputs.py's, None for other files). A temp
    file whose writer process is still alive on this machine is kept, so shards sharing an
    output folder do not delete each other's in-flight writes; ``min_age_s`` additionally keeps
    recent ones, for writers on other machines of a shared filesystem.
    """
    removed: list[Path] = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            candidate = Path(root) / name
            if _is_stale_partial(candidate, min_age_s, pid_of or partial_pid):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return sorted(removed)


def _is_stale_partial(
    candidate: Path, min_age_s: float, pid_of: Callable[[str], int | None]
) -> bool:
    pid = pid_of(candidate.name)
    if pid is None or process_alive(pid):
        return False
    if min_age_s <= 0:
        return True
    try:
        age = time.time() - candidate.stat().st_mtime
    except OSError:
        return False
    return age >= min_age_s


def partial_pid(name: str) -> int | None:
    """The writer's pid for names like ``.{name}.{pid}.{hex}.partial``, else None."""
    if not (name.startswith(".") and name.endswith(PARTIAL_SUFFIX)):
        return None
    parts = name[: -len(PARTIAL_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or len(parts[0]) < 2 or not parts[1].isdigit():
        return None
    try:
        int(parts[2], 16)
    except ValueError:
        return None
    return int(parts[1])


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (never on Windows, where probing would
    signal it)."""
    if os.name != "posix":  # os.kill(pid, 0) would signal the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True
