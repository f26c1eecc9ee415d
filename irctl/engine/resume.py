"""Which jobs a run restores: the finished ones are skipped, and a job another run is restoring
on the same ``--dst`` is left to it.

A job counts as finished only when every output exists and passes
:func:`irctl.io.verify.output_problem` at the size its task expects (read from the inputs'
headers): a truncated, empty or wrong-sized output is redone, with a line saying why. Concurrent
runs split the work through claim files (irctl/io/claims.py): a job is claimed in the reader
thread before it is read, checked again once claimed (another run may have committed it in the
meantime), and released when it is committed or has failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from irctl.config import DegradationConfig
from irctl.io.claims import Claim, claim
from irctl.io.outputs import all_done
from irctl.io.verify import output_problem
from irctl.tasks.base import Job, Task


@dataclass(frozen=True)
class Unfinished:
    """Why a job is not done: ``reason`` None when some output is simply not there yet (a job
    never started or cut short before its commit), else the output at fault and what is wrong."""

    path: Path | None = None
    reason: str | None = None


def unfinished(task: Task, job: Job, degradation: DegradationConfig) -> Unfinished | None:
    """None when every output of ``job`` is there, complete and of the expected size."""
    if not all_done(list(job.outputs.values())):
        return Unfinished()
    expected = task.output_sizes(job, degradation)
    for role, path in job.outputs.items():
        problem = output_problem(path, expected.get(role))
        if problem is not None:
            return Unfinished(path, problem)
    return None


class JobClaims:
    """The claims this run holds, one per job (on its first output), and the check that a
    claimed job is still to do. Thread-safe: reader threads claim, writer threads release."""

    def __init__(
        self,
        task: Task,
        degradation: DegradationConfig,
        *,
        recheck: bool,
        on_info: Callable[[str], None],
    ) -> None:
        self._task = task
        self._degradation = degradation
        self._recheck = recheck
        self._info = on_info
        self._held: dict[Path, Claim] = {}  # by the job's first output
        self._lock = threading.Lock()

    def acquire(self, job: Job) -> bool:
        """Claim ``job``; False when another run holds it or has finished it meanwhile."""
        attempt = claim(job.dst)
        if attempt.claim is None:
            return False
        if attempt.holder is not None:
            self._info(
                f"taking over {job.dst}: its claim ({attempt.holder.describe()}) was left by "
                "a run that is gone"
            )
        with self._lock:
            self._held[job.dst] = attempt.claim
        if self._recheck and unfinished(self._task, job, self._degradation) is None:
            self.release(job)
            return False
        return True

    def release(self, job: Job) -> None:
        """Drop ``job``'s claim (after its commit or failure); a no-op when none is held."""
        with self._lock:
            held = self._held.pop(job.dst, None)
        if held is not None:
            held.release()

    def release_all(self) -> None:
        """Drop every claim still held (the run is ending, e.g. interrupted)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for one in held:
            one.release()
