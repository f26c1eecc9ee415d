"""Hostile inputs (issue 18): a pixel limit read from the header before decoding, non-finite
float values refused on the way in and on the way out, multi-page TIFFs refused rather than cut,
and what the decoding libraries print folded into the file's one error line."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageFile
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.images import DEFAULT_MAX_PIXELS, ImageReadError, read_image, write_image

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, *, colour_type: int = 0) -> bytes:
    """A PNG with valid chunk checksums around whatever image data it is given."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", idat),
            _chunk(b"IEND", b""),
        ]
    )


def _zero_png_bomb(side: int) -> bytes:
    """A grey PNG of side x side zeros: each row is a filter byte and zeros, so it compresses
    to about a thousandth of its decoded size (the issue's 20000x20000 file is ~0.4 MB)."""
    compressor = zlib.compressobj(9)
    row = bytes(side + 1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return _png(side, side, body)


def _restore(*args: str):
    return runner.invoke(app, ["restore", "--task", "denoise", "--threads", "1", *args])


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture()
def good_png(tmp_path: Path, photo_crops: list[np.ndarray]) -> Path:
    path = tmp_path / "src" / "good.png"
    write_image(path, photo_crops[0][:16, :16], dtype=np.uint8)
    return path


# --------------------------------------------------------------------------- pixel limit


def test_default_limit_lets_a_6000x4000_photo_through_and_refuses_the_bomb() -> None:
    assert 6000 * 4000 <= DEFAULT_MAX_PIXELS < 20000 * 20000


def test_png_bomb_is_refused_from_its_header_without_decoding(
    tmp_path: Path, good_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = good_png.parent / "bomb.png"
    bomb.write_bytes(_zero_png_bomb(20000))
    decoded: list[int] = []
    real_imdecode = cv2.imdecode

    def spy(buffer, flags):
        decoded.append(len(buffer))
        return real_imdecode(buffer, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    dst = tmp_path / "dst"
    result = _restore("--src", str(good_png.parent), "--dst", str(dst), "--json")
    assert result.exit_code == 1, result.output
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and str(bomb) in errors[0]
    assert "20000x20000" in errors[0] and "200 megapixels" in errors[0]
    assert decoded == [good_png.stat().st_size]  # the bomb never reached the decoder
    assert sorted(p.name for p in dst.iterdir()) == ["good.png"]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [Path(f["file"]).name for f in summary["failed"]] == ["bomb.png"]


def _jpeg_claiming(tmp_path: Path, width: int, height: int) -> Path:
    """A real 16x16 JPEG whose frame header claims ``width`` x ``height``."""
    buffer = tmp_path / "claims.jpg"
    PILImage.new("RGB", (16, 16), (90, 120, 30)).save(buffer, quality=90)
    data = bytearray(buffer.read_bytes())
    frame = data.index(b"\xff\xc0")  # baseline SOF0: length, precision, height, width
    struct.pack_into(">HH", data, frame + 5, height, width)
    buffer.write_bytes(bytes(data))
    return buffer


def _tiff_claiming(tmp_path: Path, width: int, height: int) -> Path:
    """A real 16x16 TIFF whose directory claims ``width`` x ``height``."""
    path = tmp_path / "claims.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16), photometric="minisblack")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offsets = {code: tif.pages[0].tags[code].valueoffset for code in (256, 257)}
    kinds = {code: tif.pages[0].tags[code].dtype for code in (256, 257)}
    for code, value in ((256, width), (257, height)):
        struct.pack_into("<H" if kinds[code] == 3 else "<I", data, offsets[code], value)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["jpeg", "tiff"])
def test_jpeg_and_tiff_bombs_are_refused_before_any_pixel_is_decoded(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the decoder ran on a file over the pixel limit")

    if kind == "jpeg":
        path = _jpeg_claiming(tmp_path, 20000, 20000)
        monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    else:
        path = _tiff_claiming(tmp_path, 20000, 20000)
        monkeypatch.setattr(tifffile.TiffPage, "asarray", never)
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert "20000x20000 (400.0 megapixels)" in excinfo.value.reason
    assert "limit of 200 megapixels" in excinfo.value.reason


def test_max_pixels_option_sets_the_limit_and_zero_lifts_it(tmp_path: Path, good_png: Path):
    big = good_png.parent / "big.png"
    write_image(big, np.full((20, 30, 3), 0.5, np.float32), dtype=np.uint8)  # 600 pixels
    dst = tmp_path / "dst"
    limited = _restore("--src", str(good_png.parent), "--dst", str(dst), "--max-pixels", "300")
    assert limited.exit_code == 1, limited.output
    errors = _error_lines(limited.stderr)
    assert len(errors) == 1 and str(big) in errors[0] and "30x20" in errors[0]
    assert "limit of 0.0003 megapixels" in errors[0]
    assert sorted(p.name for p in dst.iterdir()) == ["good.png"]  # 256 pixels: under it
    lifted = _restore("--src", str(good_png.parent), "--dst", str(dst), "--max-pixels", "0")
    assert lifted.exit_code == 0, lifted.output
    assert sorted(p.name for p in dst.iterdir()) == ["big.png", "good.png"]
    negative = _restore("--src", str(good_png.parent), "--dst", str(dst), "--max-pixels", "-1")
    assert negative.exit_code == 2


def test_stereo_pairs_hold_each_view_to_the_limit(tmp_path: Path) -> None:
    src = tmp_path / "pairs"
    write_image(src / "scene_L.png", np.full((16, 16, 3), 0.4, np.float32), dtype=np.uint8)
    write_image(src / "scene_R.png", np.full((20, 28, 3), 0.4, np.float32), dtype=np.uint8)
    dst = tmp_path / "dst"
    args = ["restore", "--task", "stereo-sr", "--src", str(src), "--dst", str(dst)]
    result = runner.invoke(app, [*args, "--max-pixels", "300", "--threads", "1"])
    assert result.exit_code == 1, result.output
    errors = _error_lines(result.stderr)
    assert len(errors) == 1
    assert "right view" in errors[0] and str(src / "scene_R.png") in errors[0]
    assert "28x20" in errors[0]
    assert not dst.exists() or not any(dst.iterdir())


def test_eval_holds_images_to_the_default_limit(tmp_path: Path) -> None:
    from irctl.engine.evaluate import evaluate_folders

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    (pred / "a.png").parent.mkdir()
    (pred / "a.png").write_bytes(_png(20000, 20000, zlib.compress(bytes(20001))))
    write_image(gt / "a.png", np.zeros((8, 8), np.float32), dtype=np.uint8)
    result = evaluate_folders(pred, gt, ["psnr"])
    assert len(result.errors) == 1
    assert "20000x20000" in result.errors[0] and "pixel limit" in result.errors[0]


def test_eval_max_pixels_changes_the_limit(tmp_path: Path) -> None:
    """A ×4 output of a large photo can exceed the default: ``--max-pixels`` is eval's too."""
    from irctl.engine.evaluate import evaluate_folders

    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder in (pred, gt):
        write_image(folder / "a.png", np.zeros((8, 12, 3), np.float32), dtype=np.uint8)
    small = evaluate_folders(pred, gt, ["psnr"], max_pixels=95)
    assert len(small.errors) == 1 and "8x12" not in small.errors[0]
    assert "12x8" in small.errors[0] and "pixel limit" in small.errors[0]
    assert not small.errors[0].count("\n")
    assert evaluate_folders(pred, gt, ["psnr"], max_pixels=96).errors == []
    assert evaluate_folders(pred, gt, ["psnr"], max_pixels=0).errors == []


# --------------------------------------------------------------------------- non-finite values


def _float_tiff(path: Path, bad: float, count: int = 4) -> Path:
    values = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    values.reshape(-1, 3)[:count, 1] = bad
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, values, photometric="rgb")
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_tiff_is_one_error_line_and_exit_1(
    tmp_path: Path, good_png: Path, bad: float
) -> None:
    nan_tiff = _float_tiff(good_png.parent / "nan.tif", bad)
    dst = tmp_path / "dst"
    result = _restore("--src", str(good_png.parent), "--dst", str(dst), "--json")
    assert result.exit_code == 1, result.output
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and str(nan_tiff) in errors[0]
    assert "4 of 1024 pixels are not finite" in errors[0]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [Path(job["src"]).name for job in summary["restored"]] == ["good.png"]
    assert sorted(p.name for p in dst.iterdir()) == ["good.png"]


def test_non_finite_float_alpha_is_refused_too(tmp_path: Path) -> None:
    samples = np.random.default_rng(2).random((8, 8, 4)).astype(np.float32)
    samples[2, 3, 3] = np.nan
    path = tmp_path / "alpha.tif"
    tifffile.imwrite(path, samples, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.raises(ImageReadError, match="1 of 64 pixels are not finite"):
        read_image(path)


@pytest.mark.parametrize("suffix, dtype", [(".tif", np.float32), (".png", np.uint8)])
def test_writer_refuses_non_finite_pixels_and_leaves_no_file(tmp_path: Path, suffix, dtype):
    pixels = np.full((8, 8, 3), 0.5, np.float32)
    pixels[1, 1, 0] = np.inf
    path = tmp_path / f"out{suffix}"
    with pytest.raises(ValueError, match="1 pixels are NaN or infinite"):
        write_image(path, pixels, dtype=dtype)
    assert list(tmp_path.iterdir()) == []


def test_a_model_output_with_nan_fails_its_job_and_writes_nothing(
    tmp_path: Path, good_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irctl.engine import restore as engine

    real = engine.restore_array

    def diverging(restorer, pixels, *args, **kwargs):
        out = real(restorer, pixels, *args, **kwargs)
        out[0, 0, 0] = np.nan
        return out

    monkeypatch.setattr(engine, "restore_array", diverging)
    dst = tmp_path / "dst"
    result = _restore("--src", str(good_png), "--dst", str(dst))
    assert result.exit_code == 1, result.output
    errors = _error_lines(result.stderr)
    assert len(errors) == 1 and str(good_png) in errors[0]
    assert "1 of 256 pixels NaN or infinite" in errors[0]
    assert not dst.exists() or not any(dst.iterdir())


# --------------------------------------------------------------------------- multi-page TIFF


def test_multi_page_tiff_is_refused_with_one_line_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for value in (10, 200, 90):
            tif.write(np.full((8, 8), value, np.uint8), photometric="minisblack")
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert "multi-page TIFF (3 pages)" in excinfo.value.reason
    assert "\n" not in str(excinfo.value)


def test_a_tiff_with_a_thumbnail_page_is_one_image(tmp_path: Path) -> None:
    path = tmp_path / "thumb.tif"
    full = np.arange(64, dtype=np.uint8).reshape(8, 8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(full, photometric="minisblack")
        tif.write(full[::2, ::2], photometric="minisblack", subfiletype=1)  # reduced resolution
    np.testing.assert_array_equal(read_image(path).pixels[..., 0] * 255, full)


# --------------------------------------------------------------------------- library chatter


def _garbage_idat_png() -> bytes:
    """Checksums all valid, so only libpng's inflate notices the damage."""
    return _png(16, 16, b"\x78\x9c" + bytes(range(200)), colour_type=2)


def _short_idat_png() -> bytes:
    return _png(16, 16, zlib.compress(bytes(100)), colour_type=2)


def test_libpng_errors_become_the_reason_and_never_reach_stderr(tmp_path: Path, capfd) -> None:
    cases = {"garbage.png": _garbage_idat_png(), "short.png": _short_idat_png()}
    reasons = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError) as excinfo:
            read_image(tmp_path / name)
        reasons[name] = excinfo.value.reason
    captured = capfd.readouterr()
    assert "libpng" not in captured.err and captured.err == ""
    assert reasons["garbage.png"].startswith("corrupt PNG image data (")
    assert "stored block lengths" in reasons["garbage.png"]
    assert reasons["short.png"] == "truncated PNG image data (the image data ends early)"


def test_chatter_capture_is_per_thread_and_keeps_other_threads_output(
    tmp_path: Path, capfd
) -> None:
    """Reader threads decode corrupt and good PNGs at once while another thread writes to
    fd 2: each file gets its own reason, no libpng line leaks, the other lines all arrive."""
    (tmp_path / "bad.png").write_bytes(_garbage_idat_png())
    write_image(tmp_path / "ok.png", np.full((16, 16, 3), 0.25, np.float32), dtype=np.uint8)
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def reader(name: str) -> None:
        for _ in range(15):
            try:
                read_image(tmp_path / name)
                outcome = "ok"
            except ImageReadError as err:
                outcome = err.reason
            with lock:
                outcomes.append((name, outcome))

    def talker() -> None:
        for i in range(40):
            os.write(2, f"progress line {i}\n".encode())

    threads = [threading.Thread(target=reader, args=(n,)) for n in ("bad.png", "ok.png") * 2]
    threads.append(threading.Thread(target=talker))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    err = capfd.readouterr().err
    assert "libpng" not in err
    assert {outcome for name, outcome in outcomes if name == "ok.png"} == {"ok"}
    bad = {outcome for name, outcome in outcomes if name == "bad.png"}
    assert bad and all("stored block lengths" in reason for reason in bad)
    # Every other line arrives: one printed during a decode is delayed by it (io/chatter.py),
    # and one printed between the two writes libpng makes of its message ("libpng error: …",
    # then the newline) is inseparable from it and ends up in that file's reason.
    reasons = " ".join(bad)
    for i in range(40):
        line = f"progress line {i}"
        assert line in err.splitlines() or line in reasons, line


def test_tifffile_log_records_go_into_the_reason(tmp_path: Path, caplog) -> None:
    path = tmp_path / "badtag.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8), photometric="minisblack")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].tags[262].offset  # PhotometricInterpretation's entry
    struct.pack_into("<H", data, offset + 2, 300)  # an invalid field type
    path.write_bytes(bytes(data))
    with caplog.at_level("DEBUG"):
        try:
            read_image(path)
            reason = ""
        except ImageReadError as err:
            reason = err.reason
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    if reason:  # tifffile may decode the pixels all the same; if not, it says why in one line
        assert "<" not in reason and "\n" not in reason


def test_raw_python_errors_are_mapped_to_reasons(tmp_path: Path) -> None:
    five = tmp_path / "five.tif"
    tifffile.imwrite(
        five, np.zeros((8, 8, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    broken_jpeg = tmp_path / "broken.jpg"
    broken_jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    reasons = {}
    for path in (five, broken_jpeg):
        with pytest.raises(ImageReadError) as excinfo:
            read_image(path)
        reasons[path.name] = excinfo.value.reason
    assert reasons["five.tif"] == "unsupported channel layout (5 channels)"
    assert reasons["broken.jpg"] == "corrupt JPEG (no image header Pillow can read)"
    for reason in reasons.values():
        assert "<_io." not in reason and "index out of range" not in reason


def _fuzz_corpus(folder: Path, photo: np.ndarray) -> int:
    """Truncations, bit flips and overwritten headers of PNG (8/16 bit), JPEG and TIFF (16 bit,
    float) files made from a bundled photo; returns how many files were written."""
    rng = np.random.default_rng(18)
    seeds = {}
    for name, dtype in (
        ("a.png", np.uint8),
        ("b.png", np.uint16),
        ("c.jpg", np.uint8),
        ("d.tif", np.uint16),
        ("e.tif", np.float32),
    ):
        write_image(folder / name, photo, dtype=dtype)
        seeds[name] = (folder / name).read_bytes()
        (folder / name).unlink()
    count = 0
    for name, data in seeds.items():
        for variant in range(12):
            mutated = bytearray(data)
            if variant % 3 == 0:
                mutated = mutated[: int(rng.integers(1, len(mutated)))]
            elif variant % 3 == 1:
                for at in rng.integers(0, len(mutated), size=4):
                    mutated[at] ^= 1 << int(rng.integers(0, 8))
            else:
                at = int(rng.integers(8, 120))
                mutated[at : at + 12] = rng.integers(0, 256, 12, dtype=np.uint8).tobytes()
            (folder / f"{variant:02d}_{name}").write_bytes(bytes(mutated))
            count += 1
    return count


@pytest.mark.slow
def test_fuzzed_files_give_one_human_line_each_and_nothing_else_on_stderr(tmp_path: Path):
    """The real process (fd 2 included): every stderr line is one of irctl's own, each failed
    file has exactly one, and no reason is raw library or Python text."""
    from irctl.data.datasets import load_photo

    src = tmp_path / "src"
    total = _fuzz_corpus(src, load_photo("chelsea")[:24, :32])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "irctl", "restore", "--task", "denoise", "--threads", "1"]
    result = subprocess.run(
        [*command, "--src", str(src), "--dst", str(tmp_path / "dst"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(summary["failed"]) + len(summary["restored"]) == total
    lines = result.stderr.splitlines()
    own = ("error: ", "restored ", "done: ", "denoise")
    assert [line for line in lines if not line.startswith(own)] == []
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == len(summary["failed"]) > 0
    raw = ("<_io.", "index out of range", "truth value", "Traceback", "<tifffile", "libpng")
    for failure in summary["failed"]:
        assert not any(text in failure["reason"] for text in raw), failure


def test_python_chatter_collects_this_threads_warnings_and_records_only(recwarn) -> None:
    """Inside the block this thread's warnings and tifffile's records are collected, not shown;
    a warning another thread raises meanwhile is passed on as usual, not taken."""
    import logging
    import warnings

    from irctl.io.chatter import python_chatter

    def other_thread() -> None:
        warnings.warn("from another thread", UserWarning, stacklevel=1)

    warnings.simplefilter("always")
    with python_chatter() as said:
        warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=1)
        logging.getLogger("tifffile").warning("<tifffile.TiffPage 0 @8> missing data")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert said == ["Corrupt EXIF data", "<tifffile.TiffPage 0 @8> missing data"]
    assert [str(w.message) for w in recwarn] == ["from another thread"]
