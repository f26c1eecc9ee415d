"""Data-parallel training under torchrun (DESIGN.md "Scale-out"): gloo on CPU, NCCL on GPU.

Gradients are averaged explicitly after ``backward`` instead of wrapping modules in
DistributedDataParallel, so a Restorer's ``loss`` keeps calling its own networks and engine/
stays method-agnostic. Every rank starts from the same seeded initialisation and applies the
same averaged update, so the replicas stay identical; ``replicas_in_sync`` checks it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group torchrun describes in RANK/WORLD_SIZE; a no-op when alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size())


def rank_device(device: torch.device) -> torch.device:
    """One GPU per rank: cuda → cuda:LOCAL_RANK under torchrun."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def average_gradients(params: list[Tensor], ctx: DistContext) -> None:
    """All-reduce every gradient in one flat buffer and divide by the world size."""
    if not ctx.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def replicas_in_sync(params: list[Tensor], ctx: DistContext) -> bool:
    """True when every rank holds the same weights (compares a float64 checksum)."""
    if not ctx.active:
        return True
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(low == high)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()
