"""Properties of irctl.io.images: lossless round trips, alpha/dtype fidelity, clear errors,
atomic writes."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps

from irctl.io import images, partials
from irctl.io.images import ImageReadError, read_image, to_dtype, write_image
from irctl.io.partials import PARTIAL_SUFFIX, remove_stale_partials

H, W = 6, 7
LAYOUTS = {"grey": (1, False), "grey_alpha": (1, True), "rgb": (3, False), "rgba": (3, True)}
DEAD_PID = 99_999_999  # above Linux's maximum pid_max, so never a live process


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_samples(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Random integer samples that always include both extremes 0 and max."""
    maxval = np.iinfo(dtype).max
    samples = rng.integers(0, maxval, size=shape, endpoint=True, dtype=dtype)
    flat = samples.reshape(-1)
    flat[0], flat[-1] = 0, maxval
    return samples


def as_float(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)


def make_layout(rng, layout: str, dtype):
    channels, with_alpha = LAYOUTS[layout]
    colour = random_samples(rng, (H, W, channels), dtype)
    alpha = random_samples(rng, (H, W), dtype) if with_alpha else None
    return colour, alpha


def single_line_error(excinfo: pytest.ExceptionInfo[ImageReadError], path) -> str:
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert excinfo.value.path == path
    return excinfo.value.reason


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_is_lossless(tmp_path, rng, layout, dtype):
    colour, alpha = make_layout(rng, layout, dtype)
    path = tmp_path / "x.png"
    write_image(path, as_float(colour), dtype=dtype, alpha=alpha)
    img = read_image(path)
    assert img.dtype == np.dtype(dtype)
    assert img.pixels.dtype == np.float32
    assert img.channels == colour.shape[2]  # grey stays one channel
    assert (img.height, img.width) == (H, W)
    np.testing.assert_array_equal(img.pixels, as_float(colour))
    np.testing.assert_array_equal(to_dtype(img.pixels, dtype), colour)
    if alpha is None:
        assert img.alpha is None
    else:
        assert img.alpha.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(img.alpha, alpha)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_integer_round_trip_is_lossless(tmp_path, rng, layout, dtype):
    colour, alpha = make_layout(rng, layout, dtype)
    path = tmp_path / "x.tif"
    write_image(path, as_float(colour), dtype=dtype, alpha=alpha)
    img = read_image(path)
    assert img.dtype == np.dtype(dtype)
    assert img.channels == colour.shape[2]
    np.testing.assert_array_equal(to_dtype(img.pixels, dtype), colour)
    if alpha is None:
        assert img.alpha is None
    else:
        np.testing.assert_array_equal(img.alpha, alpha)
        assert img.alpha.dtype == np.dtype(dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_float_tiff_round_trip_keeps_exact_bits_and_out_of_range(tmp_path, rng, layout):
    channels, with_alpha = LAYOUTS[layout]
    colour = rng.normal(0.5, 2.0, size=(H, W, channels)).astype(np.float32)
    colour.reshape(-1)[:4] = [-3.5, 0.0, 1.0, 1e30]
    alpha = rng.random((H, W), dtype=np.float32) if with_alpha else None
    path = tmp_path / "x.tiff"
    write_image(path, colour, dtype=np.float32, alpha=alpha)
    img = read_image(path)
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img.pixels.view(np.uint32), colour.view(np.uint32))
    if with_alpha:
        np.testing.assert_array_equal(img.alpha.view(np.uint32), alpha.view(np.uint32))


def test_to_dtype_inverts_read_scaling_for_every_value():
    for dtype in (np.uint8, np.uint16):
        every = np.arange(np.iinfo(dtype).max + 1).astype(dtype)
        np.testing.assert_array_equal(to_dtype(as_float(every), dtype), every)


def test_to_dtype_saturates_and_maps_nan_to_zero():
    values = np.array([-0.5, 1.5, np.nan, np.inf, -np.inf], dtype=np.float32)
    assert to_dtype(values, np.uint8).tolist() == [0, 255, 0, 255, 0]
    assert to_dtype(values, np.uint16).tolist() == [0, 65535, 0, 65535, 0]
    passthrough = to_dtype(values, np.float32)
    np.testing.assert_array_equal(passthrough, values)
    with pytest.raises(TypeError):
        to_dtype(np.zeros(3, dtype=np.uint8), np.uint8)


