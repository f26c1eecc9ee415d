"""`irctl import`: the authors' released checkpoint → an irctl safetensors checkpoint.

The file is read by :mod:`irctl.io.torch_pickle` (tensors and plain containers only, nothing in
it runs), its state_dict found inside whatever wraps it (:mod:`irctl.io.state_dict`), renamed
onto the preset's modules by the method (``Restorer.official_modules``, which checks every key
and shape), loaded, and saved with the preset embedded: ``irctl restore --weights`` then runs it
like any bundled model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from irctl.config import Preset
from irctl.engine.checkpoint import Checkpoint, load_modules, save_checkpoint
from irctl.engine.models import UsageError
from irctl.io.state_dict import StateDictError, unwrap_state_dict
from irctl.io.torch_pickle import CheckpointFileError, read_torch_file
from irctl.methods import build_restorer


@dataclass(frozen=True)
class ImportResult:
    out: Path
    tensors: int
    parameters: int
    sha256: dict[str, str]  # of each official file, to check against the authors' listing


def sha256_of(path: Path) -> str:
    """The file's SHA-256, streamed: a released checkpoint is ~0.5 GB, not to be held twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def import_official(
    sources: list[Path], preset: Preset, out: Path, key: str | None = None
) -> ImportResult:
    """Raises :class:`UsageError` (one line) for a file that is unsafe, damaged, or not of the
    preset's architecture and size. ``sources``: the released file(s) of one model."""
    states = []
    for source in sources:
        try:
            states.append(unwrap_state_dict(read_torch_file(source), key=key))
        except CheckpointFileError as err:
            raise UsageError(str(err)) from None
        except StateDictError as err:
            raise UsageError(f"{source}: {err}") from None
    shown = " + ".join(map(str, sources))
    preset = replace(preset, weights=None)  # the imported file stands on its own
    restorer = build_restorer(preset)
    try:
        modules = restorer.official_modules(states)
    except ValueError as err:
        raise UsageError(f"{shown}: {err}") from None
    missing = set(restorer.restore_modules()) - set(modules)
    if missing:
        raise UsageError(f"{shown}: holds no weights for {', '.join(sorted(missing))}")
    flat = {
        f"{name}.{k}": v for name, module_state in modules.items() for k, v in module_state.items()
    }
    # only what the file holds: a module for training alone (DiffIR's teacher) is not made up
    imported = {name: restorer.modules()[name] for name in modules}
    load_modules(imported, Checkpoint(flat, preset, restorer.stages[-1], 0))
    save_checkpoint(out, imported, preset, restorer.stages[-1], 0)
    digests = {str(s): sha256_of(s) for s in sources}
    parameters = sum(p.numel() for m in imported.values() for p in m.parameters())
    return ImportResult(out, sum(len(s) for s in states), parameters, digests)
