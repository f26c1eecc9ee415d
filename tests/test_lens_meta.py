"""Lens metadata for bokeh (irctl/io/lens_meta.py): tables, precedence and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irctl.data.lenses import LENSES
from irctl.io.lens_meta import LensMetaError, build_lens_conditioner, read_lens_table


def _csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("file,src_lens,tgt_lens\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return path


def test_csv_table_matches_by_relative_path_name_or_stem(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _csv(
        src / "lenses.csv",
        [
            ("sub/a.png", "Sony50mmf16.0BS", "Sony50mmf1.8BS"),
            ("b.jpg", "Canon50mmf1.4BS", "Canon50mmf16.0BS"),
            ("c", "sony50mmf1.8bs", "canon50mmf1.8bs"),  # case-insensitive names
        ],
    )
    cond = build_lens_conditioner(meta=None, src_root=src, src_lens=None, tgt_lens=None)
    assert cond(src / "sub" / "a.png").scalars == (16.0, 1.8)
    assert cond(src / "b.jpg").scalars == (-1.4, -16.0)
    assert cond(src / "c.tif").scalars == (1.8, -1.8)
    with pytest.raises(ValueError, match="no lens metadata"):
        cond(src / "d.png")


def test_table_beats_run_flags_which_beat_the_preset_default(tmp_path: Path) -> None:
    meta = tmp_path / "m.json"
    meta.write_text(
        json.dumps({"x.png": {"src_lens": "Sony50mmf1.8BS", "tgt_lens": "Sony50mmf16.0BS"}})
    )
    flags = build_lens_conditioner(
        meta=meta,
        src_root=tmp_path,
        src_lens="Canon50mmf16.0BS",
        tgt_lens="Canon50mmf1.4BS",
        preset_default=("Sony50mmf16.0BS", "Sony50mmf1.8BS"),
    )
    assert flags(tmp_path / "x.png").scalars == (1.8, 16.0)
    assert flags(tmp_path / "y.png").scalars == (-16.0, -1.4)
    preset_only = build_lens_conditioner(
        meta=None,
        src_root=None,
        src_lens=None,
        tgt_lens=None,
        preset_default=("Sony50mmf16.0BS", "Sony50mmf1.8BS"),
    )
    assert preset_only(tmp_path / "y.png").scalars == (16.0, 1.8)


def test_unknown_lens_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        build_lens_conditioner(
            meta=None, src_root=None, src_lens="Leica35mmf2", tgt_lens="Sony50mmf1.8BS"
        )
    message = str(err.value)
    assert "Leica35mmf2" in message and all(name in message for name in LENSES)
    bad = _csv(tmp_path / "bad.csv", [("a.png", "Sony50mmf1.8BS", "Nikon")])
    with pytest.raises(LensMetaError, match=r"bad\.csv line 2: unknown lens 'Nikon'"):
        read_lens_table(bad)


@pytest.mark.parametrize(
    "text,match",
    [
        ("file,src\na.png,Sony50mmf1.8BS\n", "needs the columns"),
        ("{not json", "not valid JSON"),
        ('[{"file": "a.png", "src_lens": "Sony50mmf1.8BS"}]', "missing 'tgt_lens'"),
    ],
)
def test_malformed_tables_are_refused_with_the_reason(tmp_path: Path, text, match) -> None:
    path = tmp_path / ("m.json" if text.lstrip().startswith(("{", "[")) else "m.csv")
    path.write_text(text)
    with pytest.raises(LensMetaError, match=match):
        read_lens_table(path)


def test_duplicate_rows_and_half_given_flags_are_errors(tmp_path: Path) -> None:
    dup = _csv(
        tmp_path / "d.csv",
        [
            ("a.png", "Sony50mmf1.8BS", "Sony50mmf16.0BS"),
            ("a.png", "Sony50mmf1.8BS", "Sony50mmf16.0BS"),
        ],
    )
    with pytest.raises(LensMetaError, match="listed twice"):
        read_lens_table(dup)
    with pytest.raises(ValueError, match="both --src-lens and --tgt-lens"):
        build_lens_conditioner(meta=None, src_root=None, src_lens="Sony50mmf1.8BS", tgt_lens=None)


def test_disparity_from_the_ntire_meta_txt_the_flag_or_the_preset(tmp_path: Path) -> None:
    """The released latent-bokeh net takes a third scalar: the challenge's meta.txt (found in
    the source folder) gives it per image; --disparity covers the rest, else the preset's."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "meta.txt").write_text(
        "00000, Sony50mmf1.8BS, Sony50mmf16.0BS, 35\n\n00001, Canon50mmf1.4BS, Sony50mmf1.8BS, 12.5\n"
    )
    lenses = build_lens_conditioner(
        meta=None,
        src_root=src,
        src_lens="Sony50mmf16.0BS",
        tgt_lens="Sony50mmf1.8BS",
        disparity=20.0,
        preset_disparity=35.0,
    )
    assert lenses(src / "00000.jpg").scalars == (1.8, 16.0, 35.0)
    assert lenses(src / "00001.png").scalars == (-1.4, 1.8, 12.5)
    assert lenses(src / "other.png").scalars == (16.0, 1.8, 20.0)
    preset_only = build_lens_conditioner(
        meta=None, src_root=src, src_lens=None, tgt_lens=None, preset_disparity=35.0
    )
    assert preset_only(src / "00001.png").scalars == (-1.4, 1.8, 12.5)
    # a two-scalar model ignores the table's disparity, and refuses the flag up front
    plain = build_lens_conditioner(meta=None, src_root=src, src_lens=None, tgt_lens=None)
    assert plain(src / "00000.jpg").scalars == (1.8, 16.0)
    with pytest.raises(ValueError, match="--disparity is for a model conditioned on it"):
        build_lens_conditioner(meta=None, src_root=src, src_lens=None, tgt_lens=None, disparity=3.0)


def test_csv_disparity_column_and_bad_disparities(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(
        "file,src_lens,tgt_lens,disparity\na.png,Sony50mmf1.8BS,Sony50mmf16.0BS,40\n"
        "b.png,Sony50mmf1.8BS,Sony50mmf16.0BS,\n"
    )
    rows = read_lens_table(table)
    assert (rows["a.png"].disparity, rows["b.png"].disparity) == (40.0, None)
    lenses = build_lens_conditioner(meta=table, src_root=None, src_lens=None, tgt_lens=None)
    lenses.with_disparity = True
    with pytest.raises(ValueError, match="no disparity for this image"):
        lenses(tmp_path / "b.png")
    for bad, match in (
        ("00000, Sony50mmf1.8BS, Sony50mmf16.0BS\n", r"m\.txt line 1: expected 4"),
        ("00000, Sony50mmf1.8BS, Sony50mmf16.0BS, far\n", "line 1: could not convert"),
        ("00000, Sony50mmf1.8BS, Sony50mmf16.0BS, nan\n", "finite"),
    ):
        (tmp_path / "m.txt").write_text(bad)
        with pytest.raises(LensMetaError, match=match):
            read_lens_table(tmp_path / "m.txt")
