"""Finding input images and deciding where each result goes.

Batch runs are restarted, sharded across GPUs and compared against ground truth, so the
list of inputs must be deterministic, the output layout must mirror the input layout,
and an output must never overwrite its own input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO, TypeVar

from irctl.io.images import SUPPORTED_SUFFIXES
from irctl.io.partials import PARTIAL_SUFFIX

T = TypeVar("T")

STDIN_MARKER = "-"


def discover(
    src: str | os.PathLike[str],
    *,
    stdin: TextIO | None = None,
    recursive: bool = True,
    exclude: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """List the input files named by ``src``.

    ``"-"`` reads one path per line from ``stdin`` (blank lines and ``#`` comments
    skipped, duplicates dropped, order kept); a directory yields its image files sorted
    by relative path, skipping hidden entries and temp files; a single file is returned
    as is. Explicitly named files are never filtered by suffix: the reader then reports
    them as errors instead of the run silently doing nothing with them.

    ``exclude`` (the output folder) is not walked when it lies inside ``src``: its files are
    a previous run's outputs, and restoring them again nests ``restored/restored/...`` one
    level deeper on every rerun.
    """
    if str(src) == STDIN_MARKER:
        return _paths_from_lines(stdin if stdin is not None else sys.stdin)
    root = Path(src)
    if root.is_dir():
        return _images_in(root, recursive=recursive, exclude=exclude)
    if root.exists():
        return [root]
    raise FileNotFoundError(f"{src}: no such file or directory")


def _paths_from_lines(lines: Iterable[str]) -> list[Path]:
    seen: set[str] = set()
    paths: list[Path] = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#") or entry in seen:
            continue
        seen.add(entry)
        paths.append(Path(entry))
    return paths


def _images_in(
    root: Path, *, recursive: bool, exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    skip = _identity(exclude) if exclude is not None and os.path.isdir(exclude) else None
    walked = _walk_files(root, recursive=recursive, skip=skip)
    relative = [path.relative_to(root) for path in walked]
    relative = [rel for rel in relative if _is_candidate(rel.name)]
    return [root / rel for rel in sorted(relative, key=lambda rel: rel.parts)]


def _is_candidate(name: str) -> bool:
    lowered = name.lower()
    return (
        not name.startswith(".")
        and not lowered.endswith(PARTIAL_SUFFIX)
        and lowered.endswith(SUPPORTED_SUFFIXES)
    )


def _walk_files(
    root: Path, *, recursive: bool, skip: tuple[int, int] | None = None
) -> Iterator[Path]:
    """Files under ``root``, following directory symlinks but never looping, and never inside
    the directory ``skip`` (device, inode: the same folder by any name or link)."""
    visited: set[tuple[int, int]] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        identity = _identity(current)
        if identity in visited or identity == skip:
            dirs[:] = []
            continue
        visited.add(identity)
        dirs[:] = [name for name in dirs if not name.startswith(".")] if recursive else []
        for name in files:
            yield Path(current) / name


def _identity(directory: str | os.PathLike[str]) -> tuple[int, int]:
    info = os.stat(directory)
    return (info.st_dev, info.st_ino)


def output_path(
    src_file: Path,
    dst: Path,
    *,
    src_root: Path | None,
    ext: str | None = None,
    suffix: str = "",
) -> Path:
    """Where the result for ``src_file`` goes under ``dst``.

    The path relative to ``src_root`` is mirrored (flat file name when there is no root
    or the file lies outside it); ``ext`` replaces the file suffix and ``suffix`` is
    appended to the stem. Raises ValueError if the result would be the input itself,
    because writing it would destroy the original.
    """
    src_file, dst = Path(src_file), Path(dst)
    relative = _relative_to_root(src_file, src_root)
    new_suffix = _normalise_ext(ext) if ext else src_file.suffix
    target = dst / relative.with_name(f"{src_file.stem}{suffix}{new_suffix}")
    if _same_file(src_file, target):
        raise ValueError(
            f"output {target} would overwrite its input {src_file}; "
            "choose another output folder, extension or suffix"
        )
    return target


def _relative_to_root(src_file: Path, src_root: Path | None) -> Path:
    if src_root is None:
        return Path(src_file.name)
    for file_form, root_form in (
        (src_file, Path(src_root)),
        (Path(os.path.abspath(src_file)), Path(os.path.abspath(src_root))),
    ):
        try:
            return file_form.relative_to(root_form)
        except ValueError:
            continue
    return Path(src_file.name)


def _normalise_ext(ext: str) -> str:
    return ext if ext.startswith(".") else f".{ext}"


def _same_file(first: Path, second: Path) -> bool:
    """Same path lexically, or the same file on disk (symlinks, case-insensitive FS)."""
    if os.path.normcase(os.path.abspath(first)) == os.path.normcase(os.path.abspath(second)):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def pair_by_stem(
    pred: list[Path], gt: list[Path], *, pred_suffix: str = ""
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Match predictions to ground truth by file stem.

    ``pred_suffix`` (e.g. ``"_out"``) is stripped from the end of a prediction's stem
    when present, so ``a_out.png`` pairs with ``a.tif``. Returns (pairs sorted by
    ground-truth stem, unmatched predictions, unmatched ground truth). Two files with the
    same stem on one side raise ValueError: silently picking one would score the wrong
    image.
    """
    pred_by_stem = _index_by_stem(pred, lambda path: _strip_suffix(path.stem, pred_suffix))
    gt_by_stem = _index_by_stem(gt, lambda path: path.stem)
    common = sorted(pred_by_stem.keys() & gt_by_stem.keys())
    pairs = [(pred_by_stem[stem], gt_by_stem[stem]) for stem in common]
    unmatched_pred = [path for stem, path in pred_by_stem.items() if stem not in gt_by_stem]
    unmatched_gt = [path for stem, path in gt_by_stem.items() if stem not in pred_by_stem]
    return pairs, unmatched_pred, unmatched_gt


