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
    sha256: str  # of the official file, so a user can check it against the authors' listing


def import_official(
    source: Path, preset: Preset, out: Path, key: str | None = None
) -> ImportResult:
    """Raises :class:`UsageError` (one line) for a file that is unsafe, damaged, or not of the
    preset's architecture and size."""
    try:
        state = unwrap_state_dict(read_torch_file(source), key=key)
    except (CheckpointFileError, StateDictError) as err:
        raise UsageError(str(err)) from None
    preset = replace(preset, weights=None)  # the imported file stands on its own
    restorer = build_restorer(preset)
    try:
        modules = restorer.official_modules(state)
    except ValueError as err:
        raise UsageError(f"{source}: {err}") from None
    missing = set(restorer.modules()) - set(modules)
    if missing:
        raise UsageError(f"{source}: holds no weights for {', '.join(sorted(missing))}")
    flat = {
        f"{name}.{k}": v for name, module_state in modules.items() for k, v in module_state.items()
    }
    load_modules(
        {name: restorer.modules()[name] for name in modules},
        Checkpoint(flat, preset, restorer.stages[-1], 0),
    )
    save_checkpoint(out, restorer.modules(), preset, restorer.stages[-1], 0)
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    parameters = sum(p.numel() for m in restorer.modules().values() for p in m.parameters())
    return ImportResult(out, len(state), parameters, digest)
