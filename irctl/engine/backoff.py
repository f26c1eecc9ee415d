"""Out-of-memory back-off: an image that does not fit is retried with half the tile.

The right tile size depends on the device's free memory, which the user rarely knows and which
other work on the machine changes. As chaiNNer does, an out-of-memory error (CUDA's
``torch.OutOfMemoryError``, or on the CPU PyTorch's ``RuntimeError`` "DefaultCPUAllocator:
can't allocate memory") halves the tile and retries the image; the smaller tile is kept for the
rest of the batch, so the next images do not run out of memory first. An untiled run (tile 0, or
a tile covering the image) falls back to tiles of half the image's longer side. The smaller
options are made by the run's own option resolution (``retile``: the user's overlap and batch,
else the preset's — an untiled run's options carry no overlap), and the sampler is seeded per
image (irctl/engine/restore.py), so a retried image is exactly what a run started with
``--tile`` at the smaller size writes.

The floor is :data:`MIN_TILE` pixels, and twice the overlap: a smaller tile spends most of each
network call on overlap (the tiler also rounds tiles up to the network's padding multiple).
An image that runs out of memory even there fails with its one line ("out of memory even with
tile 64"), and the batch goes on with the tile it had: the tile was not what did not fit (the
full-size sampler state or the whole-image conditioning was).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TypeVar

import torch

from irctl.methods.base import SampleOptions

T = TypeVar("T")

#: the smallest tile the back-off goes down to, in image pixels
MIN_TILE = 64
_OUT_OF_MEMORY_MESSAGES = (
    "can't allocate memory",  # PyTorch's CPU allocator
    "out of memory",  # CUDA, MPS, HIP
    "CUBLAS_STATUS_ALLOC_FAILED",
)


def is_out_of_memory(err: BaseException) -> bool:
    """True for the errors a smaller tile may avoid: running out of device or host memory."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in _OUT_OF_MEMORY_MESSAGES)


#: the run's options with another tile size (pixels), resolved as a run asked for it would be
Retile = Callable[[int], SampleOptions]


def halved(options: SampleOptions, height: int, width: int, retile: Retile) -> SampleOptions | None:
    """The options with the next smaller tile for an image of ``height`` × ``width`` pixels,
    or None at the floor (:data:`MIN_TILE`, and twice the overlap such a tile gets)."""
    longest = max(height, width)
    current = options.tiles.tile if 0 < options.tiles.tile < longest else longest
    floor = max(MIN_TILE, 2 * retile(current).tiles.overlap)
    if current <= floor:
        return None
    return retile(max(floor, current // 2))


def with_backoff(
    run: Callable[[SampleOptions], T],
    options: SampleOptions,
    size: tuple[int, int],
    retile: Retile,
) -> tuple[T, SampleOptions]:
    """``run(options)``, retried with halved tiles while it runs out of memory: its result and
    the options it succeeded with. At the floor, the last out-of-memory error is raised with
    the tile it was tried with."""
    height, width = size
    while True:
        try:
            return run(options), options
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            smaller = halved(options, height, width, retile)
            if smaller is None:
                shown = options.tiles.tile or "off"
                raise MemoryError(
                    f"out of memory even with tile {shown}: {_first_line(err)}"
                ) from None
        _free_memory()
        options = smaller


def _free_memory() -> None:
    """Return what the failed attempt held to the allocator before the retry (the exception's
    frames kept its tensors alive until now)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
