"""The streaming restore loop: reader threads decode, the device restores, writer threads encode.

One loop for every task: a job is named input files and named output files (irctl/tasks/), the
task reads and conditions it in the reader threads, the device thread runs the model, and the
writer threads write all of a job's outputs as one commit (irctl/io/outputs.py).

Per job, everything that can go wrong (unreadable input, missing metadata, a model error, a
failed write) is reported through ``on_error`` as one line naming the file and the reason, and
the batch goes on. After a crash or SIGKILL a job's outputs are either all complete or not done;
a rerun skips the finished jobs (unless ``overwrite``): each output verified, a truncated or
wrong-sized one redone (irctl/engine/resume.py). It removes stale temp files and claims. Runs
sharing one ``--dst`` split the work through claim files (irctl/io/claims.py). An image that
runs out of memory is retried with half the tile (irctl/engine/backoff.py).

:func:`restore_folder` is the whole of ``irctl restore`` short of parsing and printing: find the
inputs, load the model, validate the options once, plan, shard, and run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

import numpy as np
import torch

from irctl.config import DegradationConfig, Preset, PresetError
from irctl.engine.backoff import Retile, with_backoff
from irctl.engine.checkpoint import CheckpointError
from irctl.engine.device import resolve_device
from irctl.engine.models import (
    UsageError,
    describe_sampling,
    load_restorer,
    resolve_options,
    set_threads,
)
from irctl.engine.resume import JobClaims, unfinished
from irctl.io.claims import remove_stale_claims
from irctl.io.folders import discover, shard
from irctl.io.images import (
    DEFAULT_MAX_PIXELS,
    Image,
    ImageReadError,
    nonfinite_pixels,
    write_image,
)
from irctl.io.outputs import remove_stale_output_partials, write_all_atomically
from irctl.methods.base import Conditioning, Restorer, SampleOptions
from irctl.symmetry import transform, untransform
from irctl.tasks import DEFAULT_TASK, all_task_options, get_task
from irctl.tasks.base import Conditioner, Job, OutputImage, Plan, Task, as_rgb, in_layout_of

J = TypeVar("J")
R = TypeVar("R")


@dataclass
class RestoreSummary:
    restored: list[Job] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: left to another run on the same --dst: it holds the job's claim, or finished it meanwhile
    claimed: list[Job] = field(default_factory=list)
    seconds: float = 0.0
    megapixels: float = 0.0


def _to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """HxWxC float → 1xCxHxW on the device: on the CPU a view, not a copy, of pixels laid out
    channel-planar as read_image lays them out (io/images.unit_float_planar)."""
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
    once, on the whole image. With ``options.self_ensemble`` the image is restored once under
    each symmetry its task allows (irctl/symmetry.py), each from the same seed, and the
    restorations, turned back, are averaged."""
    lq = _to_tensor(pixels, device)
    cond = cond if cond is not None else Conditioning()
    names = get_task(restorer.preset.task).symmetries if options.self_ensemble else ("identity",)
    total: torch.Tensor | None = None
    with torch.inference_mode():
        for k, name in enumerate(names):
            generator = torch.Generator().manual_seed(seed)
            x = transform(lq, name).contiguous()
            condition = restorer.condition(x, cond)
            progress = _member_progress(callback, k, len(names))
            restored = untransform(
                restorer.restore(x, condition, options, generator, progress), name
            )
            total = restored.float() if total is None else total.add_(restored.float())
        assert total is not None
        if len(names) > 1:
            total /= len(names)
    return total[0].cpu().numpy().transpose(1, 2, 0)


def _member_progress(
    callback: Callable[[int, int], None] | None, member: int, members: int
) -> Callable[[int, int], None] | None:
    """A self-ensemble member's (done, total) steps as the whole ensemble's."""
    if callback is None or members == 1:
        return callback
    return lambda done, total: callback(member * total + done, members * total)


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


