"""Photo metadata carried from an input file to its restored output: ICC profile, EXIF, DPI.

A restored photo is still the same photo: its colour profile says how to show the pixels, its
EXIF says when and with what it was taken (collections are sorted by capture date), its DPI how
large it prints. Losing them silently is data loss, so every reader collects an
:class:`ImageMeta` and every writer stores what its format can hold — PNG, JPEG and TIFF all
hold the three, so an output in another format (``--ext``) keeps them too.

EXIF is kept as the raw block (the TIFF-structured bytes of a PNG ``eXIf`` chunk, a JPEG APP1
segment without its ``Exif\\0\\0`` prefix) and patched in place, so every tag the camera wrote
stays byte for byte as it was, maker notes included, except what would now be false:

* Orientation (0x0112) becomes 1: the reader turns the pixels upright (irctl/io/images.py), so
  keeping the camera's value would make viewers rotate the restored photo a second time.
* PixelXDimension/PixelYDimension (0xA002/0xA003), when present, become the written size (an
  upscaling model's output, or a photo turned upright, has another size).
* The embedded thumbnail (the second directory) is unlinked: it is a small copy of the photo
  *before* restoration, in the camera's orientation, and file browsers show it in place of the
  restored image.

A TIFF input has no EXIF block: its descriptive tags (date, camera, artist, …) and its EXIF and
GPS sub-directories are gathered into one with Pillow. Writing a TIFF puts the descriptive tags
back in the first directory and appends the EXIF and GPS sub-directories (tifffile cannot write
them), see :func:`tiff_with_exif`.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, replace

from PIL import Image as PILImage
from PIL import TiffImagePlugin

_ORIENTATION = 0x0112
_PIXEL_X = 0xA002
_PIXEL_Y = 0xA003
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
#: Tags of a TIFF's first directory that describe the photo (not its pixel layout); they are
#: what a TIFF's EXIF is besides its sub-directories.
TIFF_DESCRIPTIVE_TAGS = (
    0x010E,  # ImageDescription
    0x010F,  # Make
    0x0110,  # Model
    0x0131,  # Software
    0x0132,  # DateTime
    0x013B,  # Artist
    0x013C,  # HostComputer
    0x8298,  # Copyright
)
_INCH_PER_METRE = 0.0254
#: An ICC profile is at most a few MB; a larger inflated iCCP chunk is a zip bomb, not a profile.
_MAX_ICC_BYTES = 32 << 20
_TIFF_HEADERS = {b"II*\x00": "<", b"MM\x00*": ">"}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SHORT, _LONG, _IFD = 3, 4, 13


@dataclass(frozen=True)
class ImageMeta:
    """What a file says about its pixels besides the pixels.

    ``icc``: the embedded ICC profile; ``exif``: the TIFF-structured EXIF block, orientation
    already 1 since the pixels it describes are upright; ``dpi``: (x, y) pixels per inch. None
    when the file has none.
    """

    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    def scaled(self, factor: int) -> ImageMeta:
        """The metadata of this image upscaled ``factor`` times: the DPI grows with the pixel
        count, so the restored photo prints at the size the original did."""
        if factor == 1 or self.dpi is None:
            return self
        return replace(self, dpi=(self.dpi[0] * factor, self.dpi[1] * factor))


def profile_fits(icc: bytes | None, channels: int) -> bool:
    """Whether an ICC profile describes pixels of ``channels`` colour channels: an RGB profile
    for colour, a grey one for grey. A CMYK JPEG is decoded to RGB, so its CMYK profile would
    make viewers misread the restored colours; such a profile is not written."""
    if not icc or len(icc) < 20:
        return False
    return _ICC_SPACES.get(bytes(icc[16:20])) == channels


_ICC_SPACES = {b"RGB ": 3, b"GRAY": 1}


# --------------------------------------------------------------------------- EXIF blocks


def exif_upright(exif: bytes | None) -> bytes | None:
    """``exif`` with its orientation 1 (the pixels are stored upright) and no thumbnail (it
    shows the unrestored photo); None stays None."""
    if exif is None:
        return None
    return _patch_exif(exif, {_ORIENTATION: 1}, {}, drop_thumbnail=True)


def exif_for_size(exif: bytes | None, width: int, height: int) -> bytes | None:
    """``exif`` with its PixelXDimension/PixelYDimension (when present) the written size."""
    if exif is None:
        return None
    return _patch_exif(exif, {}, {_PIXEL_X: width, _PIXEL_Y: height})


def _patch_exif(
    exif: bytes, first: dict[int, int], sub: dict[int, int], *, drop_thumbnail: bool = False
) -> bytes:
    """Overwrite single integer values in place: ``first`` in the first directory, ``sub`` in
    the EXIF sub-directory; with ``drop_thumbnail`` also end the directory chain after the
    first. A malformed block is returned as it was (readers ignore it too)."""
    order = _TIFF_HEADERS.get(exif[:4])
    if order is None or len(exif) < 8:
        return exif
    patched = bytearray(exif)
    (ifd0,) = struct.unpack(order + "I", exif[4:8])
    try:
        pointer = _patch_ifd(patched, order, ifd0, first)
        if sub and pointer is not None:
            _patch_ifd(patched, order, pointer, sub)
        if drop_thumbnail:
            (count,) = struct.unpack_from(order + "H", patched, ifd0)
            struct.pack_into(order + "I", patched, ifd0 + 2 + 12 * count, 0)
    except (struct.error, IndexError):
        return exif
    return bytes(patched)


def _patch_ifd(data: bytearray, order: str, offset: int, values: dict[int, int]) -> int | None:
    """Set each SHORT/LONG tag of ``values`` found in the directory at ``offset``; returns the
    EXIF sub-directory's offset when this directory points to one."""
    (count,) = struct.unpack_from(order + "H", data, offset)
    exif_pointer = None
    for index in range(count):
        entry = offset + 2 + 12 * index
        tag, kind, number = struct.unpack_from(order + "HHI", data, entry)
        if tag == EXIF_IFD and kind in (_LONG, _IFD):
            (exif_pointer,) = struct.unpack_from(order + "I", data, entry + 8)
        if tag in values and number == 1 and kind in (_SHORT, _LONG):
            value = values[tag]
            if kind == _SHORT and value <= 0xFFFF:
                struct.pack_into(order + "H", data, entry + 8, value)
            elif kind == _LONG:
                struct.pack_into(order + "I", data, entry + 8, value)
    return exif_pointer


