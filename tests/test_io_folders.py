"""Properties of irctl.io.folders: deterministic discovery, safe output paths, pairing,
sharding."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from irctl.io.folders import discover, output_path, pair_by_stem, shard


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    touch(
        root,
        "b.png",
        "A.JPG",
        "sub/c.tif",
        "sub/deep/d.TIFF",
        "sub2/e.jpeg",
        ".hidden.png",
        ".cache/f.png",
        "sub/.g.png",
        "h.png.partial",
        ".i.png.123.abcd.partial",
        "notes.txt",
        "noext",
    )
    return root


def test_discover_directory_is_sorted_and_skips_hidden_partial_and_non_images(tree):
    found = discover(tree)
    assert [p.relative_to(tree).as_posix() for p in found] == [
        "A.JPG",
        "b.png",
        "sub/c.tif",
        "sub/deep/d.TIFF",
        "sub2/e.jpeg",
    ]
    assert all(p.is_relative_to(tree) for p in found)


def test_discover_non_recursive(tree):
    assert [p.name for p in discover(str(tree), recursive=False)] == ["A.JPG", "b.png"]


def test_discover_is_independent_of_creation_order(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    touch(first, "z.png", "a/b.png", "m.png")
    touch(second, "m.png", "a/b.png", "z.png")
    rel = [[p.relative_to(root) for p in discover(root)] for root in (first, second)]
    assert rel[0] == rel[1]


def test_discover_survives_symlink_loops(tmp_path):
    touch(tmp_path, "root/a.png")
    os.symlink(tmp_path / "root", tmp_path / "root" / "loop")
    assert [p.name for p in discover(tmp_path / "root")] == ["a.png"]


def test_discover_stdin_keeps_order_and_odd_suffixes():
    text = "\n  second.png  \n# a comment\nfirst.bmp\n\nsecond.png\n/abs/third.tif\n"
    assert discover("-", stdin=io.StringIO(text)) == [
        Path("second.png"),
        Path("first.bmp"),
        Path("/abs/third.tif"),
    ]


def test_discover_single_file_is_returned_even_with_odd_suffix(tmp_path):
    touch(tmp_path, "scan.bmp")
    assert discover(tmp_path / "scan.bmp") == [tmp_path / "scan.bmp"]


def test_discover_missing_source_names_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        discover(missing)


def test_output_path_mirrors_tree_and_changes_ext_and_suffix(tmp_path):
    src_root, dst = tmp_path / "in", tmp_path / "out"
    src = src_root / "sub" / "x.y.jpg"
    assert output_path(src, dst, src_root=src_root) == dst / "sub" / "x.y.jpg"
    assert output_path(src, dst, src_root=src_root, ext=".png", suffix="_out") == (
        dst / "sub" / "x.y_out.png"
    )
    assert output_path(src, dst, src_root=src_root, ext="tif") == dst / "sub" / "x.y.tif"


def test_output_path_is_flat_without_root_or_outside_it(tmp_path):
    dst = tmp_path / "out"
    src = tmp_path / "in" / "sub" / "x.png"
    assert output_path(src, dst, src_root=None) == dst / "x.png"
    assert output_path(src, dst, src_root=tmp_path / "other") == dst / "x.png"


def test_output_path_matches_relative_and_absolute_spellings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = Path("in/sub/x.png")
    dst = tmp_path / "out"
    assert output_path(src, dst, src_root=tmp_path / "in") == dst / "sub" / "x.png"


def test_output_path_refuses_to_overwrite_input(tmp_path, monkeypatch):
    src_root = tmp_path / "in"
    touch(src_root, "sub/x.png")
    src = src_root / "sub" / "x.png"
    with pytest.raises(ValueError, match="overwrite"):
        output_path(src, src_root, src_root=src_root)
    with pytest.raises(ValueError, match="overwrite"):
        output_path(src, src_root / "sub", src_root=None, ext="png")
    monkeypatch.chdir(tmp_path)  # same file, spelled differently
    with pytest.raises(ValueError, match="overwrite"):
        output_path(Path("in/sub/x.png"), tmp_path / "in", src_root=Path("in"))
    os.symlink(src_root, tmp_path / "alias")  # same file through a symlink
    with pytest.raises(ValueError, match="overwrite"):
        output_path(src, tmp_path / "alias", src_root=src_root)
    assert output_path(src, src_root, src_root=src_root, suffix="_out").name == "x_out.png"


def test_pair_by_stem_with_prediction_suffix():
    pred = [Path("p/b_out.png"), Path("p/a_out.png"), Path("p/c.png"), Path("p/zz_out.png")]
    gt = [Path("g/c.tif"), Path("g/a.png"), Path("g/b.jpg"), Path("g/lonely.png")]
    pairs, unmatched_pred, unmatched_gt = pair_by_stem(pred, gt, pred_suffix="_out")
    assert pairs == [
        (Path("p/a_out.png"), Path("g/a.png")),
        (Path("p/b_out.png"), Path("g/b.jpg")),
        (Path("p/c.png"), Path("g/c.tif")),
    ]
    assert unmatched_pred == [Path("p/zz_out.png")]
    assert unmatched_gt == [Path("g/lonely.png")]


def test_pair_by_stem_without_suffix_and_whole_stem_equal_to_suffix():
    pairs, unmatched_pred, _ = pair_by_stem(
        [Path("_out.png"), Path("a.png")], [Path("a.png")], pred_suffix="_out"
    )
    assert pairs == [(Path("a.png"), Path("a.png"))]
    assert unmatched_pred == [Path("_out.png")]


def test_pair_by_stem_rejects_ambiguous_stems():
    with pytest.raises(ValueError, match="ambiguous"):
        pair_by_stem([Path("a.png")], [Path("x/a.png"), Path("y/a.tif")])
    with pytest.raises(ValueError, match="ambiguous"):
        pair_by_stem([Path("a.png"), Path("a_out.png")], [Path("a.png")], pred_suffix="_out")


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shards_partition_the_list_evenly(world):
    files = list(range(20))
    parts = [shard(files, rank, world) for rank in range(world)]
    assert sorted(x for part in parts for x in part) == files
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts[0] == files[::world]


@pytest.mark.parametrize(("rank", "world"), [(-1, 2), (2, 2), (0, 0), (0, -1)])
def test_shard_rejects_invalid_rank_or_world(rank, world):
    with pytest.raises(ValueError):
        shard([1, 2, 3], rank, world)
