"""The streaming restore loop: reader threads decode, the device restores, writer threads encode.

One loop for every task: a job is named input files and named output files (irctl/tasks/), the
task reads and conditions it in the reader threads, the device thread runs the model, and the
writer threads write all of a job's outputs as one commit (irctl/io/outputs.py).

Per job, everything that can go wrong (unreadable input, missing metadata, a model error, a
failed write) is reported through ``on_error`` as one line naming the file and the reason, and
the batch goes on. After a crash or SIGKILL a job's outputs are either all complete or not done;
a rerun skips the finished jobs (unless ``overwrite``) and removes stale temp files.

:func:`restore_folder` is the whole of ``irctl restore`` short of parsing and printing: find the
inputs, load the model, validate the options once, plan, shard, and run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import numpy as np
import torch

from irctl.config import Preset, PresetError
from irctl.engine.checkpoint import CheckpointError
from irctl.engine.device import resolve_device
from irctl.engine.models import (
    UsageError,
    describe_sampling,
    load_restorer,
    resolve_options,
    set_threads,
)
from irctl.io.folders import discover, shard
from irctl.io.images import Image, ImageReadError, write_image
from irctl.io.outputs import all_done, remove_stale_output_partials, write_all_atomically
from irctl.methods.base import Conditioning, Restorer, SampleOptions
from irctl.tasks import DEFAULT_TASK, all_task_options, get_task
from irctl.tasks.base import Conditioner, Job, OutputImage, Plan, Task, as_rgb, in_layout_of

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class RestoreSummary:
    restored: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0


def _to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWxC float → 1xCxHxW on the device."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].to(device)


def restore_array(
    restorer: Restorer,
    pixels: np.ndarray,
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    callback: Callable[[int, int], None] | None = None,
    cond: Conditioning | None = None,
) -> np.ndarray:
    """Restore one model input (HxWxC float): the model's output as HxWxC float, unclipped.
    The generator is seeded per image, so an image's output does not depend on which other
    images were in the batch, on sharding, or on resuming; the global conditioning is computed
    once, on the whole image."""
    generator = torch.Generator().manual_seed(seed)
    lq = _to_tensor(pixels, device)
    with torch.inference_mode():
        condition = restorer.condition(lq, cond if cond is not None else Conditioning())
        restored = restorer.restore(lq, condition, options, generator, callback)
    return restored[0].float().cpu().numpy().transpose(1, 2, 0)


def restore_image(
    restorer: Restorer,
    image: Image,
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    callback: Callable[[int, int], None] | None = None,
    cond: Conditioning | None = None,
) -> np.ndarray:
    """Restore one decoded image given as the model's input (grey made RGB): the output in
    the image's layout and value range."""
    out = restore_array(
        restorer, as_rgb(image), options, seed=seed, device=device, callback=callback, cond=cond
    )
    return in_layout_of(out, image)


def read_ahead(
    jobs: list[J], workers: int, depth: int, read: Callable[[J], R]
) -> Iterator[tuple[J, R | str]]:
    """Decode in background threads, at most ``depth`` jobs ahead, in job order; a job that
    cannot be read comes with its one-line reason instead (``read`` may also return one)."""
    pending: queue.Queue[tuple[J, Future[R]]] = queue.Queue()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="irctl-read") as pool:
        it = iter(jobs)
        for job in it:
            pending.put((job, pool.submit(read, job)))
            if pending.qsize() >= depth:
                break
        while not pending.empty():
            job, fut = pending.get()
            try:
                yield job, fut.result()
            except ImageReadError as err:
                yield job, err.reason
            except Exception as err:
                yield job, f"cannot read: {err}"
            nxt = next(it, None)
            if nxt is not None:
                pending.put((nxt, pool.submit(read, nxt)))


@dataclass(frozen=True)
class _Decoded:
    """What a reader thread hands the device thread: the job's images and conditioning."""

    images: dict[str, Image]
    cond: Conditioning


def run_jobs(
    restorer: Restorer,
    task: Task,
    jobs: list[Job],
    options: SampleOptions,
    *,
    seed: int,
    device: torch.device,
    on_error: Callable[[Path, str], None],
    on_done: Callable[[Job, float], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    conditioner: Conditioner | None = None,
    readers: int = 2,
    writers: int = 2,
) -> RestoreSummary:
    """Restore every job; never raises for a per-job problem. ``conditioner`` gives each job's
    task-specific inputs (bokeh: its lenses); it runs in the reader threads."""
    summary = RestoreSummary()
    lock = threading.Lock()
    tic = time.perf_counter()
    condition_of = conditioner or (lambda _job: Conditioning())

    def read(job: Job) -> _Decoded | str:
        images = task.read(job)
        if isinstance(images, str):
            return images
        try:
            cond = condition_of(job)
        except ValueError as err:
            return f"restore failed: {str(err).strip().splitlines()[0]}"
        return _Decoded(images, cond)

    def fail(path: Path, reason: str) -> None:
        with lock:
            summary.failed.append((path, reason))
        on_error(path, reason)

    def write(job: Job, outputs: dict[str, OutputImage], megapixels: float, t0: float) -> None:
        writes = [(path, _writer(outputs[role])) for role, path in job.outputs.items()]
        try:
            if len(writes) == 1:
                path, writer = writes[0]
                writer(path)
            else:
                write_all_atomically(writes)
        except Exception as err:
            shown = " / ".join(str(path) for path, _ in writes)
            fail(job.src, f"cannot write {shown}: {err}")
            return
        with lock:
            summary.restored.append(job)
            summary.megapixels += megapixels
        if on_done is not None:
            on_done(job, time.perf_counter() - t0)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="irctl-write") as out_pool:
        for job, decoded in read_ahead(jobs, readers, depth=readers + 1, read=read):
            if isinstance(decoded, str):
                fail(job.src, decoded)
                continue
            started = time.perf_counter()
            try:
                x = task.model_input(decoded.images)
                restored = restore_array(
                    restorer,
                    x,
                    options,
                    seed=seed,
                    device=device,
                    callback=on_step,
                    cond=decoded.cond,
                )
                outputs = task.model_output(task.complete(restored, x), decoded.images)
            except (RuntimeError, ValueError, MemoryError) as err:  # e.g. out of memory
                fail(job.src, f"restore failed: {str(err).strip().splitlines()[0]}")
                continue
            megapixels = task.megapixels(decoded.images)
            out_pool.submit(write, job, outputs, megapixels, started)
    summary.seconds = time.perf_counter() - tic
    return summary


