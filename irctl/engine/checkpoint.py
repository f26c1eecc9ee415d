"""Checkpoints: safetensors with the resolved preset embedded — never pickle.

``torch.load`` of an untrusted file can run arbitrary code, so irctl neither writes nor reads
pickled checkpoints. A weights file ``X.safetensors`` holds tensors named ``<module>.<param>`` and
metadata ``{"format", "irctl", "preset" (JSON), "stage", "step"}``; it alone is enough to restore.
Training state for an exact resume lives beside it in ``X.state.safetensors``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from irctl import __version__
from irctl.config import Preset
from irctl.presets import preset_from_dict, preset_to_dict

FORMAT = "irctl-checkpoint-v1"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


class CheckpointError(ValueError):
    """A file that is not an irctl safetensors checkpoint; the message says why, in one line."""


@dataclass
class Checkpoint:
    tensors: dict[str, Tensor]
    preset: Preset
    stage: str
    step: int

    def module_state(self, name: str) -> dict[str, Tensor]:
        prefix = f"{name}."
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def state_path(weights: Path) -> Path:
    """``X.safetensors`` → ``X.state.safetensors`` (optimizer, raw weights, step)."""
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".state.safetensors")


def flatten_modules(modules: dict[str, nn.Module]) -> dict[str, Tensor]:
    return {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }


def atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file via a temp file + rename, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shared weights unreadable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_metadata(preset: Preset, stage: str, step: int) -> dict[str, str]:
    return {
        "format": FORMAT,
        "irctl": __version__,
        "preset": json.dumps(preset_to_dict(preset)),
        "stage": stage,
        "step": str(step),
    }


def save_checkpoint(
    path: Path, modules: dict[str, nn.Module], preset: Preset, stage: str, step: int
) -> None:
    atomic_save(flatten_modules(modules), path, checkpoint_metadata(preset, stage, step))


def read_metadata(path: Path) -> dict[str, str]:
    """Validate that ``path`` is a safetensors file (refusing pickles) and return its metadata."""
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: refusing a {path.suffix} file — irctl loads only .safetensors checkpoints "
            "(pickle files can run arbitrary code when loaded)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        # Only once it fails to parse as safetensors do we say what it looks like instead: a
        # safetensors file starts with its header length, which may begin with any byte.
        with path.open("rb") as fh:
            head = fh.read(4)
        if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: this is a pickle/zip (torch.save) file, not safetensors — refused, "
                "since loading pickles can run arbitrary code"
            ) from err
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from err


def load_checkpoint(path: Path, map_location: str = "cpu") -> Checkpoint:
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "preset" not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file, but not an irctl checkpoint (no preset)"
        )
    preset = preset_from_dict(json.loads(meta["preset"]), where=f"{path} (embedded preset)")
    tensors = load_file(str(path), device=map_location)
    return Checkpoint(tensors, preset, meta.get("stage", ""), int(meta.get("step", 0)))


def load_modules(modules: dict[str, nn.Module], checkpoint: Checkpoint) -> None:
    """Load every module's weights, strictly: a missing or unexpected tensor is an error."""
    for name, module in modules.items():
        state = checkpoint.module_state(name)
        if not state:
            raise CheckpointError(f"checkpoint has no weights for module {name!r}")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(
                f"checkpoint weights do not fit module {name!r}: {first}"
            ) from err
