"""Image file I/O: read PNG/JPEG/TIFF into float arrays and write them back atomically.

Restoration must not silently change what it does not restore, so reading keeps the
file's sample type and its alpha channel exactly as stored and writing puts them back.
Every reading failure becomes an :class:`ImageReadError` with a one-line message, so a
batch run can report a bad file and move on instead of dying with a traceback.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from irctl.io.chatter import c_stderr_chatter, python_chatter
from irctl.io.metadata import (
    ImageMeta,
    exif_for_size,
    exif_upright,
    plausible_dpi,
    png_dpi,
    png_icc,
    png_metadata_chunks,
    profile_fits,
    tiff_descriptive_options,
    tiff_dpi,
    tiff_exif,
    tiff_with_exif,
)
from irctl.io.partials import atomic_write_bytes

SUPPORTED_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_PNG_SUFFIXES = (".png",)
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_TIFF_SUFFIXES = (".tif", ".tiff")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF

_PNG_GREY_ALPHA = 4  # PNG IHDR colour type for grey + alpha
EXIF_ORIENTATION = 0x0112
_JPEG_QUALITY = 95
#: A JPEG segment holds 65533 bytes: an EXIF block from a TIFF or PNG larger than that (maker
#: notes, thumbnails) cannot go into a JPEG output and is left out of it.
_JPEG_MAX_EXIF = 65533 - len(b"Exif\x00\x00")
_MAX_REASON_CHARS = 300

_UINT8 = np.dtype(np.uint8)
_UINT16 = np.dtype(np.uint16)
_FLOAT32 = np.dtype(np.float32)
_SAMPLE_TYPES = (_UINT8, _UINT16, _FLOAT32)
_MAX_CHANNELS = 4  # grey, grey + alpha, RGB, RGBA

#: The largest image (width x height) read by default; 0 means no limit.
#:
#: Why 200 million: it is above every single-shot camera sold (Phase One's 151 MP, Fujifilm's
#: 102 MP) and eight times the 6000x4000 photos the latent models are for, so no real photo is
#: refused; and it bounds what one file may cost before anything is decoded: 2.4 GB as float32
#: RGB, twice that with the model's output, where a 1 MB PNG declaring 20000x20000 (a
#: decompression bomb, 400 million pixels) would otherwise take 5 GB to decode and more than
#: 14 GB to restore. Panoramas beyond it are restored with ``--max-pixels 0``.
DEFAULT_MAX_PIXELS = 200_000_000

# irctl checks every header against its own limit before any decoder runs; Pillow's fixed
# limit (89 million pixels: a warning on stderr, twice that: an error) would refuse JPEGs the
# user allowed with --max-pixels and print lines that name no file.
PILImage.MAX_IMAGE_PIXELS = None


class ImageReadError(Exception):
    """A file that cannot be read as an image.

    The message is one human line, ``f"{path}: {reason}"``, because batch runs print it
    next to hundreds of others; the cause is in the reason, not in a traceback.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        reason = " ".join(str(reason).split())  # one line, whatever the library said
        if len(reason) > _MAX_REASON_CHARS:
            reason = reason[: _MAX_REASON_CHARS - 3] + "..."
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[object, str]]:
        # Default pickling would call cls(message) and fail; worker processes send these back.
        return (type(self), (self.path, self.reason))