def exif_tags(exif: bytes | None) -> PILImage.Exif | None:
    """``exif`` parsed by Pillow (None when absent or unreadable)."""
    if not exif:
        return None
    parsed = PILImage.Exif()
    try:
        parsed.load(exif)
        len(parsed)  # forces the directory to be read
    except Exception:  # a damaged block is not worth failing a restore for
        return None
    return parsed


def sub_directory(exif: PILImage.Exif, tag: int) -> dict[int, object]:
    """The EXIF or GPS sub-directory as tag → value, its own sub-directory (EXIF's
    interoperability one) resolved into a dict too: an offset into the old block would point
    at nothing once the directory is written elsewhere."""
    if tag not in exif:
        return {}
    directory = dict(exif.get_ifd(tag))
    if tag == EXIF_IFD and _INTEROP_IFD in directory:
        interop = exif.get_ifd(_INTEROP_IFD)
        if interop:
            directory[_INTEROP_IFD] = dict(interop)
        else:
            del directory[_INTEROP_IFD]
    return directory


_INTEROP_IFD = 0xA005


def tiff_exif(tiff_data: bytes) -> bytes | None:
    """The EXIF block of a TIFF file: its descriptive first-directory tags and its EXIF and GPS
    sub-directories (None when it has none). Orientation is left out: the pixels are upright.

    A TIFF file is itself laid out as an EXIF block, so Pillow's EXIF parser reads its first
    directory whatever the pixel format (Pillow cannot open float or many-sample TIFFs).
    """
    source = exif_tags(tiff_data)
    if source is None:
        return None
    gathered = PILImage.Exif()
    try:
        for tag in TIFF_DESCRIPTIVE_TAGS:
            if tag in source:
                gathered[tag] = source[tag]
        for tag in (EXIF_IFD, GPS_IFD):
            directory = sub_directory(source, tag)
            if directory:
                gathered[tag] = directory
        if not len(gathered):
            return None
        return gathered.tobytes()[len(b"Exif\x00\x00") :]
    except Exception:  # unreadable tags: the pixels still restore, without them
        return None


# --------------------------------------------------------------------------- PNG


def png_icc(body: bytes) -> bytes | None:
    """The ICC profile in an ``iCCP`` chunk body (name, 0, method 0, zlib data)."""
    name_end = body.find(b"\x00")
    if name_end < 0 or name_end + 2 > len(body) or body[name_end + 1] != 0:
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(body[name_end + 2 :], _MAX_ICC_BYTES)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else profile


def png_dpi(body: bytes) -> tuple[float, float] | None:
    """DPI from a ``pHYs`` chunk body; None unless its unit is the metre."""
    if len(body) != 9 or body[8] != 1:
        return None
    x, y = struct.unpack(">II", body[:8])
    # pHYs counts per metre: 300 DPI is stored as 11811, read back as 299.9994; two decimals
    # are within what the chunk can tell apart (1 per metre is 0.0254 DPI)
    return plausible_dpi(round(x * _INCH_PER_METRE, 2), round(y * _INCH_PER_METRE, 2))


