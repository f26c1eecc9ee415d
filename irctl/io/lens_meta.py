"""Per-image lens metadata for bokeh effect transformation: which lens an image was taken with
(source) and which lens it should look like it was taken with (target).

Where the lenses come from, first match wins:

1. a metadata table given with ``--lens-meta FILE``, or ``lenses.csv`` / ``lenses.json`` /
   ``meta.txt`` found in the source folder. CSV: a header with ``file,src_lens,tgt_lens`` (and
   optionally ``disparity``); JSON: an object mapping file to ``{"src_lens": ..., "tgt_lens":
   ...}``, or a list of objects with those keys; ``.txt``: the NTIRE 2023 challenge's own
   ``meta.txt``, no header, one ``id, src_lens, tgt_lens, disparity`` line per image. ``file``
   is matched against the path relative to the source folder, then the file name, then the stem;
2. ``--src-lens`` / ``--tgt-lens`` for every image of the run;
3. the preset's default pair (``degradation.lens_default``).

The released latent-bokeh model is also conditioned on the challenge's per-image *disparity*
(the organisers' indicator of blur strength, e.g. 35): from the table's ``disparity`` column,
else ``--disparity``, else the preset's ``degradation.bokeh_disparity``.

Lens names are those of the NTIRE 2023 challenge (irctl/data/lenses.py); an unknown name is an
error that lists the known ones.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from irctl.conditioning import Conditioning
from irctl.data.lenses import Lens, parse_lens

META_NAMES = ("lenses.csv", "lenses.json", "meta.txt")
_COLUMNS = ("file", "src_lens", "tgt_lens")
#: the columns of the NTIRE 2023 bokeh challenge's meta.txt (no header)
_NTIRE_COLUMNS = ("file", "src_lens", "tgt_lens", "disparity")


class LensMetaError(ValueError):
    """A metadata file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class LensEntry:
    """One image's metadata: its lenses and, where the table has it, its disparity."""

    src: Lens
    tgt: Lens
    disparity: float | None = None


def read_lens_table(path: Path) -> dict[str, LensEntry]:
    """file key → :class:`LensEntry`, validated (unknown lenses and unreadable disparities fail
    here, naming the row)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LensMetaError(f"{path}: cannot read ({err})") from err
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _json_rows(path, text)
    elif suffix == ".txt":
        rows = _ntire_rows(path, text)
    else:
        rows = _csv_rows(path, text)
    table: dict[str, LensEntry] = {}
    for where, row in rows:
        try:
            key = str(row["file"]).strip()
            disparity = row.get("disparity")
            entry = LensEntry(
                parse_lens(str(row["src_lens"]).strip()),
                parse_lens(str(row["tgt_lens"]).strip()),
                None if disparity in (None, "") else _finite(disparity),
            )
        except KeyError as err:
            raise LensMetaError(f"{path} {where}: missing {err.args[0]!r}") from None
        except ValueError as err:
            raise LensMetaError(f"{path} {where}: {err}") from None
        if key in table:
            raise LensMetaError(f"{path} {where}: {key!r} is listed twice")
        table[key] = entry
    return table


def _finite(value: object) -> float:
    number = float(str(value).strip())
    if not math.isfinite(number):
        raise ValueError(f"disparity must be a finite number, got {value!r}")
    return number


def _ntire_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    """The challenge's meta.txt: ``id, src_lens, tgt_lens, disparity`` per line."""
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != len(_NTIRE_COLUMNS):
            raise LensMetaError(
                f"{path} line {i}: expected {len(_NTIRE_COLUMNS)} comma-separated fields "
                f"({', '.join(_NTIRE_COLUMNS)}), got {len(parts)}"
            )
        rows.append((f"line {i}", dict(zip(_NTIRE_COLUMNS, parts, strict=True))))
    return rows


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
    """Builds each image's :class:`Conditioning`: source and target lens codes, and the
    disparity after them when ``with_disparity`` (the released latent-bokeh net)."""

    table: dict[str, LensEntry] = field(default_factory=dict)
    src_root: Path | None = None
    default: tuple[Lens, Lens] | None = None
    with_disparity: bool = False
    default_disparity: float | None = None

    def entry_for(self, image: Path) -> LensEntry | None:
        keys = []
        if self.src_root is not None and image.is_relative_to(self.src_root):
            keys.append(image.relative_to(self.src_root).as_posix())
        keys += [image.name, image.stem]
        return next((self.table[key] for key in keys if key in self.table), None)

    def lenses_for(self, image: Path) -> tuple[Lens, Lens]:
        entry = self.entry_for(image)
        if entry is not None:
            return entry.src, entry.tgt
        if self.default is None:
            raise ValueError(
                "no lens metadata for this image: list it in lenses.csv or give "
                "--src-lens and --tgt-lens"
            )
        return self.default

    def disparity_for(self, image: Path) -> float:
        entry = self.entry_for(image)
        if entry is not None and entry.disparity is not None:
            return entry.disparity
        if self.default_disparity is None:
            raise ValueError(
                "no disparity for this image: add a disparity column to the lens table or "
                "give --disparity"
            )
        return self.default_disparity

    def __call__(self, image: Path) -> Conditioning:
        src, tgt = self.lenses_for(image)
        if self.with_disparity:
            return Conditioning(scalars=(src.code, tgt.code, self.disparity_for(image)))
        return Conditioning(scalars=(src.code, tgt.code))


def build_lens_conditioner(
    *,
    meta: Path | None,
    src_root: Path | None,
    src_lens: str | None,
    tgt_lens: str | None,
    preset_default: tuple[str, ...] = (),
    disparity: float | None = None,
    preset_disparity: float | None = None,
) -> LensConditioner:
    """The run's lens lookup: a metadata table (given, or found in the source folder), the
    per-run lenses, and the preset's default pair, in that order of precedence. The same for
    the disparity — table column, ``disparity`` (the run's flag), the preset's value — for a
    model conditioned on it, which is what a preset with a ``preset_disparity`` is."""
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
    with_disparity = preset_disparity is not None
    if disparity is not None and not with_disparity:
        raise ValueError(
            "--disparity is for a model conditioned on it (the released latent-bokeh net)"
        )
    return LensConditioner(
        table=table,
        src_root=src_root,
        default=default,
        with_disparity=with_disparity,
        default_disparity=_finite(disparity) if disparity is not None else preset_disparity,
    )
