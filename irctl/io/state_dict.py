"""Finding the weights in a checkpoint someone else's training code wrote, and checking them
against the modules they are meant for.

Official checkpoints come in several wrappings (what :func:`unwrap_state_dict` accepts):

- a plain state_dict (IR-SDE, Refusion): ``{"conv.weight": tensor, ...}``;
- BasicSR's ``{"params": ..., "params_ema": ...}`` (DiffIR): the EMA weights are the ones the
  authors test with, so ``params_ema`` is taken unless another key is asked for;
- PyTorch Lightning's ``{"state_dict": ..., "epoch": ..., "hyper_parameters": ...}``;
- any of these saved from a ``DistributedDataParallel`` model, every key prefixed ``module.``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "network")


class StateDictError(ValueError):
    """Weights that cannot be used; the message says why in one line."""


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def unwrap_state_dict(obj: Any, key: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict inside a checkpoint object: ``obj[key]`` when ``key`` is given, else the
    object itself or the first of :data:`WRAPPER_KEYS` it holds; a ``module.`` prefix on every
    key (a DDP save) is removed."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            held = ", ".join(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise StateDictError(f"no {key!r} in the checkpoint (it holds: {held})")
        found = obj[key]
    elif _is_state_dict(obj):
        found = obj
    else:
        wrapped = [k for k in WRAPPER_KEYS if isinstance(obj, Mapping) and k in obj]
        if not wrapped:
            held = ", ".join(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise StateDictError(f"no state_dict found in the checkpoint (it holds: {held})")
        found = obj[wrapped[0]]
    tensors = (
        {k: v for k, v in found.items() if isinstance(v, torch.Tensor)}
        if isinstance(found, Mapping)
        else {}
    )
    if not tensors:
        raise StateDictError("the checkpoint's state_dict holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


@dataclass
class KeyReport:
    """How a state_dict fits the expected keys and shapes."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    misshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.misshaped)

    def message(self, most: int = 3) -> str:
        """One line naming the first mismatches of each kind."""
        parts = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                more = f" and {len(keys) - most} more" if len(keys) > most else ""
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:most])}{more})")
        if self.misshaped:
            shown = ", ".join(
                f"{k} is {tuple(got)}, expected {tuple(want)}"
                for k, got, want in self.misshaped[:most]
            )
            more = f" and {len(self.misshaped) - most} more" if len(self.misshaped) > most else ""
            parts.append(f"{len(self.misshaped)} mis-shaped ({shown}{more})")
        return "; ".join(parts) if parts else "all keys and shapes match"


def compare_keys(
    given: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]
) -> KeyReport:
    """Missing, unexpected and mis-shaped keys of ``given`` against ``expected`` shapes, each
    list in the expected (or given) order."""
    report = KeyReport()
    for key, shape in expected.items():
        if key not in given:
            report.missing.append(key)
        elif tuple(given[key].shape) != tuple(shape):
            report.misshaped.append((key, tuple(given[key].shape), tuple(shape)))
    report.unexpected = [key for key in given if key not in expected]
    return report