def _writer(output: OutputImage) -> Callable[[Path], None]:
    """Writes ``output`` to the path it is given (atomically: irctl/io/images.py)."""
    return lambda path: write_image(path, output.pixels, dtype=output.dtype, alpha=output.alpha)


@dataclass(frozen=True)
class RestoreRequest:
    """Everything ``irctl restore`` is asked: where, which model, how (None: the preset's)."""

    src: str
    dst: Path
    task: str = DEFAULT_TASK
    method: str | None = None
    preset: str | None = None
    weights: Path | None = None
    sampler: str | None = None
    steps: int | None = None
    tile: int | None = None
    tile_overlap: int | None = None
    tile_batch: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    ext: str | None = None
    suffix: str = ""
    overwrite: bool = False
    recursive: bool = True
    #: the task options (flag keyword → value; None = not given), e.g. src_lens for bokeh
    task_options: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    world: int = 1


class RestoreReporter(Protocol):
    """How a run talks to its user: one-line messages and progress (the CLI draws them)."""

    def info(self, message: str) -> None: ...
    def error(self, path: Path, reason: str) -> None: ...
    def start(self, noun: str, jobs: int, steps: int) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def done(self, job: Job, seconds: float) -> None: ...


@dataclass
class RestoreOutcome:
    preset: str
    plan: Plan
    summary: RestoreSummary

    @property
    def failed(self) -> list[tuple[Path, str]]:
        return self.plan.errors + self.summary.failed


def restore_folder(
    request: RestoreRequest, reporter: RestoreReporter, stdin: TextIO | None = None
) -> RestoreOutcome:
    """Run ``irctl restore``: raises :class:`UsageError` (one line) for anything wrong before
    the first image; per-job problems are reported and counted, never raised."""
    try:
        files = discover(request.src, stdin=stdin, recursive=request.recursive, exclude=request.dst)
        device = resolve_device(request.device)
        restorer = load_restorer(
            weights=request.weights,
            preset=request.preset,
            task=request.task,
            device=device,
            method=request.method,
        )
        task = get_task(restorer.preset.task)
        options = resolve_options(
            restorer,
            sampler=request.sampler,
            steps=request.steps,
            tile=request.tile,
            overlap=request.tile_overlap,
            tile_batch=request.tile_batch,
        )
        src_root = Path(request.src) if request.src != "-" and Path(request.src).is_dir() else None
        task_values = task_option_values(task, restorer.preset, request)
        conditioner = task.conditioner(restorer.preset, src_root, task_values)
    except (FileNotFoundError, CheckpointError, PresetError, ValueError) as err:
        raise UsageError(str(err)) from None
    request.dst.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_output_partials(request.dst):
        reporter.info(f"removed an unfinished temp file from an interrupted run: {stale}")
    planned = task.plan(
        files,
        request.dst,
        src_root=src_root,
        ext=request.ext,
        suffix=request.suffix,
        options=task_values,
    )
    # Sharded once planned (the files of one job never straddle two ranks) and before looking
    # at what is done, so every rank shards the same list while the others write outputs.
    plan = Plan(errors=shard(planned.errors, request.rank, request.world))
    for job in shard(planned.jobs, request.rank, request.world):
        done = all_done(list(job.outputs.values())) and not request.overwrite
        (plan.skipped if done else plan.jobs).append(job)
    for path, reason in plan.errors:
        reporter.error(path, reason)
    noun = task.noun
    reporter.info(
        f"{restorer.preset.name} ({restorer.preset.method}) on {device}: {len(plan.jobs)} "
        f"{noun} to restore, {len(plan.skipped)} already done; "
        f"{describe_sampling(restorer, options, request.seed)}, tile {options.tiles.tile or 'off'}"
    )
    set_threads(request.threads, device)
    reporter.start(noun, len(plan.jobs), options.steps)
    summary = run_jobs(
        restorer,
        task,
        plan.jobs,
        options,
        seed=request.seed,
        device=device,
        conditioner=conditioner,
        on_error=reporter.error,
        on_done=reporter.done,
        on_step=reporter.step,
    )
    return RestoreOutcome(restorer.preset.name, plan, summary)


def task_option_values(task: Task, preset: Preset, request: RestoreRequest) -> dict[str, Any]:
    """The request's task options for this model's task; an option of another task is a usage
    error, not silently ignored."""
    known = all_task_options()
    ours = {option.name for option in task.options}
    given = {name: value for name, value in request.task_options.items() if value is not None}
    for name in given:
        if name not in known:
            raise ValueError(f"unknown task option {name!r}")
        if name not in ours:
            option, owners = known[name]
            raise ValueError(
                f"{preset.name} ({preset.task}) takes no {option.flag}: it is an option of "
                f"{', '.join(owners)}; drop it"
            )
    return {option.name: given.get(option.name) for option in task.options}
