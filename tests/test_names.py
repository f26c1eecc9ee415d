"""Odd file names: a newline in a name does not split its stderr line, and bytes that are not
UTF-8 are shown escaped on stderr and carried losslessly (and as valid UTF-8) in --json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.names import json_name, shown

NEWLINE = b"new\nline.png"
LATIN1 = b"caf\xe9.png"  # 'café' in Latin-1: not UTF-8
BROKEN = b"broken\n\xff.png"  # not an image either


def test_shown_is_one_printable_line() -> None:
    assert shown(os.fsdecode(NEWLINE)) == "new\\nline.png"
    assert shown(os.fsdecode(LATIN1)) == "caf\\xe9.png"
    assert shown("tab\there\x1b.png") == "tab\\there\\x1b.png"
    assert shown("café 写真.png") == "café 写真.png"  # printable names stay as they are


def test_json_name_round_trips_the_bytes() -> None:
    for raw in (NEWLINE, LATIN1, BROKEN, "café.png".encode()):
        row = json.loads(json.dumps(json_name("src", os.fsdecode(raw)), ensure_ascii=False))
        assert bytes.fromhex(row["src_hex"]) == raw
        assert os.fsencode(os.fsdecode(bytes.fromhex(row["src_hex"]))) == raw
        row["src"].encode("utf-8")  # no lone surrogate: valid for any JSON reader


def _create(folder: Path, raw: bytes, content: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), raw), "wb") as fh:
        fh.write(content)


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    pixels = (np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3)
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def odd_folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    try:
        _create(src, LATIN1, _png())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    _create(src, NEWLINE, _png())
    _create(src, BROKEN, b"\x89PNG\r\n\x1a\n truncated")
    return src


def test_restore_prints_one_line_per_odd_name_and_json_keeps_the_bytes(
    odd_folder: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["restore", "--src", str(odd_folder), "--dst", str(dst), "--json"]
    )
    assert result.exit_code == 1, result.output  # the broken file failed, the others restored
    lines = result.stderr.splitlines()
    restored = [line for line in lines if line.startswith("restored ")]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(restored) == 2 and len(errors) == 1, lines
    assert any("new\\nline.png" in line for line in restored)
    assert any("caf\\xe9.png" in line for line in restored)
    assert "broken\\n\\xff.png" in errors[0]
    # every stderr line is a whole message: none starts with the tail of a split name
    assert not [line for line in lines if line.startswith(("line.png", "\\xff.png"))]

    payload = json.loads(result.stdout)
    text = json.dumps(payload, ensure_ascii=False)
    text.encode("utf-8")  # strict UTF-8: no lone surrogates anywhere
    sources = {bytes.fromhex(row["src_hex"]) for row in payload["restored"]}
    assert {os.path.basename(s) for s in sources} == {NEWLINE, LATIN1}
    for row in payload["restored"]:
        assert os.path.isfile(os.fsdecode(bytes.fromhex(row["dst_hex"])))
    (failed,) = payload["failed"]
    assert os.path.basename(bytes.fromhex(failed["file_hex"])) == BROKEN
    assert failed["file"].endswith("broken\\n\\xff.png")


def test_eval_scores_an_odd_name_and_reports_names_losslessly(tmp_path: Path) -> None:
    """A ground-truth name that is not UTF-8 is scored (its per_image.csv row holds the
    name's bytes) and an unmatched one comes back in --json as text plus its bytes."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    try:
        _create(gt, LATIN1, _png())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    _create(pred, LATIN1, _png())
    _create(gt, NEWLINE, _png())  # no prediction for it
    out = tmp_path / "metrics"
    result = CliRunner().invoke(
        app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--json"]
    )
    assert result.exit_code == 1, result.output  # one ground truth lacks its prediction
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].endswith("new\\nline.png"), warnings
    payload = json.loads(result.stdout)
    json.dumps(payload, ensure_ascii=False).encode("utf-8")
    assert payload["n_images"] == 1
    (missing,) = payload["unmatched_gt_hex"]
    assert os.path.basename(bytes.fromhex(missing)) == NEWLINE
    assert b"caf\xe9," in (out / "per_image.csv").read_bytes()