def plausible_dpi(x: float, y: float) -> tuple[float, float] | None:
    """(x, y) when both are resolutions a writer can store again (finite, above 0, below a
    million per inch), else None: a zero or absurd value is no print size to keep."""
    if all(math.isfinite(value) and 0 < value < _MAX_DPI for value in (x, y)):
        return (float(x), float(y))
    return None


_MAX_DPI = 1e6


def png_metadata_chunks(meta: ImageMeta) -> list[tuple[bytes, bytes]]:
    """(type, body) chunks that store ``meta`` in a PNG, to go right after IHDR."""
    chunks: list[tuple[bytes, bytes]] = []
    if meta.icc:
        chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(meta.icc, 9)))
    if meta.dpi is not None:
        x, y = (round(value / _INCH_PER_METRE) for value in meta.dpi)
        chunks.append((b"pHYs", struct.pack(">IIB", x, y, 1)))
    if meta.exif:
        chunks.append((b"eXIf", meta.exif))
    return chunks


# --------------------------------------------------------------------------- TIFF


def tiff_dpi(tags: dict[int, object]) -> tuple[float, float] | None:
    """DPI from a TIFF page's XResolution/YResolution/ResolutionUnit values (by tag code)."""
    unit = tags.get(296, 2)
    per_inch = {2: 1.0, 3: 2.54}.get(int(unit)) if isinstance(unit, int) else None
    x, y = tags.get(282), tags.get(283)
    if per_inch is None or not (_is_rational(x) and _is_rational(y)):
        return None
    return plausible_dpi(x[0] / x[1] * per_inch, y[0] / y[1] * per_inch)


def _is_rational(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and value[1] != 0


def tiff_descriptive_options(exif: bytes | None) -> dict[str, object]:
    """tifffile.imwrite options for the ASCII descriptive tags of ``exif`` (date, camera, …).

    Software and ImageDescription have options of their own (tifffile refuses them as extra
    tags and would write its own name as the software); the others are ``extratags``.
    """
    parsed = exif_tags(exif)
    if parsed is None:
        return {}
    options: dict[str, object] = {}
    extratags = []
    for tag in TIFF_DESCRIPTIVE_TAGS:
        value = parsed.get(tag)
        if not (isinstance(value, str) and value):
            continue
        if tag in _TIFFFILE_OPTIONS:
            options[_TIFFFILE_OPTIONS[tag]] = value
        else:
            extratags.append((tag, "s", 0, value, True))
    if extratags:
        options["extratags"] = extratags
    return options


_TIFFFILE_OPTIONS = {0x0131: "software", 0x010E: "description"}


def tiff_with_exif(tiff: bytes, exif: bytes | None) -> bytes:
    """A classic TIFF file with the EXIF and GPS sub-directories of ``exif`` added.

    The first directory is copied to the end of the file with the pointer entries added (its
    out-of-line values stay where they are), the sub-directories are appended after it, and the
    header points at the new copy. Returns ``tiff`` unchanged when there is nothing to add, it
    is not a classic TIFF (BigTIFF, for outputs over 4 GB), or the directories cannot be
    written (damaged values): a restored image is not worth losing over its EXIF.
    """
    try:
        return _append_exif_directories(tiff, exif)
    except Exception:
        return tiff


def _append_exif_directories(tiff: bytes, exif: bytes | None) -> bytes:
    parsed = exif_tags(exif)
    order = _TIFF_HEADERS.get(tiff[:4])
    if parsed is None or order is None:
        return tiff
    directories = {tag: sub_directory(parsed, tag) for tag in (EXIF_IFD, GPS_IFD)}
    directories = {tag: values for tag, values in directories.items() if values}
    if not directories:
        return tiff
    (ifd0,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack_from(order + "H", tiff, ifd0)
    entries = [tiff[ifd0 + 2 + 12 * i : ifd0 + 14 + 12 * i] for i in range(count)]
    next_ifd = tiff[ifd0 + 2 + 12 * count : ifd0 + 6 + 12 * count]
    start = len(tiff) + len(tiff) % 2
    position = start + 2 + 12 * (count + len(directories)) + 4
    appended: list[bytes] = []
    prefix = b"II" if order == "<" else b"MM"
    for tag, values in sorted(directories.items()):
        entries.append(struct.pack(order + "HHII", tag, _LONG, 1, position))
        block = TiffImagePlugin.ImageFileDirectory_v2(prefix=prefix, group=tag)
        for key, value in values.items():
            block[key] = value
        data = block.tobytes(position)
        appended.append(data + b"\x00" * (len(data) % 2))
        position += len(appended[-1])
    entries.sort(key=lambda entry: struct.unpack(order + "H", entry[:2])[0])
    new_ifd0 = struct.pack(order + "H", len(entries)) + b"".join(entries) + next_ifd
    header = tiff[:4] + struct.pack(order + "I", start)
    padding = b"\x00" * (start - len(tiff))
    return header + tiff[8:] + padding + new_ifd0 + b"".join(appended)
