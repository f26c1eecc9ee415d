"""Per-image lens metadata for bokeh effect transformation: which lens an image was taken with
(source) and which lens it should look like it was taken with (target).

Where the lenses come from, first match wins:

1. a metadata table given with ``--lens-meta FILE``, or ``lenses.csv`` / ``lenses.json`` found in
   the source folder. CSV: a header with ``file,src_lens,tgt_lens``; JSON: an object mapping file
   to ``{"src_lens": ..., "tgt_lens": ...}``, or a list of objects with those three keys. ``file``
   is matched against the path relative to the source folder, then the file name, then the stem;
2. ``--src-lens`` / ``--tgt-lens`` for every image of the run;
3. the preset's default pair (``degradation.lens_default``).

Lens names are those of the NTIRE 2023 challenge (irctl/data/lenses.py); an unknown name is an
error that lists the known ones.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from irctl.conditioning import Conditioning
from irctl.data.lenses import Lens, parse_lens

META_NAMES = ("lenses.csv", "lenses.json")
_COLUMNS = ("file", "src_lens", "tgt_lens")


class LensMetaError(ValueError):
    """A metadata file that cannot be used; the message names the file and the reason."""


def read_lens_table(path: Path) -> dict[str, tuple[Lens, Lens]]:
    """file key → (source lens, target lens), validated (unknown lenses fail here, naming the row)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LensMetaError(f"{path}: cannot read ({err})") from err
    rows = _json_rows(path, text) if path.suffix.lower() == ".json" else _csv_rows(path, text)
    table: dict[str, tuple[Lens, Lens]] = {}
    for where, row in rows:
        try:
            key = str(row["file"]).strip()
            pair = (
                parse_lens(str(row["src_lens"]).strip()),
                parse_lens(str(row["tgt_lens"]).strip()),
            )
        except KeyError as err:
            raise LensMetaError(f"{path} {where}: missing {err.args[0]!r}") from None
        except ValueError as err:
            raise LensMetaError(f"{path} {where}: {err}") from None
        if key in table:
            raise LensMetaError(f"{path} {where}: {key!r} is listed twice")
        table[key] = pair
    return table


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LensMetaError(f"{path}: needs the columns {', '.join(_COLUMNS)}; missing {missing}")
    return [(f"line {i}", row) for i, row in enumerate(reader, start=2)]


def _json_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise LensMetaError(f"{path}: not valid JSON ({err})") from err
    if isinstance(data, dict):
        return [
            (f"entry {key!r}", {"file": key, **value}) if isinstance(value, dict) else ("", {})
            for key, value in data.items()
        ]
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return [(f"item {i}", item) for i, item in enumerate(data)]
    raise LensMetaError(f"{path}: expected an object of file → lenses, or a list of objects")


@dataclass
class LensConditioner:
    """Builds each image's :class:`Conditioning` (source and target lens codes)."""

    table: dict[str, tuple[Lens, Lens]] = field(default_factory=dict)
    src_root: Path | None = None
    default: tuple[Lens, Lens] | None = None

    def lenses_for(self, image: Path) -> tuple[Lens, Lens]:
        keys = []
        if self.src_root is not None and image.is_relative_to(self.src_root):
            keys.append(image.relative_to(self.src_root).as_posix())
        keys += [image.name, image.stem]
        for key in keys:
            if key in self.table:
                return self.table[key]
        if self.default is None:
            raise ValueError(
                "no lens metadata for this image: list it in lenses.csv or give "
                "--src-lens and --tgt-lens"
            )
        return self.default

    def __call__(self, image: Path) -> Conditioning:
        src, tgt = self.lenses_for(image)
        return Conditioning(scalars=(src.code, tgt.code))


def build_lens_conditioner(
    *,
    meta: Path | None,
    src_root: Path | None,
    src_lens: str | None,
    tgt_lens: str | None,
    preset_default: tuple[str, ...] = (),
) -> LensConditioner:
    """The run's lens lookup: a metadata table (given, or found in the source folder), the
    per-run lenses, and the preset's default pair, in that order of precedence."""
    if meta is None and src_root is not None:
        meta = next((src_root / n for n in META_NAMES if (src_root / n).is_file()), None)
    table = read_lens_table(meta) if meta is not None else {}
    if (src_lens is None) != (tgt_lens is None):
        raise ValueError("give both --src-lens and --tgt-lens, or neither")
    default: tuple[Lens, Lens] | None = None
    if src_lens is not None and tgt_lens is not None:
        default = (parse_lens(src_lens), parse_lens(tgt_lens))
    elif len(preset_default) == 2:
        default = (parse_lens(preset_default[0]), parse_lens(preset_default[1]))
    return LensConditioner(table=table, src_root=src_root, default=default)