# ------------------------------------------------------- agreement with independent codecs
# Our writer and reader could share a bug (e.g. a BGR/RGB swap) that a round trip hides.


def test_reader_matches_pil_for_8bit_rgba_png(tmp_path, rng):
    rgba = random_samples(rng, (H, W, 4), np.uint8)
    path = tmp_path / "pil.png"
    PILImage.fromarray(rgba, "RGBA").save(path)
    img = read_image(path)
    np.testing.assert_array_equal(to_dtype(img.pixels, np.uint8), rgba[:, :, :3])
    np.testing.assert_array_equal(img.alpha, rgba[:, :, 3])


def test_reader_matches_opencv_for_16bit_rgb_png(tmp_path, rng):
    rgb = random_samples(rng, (H, W, 3), np.uint16)
    path = tmp_path / "cv.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV stores BGR order
    img = read_image(path)
    np.testing.assert_array_equal(to_dtype(img.pixels, np.uint16), rgb)


def test_writer_output_is_read_correctly_by_other_libraries(tmp_path, rng):
    rgba = random_samples(rng, (H, W, 4), np.uint8)
    write_image(tmp_path / "a.png", as_float(rgba[:, :, :3]), dtype=np.uint8, alpha=rgba[:, :, 3])
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "a.png")), rgba)

    grey_alpha = random_samples(rng, (H, W, 2), np.uint16)
    path = tmp_path / "la16.png"
    write_image(path, as_float(grey_alpha[:, :, :1]), dtype=np.uint16, alpha=grey_alpha[:, :, 1])
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgra[:, :, 0], grey_alpha[:, :, 0])
    np.testing.assert_array_equal(bgra[:, :, 3], grey_alpha[:, :, 1])

    rgb = random_samples(rng, (H, W, 3), np.uint16)
    write_image(tmp_path / "t.tif", as_float(rgb), dtype=np.uint16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "t.tif"), rgb)


def test_palette_png_becomes_rgb_or_rgba(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = PILImage.fromarray(indices, "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "pt.png", transparency=1)
    opaque, transparent = read_image(tmp_path / "p.png"), read_image(tmp_path / "pt.png")
    assert opaque.channels == 3 and opaque.alpha is None
    np.testing.assert_array_equal(opaque.pixels[0, 1], [0.0, 1.0, 0.0])
    assert transparent.channels == 3
    np.testing.assert_array_equal(transparent.alpha, [[255, 0], [255, 0]])


# --------------------------------------------------------------------- dtype conversions


def test_alpha_is_rescaled_exactly_when_output_dtype_differs(tmp_path, rng):
    colour, alpha = make_layout(rng, "rgba", np.uint8)
    write_image(tmp_path / "a.png", as_float(colour), dtype=np.uint16, alpha=alpha)
    wide = read_image(tmp_path / "a.png")
    assert wide.dtype == np.uint16
    np.testing.assert_array_equal(wide.alpha, alpha.astype(np.uint16) * 257)

    write_image(tmp_path / "b.png", wide.pixels, dtype=np.uint8, alpha=wide.alpha)
    np.testing.assert_array_equal(read_image(tmp_path / "b.png").alpha, alpha)

    write_image(tmp_path / "c.tif", as_float(colour), dtype=np.float32, alpha=alpha)
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif").alpha, as_float(alpha))


def test_float32_png_is_written_as_16_bit(tmp_path, rng):
    colour = rng.random((H, W, 3), dtype=np.float32)
    write_image(tmp_path / "f.png", colour, dtype=np.float32)
    img = read_image(tmp_path / "f.png")
    assert img.dtype == np.uint16
    np.testing.assert_allclose(img.pixels, colour, atol=0.5 / 65535 + 1e-7)


def test_jpeg_is_8_bit_without_alpha_and_close(tmp_path):
    y, x = np.mgrid[0:32, 0:48].astype(np.float32)
    smooth = np.stack([x / 47, y / 31, (x + y) / 78], axis=2)
    alpha = np.full((32, 48), 7, dtype=np.uint16)
    write_image(tmp_path / "s.jpg", smooth, dtype=np.uint16, alpha=alpha)
    img = read_image(tmp_path / "s.jpg")
    assert img.dtype == np.uint8 and img.alpha is None and img.channels == 3
    assert np.abs(img.pixels - smooth).mean() < 0.01

    write_image(tmp_path / "g.jpeg", smooth[:, :, :1], dtype=np.uint8)
    assert read_image(tmp_path / "g.jpeg").channels == 1


# -------------------------------------------------------------------------- orientation


def test_jpeg_exif_orientation_is_applied(tmp_path):
    y, x = np.mgrid[0:32, 0:48].astype(np.float32)
    pattern = np.stack([x / 47, y / 31, np.full_like(x, 0.5)], axis=2)  # 32 x 48, asymmetric
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    path = tmp_path / "rot.jpg"
    PILImage.fromarray(to_dtype(pattern, np.uint8)).save(path, exif=exif, quality=95)
    img = read_image(path)
    assert img.pixels.shape == (48, 32, 3)
    assert np.abs(img.pixels - np.rot90(pattern, k=-1)).max() < 0.05


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_exif_orientation_matches_pil_exif_transpose(tmp_path, rng, orientation):
    rgba = random_samples(rng, (3, 5, 4), np.uint8)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    PILImage.fromarray(rgba, "RGBA").save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(path)))
    img = read_image(path)
    np.testing.assert_array_equal(to_dtype(img.pixels, np.uint8), expected[:, :, :3])
    np.testing.assert_array_equal(img.alpha, expected[:, :, 3])


