"""Stereo left/right views: pairing input files and writing output pairs atomically.

``--task stereo-sr`` takes a left/right pair in and writes a left/right pair out, so the
inputs must be grouped into pairs first and the two outputs must appear together.

Naming conventions (a file is a *view*; its *stem* is the name shared by both views)
-----------------------------------------------------------------------------------

1. ``_L`` / ``_R`` before the extension: ``scene_L.png`` + ``scene_R.png``, stem ``scene``.
   The letter is case-insensitive (``scene_l.png`` is a left view).
2. ``_left`` / ``_right`` before the extension: ``scene_left.tif`` + ``scene_right.tif``,
   stem ``scene``; case-insensitive (``_Left``, ``_RIGHT``).
3. Sibling folders ``L/`` and ``R/`` (or ``left/`` and ``right/``, case-insensitive) holding
   files with the same stem: ``shots/L/0001.png`` + ``shots/R/0001.png``, stem ``0001`` in
   ``shots`` (output stem ``shots/0001`` when ``root`` is the folder above ``shots``).

Only the *last* ``_``-separated word of the file stem is a marker, so ``a_Lamp_R.png`` is
the right view of ``a_Lamp`` and ``my_Left_shot_L.png`` the left view of ``my_Left_shot``;
a name that is nothing but a marker (``_L.png``, ``L.png``) matches no convention.

Rules
-----

* The two views of a pair share their folder (the parent of ``L/``/``R/`` for
  convention 3) and their stem, compared case-sensitively; **extensions may differ**
  (``scene_L.png`` + ``scene_R.jpg`` is a pair), because the extension says how a view is
  stored, not which scene it shows. Marker spellings may be mixed too (``scene_L.png`` +
  ``scene_right.png``, or ``shots/L/0001.png`` + ``shots/0001_R.png``): a pair is simply
  one left and one right view with the same folder and stem.
* A file in an ``L``/``R``/``left``/``right`` folder whose name also carries a marker
  (``left/0001_left.png``) uses both: if both say the same side, both are stripped (stem
  ``0001``, partner ``right/0001_right.*``); if they disagree (``L/x_R.png``) the file is
  ambiguous and reported.
* Exactly one left and one right view per (folder, stem). More candidates on a side
  (``scene_L.png``, ``scene_L.jpg`` and ``scene_R.png``) make every file of that group an
  error naming the competing files: picking one silently would restore the wrong scene.
* Two pairs whose outputs would have the same path (``a/x_L.png`` + ``a/x_R.png`` and
  ``b/x_L.png`` + ``b/x_R.png`` with no ``root``, which flattens the output) are errors
  too, for all four files, since one result would overwrite the other.
* A file with an unsupported image suffix is reported and never counted as a candidate
  (so ``scene_L.json`` next to ``scene_L.png`` does not make it ambiguous).

Bad names never raise: :func:`pair_views` returns them as ``(path, reason)`` errors so a
batch reports them and goes on with the other pairs.

Outputs are always named with convention 1 (``<stem>_L.<ext>``, ``<stem>_R.<ext>``), see
:func:`output_paths`; the restore loop writes both as one commit
(:func:`irctl.io.outputs.write_all_atomically`, the left view last).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from irctl.io.folders import _normalise_ext, _relative_to_root, _same_file
from irctl.io.images import (
    SUPPORTED_SUFFIXES,
)

LEFT = "left"
RIGHT = "right"

NOT_A_VIEW = "not a stereo view: name it *_L/*_R, *_left/*_right or put it in L/ and R/ folders"

_SIDE_WORDS = {"l": LEFT, "left": LEFT, "r": RIGHT, "right": RIGHT}
_SWAP = {"l": "r", "r": "l", "left": "right", "right": "left"}
_MARKED_STEM = re.compile(r"^(?P<stem>.+)_(?P<marker>l|r|left|right)$", re.IGNORECASE)


@dataclass(frozen=True)
class StereoPair:
    """One left/right pair of input views.

    ``stem`` is the shared name without folders (``scene`` for ``scene_L.png``,
    ``0001`` for ``shots/L/0001.png``). ``relative`` is where the outputs go, without the
    side marker and extension: the pair's folder relative to ``root`` joined with the
    stem (``shots/0001``), or just ``Path(stem)`` without a root or for a pair outside it.
    """

    left: Path
    right: Path
    stem: str
    relative: Path


@dataclass(frozen=True)
class _View:
    path: Path
    side: str
    folder: Path  # the folder both views of the pair hang off
    stem: str
    partner: str  # where the other view is expected, for messages


# --------------------------------------------------------------------------- pairing


def pair_views(
    paths: Iterable[str | os.PathLike[str]], root: Path | None = None
) -> tuple[list[StereoPair], list[tuple[Path, str]]]:
    """Group image paths into left/right pairs (conventions in the module docstring).

    Returns ``(pairs, errors)``: pairs sorted by output path, and one ``(path, reason)``
    per file that cannot be used, sorted by path. Every input path ends up in exactly one
    of the two (duplicates in ``paths`` are counted once). ``root`` only decides
    :attr:`StereoPair.relative`; pairing itself looks at the paths as given.
    """
    errors: list[tuple[Path, str]] = []
    groups: dict[tuple[Path, str], list[_View]] = defaultdict(list)
    for path in dict.fromkeys(Path(p) for p in paths):
        view = _classify(path)
        if isinstance(view, str):
            errors.append((path, view))
        else:
            groups[(view.folder, view.stem)].append(view)

    candidates: list[StereoPair] = []
    for (folder, stem), views in groups.items():
        lefts = [view for view in views if view.side == LEFT]
        rights = [view for view in views if view.side == RIGHT]
        if len(lefts) == 1 and len(rights) == 1:
            relative = _relative_to_root(folder / stem, root)
            candidates.append(StereoPair(lefts[0].path, rights[0].path, stem, relative))
        else:
            errors.extend(_group_errors(lefts, rights))

    pairs, collisions = _drop_output_collisions(candidates)
    errors.extend(collisions)
    pairs.sort(key=lambda pair: (pair.relative.parts, pair.left.parts, pair.right.parts))
    errors.sort(key=lambda error: (error[0].parts, error[1]))
    return pairs, errors


def _classify(path: Path) -> _View | str:
    """The view ``path`` is, or the reason it is none."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = suffix or "(no suffix)"
        return f"unsupported file type {shown} (expected {', '.join(SUPPORTED_SUFFIXES)})"
    marked = _MARKED_STEM.match(path.stem)
    folder_word = path.parent.name
    folder_side = _SIDE_WORDS.get(folder_word.lower()) if folder_word else None

    if marked is not None:
        stem, marker = marked["stem"], marked["marker"]
        side = _SIDE_WORDS[marker.lower()]
        partner_name = f"{stem}_{_swap_word(marker)}.*"
        if folder_side is None:
            return _View(path, side, path.parent, stem, str(path.parent / partner_name))
        if folder_side != side:
            return (
                f"ambiguous side: folder {folder_word}/ says {folder_side} but the name's "
                f"_{marker} says {side}; rename the file or move it"
            )
        folder = path.parent.parent
        partner = folder / _swap_word(folder_word) / partner_name
        return _View(path, side, folder, stem, str(partner))

    if folder_side is not None:
        folder = path.parent.parent
        partner = folder / _swap_word(folder_word) / f"{path.stem}.*"
        return _View(path, folder_side, folder, path.stem, str(partner))
    return NOT_A_VIEW


