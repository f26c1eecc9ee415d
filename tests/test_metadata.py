"""Photo metadata through `irctl restore` (issue 18): the ICC profile, EXIF (capture date, camera;
orientation reset to 1 since pixels are written upright) and DPI of PNG, JPEG and TIFF inputs,
kept in outputs of the same format and of another one (--ext), read back with Pillow and
tifffile; and the EXIF block patched in place, every other byte as it was."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import ExifTags, ImageCms
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.io.images import read_image, write_image
from irctl.io.metadata import ImageMeta, exif_for_size, exif_upright
from irctl.tasks import get_task

runner = CliRunner()

DATE = "2019:07:14 09:30:00"
ORIGINAL = 36867  # DateTimeOriginal, in the EXIF sub-directory
EXIF_IFD = 0x8769
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _camera_exif(orientation: int = 1) -> bytes:
    exif = PILImage.Exif()
    exif[0x010F] = "IrctlCam"  # Make
    exif[0x0132] = DATE  # DateTime
    exif[0x0112] = orientation
    exif[EXIF_IFD] = {ORIGINAL: DATE, 0xA002: 48, 0xA003: 40}
    return exif.tobytes()


def _photo(path: Path, orientation: int = 1) -> Path:
    """A 48x40 sRGB-tagged, EXIF-dated, 300-DPI photo written by Pillow (not irctl)."""
    pixels = (np.random.default_rng(5).random((40, 48, 3)) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(pixels).save(
        path, exif=_camera_exif(orientation), icc_profile=SRGB, dpi=(300, 300)
    )
    return path


def _pillow_view(path: Path) -> dict[str, object]:
    with PILImage.open(path) as img:
        exif = img.getexif()
        return {
            "icc": img.info.get("icc_profile"),
            "dpi": tuple(round(float(v)) for v in img.info.get("dpi", (0, 0))),
            "date": exif.get(0x0132),
            "original": exif.get_ifd(EXIF_IFD).get(ORIGINAL),
            "make": exif.get(0x010F),
            "orientation": exif.get(0x0112, 1),
            "size": img.size,
        }


def _tifffile_view(path: Path) -> dict[str, object]:
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        x, y = tags[282].value, tags[283].value
        return {
            "icc": tags[34675].value if 34675 in tags else None,
            "dpi": (round(x[0] / x[1]), round(y[0] / y[1])),
            "date": tags[306].value if 306 in tags else None,
            "original": tags["ExifTag"].value.get("DateTimeOriginal")
            if "ExifTag" in tags
            else None,
            "orientation": int(tags[274].value) if 274 in tags else 1,
            "unit": int(tags[296].value),
        }


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One restore of a JPEG, a PNG and a TIFF photo in their own format, and one with
    ``--ext`` to each other format (the bundled fast default model)."""
    root = tmp_path_factory.mktemp("meta")
    src = root / "src"
    for name in ("photo_jpg.jpg", "photo_png.png", "photo_tif.tif"):
        _photo(src / name)
    outputs: dict[str, Path] = {}
    for ext in (None, "png", "jpg", "tif"):
        dst = root / f"dst_{ext or 'same'}"
        extra = ["--ext", ext] if ext else []
        args = ["restore", "--task", "denoise", "--src", str(src), "--dst", str(dst)]
        result = runner.invoke(app, [*args, "--threads", "1", *extra])
        assert result.exit_code == 0, result.output
        for path in dst.iterdir():
            outputs[f"{path.stem}->{ext or 'same'}"] = path
    return outputs


