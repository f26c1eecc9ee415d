"""Presets (TOML): finding, parsing, overriding, and writing them back as plain data.

A preset names everything a run needs: task, method, the method's own tables (network sizes,
diffusion settings), sampler defaults, training recipe, dataset conventions and bundled weights.
The shared sections are irctl/config.py's dataclasses; every other table belongs to the method
and is parsed by its config class (``config_class`` in the method registry), so a new method
brings its own tables without touching this file. Checkpoints embed the resolved preset
(:func:`preset_to_dict`) so ``irctl restore --weights X.safetensors`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from irctl.config import SHARED_SECTIONS, Preset, PresetError, parse_dataclass
from irctl.methods import METHODS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Preset",
    "PresetError",
    "apply_overrides",
    "available_presets",
    "default_preset_for_task",
    "load_preset",
    "preset_for_task",
    "preset_from_dict",
    "preset_to_dict",
    "presets_dir",
    "weights_path",
]

_TOP_LEVEL = {"name", "task", "method", "description", "weights", "default"}

#: Before methods owned their tables (irctl ≤ 0.x presets and checkpoints), every preset carried
#: these three tables with these fields, used or not. A table or field the method does not own is
#: accepted from such a file when it holds exactly this old default (it never meant anything for
#: that method); any other value is an error naming it.
_SCHEMA_V1_DEFAULTS: dict[str, dict[str, Any]] = {
    "network": {
        "width": 16,
        "enc_blocks": (1, 1, 1, 1),
        "middle_blocks": 1,
        "dec_blocks": (1, 1, 1, 1),
        "cond_scalars": 0,
        "views": 1,
        "tied_views": False,
        "upscale": 1,
        "arch": "unet",
        "blocks": 8,
        "icnr": False,
    },
    "latent": {
        "channels": 8,
        "mult": (1, 2, 4),
        "latent_channels": 4,
        "blocks": 2,
        "attention": False,
    },
    "diffusion": {"T": 100, "max_sigma": 50.0, "schedule": "cosine", "eps": 0.005},
}


def presets_dir() -> Path:
    """Where the presets live: inside the wheel (``irctl/presets``) or, for a source checkout
    or editable install, the repository's top-level ``presets/``."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "presets", package_dir.parent / "presets"):
        if candidate.is_dir():
            return candidate
    raise PresetError("the presets folder is missing from this installation")


def available_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    return value == default


def _drop_schema_v1_leftovers(tables: dict[str, Any], config_class: type, where: str) -> None:
    """Remove, in place, old shared-schema tables and fields this method does not own, when
    they hold the old defaults (see ``_SCHEMA_V1_DEFAULTS``)."""
    owned = {f.name: f for f in dataclasses.fields(config_class)}
    defaults = config_class()
    for table, old in _SCHEMA_V1_DEFAULTS.items():
        values = tables.get(table)
        if not isinstance(values, dict):
            continue
        if table not in owned:
            if all(key in old and _same(v, old[key]) for key, v in values.items()):
                del tables[table]
            continue
        fields = {f.name for f in dataclasses.fields(getattr(defaults, table))}
        for key in [k for k in values if k not in fields]:
            if key in old and _same(values[key], old[key]):
                del values[key]


def preset_from_dict(data: dict[str, Any], where: str = "preset") -> Preset:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key in ("name", "task", "method"):
        if key not in data:
            raise PresetError(f"{where}: missing required key {key!r}")
    method = METHODS.get(data["method"])
    if method is None:
        raise PresetError(
            f"{where}: unknown method {data['method']!r}; known: {', '.join(METHODS)}"
        )
    shared = {
        name: parse_dataclass(cls, data.pop(name, {}), f"{where} [{name}]")
        for name, cls in SHARED_SECTIONS.items()
    }
    top = {key: data.pop(key) for key in list(data) if key in _TOP_LEVEL}
    config_class = method.config_class
    _drop_schema_v1_leftovers(data, config_class, where)
    tables = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(data) - tables
    if unknown:
        raise PresetError(
            f"{where}: unknown key(s) or table(s) {', '.join(sorted(unknown))} for method "
            f"{top['method']!r} (its tables: {', '.join(sorted(tables)) or 'none'})"
        )
    model = parse_dataclass(config_class, data, where)
    preset = Preset(**top, **shared, model=model)
    try:
        method.check_preset(preset)
    except ValueError as err:
        raise PresetError(f"{where}: {err}") from None
    return preset