def _strip_suffix(stem: str, suffix: str) -> str:
    if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
        return stem[: -len(suffix)]
    return stem


def _index_by_stem(paths: list[Path], key: Callable[[Path], str]) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in paths:
        stem = key(path)
        if stem in index:
            raise ValueError(f"ambiguous stem {stem!r}: {index[stem]} and {path}")
        index[stem] = path
    return index


def shard(files: list[T], rank: int, world: int) -> list[T]:
    """This worker's share of ``files`` (every ``world``-th item from ``rank``).

    Interleaving keeps shards balanced when the list is sorted by size or folder.
    """
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return files[rank::world]


# --- options checked before anything runs (the CLI calls these; each raises one ValueError
# line naming the value and what is allowed) ------------------------------------------------


def check_source(src: str) -> str:
    """``--src``: ``-`` (paths on stdin) or an existing file or folder."""
    if src != STDIN_MARKER and not os.path.exists(src):
        raise ValueError(f"{src!r} does not exist; give a folder, an image file or '-' (stdin)")
    return src


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """A folder that is there or can be made: not a file, and its nearest existing ancestor a
    writable folder. Found before the model loads, not after the first restore."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a folder; give a folder")
    _check_creatable(path)
    return path


def check_folder_path(path: str | os.PathLike[str]) -> Path:
    """A folder, or a path where one could be (nothing but folders above it): where files
    are looked for that may not be there yet (perceptual weights)."""
    path = Path(path)
    existing = Path(os.path.abspath(path))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{str(path)!r} cannot be a folder: {str(existing)!r} is a file")
    return path


def check_output_file(path: str | os.PathLike[str], suffixes: tuple[str, ...] = ()) -> Path:
    """A file that can be written: not a folder, in a folder that is there or can be made,
    with one of ``suffixes`` (any when empty)."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{str(path)!r} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name")
    _check_creatable(path.parent)
    return path


def _check_creatable(folder: Path) -> None:
    """``folder`` exists, or its nearest existing ancestor is a folder we may write into."""
    target = Path(os.path.abspath(folder))
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{str(folder)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == target:
            raise ValueError(f"{str(folder)!r} is not writable")
        raise ValueError(f"{str(folder)!r} cannot be created: {str(existing)!r} is not writable")


def check_ext(ext: str) -> str:
    """``--ext``: a format irctl writes (png, jpg, tif...), with or without its dot; refused
    before the model runs, not after it has restored every image."""
    normalised = _normalise_ext(ext.strip().lower())
    if normalised not in SUPPORTED_SUFFIXES:
        allowed = ", ".join(s.lstrip(".") for s in SUPPORTED_SUFFIXES)
        raise ValueError(f"cannot write {ext!r} files; choose {allowed}")
    return ext


def check_suffix(suffix: str) -> str:
    """``--suffix`` is appended to a file name: a path separator would put the output in
    another folder, a NUL byte cannot be in a name."""
    bad = [c for c in (os.sep, os.altsep, "\0") if c and c in suffix]
    if bad:
        raise ValueError(f"{suffix!r} contains {bad[0]!r}; a suffix cannot hold {os.sep!r} or NUL")
    return suffix