#: what a reader thread hands over for a job another run has claimed
_CLAIMED = object()


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
    claims: JobClaims | None = None,
    on_info: Callable[[str], None] | None = None,
    retile: Retile | None = None,
    readers: int = 2,
    writers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RestoreSummary:
    """Restore every job; never raises for a per-job problem. ``conditioner`` gives each job's
    task-specific inputs (bokeh: its lenses); it runs in the reader threads, and so does
    claiming each job (``claims``: None when runs need not share the work). An image that runs
    out of memory is retried with the tile halved (irctl/engine/backoff.py): ``retile`` makes
    the options for a tile size (default: ``options`` with that tile); ``on_info`` gets the one
    warning line. ``max_pixels``: the largest input image read (0: no limit), checked from the
    header before decoding. A model output holding NaN or infinite values fails its job: it
    restores nothing."""
    summary = RestoreSummary()
    lock = threading.Lock()
    tic = time.perf_counter()
    condition_of = conditioner or (lambda _job: Conditioning())
    release = claims.release if claims is not None else (lambda _job: None)
    say = on_info or (lambda _message: None)
    retile = retile or (lambda tile: replace(options, tiles=replace(options.tiles, tile=tile)))

    def read(job: Job) -> _Decoded | str | object:
        if claims is not None:
            try:
                if not claims.acquire(job):
                    return _CLAIMED
            except OSError as err:  # e.g. a read-only --dst: the job could not be written either
                return f"cannot claim {job.dst} for this run: {err.strerror or err}"
        images = task.read(job, max_pixels=max_pixels)
        if isinstance(images, str):
            return images
        try:
            cond = condition_of(job)
        except ValueError as err:
            return f"restore failed: {str(err).strip().splitlines()[0]}"
        return _Decoded(images, cond)

    def fail(job: Job, reason: str) -> None:
        release(job)
        with lock:
            summary.failed.append((job.src, reason))
        on_error(job.src, reason)

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
            fail(job, f"cannot write {shown}: {err}")
            return
        release(job)
        with lock:
            summary.restored.append(job)
            summary.megapixels += megapixels
        if on_done is not None:
            on_done(job, time.perf_counter() - t0)

    def model(x: np.ndarray, cond: Conditioning, job_options: SampleOptions) -> np.ndarray:
        return restore_array(
            restorer, x, job_options, seed=seed, device=device, callback=on_step, cond=cond
        )

    try:
        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="irctl-write") as pool:
            for job, decoded in read_ahead(jobs, readers, depth=readers + 1, read=read):
                if decoded is _CLAIMED:
                    summary.claimed.append(job)
                    continue
                if not isinstance(decoded, _Decoded):
                    fail(job, str(decoded))
                    continue
                started = time.perf_counter()
                try:
                    x = task.model_input(decoded.images)
                    run = partial(model, x, decoded.cond)
                    restored, used = with_backoff(run, options, x.shape[:2], retile)
                    if used != options:
                        say(_backoff_line(job, options, used))
                        options = used
                    diverged = nonfinite_pixels(restored)
                    if diverged:
                        fail(job, f"restore failed: {_nonfinite_reason(diverged, restored)}")
                        continue
                    outputs = task.model_output(task.complete(restored, x), decoded.images)
                except (RuntimeError, ValueError, MemoryError) as err:
                    fail(job, f"restore failed: {str(err).strip().splitlines()[0]}")
                    continue
                pool.submit(write, job, outputs, task.megapixels(decoded.images), started)
    finally:
        if claims is not None:
            claims.release_all()
    summary.seconds = time.perf_counter() - tic
    return summary


def _backoff_line(job: Job, before: SampleOptions, after: SampleOptions) -> str:
    """The one warning line of an out-of-memory back-off."""
    return (
        f"warning: out of memory with tile {before.tiles.tile or 'off'} on {job.src}: "
        f"restored with tile {after.tiles.tile}, kept for the rest of the batch"
    )


def _nonfinite_reason(count: int, restored: np.ndarray) -> str:
    total = restored.shape[0] * restored.shape[1]
    return f"the model's output has {count} of {total} pixels NaN or infinite; nothing written"


def _writer(output: OutputImage) -> Callable[[Path], None]:
    """Writes ``output`` to the path it is given (atomically: irctl/io/images.py), with the
    input's metadata."""
    return lambda path: write_image(
        path, output.pixels, dtype=output.dtype, alpha=output.alpha, meta=output.meta
    )


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
    tile_layout: str | None = None
    self_ensemble: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    ext: str | None = None
    suffix: str = ""
    overwrite: bool = False
    recursive: bool = True
    #: the largest input image read, width x height (0: no limit)
    max_pixels: int = DEFAULT_MAX_PIXELS
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
        options = _options_with_tile(restorer, request, request.tile)
        src_root = Path(request.src) if request.src != "-" and Path(request.src).is_dir() else None
        task_values = task_option_values(task, restorer.preset, request)
        task = task.configured(task_values)
        conditioner = task.conditioner(restorer.preset, src_root, task_values)
    except (FileNotFoundError, CheckpointError, PresetError, ValueError) as err:
        raise UsageError(str(err)) from None
    request.dst.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_output_partials(request.dst):
        reporter.info(f"removed an unfinished temp file from an interrupted run: {stale}")
    for path, holder in remove_stale_claims(request.dst):
        reporter.info(f"removed a claim left by a run that is gone ({holder.describe()}): {path}")
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
    # Every run shards alike; claims (run_jobs) then split a shard's jobs between the runs
    # started on one --dst.
    plan = Plan(errors=shard(planned.errors, request.rank, request.world))
    degradation = restorer.preset.degradation
    for job in shard(planned.jobs, request.rank, request.world):
        todo = request.overwrite or _to_redo(task, job, degradation, reporter)
        (plan.jobs if todo else plan.skipped).append(job)
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
        claims=JobClaims(task, degradation, recheck=not request.overwrite, on_info=reporter.info),
        on_info=reporter.info,
        retile=lambda tile: _options_with_tile(restorer, request, tile),
        max_pixels=request.max_pixels,
    )
    return RestoreOutcome(restorer.preset.name, plan, summary)


def _options_with_tile(
    restorer: Restorer, request: RestoreRequest, tile: int | None
) -> SampleOptions:
    """The run's options as ``request`` asks for them, with ``tile`` (None: the preset's): the
    out-of-memory back-off resolves its smaller tiles here too, so they get the overlap a run
    asking for that tile would."""
    return resolve_options(
        restorer,
        sampler=request.sampler,
        steps=request.steps,
        tile=tile,
        overlap=request.tile_overlap,
        tile_batch=request.tile_batch,
        tile_layout=request.tile_layout,
        self_ensemble=request.self_ensemble,
    )


def _to_redo(
    task: Task, job: Job, degradation: DegradationConfig, reporter: RestoreReporter
) -> bool:
    """True unless ``job`` is finished; an output that is there but not complete or not the
    expected size is named on one line, with the reason it is redone."""
    state = unfinished(task, job, degradation)
    if state is not None and state.reason is not None:
        reporter.info(f"redoing {state.path}: {state.reason}")
    return state is not None


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