def preset_to_dict(preset: Preset) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists), the method's tables at the top level beside
    the shared ones, as in the TOML file; inverse of :func:`preset_from_dict`."""
    data = {
        f.name: getattr(preset, f.name) for f in dataclasses.fields(preset) if f.name != "model"
    }
    plain = {
        key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        for key, value in data.items()
    }
    if preset.model is not None:
        plain.update(dataclasses.asdict(preset.model))
    return json.loads(json.dumps(plain))


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a preset by name (``denoise-tiny``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = presets_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise PresetError(
                f"no preset named {name_or_path!r}; available: {', '.join(available_presets())}"
            )
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise PresetError(f"{path}: {err}") from err
    return preset_from_dict(data, where=str(path))


def apply_overrides(preset: Preset, overrides: list[str]) -> Preset:
    """Apply ``section.key=value`` overrides (value parsed as TOML, bare words as strings)."""
    data = preset_to_dict(preset)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise PresetError(f"override {item!r} is not of the form section.key=value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        *parents, leaf = key.strip().split(".")
        # train.stages.<stage>.<key> may name a stage or key not set yet: for_stage() checks it.
        in_stage = len(parents) >= 2 and parents[-2] == "stages"
        node = data
        for depth, parent in enumerate(parents):
            if isinstance(node.get(parent), dict):
                node = node[parent]
            elif depth > 0 and parents[depth - 1] == "stages":
                node = node.setdefault(parent, {})
            else:
                raise PresetError(f"override {item!r}: no section {parent!r}")
        if leaf not in node and not in_stage:
            raise PresetError(f"override {item!r}: unknown key {leaf!r}")
        node[leaf] = value
    return preset_from_dict(data, where="preset with overrides")


def default_preset_for_task(task: str) -> str:
    """The preset marked ``default = true`` for ``task``, else ``<task>-tiny``, else the task's
    only preset that ships weights (a task with one bundled model needs no flag to use it)."""
    for name in available_presets():
        preset = load_preset(name)
        if preset.task == task and preset.default:
            return name
    if (presets_dir() / f"{task}-tiny.toml").is_file():
        return f"{task}-tiny"
    presets = [load_preset(n) for n in available_presets()]
    shipped = [p.name for p in presets if p.task == task and (w := weights_path(p)) and w.is_file()]
    if len(shipped) == 1:
        return shipped[0]
    own = sorted(p.name for p in presets if p.task == task)
    if own:
        raise PresetError(
            f"no bundled model for task {task!r} yet: import released weights for one of its "
            f"presets ({', '.join(own)}; README, 'The authors' released weights') and pass "
            "--weights"
        )
    tasks = sorted({p.task for p in presets})
    raise PresetError(f"no model for task {task!r}; tasks: {', '.join(tasks)}")


def preset_for_task(task: str, method: str | None = None) -> str:
    """The preset ``irctl restore --task T [--method M]`` uses: the task's default without a
    method, else the task's preset of that method that ships weights (the default one first)."""
    if method is None:
        return default_preset_for_task(task)
    ours = [p for p in map(load_preset, available_presets()) if p.task == task]
    if not ours:
        return default_preset_for_task(task)  # raises: no model for this task, naming the tasks
    bundled = [p for p in ours if p.method == method and (w := weights_path(p)) and w.is_file()]
    if not bundled:
        methods = sorted({p.method for p in ours if (w := weights_path(p)) and w.is_file()})
        raise PresetError(
            f"no bundled {method!r} model for task {task!r}; methods: {', '.join(methods)}"
        )
    return sorted(bundled, key=lambda p: (not p.default, p.name))[0].name


def weights_path(preset: Preset) -> Path | None:
    """The bundled weights file a preset names, if any."""
    return presets_dir() / preset.weights if preset.weights else None