def test_tiff_orientation_tag_is_applied(tmp_path, rng):
    grey = random_samples(rng, (3, 5), np.uint16)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, grey, photometric="minisblack", extratags=[(274, 3, 1, 6, True)])
    img = read_image(path)
    np.testing.assert_array_equal(to_dtype(img.pixels[:, :, 0], np.uint16), np.rot90(grey, -1))


# ---------------------------------------------------------------------------- bad input


def _valid_png_bytes(tmp_path, rng) -> bytes:
    write_image(tmp_path / "valid.png", rng.random((16, 16, 3)), dtype=np.uint8)
    return (tmp_path / "valid.png").read_bytes()


def _valid_jpeg_bytes(tmp_path, rng) -> bytes:
    write_image(tmp_path / "valid.jpg", rng.random((64, 64, 3)), dtype=np.uint8)
    return (tmp_path / "valid.jpg").read_bytes()


def _valid_tiff_bytes(tmp_path, rng) -> bytes:
    write_image(tmp_path / "valid.tif", rng.random((16, 16, 3)), dtype=np.uint16)
    return (tmp_path / "valid.tif").read_bytes()


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        (
            "half.png",
            lambda t, r: _valid_png_bytes(t, r)[: len(_valid_png_bytes(t, r)) // 2],
            "truncated or corrupt PNG",
        ),
        ("noiend.png", lambda t, r: _valid_png_bytes(t, r)[:-12], "truncated or corrupt PNG"),
        (
            "half.jpg",
            lambda t, r: _valid_jpeg_bytes(t, r)[: len(_valid_jpeg_bytes(t, r)) // 2],
            "truncated or corrupt JPEG",
        ),
        (
            "half.tif",
            lambda t, r: _valid_tiff_bytes(t, r)[: len(_valid_tiff_bytes(t, r)) - 100],
            "truncated or corrupt TIFF",
        ),
        ("text.jpg", lambda t, r: b"hello, I am not an image\n", "not a JPEG/PNG/TIFF image"),
        ("empty.png", lambda t, r: b"", "file is empty (0 bytes)"),
        ("picture.bmp", lambda t, r: b"BM" + bytes(60), "unsupported file type .bmp"),
    ],
)
def test_bad_files_raise_one_line_image_read_error(tmp_path, rng, name, make, expected):
    path = tmp_path / name
    path.write_bytes(make(tmp_path, rng))
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert expected in single_line_error(excinfo, path)


