"""Writing all of a job's outputs as one commit: none is visible as done until all are written.

A job may have several output files (a stereo pair's two views; an image and its mask). A
resumed run must redo exactly the jobs that are not complete, and must never accept a mix of
one run's new file beside another run's old one. :func:`write_all_atomically` writes every
output to a temp file first, then renames them into place with the *first* output last: that
file is the commit marker, so :func:`all_done` — every output exists — holds only for a job whose
files come from one completed write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from irctl.io.folders import _same_file
from irctl.io.partials import PARTIAL_SUFFIX, partial_name, partial_pid, remove_stale_partials

#: (destination, writer): the writer writes the file it is given (a temp path next to the
#: destination, with the destination's suffix so encoders still pick the format from it).
OutputWrite = tuple[Path, Callable[[Path], None]]


def write_all_atomically(writes: Sequence[OutputWrite]) -> None:
    """Write every output so that :func:`all_done` never sees a mixed or partial set.

    Invariant: ``all_done(paths)`` is True only when every file exists and comes from the same
    completed call (or the destinations were untouched since one).

    1. Each writer writes a temp file next to its destination, named like
       :mod:`irctl.io.images` temp files plus the destination's suffix
       (``.scene_L.png.<pid>.<hex>.partial.png``); each is fsynced. If any raises (or writes
       nothing), the temps are removed, the error re-raised, and the destinations are
       unchanged: a previously completed set stays complete.
    2. The existing marker (first output) is removed, then the other temps are renamed into
       place, then the marker's temp last (each step made durable with a directory fsync). At
       every intermediate point of a killed run the marker is missing, so a resume finds the job
       not done and rewrites it, simply overwriting the others. Without the removal, a run
       killed while replacing an old set would leave new files beside an old marker, which
       :func:`all_done` would accept.

    Temps left by a killed process are hidden files; :func:`remove_stale_output_partials`
    deletes them. Two writers must not write
    the same outputs at the same time: ``irctl restore`` claims each job first
    (irctl/io/claims.py).
    """
    paths = [Path(path) for path, _ in writes]
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            if _same_file(first, second):
                raise ValueError(f"two outputs of one job are the same file: {first}")
    temporaries: list[Path] = []
    try:
        temps = [
            _write_temporary(path, write, temporaries)
            for path, (_, write) in zip(paths, writes, strict=True)
        ]
        marker, marker_temp = paths[0], temps[0]
        marker.unlink(missing_ok=True)
        _fsync_directory(marker.parent)
        for path, temp in zip(paths[1:], temps[1:], strict=True):
            os.replace(temp, path)
            temporaries.remove(temp)
            _fsync_directory(path.parent)
        os.replace(marker_temp, marker)
        temporaries.remove(marker_temp)
        _fsync_directory(marker.parent)
    except BaseException:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        raise


def all_done(paths: Sequence[Path]) -> bool:
    """True when every output exists; with :func:`write_all_atomically` that means the job was
    completely written by one run, so a resume may skip it."""
    return all(Path(path).is_file() for path in paths)


def _write_temporary(
    destination: Path, write: Callable[[Path], None], temporaries: list[Path]
) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(partial_name(destination.name) + destination.suffix)
    temporaries.append(temporary)  # before writing: a writer may fail half-way
    write(temporary)
    if not temporary.is_file():
        raise FileNotFoundError(f"the writer for {destination} did not create {temporary}")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    return temporary


def _fsync_directory(directory: Path) -> None:
    """Make renames/unlinks in ``directory`` durable; best effort (not on Windows)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def remove_stale_output_partials(
    directory: str | os.PathLike[str], *, min_age_s: float = 0.0
) -> list[Path]:
    """Delete temp files of :func:`write_all_atomically` left by killed runs: those end in
    ``.partial<ext>`` (e.g. ``.partial.png``), which :func:`irctl.io.partials.remove_stale_partials`
    alone does not recognise. Plain ``.partial`` temps (single outputs) go too, by the same rule:
    the writer process is gone (and the file older than ``min_age_s``)."""
    return remove_stale_partials(directory, min_age_s=min_age_s, pid_of=_output_partial_pid)


def _output_partial_pid(name: str) -> int | None:
    if name.endswith(PARTIAL_SUFFIX):
        return partial_pid(name)
    stripped, dot, _ext = name.rpartition(".")
    if not dot:
        return None
    return partial_pid(stripped)