@pytest.mark.parametrize("name", ["photo_jpg", "photo_png", "photo_tif"])
@pytest.mark.parametrize("ext", ["same", "png", "jpg", "tif"])
def test_profile_date_and_dpi_survive_restore(restored: dict[str, Path], name: str, ext: str):
    path = restored[f"{name}->{ext}"]
    if path.suffix == ".tif":
        view = _tifffile_view(path)
        assert view["unit"] == 2  # inches
    else:
        view = _pillow_view(path)
        assert view["make"] == "IrctlCam"
    assert view["icc"] == SRGB
    assert view["dpi"] == (300, 300)
    assert view["date"] == DATE
    assert view["original"] == DATE
    assert view["orientation"] == 1


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_a_rotated_photo_is_written_upright_with_orientation_1(tmp_path: Path, suffix: str):
    source = _photo(tmp_path / f"rot{suffix}", orientation=6)  # turn 90° clockwise to view
    image = read_image(source)
    assert (image.height, image.width) == (48, 40)  # upright
    out = tmp_path / f"out{suffix}"
    write_image(out, image.pixels, dtype=image.dtype, meta=image.meta)
    if suffix == ".tif":
        assert _tifffile_view(out)["orientation"] == 1
        with tifffile.TiffFile(out) as tif:
            exif = tif.pages[0].tags["ExifTag"].value
        assert (exif["PixelXDimension"], exif["PixelYDimension"]) == (40, 48)
        return
    view = _pillow_view(out)
    assert view["orientation"] == 1 and view["size"] == (40, 48)
    with PILImage.open(out) as img:
        dims = img.getexif().get_ifd(EXIF_IFD)
    assert (dims[0xA002], dims[0xA003]) == (40, 48)  # the size written, not the camera's


def test_deep_alpha_and_float_outputs_carry_the_metadata(tmp_path: Path) -> None:
    meta = read_image(_photo(tmp_path / "p.png")).meta
    pixels = np.random.default_rng(3).random((40, 48, 3)).astype(np.float32)
    alpha = np.full((40, 48), 40000, np.uint16)
    write_image(tmp_path / "deep.png", pixels, dtype=np.uint16, alpha=alpha, meta=meta)
    write_image(tmp_path / "f.tif", pixels * 3, dtype=np.float32, meta=meta)
    for name in ("deep.png", "f.tif"):
        back = read_image(tmp_path / name)
        assert back.meta.icc == SRGB and back.meta.dpi == (300.0, 300.0)
        assert back.meta.exif is not None and DATE.encode() in back.meta.exif
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint16 and deep.channels == 3
    np.testing.assert_array_equal(deep.alpha, alpha)
    assert read_image(tmp_path / "f.tif").pixels.max() > 1.0  # float range untouched


def test_a_profile_of_another_colour_space_is_not_written(tmp_path: Path) -> None:
    """A CMYK JPEG is decoded to RGB: its CMYK profile would make viewers misread the colours.
    A grey output cannot carry an RGB profile either; date and DPI stay in both cases."""
    cmyk_profile = SRGB[:16] + b"CMYK" + SRGB[20:]
    source = tmp_path / "cmyk.jpg"
    PILImage.new("CMYK", (16, 12), (10, 80, 160, 20)).save(
        source, icc_profile=cmyk_profile, dpi=(300, 300), exif=_camera_exif()
    )
    image = read_image(source)
    assert image.meta.icc == cmyk_profile and image.channels == 3
    write_image(tmp_path / "rgb.png", image.pixels, dtype=np.uint8, meta=image.meta)
    grey = image.pixels.mean(axis=2, keepdims=True)
    rgb_meta = ImageMeta(icc=SRGB, exif=image.meta.exif, dpi=image.meta.dpi)
    write_image(tmp_path / "grey.png", grey, dtype=np.uint8, meta=rgb_meta)
    for name in ("rgb.png", "grey.png"):
        view = _pillow_view(tmp_path / name)
        assert view["icc"] is None
        assert view["dpi"] == (300, 300) and view["date"] == DATE


def test_an_upscaled_output_keeps_its_print_size() -> None:
    """×4 SR: four times the pixels over the same paper, so four times the DPI."""
    from irctl.io.images import Image

    image = Image(
        pixels=np.zeros((5, 6, 3), np.float32),
        alpha=None,
        dtype=np.dtype(np.uint8),
        meta=ImageMeta(icc=SRGB, dpi=(300.0, 240.0)),
    )
    restored = np.zeros((20, 24, 3), np.float32)
    output = get_task("sr4").model_output(restored, {"image": image})["image"]
    assert output.meta.dpi == (1200.0, 960.0) and output.meta.icc == SRGB
    same = get_task("denoise").model_output(restored[:5, :6], {"image": image})["image"]
    assert same.meta.dpi == (300.0, 240.0)