@dataclass
class Image:
    """Decoded image: float colour plus the untouched alpha and the file's sample type.

    ``pixels`` is float32 HxWxC with C in (1, 3); integer files are scaled to [0, 1]
    (uint8 /255, uint16 /65535) and float TIFF values are kept as stored, not clipped.
    ``alpha`` is the stored alpha channel (HxW, original dtype) or None, and ``dtype`` is
    the file's sample type (uint8, uint16 or float32) so the output can match the input.
    ``meta`` is the file's ICC profile, EXIF and DPI, for the output (irctl/io/metadata.py).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    dtype: np.dtype
    meta: ImageMeta = field(default_factory=ImageMeta)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])


# --------------------------------------------------------------------------- conversions


def _max_value(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


def _to_float(samples: np.ndarray) -> np.ndarray:
    """Scale integer samples to [0, 1] float32; float samples are kept as they are."""
    if samples.dtype.kind == "f":
        return np.ascontiguousarray(samples, dtype=np.float32)
    return samples.astype(np.float32) / np.float32(_max_value(samples.dtype))


def unit_float_planar(samples: np.ndarray) -> np.ndarray:
    """HxWxC samples as [0, 1] float32 (:func:`_to_float`'s values, bit for bit), returned as an
    HxWxC view of channel-planar (CxHxW) memory.

    A network takes 1xCxHxW: from planar memory that tensor is a view, not a copy, so a
    restore holds the decoded image once instead of twice (12 bytes per pixel less, the
    difference between a 2048² and a 1024² peak shrinking by 36 MiB). Converting in place
    after one planar copy also keeps the decode at one float buffer, not two."""
    planar = np.ascontiguousarray(samples.transpose(2, 0, 1), dtype=np.float32)
    if samples.dtype.kind != "f":
        planar /= np.float32(_max_value(samples.dtype))
    return planar.transpose(1, 2, 0)


def to_dtype(pixels: np.ndarray, dtype: np.dtype | type | str) -> np.ndarray:
    """Convert [0, 1] float pixels to ``dtype`` exactly inverting the read scaling.

    Integer targets use ``clip(rint(x * max))`` so read -> to_dtype is lossless and
    out-of-range model output saturates instead of wrapping; NaN (a diverged model)
    becomes 0 rather than an undefined cast. float32 is a passthrough: no clipping, so
    HDR/float TIFF data survive.
    """
    dtype = _check_sample_type(dtype)
    array = np.asarray(pixels)
    if array.dtype.kind != "f":
        raise TypeError(f"to_dtype expects float pixels, got {array.dtype}")
    if dtype == _FLOAT32:
        return array.astype(np.float32, copy=False)
    maxval = _max_value(dtype)
    scaled = np.nan_to_num(array.astype(np.float32) * np.float32(maxval), nan=0.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, maxval, out=scaled)
    return scaled.astype(dtype)


def _check_sample_type(dtype: np.dtype | type | str) -> np.dtype:
    resolved = np.dtype(dtype)
    if resolved not in _SAMPLE_TYPES:
        raise ValueError(f"unsupported sample type {resolved} (expected uint8, uint16 or float32)")
    return resolved


def _convert_alpha(alpha: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Carry alpha into the output sample type, exactly between integer ranges."""
    if alpha.dtype == dtype:
        return alpha
    if alpha.dtype == np.bool_:
        return to_dtype(alpha.astype(np.float32), dtype)
    if alpha.dtype.kind == "f":
        return to_dtype(alpha, dtype)
    if alpha.dtype not in (_UINT8, _UINT16):
        raise ValueError(f"unsupported alpha dtype {alpha.dtype}")
    if dtype == _FLOAT32:
        return _to_float(alpha)
    if dtype == _UINT16:  # uint8 -> uint16: 255 * 257 == 65535, exact
        return alpha.astype(np.uint16) * np.uint16(257)
    # uint16 -> uint8, rounded to nearest (257 is odd, so no ties)
    return ((alpha.astype(np.uint32) + 128) // 257).astype(np.uint8)


# --------------------------------------------------------------------------- orientation


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF orientation code (1-8) the way PIL's exif_transpose does.

    Cameras store sensor-order pixels plus this tag; restoring the sensor order and
    writing it without the tag would show the photo sideways.
    """
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(array, k=1)
    return array  # 1 or an invalid value: leave as stored


def exif_orientation(exif_bytes: bytes) -> int:
    """Orientation from a raw EXIF block; unreadable EXIF is treated as 'no rotation'."""
    exif = PILImage.Exif()
    try:
        exif.load(exif_bytes)
        return int(exif.get(EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF must not make a good image unreadable
        return 1


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read a PNG, JPEG or TIFF file into an :class:`Image`.

    The format is chosen from the file's content (a PNG named .jpg still reads) but the
    suffix must be a supported one. An image larger than ``max_pixels`` (width x height, 0: no
    limit) is refused from its header, before anything is decoded; float samples that are not
    finite are refused after decoding, since a model spreads one NaN over the whole output.
    Every failure raises :class:`ImageReadError`, whose one line also carries what the
    decoding library said (irctl/io/chatter.py).
    """
    data = _read_bytes(path)
    decode = _decoder_for(path, data)
    with python_chatter() as said:
        try:
            decoded = decode(data, max_pixels)
        except _DecodeError as err:
            raise ImageReadError(path, _with_chatter(str(err), said)) from None
        except MemoryError:
            raise ImageReadError(path, "not enough memory to decode it") from None
    image = _split_channels(path, decoded.array, grey_alpha=decoded.grey_alpha)
    image.meta = decoded.meta
    _check_finite(path, image)
    return image


class _DecodeError(Exception):
    """Internal: a decoder's reason, turned into ImageReadError with the path attached."""


@dataclass(frozen=True)
class _Decoded:
    """A decoder's result: HxW or HxWxK samples (RGB order, upright), whether K=4 is an
    expanded grey + alpha, and the file's metadata."""

    array: np.ndarray
    grey_alpha: bool
    meta: ImageMeta


def _decoder_for(path: str | os.PathLike[str], data: bytes) -> Callable[[bytes, int], _Decoded]:
    if data.startswith(PNG_MAGIC):
        return _decode_png
    if data.startswith(JPEG_MAGIC):
        return _decode_jpeg
    if data.startswith(TIFF_MAGICS):
        return _decode_tiff
    raise ImageReadError(path, "not a JPEG/PNG/TIFF image (unrecognised content)")


def _with_chatter(reason: str, said: list[str]) -> str:
    """The reason, followed by the first thing the library said that it does not already
    hold."""
    for message in map(_library_message, said):
        if message and message not in reason:
            return f"{reason}; {message}"
    return reason


def _library_message(message: str) -> str:
    """A library's message without the object reprs and exception wrappers tifffile puts
    around it (``<TiffTag.fromfile> raised TiffFileError('<tifffile.TiffTag 769 @82> invalid
    data type 256')`` is ``invalid data type 256``)."""
    message = _OBJECT_REPR.sub("", message)
    message = _EXCEPTION_WRAPPER.sub(r"\1", message)
    message = _RAISED.sub("", " ".join(message.split()))
    return message.strip(" :")


_OBJECT_REPR = re.compile(r"<[^<>]*>")
_EXCEPTION_WRAPPER = re.compile(r"\b\w+(?:Error|Warning|Exception)\(['\"](.*)['\"]\)")
_RAISED = re.compile(r"^\s*raised\s+")


def _check_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image larger than the limit, from the size its header declares."""
    if max_pixels and width * height > max_pixels:
        raise _DecodeError(
            f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the "
            f"pixel limit of {max_pixels / 1e6:g} megapixels"
        )


def _check_finite(path: str | os.PathLike[str], image: Image) -> None:
    """Refuse NaN and infinite samples (float TIFFs): a model smears them over every pixel it
    touches, so the output would be all NaN yet counted as restored."""
    if image.dtype != _FLOAT32 and (image.alpha is None or image.alpha.dtype.kind != "f"):
        return
    bad = nonfinite_pixels(image.pixels, image.alpha)
    if bad:
        total = image.width * image.height
        raise ImageReadError(
            path, f"{bad} of {total} pixels are not finite (NaN or infinite float values)"
        )


def nonfinite_pixels(pixels: np.ndarray, alpha: np.ndarray | None = None) -> int:
    """How many pixels (HxW positions) hold a NaN or infinite value in colour or alpha."""
    colour = np.asarray(pixels)
    bad = ~np.isfinite(colour) if colour.ndim == 2 else ~np.isfinite(colour).all(axis=-1)
    if alpha is not None and np.asarray(alpha).dtype.kind == "f":
        bad = bad | ~np.isfinite(np.asarray(alpha).reshape(bad.shape))
    return int(np.count_nonzero(bad))


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read the whole file, mapping every OS failure to a short human reason."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageReadError(path, "is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(path, "not a regular file")
        suffix = Path(path).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            shown = suffix or "(no suffix)"
            supported = ", ".join(SUPPORTED_SUFFIXES)
            raise ImageReadError(path, f"unsupported file type {shown} (expected {supported})")
        if info.st_size == 0:
            raise ImageReadError(path, "file is empty (0 bytes)")
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageReadError(path, "cannot read file: permission denied") from None
    except OSError as err:
        raise ImageReadError(path, f"cannot read file: {err.strerror or err}") from None
    if not data:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return data


def _split_channels(path: str | os.PathLike[str], array: np.ndarray, *, grey_alpha: bool) -> Image:
    """Turn an HxW or HxWxK (RGB order) array into colour + alpha."""
    if array.ndim not in (2, 3):
        raise ImageReadError(path, f"unsupported image layout ({array.ndim}-dimensional samples)")
    if array.ndim == 2:
        array = array[:, :, None]
    count = array.shape[2]
    if grey_alpha and count == 4:  # decoder expanded grey+alpha to RGBA
        array = array[:, :, [0, 3]]
        count = 2
    if count not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported channel layout ({count} channels)")
    colour_count = 1 if count <= 2 else 3
    alpha = None
    if count in (2, 4):
        alpha = np.ascontiguousarray(array[:, :, count - 1])
    pixels = unit_float_planar(array[:, :, :colour_count])
    return Image(pixels=pixels, alpha=alpha, dtype=np.dtype(array.dtype))


@dataclass(frozen=True)
class _PngInfo:
    """What the chunk walk found: the header's size and colour type, and the metadata."""

    width: int
    height: int
    colour_type: int
    exif: bytes | None
    icc: bytes | None
    dpi: tuple[float, float] | None


def _decode_png(data: bytes, max_pixels: int) -> _Decoded:
    """Decode PNG with OpenCV (16-bit colour support), after checking the chunk structure and
    the size in IHDR.

    OpenCV returns partial images or None for damaged files without saying why, so the
    chunk walk (lengths, CRCs, IEND) is what detects truncation and corruption; what libpng
    prints about the rest (damaged compressed data) becomes the reason.
    """
    info = _walk_png_chunks(data)
    _check_size(info.width, info.height, max_pixels)
    with c_stderr_chatter() as libpng_said:
        try:
            array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            array = None
    if array is None:
        raise _DecodeError(_png_failure(libpng_said))
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    if info.exif is not None:
        array = _apply_orientation(array, exif_orientation(info.exif))
    meta = ImageMeta(icc=info.icc, exif=exif_upright(info.exif), dpi=info.dpi)
    return _Decoded(array, info.colour_type == _PNG_GREY_ALPHA, meta)


def _png_failure(libpng_said: list[str]) -> str:
    """A reason for a PNG the decoder refused, from libpng's last word on it."""
    errors = [line for line in libpng_said if line.startswith("libpng error")]
    said = (errors or libpng_said or [""])[-1].split(":", 1)[-1].strip()
    if "not enough image data" in said.lower():
        return "truncated PNG image data (the image data ends early)"
    if said:
        return f"corrupt PNG image data ({said})"
    return "corrupt PNG image data (the decoder gave up)"


def _walk_png_chunks(data: bytes) -> _PngInfo:
    """Validate every chunk up to IEND; collect IHDR's fields and the metadata chunks."""
    position = len(PNG_MAGIC)
    width = height = 0
    colour_type = -1
    found: dict[bytes, bytes] = {}
    while True:
        if position + 8 > len(data):
            raise _DecodeError(
                "truncated or corrupt PNG data (the file ends before its last chunk)"
            )
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 8 + length + 4
        if end > len(data):
            raise _DecodeError("truncated or corrupt PNG data (the file ends inside a chunk)")
        body = data[position + 8 : end - 4]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise _DecodeError(
                f"truncated or corrupt PNG data (bad checksum in the {_chunk_name(kind)} chunk)"
            )
        if kind == b"IHDR" and length >= 10:
            width, height = struct.unpack(">II", body[:8])
            colour_type = body[9]
        elif kind in (b"eXIf", b"iCCP", b"pHYs"):
            found.setdefault(kind, body)
        elif kind == b"IEND":
            break
        position = end
    icc = png_icc(found[b"iCCP"]) if b"iCCP" in found else None
    dpi = png_dpi(found[b"pHYs"]) if b"pHYs" in found else None
    return _PngInfo(width, height, colour_type, found.get(b"eXIf"), icc, dpi)


def _chunk_name(kind: bytes) -> str:
    """A chunk type as text, or 'damaged' when the bytes are not a chunk name."""
    return kind.decode("ascii") if kind.isalpha() else "damaged"


def _decode_jpeg(data: bytes, max_pixels: int) -> _Decoded:
    """Decode JPEG with PIL, which raises on truncated data (LOAD_TRUNCATED_IMAGES off); the
    size is checked once the header is parsed, before the pixels are decoded."""
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            _check_size(img.width, img.height, max_pixels)
            img.load()
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 1))
            array = _pil_to_array(img)
            meta = _jpeg_meta(img.info)
    except UnidentifiedImageError:
        raise _DecodeError("corrupt JPEG (no image header Pillow can read)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise _DecodeError(f"truncated or corrupt JPEG data ({err})") from None
    return _Decoded(_apply_orientation(array, orientation), False, meta)


def _jpeg_meta(info: dict) -> ImageMeta:
    """ICC profile, EXIF (without its ``Exif\\0\\0`` prefix) and DPI from Pillow's info."""
    exif = info.get("exif")
    if isinstance(exif, bytes) and exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    dpi = info.get("dpi")
    dpi = plausible_dpi(float(dpi[0]), float(dpi[1])) if dpi and len(dpi) == 2 else None
    icc = info.get("icc_profile") or None
    return ImageMeta(icc=icc, exif=exif_upright(exif) if exif else None, dpi=dpi)


def _pil_to_array(img: PILImage.Image) -> np.ndarray:
    """Grey/RGB(A) array from any PIL mode; palette, CMYK etc. become RGB(A)."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img.convert("L"))
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))


def _decode_tiff(data: bytes, max_pixels: int) -> _Decoded:
    """Decode a single-image TIFF; a 4th sample (or 2nd of grey) is alpha.

    The page count, size and samples per pixel are checked from the directory before any
    pixel data is read. A file with several full-size pages is refused rather than cut to
    its first: one input file is one output file, and dropping pages would lose data.
    """
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = _single_page(tif)
            _check_size(int(page.imagewidth), int(page.imagelength), max_pixels)
            if page.samplesperpixel > _MAX_CHANNELS:
                raise _DecodeError(f"unsupported channel layout ({page.samplesperpixel} channels)")
            array = _tiff_page_samples(page)
            tags = {tag.code: tag.value for tag in page.tags.values()}
            orientation = int(tags.get(274, 1))
    except _DecodeError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # tifffile fails in many ways on damaged files; say what it means
        raise _DecodeError(f"truncated or corrupt TIFF data ({_tiff_failure(err)})") from None
    meta = ImageMeta(icc=_icc_tag(tags.get(34675)), exif=tiff_exif(data), dpi=tiff_dpi(tags))
    array = _normalise_tiff_dtype(array)
    return _Decoded(_apply_orientation(array, orientation), False, meta)


def _tiff_failure(err: Exception) -> str:
    """What a tifffile exception means for the user: its own message when it wrote one for
    people (TiffFileError), else what went wrong in words (never numpy's or Python's text)."""
    if isinstance(err, tifffile.TiffFileError):
        return _library_message(str(err))
    if str(err).startswith("failed to read"):
        return "the file ends before its image data"
    return "tifffile cannot make sense of its structure"


def _single_page(tif: tifffile.TiffFile) -> tifffile.TiffPage:
    """The TIFF's one image; reduced-resolution pages (thumbnails, previews) do not count."""
    pages = tif.pages
    if len(pages) == 0:
        raise _DecodeError("TIFF file holds no image (no readable page)")
    if len(pages) > 1:
        full = [page for page in pages if not int(getattr(page, "subfiletype", 0)) & 1]
        if len(full) > 1:
            raise _DecodeError(
                f"multi-page TIFF ({len(full)} pages): irctl restores one image per file; "
                "split the pages into separate files first"
            )
    page = pages[0]
    if not isinstance(page, tifffile.TiffPage):
        page = page.aspage()
    return page


def _icc_tag(value: object) -> bytes | None:
    return bytes(value) if isinstance(value, bytes | bytearray) and value else None


def _tiff_page_samples(page: tifffile.TiffPage) -> np.ndarray:
    """Page data as HxW or HxWxS, with palette expanded and CMYK refused."""
    photometric = page.photometric
    if photometric == tifffile.PHOTOMETRIC.SEPARATED:
        raise _DecodeError("CMYK TIFF is not supported")
    array = page.asarray()
    axes = page.axes
    for axis in reversed(range(len(axes))):  # drop singleton axes other than Y, X, S
        if axes[axis] not in "YXS" and array.shape[axis] == 1:
            array = array.squeeze(axis)
            axes = axes[:axis] + axes[axis + 1 :]
    if axes == "SYX":
        array = np.moveaxis(array, 0, -1)
    elif axes not in ("YX", "YXS"):
        raise _DecodeError(f"unsupported TIFF layout (axes {axes or 'none'})")
    if photometric == tifffile.PHOTOMETRIC.PALETTE and array.ndim == 2:
        array = _expand_palette(array, page.colormap)
    return array


def _expand_palette(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    colours = np.asarray(colormap).T  # (entries, 3), uint16 in TIFF
    if colours.dtype == np.uint16 and not np.any(colours % 257):
        colours = (colours // 257).astype(np.uint8)  # an 8-bit palette stored as 16-bit
    return colours[indices]


def _normalise_tiff_dtype(array: np.ndarray) -> np.ndarray:
    """Map TIFF sample types onto uint8/uint16/float32 without losing range."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind == "f" and array.dtype != _FLOAT32:
        return array.astype(np.float32)  # float16/float64 -> float32
    if array.dtype not in _SAMPLE_TYPES:
        raise _DecodeError(
            f"unsupported TIFF sample type {array.dtype} (expected uint8, uint16 or float32)"
        )
    return array


# --------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    dtype: np.dtype | type | str,
    alpha: np.ndarray | None = None,
    meta: ImageMeta | None = None,
) -> None:
    """Write float pixels (HxW or HxWxC, C in 1/3) atomically in the format of the suffix.

    The file appears complete or not at all (temp file in the same directory, then
    ``os.replace``), so a killed run never leaves a half-written image that a resumed run
    would skip as done. Format limits: PNG cannot hold float, so float32 is written as
    uint16; JPEG is 8-bit only and has no alpha, so it is written as uint8 and alpha is
    dropped. ``alpha`` is written back unchanged, converted exactly if its dtype differs.
    ``meta`` (ICC profile, EXIF, DPI) is stored in every format; its EXIF pixel dimensions
    are set to the size written. NaN or infinite values are refused (ValueError, nothing
    written): they would pass for a restored image while holding none.
    """
    destination = Path(path)
    suffix = destination.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"{destination}: cannot write {suffix or 'files without a suffix'}")
    colour, alpha = _check_write_arrays(pixels, alpha)
    _check_finite_output(colour, alpha)
    out_dtype = _check_sample_type(dtype)
    meta = _meta_for_pixels(meta or ImageMeta(), colour)
    with python_chatter():  # tifffile's and Pillow's remarks are no line of the batch's
        if suffix in _PNG_SUFFIXES:
            data = _encode_png(colour, alpha, _UINT16 if out_dtype == _FLOAT32 else out_dtype)
            data = _with_png_chunks(data, png_metadata_chunks(meta))
        elif suffix in _JPEG_SUFFIXES:
            data = _encode_jpeg(colour, meta)
        else:
            data = _encode_tiff(colour, alpha, out_dtype, meta)
    atomic_write_bytes(destination, data)


def _meta_for_pixels(meta: ImageMeta, colour: np.ndarray) -> ImageMeta:
    """``meta`` as the written pixels make it true and the formats can store it: EXIF pixel
    dimensions of this size, no ICC profile of another colour space than theirs, no DPI that
    is zero or absurd."""
    height, width, channels = colour.shape
    icc = meta.icc if profile_fits(meta.icc, channels) else None
    dpi = plausible_dpi(*meta.dpi) if meta.dpi is not None else None
    return ImageMeta(icc=icc, exif=exif_for_size(meta.exif, width, height), dpi=dpi)


def _check_write_arrays(
    pixels: np.ndarray, alpha: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    colour = np.asarray(pixels)
    if colour.ndim == 2:
        colour = colour[:, :, None]
    if colour.ndim != 3 or colour.shape[2] not in (1, 3):
        raise ValueError(f"pixels must be HxW or HxWxC with C in (1, 3), got {colour.shape}")
    if alpha is None:
        return colour, None
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if alpha.shape != colour.shape[:2]:
        raise ValueError(f"alpha shape {alpha.shape} does not match pixels {colour.shape[:2]}")
    return colour, alpha


def _check_finite_output(colour: np.ndarray, alpha: np.ndarray | None) -> None:
    if colour.dtype.kind == "f" or (alpha is not None and alpha.dtype.kind == "f"):
        bad = nonfinite_pixels(colour, alpha)
        if bad:
            raise ValueError(f"{bad} pixels are NaN or infinite; nothing written")


def _stack(colour: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """HxWxK samples of ``dtype``: colour converted from float, alpha appended."""
    samples = to_dtype(colour, dtype)
    if alpha is None:
        return samples
    return np.concatenate([samples, _convert_alpha(alpha, dtype)[:, :, None]], axis=2)


def _encode_png(colour: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype) -> bytes:
    samples = _stack(colour, alpha, dtype)
    count = samples.shape[2]
    if count == 2:  # OpenCV cannot write grey+alpha
        return _encode_png_grey_alpha(samples)
    if count == 3:
        samples = cv2.cvtColor(samples, cv2.COLOR_RGB2BGR)
    elif count == 4:
        samples = cv2.cvtColor(samples, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", samples)
    if not ok:
        raise OSError("PNG encoding failed")
    return buffer.tobytes()


def _encode_png_grey_alpha(samples: np.ndarray) -> bytes:
    """Minimal PNG writer for grey+alpha (8 or 16 bit), which neither OpenCV nor PIL
    can write at 16 bit; rows are stored unfiltered and zlib-compressed."""
    height, width, _ = samples.shape
    big_endian = samples.astype(samples.dtype.newbyteorder(">"))
    rows = np.ascontiguousarray(big_endian).view(np.uint8).reshape(height, -1)
    raw = np.zeros((height, rows.shape[1] + 1), dtype=np.uint8)  # filter byte 0 per row
    raw[:, 1:] = rows
    bit_depth = samples.dtype.itemsize * 8
    header = struct.pack(">IIBBBBB", width, height, bit_depth, _PNG_GREY_ALPHA, 0, 0, 0)
    return b"".join(
        [
            PNG_MAGIC,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_png_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``png`` with ``chunks`` inserted right after IHDR (where iCCP, pHYs and eXIf belong:
    before any image data)."""
    if not chunks:
        return png
    (length,) = struct.unpack(">I", png[len(PNG_MAGIC) : len(PNG_MAGIC) + 4])
    after_header = len(PNG_MAGIC) + 8 + length + 4
    added = b"".join(_png_chunk(kind, body) for kind, body in chunks)
    return png[:after_header] + added + png[after_header:]


def _encode_jpeg(colour: np.ndarray, meta: ImageMeta) -> bytes:
    samples = to_dtype(colour, _UINT8)
    image = PILImage.fromarray(samples[:, :, 0] if samples.shape[2] == 1 else samples)
    buffer = io.BytesIO()
    extra: dict[str, object] = {}
    if meta.icc:
        extra["icc_profile"] = meta.icc
    if meta.exif and len(meta.exif) <= _JPEG_MAX_EXIF:
        extra["exif"] = b"Exif\x00\x00" + meta.exif
    if meta.dpi is not None:
        extra["dpi"] = meta.dpi
    # 4:4:4 chroma: restored detail should not be thrown away by subsampling
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY, subsampling=0, **extra)
    return buffer.getvalue()


def _encode_tiff(
    colour: np.ndarray, alpha: np.ndarray | None, dtype: np.dtype, meta: ImageMeta
) -> bytes:
    samples = _stack(colour, alpha, dtype)
    photometric = "rgb" if colour.shape[2] == 3 else "minisblack"
    options: dict[str, object] = {"photometric": photometric, "metadata": None}
    if alpha is not None:
        options.update(extrasamples=["unassalpha"], planarconfig="contig")
    elif samples.shape[2] == 1:
        samples = samples[:, :, 0]
    options.update(_tiff_meta_options(meta))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, samples, **options)
    return tiff_with_exif(buffer.getvalue(), meta.exif)


def _tiff_meta_options(meta: ImageMeta) -> dict[str, object]:
    """tifffile.imwrite options storing ``meta``: profile, resolution in inches, and the EXIF
    tags that live in a TIFF's own directory (the sub-directories are added afterwards)."""
    options: dict[str, object] = {}
    if meta.icc:
        options["iccprofile"] = meta.icc
    if meta.dpi is not None:
        options.update(resolution=meta.dpi, resolutionunit=tifffile.RESUNIT.INCH)
    options.update(tiff_descriptive_options(meta.exif))
    return options