def _swap_word(word: str) -> str:
    """The other side's marker in the same spelling: L->R, l->r, Left->Right, LEFT->RIGHT."""
    other = _SWAP[word.lower()]
    if word.isupper():
        return other.upper()
    if word[0].isupper():
        return other.capitalize()
    return other


def _group_errors(lefts: list[_View], rights: list[_View]) -> list[tuple[Path, str]]:
    """Errors for a (folder, stem) group that is not exactly one left and one right."""
    errors = []
    for same, other in ((lefts, rights), (rights, lefts)):
        for view in same:
            errors.append((view.path, _group_reason(view, same, other)))
    return errors


def _group_reason(view: _View, same: list[_View], other: list[_View]) -> str:
    other_side = RIGHT if view.side == LEFT else LEFT
    if len(same) > 1:
        reason = f"ambiguous: {len(same)} {view.side} views for one pair ({_names(same)})"
        if not other:
            reason += f" and no {other_side} view (expected {view.partner})"
        return reason
    if len(other) > 1:
        return (
            f"ambiguous: {len(other)} {other_side} views match this {view.side} view "
            f"({_names(other)})"
        )
    return f"{view.side} view without a {other_side} view (expected {view.partner})"


def _names(views: list[_View]) -> str:
    return ", ".join(str(path) for path in sorted((view.path for view in views), key=_parts))


def _parts(path: Path) -> tuple[str, ...]:
    return path.parts


def _drop_output_collisions(
    candidates: list[StereoPair],
) -> tuple[list[StereoPair], list[tuple[Path, str]]]:
    """Keep pairs whose output path is theirs alone; the others become errors."""
    by_output: dict[Path, list[StereoPair]] = defaultdict(list)
    for pair in candidates:
        by_output[pair.relative].append(pair)
    pairs: list[StereoPair] = []
    errors: list[tuple[Path, str]] = []
    for relative, group in by_output.items():
        if len(group) == 1:
            pairs.extend(group)
            continue
        shown = "; ".join(
            f"{pair.left} + {pair.right}"
            for pair in sorted(group, key=lambda pair: pair.left.parts)
        )
        reason = (
            f"ambiguous output: {len(group)} pairs would be written as "
            f"{relative}_L/_R ({shown}); give the source folder as root to mirror sub-folders"
        )
        for pair in group:
            errors.extend([(pair.left, reason), (pair.right, reason)])
    return pairs, errors


# --------------------------------------------------------------------------- output paths


def output_paths(pair: StereoPair, dst: Path, ext: str) -> tuple[Path, Path]:
    """``(left, right)`` output paths: ``dst/<relative>_L.<ext>`` and ``..._R.<ext>``.

    ``ext`` may be given with or without the dot. Sub-folders of ``pair.relative`` are
    mirrored under ``dst``. Raises ValueError if an output would be one of the pair's own
    input files (e.g. writing ``scene_L.png`` in place), because that destroys the input.
    """
    if not ext.strip(". "):
        raise ValueError("output extension must not be empty")
    suffix = _normalise_ext(ext)
    base = Path(dst) / pair.relative
    outputs = (
        base.with_name(f"{base.name}_L{suffix}"),
        base.with_name(f"{base.name}_R{suffix}"),
    )
    for output in outputs:
        for source in (pair.left, pair.right):
            if _same_file(source, output):
                raise ValueError(
                    f"output {output} would overwrite its input {source}; "
                    "choose another output folder or extension"
                )
    return outputs