def test_exif_is_patched_in_place_and_everything_else_kept_byte_for_byte() -> None:
    raw = _camera_exif(orientation=8)[6:]
    upright = exif_upright(raw)
    sized = exif_for_size(upright, 400, 300)
    assert len(sized) == len(raw)
    changed = [i for i, (a, b) in enumerate(zip(raw, sized, strict=True)) if a != b]
    parsed = PILImage.Exif()
    parsed.load(sized)
    assert parsed[0x0112] == 1
    assert parsed.get_ifd(EXIF_IFD)[0xA002] == 400 and parsed.get_ifd(EXIF_IFD)[0xA003] == 300
    assert parsed[0x0132] == DATE and parsed.get_ifd(EXIF_IFD)[ORIGINAL] == DATE
    assert len(changed) <= 3 * 4  # the three values' bytes, nothing else


def test_a_damaged_exif_block_is_kept_as_it_was() -> None:
    damaged = b"II*\x00" + struct.pack("<I", 9999) + b"junk"
    assert exif_upright(damaged) == damaged
    assert exif_for_size(b"not exif", 4, 4) == b"not exif"


def test_files_without_metadata_get_none(tmp_path: Path) -> None:
    write_image(tmp_path / "plain.png", np.zeros((4, 4, 3), np.float32), dtype=np.uint8)
    assert read_image(tmp_path / "plain.png").meta == ImageMeta()
    with PILImage.open(tmp_path / "plain.png") as img:
        assert "icc_profile" not in img.info and "dpi" not in img.info


@pytest.mark.parametrize("first, second", [(".tif", ".jpg"), (".png", ".tif"), (".tif", ".tif")])
def test_gps_and_interoperability_directories_survive_a_tiff_round_trip(
    tmp_path: Path, first: str, second: str
) -> None:
    """TIFF outputs get the EXIF and GPS sub-directories appended (tifffile cannot write
    them); the EXIF directory's own interoperability directory must move with it."""
    exif = PILImage.Exif()
    exif[0x0132] = DATE
    exif[EXIF_IFD] = {ORIGINAL: DATE, 0xA005: {1: "R98"}}
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.5)}
    start = tmp_path / "start.jpg"
    PILImage.new("RGB", (8, 6), (40, 90, 200)).save(start, exif=exif.tobytes())
    image = read_image(start)
    for step, suffix in enumerate((first, second)):
        path = tmp_path / f"step{step}{suffix}"
        write_image(path, image.pixels, dtype=np.uint8, meta=image.meta)
        image = read_image(path)
    with PILImage.open(path) as img:
        back = img.getexif()
        assert back.get_ifd(EXIF_IFD)[ORIGINAL] == DATE
        assert back.get_ifd(0xA005) == {1: "R98"}
        assert back.get_ifd(0x8825)[1] == "N"
        assert tuple(float(v) for v in back.get_ifd(0x8825)[2]) == (52.0, 31.0, 12.5)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_metadata_that_cannot_be_stored_never_costs_the_image(tmp_path: Path, suffix: str):
    """An EXIF block whose EXIF pointer leads nowhere and an absurd DPI are left out; the
    restored pixels are written all the same."""
    dangling = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHII", EXIF_IFD, 4, 1, 9999)
    meta = ImageMeta(icc=SRGB, exif=dangling + b"\x00" * 4, dpi=(1e12, 0.0))
    path = tmp_path / f"out{suffix}"
    write_image(path, np.full((6, 8, 3), 0.5, np.float32), dtype=np.uint8, meta=meta)
    back = read_image(path)
    assert back.pixels.shape == (6, 8, 3) and back.meta.icc == SRGB
    assert back.meta.dpi in (None, (72.0, 72.0))  # Pillow's JFIF header says 72 by default


def test_the_embedded_thumbnail_of_the_unrestored_photo_is_unlinked() -> None:
    raw = bytearray(_camera_exif(orientation=6)[6:])
    (count,) = struct.unpack_from(">H", raw, 8)  # Pillow writes big-endian, IFD0 at 8
    next_at = 8 + 2 + 12 * count
    thumbnail_at = len(raw)
    raw += struct.pack(">HHHIHHI", 1, 0x0103, 3, 1, 6, 0, 0)  # IFD1: Compression = JPEG
    struct.pack_into(">I", raw, next_at, thumbnail_at)
    before = PILImage.Exif()
    before.load(bytes(raw))
    assert before.get_ifd(ExifTags.IFD.IFD1) == {0x0103: 6}
    upright = exif_upright(bytes(raw))
    after = PILImage.Exif()
    after.load(upright)
    assert after.get_ifd(ExifTags.IFD.IFD1) == {}
    assert after[0x0112] == 1 and after[0x0132] == DATE
