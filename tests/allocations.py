"""Counting the large tensors an operation allocates (for memory tests of samplers and tiling)."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LargeAllocations(TorchDispatchMode):
    """Records every tensor of at least ``numel`` elements an op allocates (an output sharing
    no storage with an input): their shapes in order, and the most of them alive at once."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.live, self.peak = numel, 0, 0
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr()
            for a in tree_leaves((args, kwargs))
            if isinstance(a, torch.Tensor)
        }
        for o in tree_leaves(out):
            big = isinstance(o, torch.Tensor) and o.numel() >= self.numel
            if big and o.untyped_storage().data_ptr() not in inputs:
                self.shapes.append(tuple(o.shape))
                self.live += 1
                self.peak = max(self.peak, self.live)
                weakref.finalize(o, self._freed)
        return out

    def _freed(self) -> None:
        self.live -= 1