def test_corrupt_png_crc_is_detected(tmp_path, rng):
    data = bytearray(_valid_png_bytes(tmp_path, rng))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert "corrupt PNG" in single_line_error(excinfo, path)


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError) as excinfo:
        read_image(missing)
    assert single_line_error(excinfo, missing) == "no such file"

    folder = tmp_path / "x.png"
    folder.mkdir()
    with pytest.raises(ImageReadError) as excinfo:
        read_image(str(folder))
    assert "directory" in single_line_error(excinfo, str(folder))


def test_permission_denied_is_reported(tmp_path, rng, monkeypatch):
    path = tmp_path / "locked.png"
    path.write_bytes(_valid_png_bytes(tmp_path, rng))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", denied, raising=False)  # we run as root
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert single_line_error(excinfo, path) == "cannot read file: permission denied"


def test_truncated_images_are_not_tolerated_globally():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_image_read_error_survives_pickling():
    err = pickle.loads(pickle.dumps(ImageReadError("a.png", "bad\nthing")))
    assert (str(err), err.path, err.reason) == ("a.png: bad thing", "a.png", "bad thing")


# ------------------------------------------------------------------------------ writing


def test_write_leaves_only_the_final_file_and_creates_parents(tmp_path, rng):
    path = tmp_path / "new" / "deeper" / "out.png"
    write_image(path, rng.random((H, W)), dtype=np.uint8)
    assert os.listdir(path.parent) == ["out.png"]
    assert read_image(path).channels == 1


def test_failed_encoding_leaves_nothing(tmp_path, rng, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(images.cv2, "imencode", broken)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        write_image(tmp_path / "out.png", rng.random((H, W, 3)), dtype=np.uint8)
    assert os.listdir(tmp_path) == []


def test_failed_replace_removes_temp_and_keeps_previous_file(tmp_path, rng, monkeypatch):
    path = tmp_path / "out.tif"
    path.write_bytes(b"previous result")
    seen = []

    def failing_replace(src, dst):
        seen.append(os.path.basename(src))
        assert os.path.exists(src)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(partials.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        write_image(path, rng.random((H, W, 3)), dtype=np.uint16)
    assert os.listdir(tmp_path) == ["out.tif"]
    assert path.read_bytes() == b"previous result"
    assert seen[0].startswith(".out.tif.") and seen[0].endswith(PARTIAL_SUFFIX)


def test_write_rejects_bad_arguments(tmp_path, rng):
    with pytest.raises(ValueError, match="C in"):
        write_image(tmp_path / "a.png", rng.random((H, W, 2)), dtype=np.uint8)
    with pytest.raises(ValueError, match="alpha shape"):
        write_image(
            tmp_path / "a.png",
            rng.random((H, W, 3)),
            dtype=np.uint8,
            alpha=np.zeros((W, H), np.uint8),
        )
    with pytest.raises(ValueError, match="sample type"):
        write_image(tmp_path / "a.png", rng.random((H, W, 3)), dtype=np.int16)
    with pytest.raises(ValueError, match=r"\.bmp"):
        write_image(tmp_path / "a.bmp", rng.random((H, W, 3)), dtype=np.uint8)
    assert os.listdir(tmp_path) == []


def test_remove_stale_partials_only_removes_dead_writers_temp_files(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [
        tmp_path / f".a.png.{DEAD_PID}.0a1b2c3d{PARTIAL_SUFFIX}",
        tmp_path / "sub" / f".b.v1.tif.{DEAD_PID}.ffffffff{PARTIAL_SUFFIX}",
    ]
    kept = [
        tmp_path / f".c.png.{os.getpid()}.0a1b2c3d{PARTIAL_SUFFIX}",  # live writer
        tmp_path / f"notes{PARTIAL_SUFFIX}",  # not ours
        tmp_path / "a.png",
    ]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert remove_stale_partials(tmp_path) == sorted(stale)
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in stale)


def test_remove_stale_partials_can_spare_recent_files(tmp_path):
    recent = tmp_path / f".a.png.{DEAD_PID}.0a1b2c3d{PARTIAL_SUFFIX}"
    recent.write_bytes(b"x")
    assert remove_stale_partials(tmp_path, min_age_s=3600) == []
    assert recent.exists()
