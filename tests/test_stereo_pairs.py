"""Properties of irctl.io.stereo: left/right pairing, output names, atomic pair writing."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irctl.io.images import read_image, write_image
from irctl.io.outputs import all_done, remove_stale_output_partials, write_all_atomically
from irctl.io.stereo import (
    NOT_A_VIEW,
    StereoPair,
    output_paths,
    pair_views,
)


def touch(root: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        paths.append(path)
    return paths


def as_names(pairs: list[StereoPair], root: Path) -> list[tuple[str, str, str]]:
    return [
        (p.left.relative_to(root).as_posix(), p.right.relative_to(root).as_posix(), p.stem)
        for p in pairs
    ]


def error_map(errors: list[tuple[Path, str]], root: Path) -> dict[str, str]:
    mapped = {path.relative_to(root).as_posix(): reason for path, reason in errors}
    assert len(mapped) == len(errors), "one error per file"
    return mapped


def listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize(
    ("left", "right", "stem"),
    [
        ("scene_L.png", "scene_R.png", "scene"),
        ("scene_l.png", "scene_r.png", "scene"),
        ("scene_L.png", "scene_r.png", "scene"),
        ("scene_left.tif", "scene_right.tif", "scene"),
        ("scene_Left.tif", "scene_RIGHT.tif", "scene"),
        ("scene_L.png", "scene_R.jpg", "scene"),  # extensions may differ
        ("scene.v2_L.PNG", "scene.v2_R.png", "scene.v2"),  # dots in the stem, upper suffix
        ("L/0001.png", "R/0001.png", "0001"),
        ("left/0001.png", "right/0001.png", "0001"),
        ("Left/0001.png", "RIGHT/0001.png", "0001"),
        ("left/0001_left.png", "right/0001_right.png", "0001"),  # both conventions agree
    ],
)
def test_each_convention_pairs(tmp_path, left, right, stem):
    paths = touch(tmp_path, left, right)
    pairs, errors = pair_views(list(reversed(paths)), root=tmp_path)
    assert errors == []
    assert as_names(pairs, tmp_path) == [(left, right, stem)]
    assert pairs[0].relative == Path(stem)


def test_folder_convention_mirrors_the_folder_above_l_and_r(tmp_path):
    paths = touch(tmp_path, "shots/L/0001.png", "shots/R/0001.png")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert errors == []
    assert pairs == [StereoPair(paths[0], paths[1], "0001", Path("shots/0001"))]


def test_mixed_conventions_in_one_folder(tmp_path):
    paths = touch(
        tmp_path,
        "a_L.png",
        "a_R.png",
        "b_left.jpg",
        "b_right.jpg",
        "c_l.tif",
        "c_R.png",
        "L/d.png",
        "R/d.png",
        "e_L.png",
        "e_right.png",  # different marker spellings still name one pair
    )
    pairs, errors = pair_views(paths, root=tmp_path)
    assert errors == []
    assert [(p.stem, p.relative.as_posix()) for p in pairs] == [
        ("a", "a"),
        ("b", "b"),
        ("c", "c"),
        ("d", "d"),
        ("e", "e"),
    ]
    assert as_names(pairs, tmp_path)[3] == ("L/d.png", "R/d.png", "d")


def test_marker_is_only_the_last_word_of_the_stem(tmp_path):
    paths = touch(
        tmp_path,
        "a_Lamp_R.png",  # right view of "a_Lamp": the _L in the middle means nothing
        "a_Lamp_L.png",
        "my_Left_shot_L.png",
        "my_Left_shot_R.png",
        "L_R_L.png",
        "L_R_R.png",
        "x_Lamp.png",  # no marker at the end: not a view
        "right_side.png",
    )
    pairs, errors = pair_views(paths, root=tmp_path)
    assert as_names(pairs, tmp_path) == [
        ("L_R_L.png", "L_R_R.png", "L_R"),
        ("a_Lamp_L.png", "a_Lamp_R.png", "a_Lamp"),
        ("my_Left_shot_L.png", "my_Left_shot_R.png", "my_Left_shot"),
    ]
    assert error_map(errors, tmp_path) == {"right_side.png": NOT_A_VIEW, "x_Lamp.png": NOT_A_VIEW}


def test_a_lone_middle_l_is_not_a_left_view(tmp_path):
    (lamp,) = touch(tmp_path, "a_Lamp_R.png")
    pairs, errors = pair_views([lamp])
    assert pairs == []
    assert errors == [
        (lamp, f"right view without a left view (expected {tmp_path / 'a_Lamp_L.*'})")
    ]


@pytest.mark.parametrize("name", ["scene.png", "_L.png", "L.png", "scene_LL.png", "scene-L.png"])
def test_names_without_a_marker_are_errors(tmp_path, name):
    (path,) = touch(tmp_path, name)
    assert pair_views([path]) == ([], [(path, NOT_A_VIEW)])


def test_unsupported_suffix_is_reported_and_does_not_compete(tmp_path):
    paths = touch(tmp_path, "scene_L.png", "scene_L.json", "scene_R.png", "notes_L")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert as_names(pairs, tmp_path) == [("scene_L.png", "scene_R.png", "scene")]
    reasons = error_map(errors, tmp_path)
    assert set(reasons) == {"scene_L.json", "notes_L"}
    assert reasons["scene_L.json"].startswith("unsupported file type .json")
    assert reasons["notes_L"].startswith("unsupported file type (no suffix)")


# --------------------------------------------------------------------------- errors


def test_missing_partner_names_the_file_and_the_expected_partner(tmp_path):
    paths = touch(
        tmp_path,
        "scene_L.png",
        "other_right.png",
        "x_l.png",
        "y_LEFT.png",
        "shots/L/0001.png",
        "shots/Right/0002.png",
        "ok_L.png",
        "ok_R.png",
    )
    pairs, errors = pair_views(paths, root=tmp_path)
    assert as_names(pairs, tmp_path) == [("ok_L.png", "ok_R.png", "ok")]
    assert error_map(errors, tmp_path) == {
        "scene_L.png": f"left view without a right view (expected {tmp_path / 'scene_R.*'})",
        "other_right.png": f"right view without a left view (expected {tmp_path / 'other_left.*'})",
        "x_l.png": f"left view without a right view (expected {tmp_path / 'x_r.*'})",
        "y_LEFT.png": f"left view without a right view (expected {tmp_path / 'y_RIGHT.*'})",
        "shots/L/0001.png": (
            f"left view without a right view (expected {tmp_path / 'shots/R/0001.*'})"
        ),
        "shots/Right/0002.png": (
            f"right view without a left view (expected {tmp_path / 'shots/Left/0002.*'})"
        ),
    }


def test_relative_input_paths_give_relative_messages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "scene_L.png")
    assert pair_views([Path("scene_L.png")]) == (
        [],
        [(Path("scene_L.png"), "left view without a right view (expected scene_R.*)")],
    )


def test_two_candidates_for_one_side_make_the_whole_group_ambiguous(tmp_path):
    paths = touch(tmp_path, "scene_L.png", "scene_L.jpg", "scene_R.png", "ok_L.png", "ok_R.png")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert [p.stem for p in pairs] == ["ok"]
    reasons = error_map(errors, tmp_path)
    assert set(reasons) == {"scene_L.png", "scene_L.jpg", "scene_R.png"}
    for name in ("scene_L.png", "scene_L.jpg"):
        assert reasons[name].startswith("ambiguous: 2 left views for one pair")
    assert reasons["scene_R.png"].startswith("ambiguous: 2 left views match this right view")
    for reason in reasons.values():  # every error names both competitors
        assert str(tmp_path / "scene_L.png") in reason
        assert str(tmp_path / "scene_L.jpg") in reason


def test_ambiguous_side_without_partner_also_says_what_is_missing(tmp_path):
    paths = touch(tmp_path, "scene_L.png", "scene_left.png")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert pairs == []
    reasons = error_map(errors, tmp_path)
    assert set(reasons) == {"scene_L.png", "scene_left.png"}
    assert all("2 left views" in r and "no right view" in r for r in reasons.values())


def test_folder_and_suffix_views_of_the_same_output_compete(tmp_path):
    # shots/L/0001.png and shots/0001_L.png would both be written as shots/0001_L.*
    paths = touch(tmp_path, "shots/L/0001.png", "shots/0001_L.png", "shots/R/0001.png")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert pairs == []
    assert set(error_map(errors, tmp_path)) == {
        "shots/L/0001.png",
        "shots/0001_L.png",
        "shots/R/0001.png",
    }


@pytest.mark.parametrize("name", ["L/x_R.png", "R/x_left.png", "right/x_L.png"])
def test_folder_and_name_disagreeing_on_the_side_is_ambiguous(tmp_path, name):
    (path,) = touch(tmp_path, name)
    pairs, errors = pair_views([path])
    assert pairs == []
    assert len(errors) == 1
    assert errors[0][0] == path
    assert errors[0][1].startswith("ambiguous side: folder")


def test_disagreeing_file_does_not_steal_a_partner(tmp_path):
    # L/x_R.png must not be taken as the right view of L/x_L.png, nor of R/x_R.png's pair.
    paths = touch(tmp_path, "L/x_L.png", "L/x_R.png", "R/x_R.png")
    pairs, errors = pair_views(paths, root=tmp_path)
    assert as_names(pairs, tmp_path) == [("L/x_L.png", "R/x_R.png", "x")]
    assert list(error_map(errors, tmp_path)) == ["L/x_R.png"]


def test_flattened_outputs_that_collide_are_errors(tmp_path):
    paths = touch(tmp_path, "a/x_L.png", "a/x_R.png", "b/x_L.png", "b/x_R.png")
    pairs, errors = pair_views(paths)  # no root: outputs would all be x_L / x_R
    assert pairs == []
    reasons = error_map(errors, tmp_path)
    assert len(reasons) == 4
    assert all(r.startswith("ambiguous output: 2 pairs") for r in reasons.values())
    # with the root, sub-folders are mirrored and nothing collides
    pairs, errors = pair_views(paths, root=tmp_path)
    assert errors == []
    assert [p.relative.as_posix() for p in pairs] == ["a/x", "b/x"]


def test_duplicate_input_paths_are_not_ambiguous(tmp_path):
    left, right = touch(tmp_path, "s_L.png", "s_R.png")
    pairs, errors = pair_views([left, right, left, Path(str(left))])
    assert errors == []
    assert pairs == [StereoPair(left, right, "s", Path("s"))]


def test_every_path_ends_up_in_exactly_one_result(tmp_path):
    names = [
        "a_L.png",
        "a_R.png",
        "b_L.png",
        "b_L.jpg",
        "b_R.png",
        "c_left.png",
        "junk.png",
        "L/d.png",
        "R/d.png",
        "L/e_R.png",
        "f.txt",
    ]
    paths = touch(tmp_path, *names)
    pairs, errors = pair_views(paths, root=tmp_path)
    used = [p.left for p in pairs] + [p.right for p in pairs] + [path for path, _ in errors]
    assert sorted(used) == sorted(paths)


def test_output_is_sorted_and_independent_of_input_order(tmp_path):
    names = [f"s{i:02d}_{side}.png" for i in range(12) for side in "LR"]
    names += ["sub/L/z.png", "sub/R/z.png", "a/m_left.png", "a/m_right.png", "lone_L.png"]
    names += ["dup_L.png", "dup_L.jpg", "dup_R.png", "bad.png"]
    paths = touch(tmp_path, *names)
    expected = pair_views(paths, root=tmp_path)
    rng = random.Random(0)
    for _ in range(5):
        shuffled = paths[:]
        rng.shuffle(shuffled)
        assert pair_views(shuffled, root=tmp_path) == expected
    pairs, errors = expected
    relatives = [p.relative.parts for p in pairs]
    assert relatives == sorted(relatives)
    assert relatives[0] == ("a", "m") and relatives[-1] == ("sub", "z")
    assert [e[0].parts for e in errors] == sorted(e[0].parts for e in errors)


def test_stereo_pair_is_frozen(tmp_path):
    pair = StereoPair(tmp_path / "a_L.png", tmp_path / "a_R.png", "a", Path("a"))
    with pytest.raises(AttributeError):
        pair.stem = "b"  # type: ignore[misc]


# --------------------------------------------------------------------------- output paths


def test_output_paths_mirror_sub_folders(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    paths = touch(src, "shots/L/0001.png", "shots/R/0001.png", "flat_left.jpg", "flat_right.jpg")
    pairs, errors = pair_views(paths, root=src)
    assert errors == []
    outputs = [output_paths(pair, dst, "png") for pair in pairs]
    assert outputs == [
        (dst / "flat_L.png", dst / "flat_R.png"),
        (dst / "shots/0001_L.png", dst / "shots/0001_R.png"),
    ]
    assert output_paths(pairs[0], dst, ".tif") == (dst / "flat_L.tif", dst / "flat_R.tif")


def test_output_paths_without_root_are_flat(tmp_path):
    paths = touch(tmp_path, "deep/er/x_L.png", "deep/er/x_R.png")
    (pair,), _ = pair_views(paths)
    assert output_paths(pair, tmp_path / "out", "png") == (
        tmp_path / "out/x_L.png",
        tmp_path / "out/x_R.png",
    )


def test_output_paths_refuse_to_overwrite_the_inputs(tmp_path):
    paths = touch(tmp_path, "scene_L.png", "scene_R.png")
    (pair,), _ = pair_views(paths, root=tmp_path)
    with pytest.raises(ValueError, match="would overwrite its input"):
        output_paths(pair, tmp_path, "png")
    # same folder but another extension is fine
    assert output_paths(pair, tmp_path, "tif") == (
        tmp_path / "scene_L.tif",
        tmp_path / "scene_R.tif",
    )
    with pytest.raises(ValueError, match="empty"):
        output_paths(pair, tmp_path / "out", "")


# --------------------------------------------------------------------------- writing


def writer(data: bytes):
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def failing_writer(path: Path) -> None:
    path.write_bytes(b"half")  # leaves a partial temp behind before failing
    raise RuntimeError("encoder failed")


def write_pair_atomically(left, right, write_left, write_right) -> None:
    """A stereo pair as the restore loop commits it: the left view first, i.e. renamed last."""
    write_all_atomically([(left, write_left), (right, write_right)])


def pair_done(left, right) -> bool:
    return all_done([left, right])


def test_write_pair_writes_both_and_leaves_no_temp(tmp_path):
    left, right = tmp_path / "out/sub/x_L.png", tmp_path / "out/sub/x_R.png"
    seen: list[Path] = []

    def write_left(path: Path) -> None:
        seen.append(path)
        assert not left.exists() and not right.exists()
        path.write_bytes(b"left")

    write_pair_atomically(left, right, write_left, writer(b"right"))
    assert left.read_bytes() == b"left" and right.read_bytes() == b"right"
    assert listing(tmp_path / "out") == ["sub/x_L.png", "sub/x_R.png"]
    assert pair_done(left, right)
    # the writer got a hidden temp in the destination folder with the destination's suffix
    (temp,) = seen
    assert temp.parent == left.parent and temp.name.startswith(".") and temp.suffix == ".png"
    assert ".partial" in temp.name


def test_write_pair_with_real_encoders_picks_format_from_suffix(tmp_path):
    pixels = np.random.default_rng(0).random((8, 10, 3), dtype=np.float32)
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.tif"
    write_pair_atomically(
        left,
        right,
        lambda p: write_image(p, pixels, dtype=np.uint16),
        lambda p: write_image(p, pixels, dtype=np.float32),
    )
    assert left.read_bytes().startswith(b"\x89PNG")
    assert right.read_bytes()[:4] in (b"II*\x00", b"MM\x00*")
    np.testing.assert_array_equal(read_image(right).pixels, pixels)
    assert listing(tmp_path) == ["x_L.png", "x_R.tif"]


@pytest.mark.parametrize("fail", ["left", "right"])
def test_failed_write_leaves_neither_view_nor_temps(tmp_path, fail):
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    write_left = failing_writer if fail == "left" else writer(b"left")
    write_right = failing_writer if fail == "right" else writer(b"right")
    with pytest.raises(RuntimeError, match="encoder failed"):
        write_pair_atomically(left, right, write_left, write_right)
    assert listing(tmp_path) == []
    assert not pair_done(left, right)


def test_failed_rewrite_keeps_the_previous_complete_pair(tmp_path):
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    write_pair_atomically(left, right, writer(b"old-left"), writer(b"old-right"))
    with pytest.raises(RuntimeError):
        write_pair_atomically(left, right, writer(b"new-left"), failing_writer)
    assert (left.read_bytes(), right.read_bytes()) == (b"old-left", b"old-right")
    assert pair_done(left, right)
    assert listing(tmp_path) == ["x_L.png", "x_R.png"]


def test_writer_that_writes_nothing_is_an_error(tmp_path):
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    with pytest.raises(FileNotFoundError, match="did not create"):
        write_pair_atomically(left, right, writer(b"left"), lambda path: None)
    assert listing(tmp_path) == []


def test_interrupt_between_renames_never_mixes_old_and_new(tmp_path, monkeypatch):
    """A run killed after the right view is in place must not leave a pair that counts as
    done, even when it was replacing an older complete pair."""
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    write_pair_atomically(left, right, writer(b"old-left"), writer(b"old-right"))

    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == left:
            raise KeyboardInterrupt  # the process dies before the last rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_pair_atomically(left, right, writer(b"new-left"), writer(b"new-right"))
    monkeypatch.undo()

    assert not pair_done(left, right)  # old left + new right would be a mixed pair
    assert listing(tmp_path) == ["x_R.png"]
    # resume: the lone right view is simply overwritten
    write_pair_atomically(left, right, writer(b"new-left"), writer(b"new-right"))
    assert (left.read_bytes(), right.read_bytes()) == (b"new-left", b"new-right")
    assert listing(tmp_path) == ["x_L.png", "x_R.png"]


def test_left_is_renamed_last(tmp_path, monkeypatch):
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    order: list[Path] = []
    real_replace = os.replace

    def replace(src, dst):
        order.append(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_pair_atomically(left, right, writer(b"l"), writer(b"r"))
    assert order == [right, left]


def test_same_path_for_both_views_is_refused(tmp_path):
    with pytest.raises(ValueError, match="same file"):
        write_pair_atomically(tmp_path / "x.png", tmp_path / "x.png", writer(b"a"), writer(b"b"))


def test_pair_done_needs_both_files(tmp_path):
    left, right = tmp_path / "x_L.png", tmp_path / "x_R.png"
    assert not pair_done(left, right)
    right.write_bytes(b"r")
    assert not pair_done(left, right)
    left.write_bytes(b"l")
    assert pair_done(left, right)
    right.unlink()
    assert not pair_done(left, right)
    right.mkdir()  # a folder in the way is not a written view
    assert not pair_done(left, right)


def test_remove_stale_pair_partials_removes_dead_writers_temps_only(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    out = tmp_path / "out"
    touch(
        out,
        "x_L.png",
        f".x_L.png.{dead_pid}.0a1b2c3d.partial.png",
        f"sub/.y_R.tif.{dead_pid}.deadbeef.partial.tif",
        f".z_L.png.{dead_pid}.0a1b2c3d.partial",
        f".live_L.png.{os.getpid()}.0a1b2c3d.partial.png",
        "not.a.partial.png",
    )
    removed = remove_stale_output_partials(out)
    assert [p.relative_to(out).as_posix() for p in removed] == [
        f".x_L.png.{dead_pid}.0a1b2c3d.partial.png",
        f".z_L.png.{dead_pid}.0a1b2c3d.partial",
        f"sub/.y_R.tif.{dead_pid}.deadbeef.partial.tif",
    ]
    assert listing(out) == [
        f".live_L.png.{os.getpid()}.0a1b2c3d.partial.png",
        "not.a.partial.png",
        "x_L.png",
    ]
