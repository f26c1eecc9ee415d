"""Checking an existing output before a resume trusts it, without decoding its pixels.

A resume skips a job whose outputs are all in ``--dst``. The atomic writes (irctl/io/outputs.py)
never leave a partial file there themselves, but a crash of the machine, a full disk during a
copy, a sync tool or a user can: an empty file, a file cut short, or one of another size. Those
must be redone, not counted as done.

Decoding every output would be the most thorough check, but a resume of thousands of 24-megapixel
outputs would then spend minutes to hours decoding images it does not restore (0.2–0.6 s per
6-megapixel image here). What goes wrong in practice is a file cut short or zero-filled at its
end, and the file's structure shows that: a PNG's chunks must all fit in the file and end with
IEND, a JPEG must end with its EOI marker, a TIFF's image data must lie inside the file. With
the size from the header, this reads a few bytes per chunk, never the pixels. Damage inside a
PNG chunk or a JPEG's entropy-coded data with the structure intact is not seen.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import tifffile
from PIL import JpegImagePlugin

from irctl.io.images import (
    EXIF_ORIENTATION,
    JPEG_MAGIC,
    PNG_MAGIC,
    TIFF_MAGICS,
    exif_orientation,
)

_JPEG_END = b"\xff\xd9"
_TIFF_ORIENTATION_TAG = 274
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF/TIFF codes that swap width and height
_PNG_CHUNK_OVERHEAD = 12  # length, type, CRC
_WALK_BUFFER = 1 << 20  # bytes read at once while walking a PNG's chunks


class HeaderError(Exception):
    """A file whose header or structure cannot be read: the message is the one-line reason."""


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as irctl's reader delivers the pixels — after the EXIF/TIFF orientation
    — read from the header alone. Raises :class:`HeaderError` with a one-line reason."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(TIFF_MAGICS):
        return _tiff_size(path)
    if head.startswith(PNG_MAGIC):
        return _png_size(path)
    if head.startswith(JPEG_MAGIC):
        return _jpeg_size(path)
    raise HeaderError("not a PNG, JPEG or TIFF file")


def _oriented(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def _jpeg_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Pillow's JPEG plugin parses the markers up to the frame header (EXIF included) and
    decodes nothing. Called directly rather than through ``Image.open``, whose decompression
    bomb check would refuse the header of a large SR output (a ×4 24-megapixel photo)."""
    try:
        with JpegImagePlugin.JpegImageFile(path) as img:
            width, height = img.size
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception as err:  # Pillow raises many types for damaged headers
        raise HeaderError(f"unreadable header ({_one_line(err)})") from None
    return _oriented(width, height, orientation)


def _png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """IHDR's size, turned by an eXIf chunk's orientation wherever it lies (as irctl's reader
    does); Pillow would decode the whole image to look for an eXIf after the pixels."""
    width = height = None
    orientation = 1
    with open(path, "rb", buffering=_WALK_BUFFER) as handle:
        for kind, position, length in _png_chunks(handle, os.fstat(handle.fileno()).st_size):
            handle.seek(position + 8)
            if kind == b"IHDR" and length >= 8:
                width, height = struct.unpack(">II", handle.read(8))
            elif kind == b"eXIf":
                orientation = exif_orientation(handle.read(length))
    if width is None or height is None:
        raise HeaderError("unreadable header (no IHDR chunk)")
    return _oriented(width, height, orientation)


def _tiff_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            width, height = int(page.imagewidth), int(page.imagelength)
            tag = page.tags.get(_TIFF_ORIENTATION_TAG)
            orientation = int(tag.value) if tag is not None else 1
    except Exception as err:  # tifffile raises many types for damaged files
        raise HeaderError(f"unreadable header ({_one_line(err)})") from None
    return _oriented(width, height, orientation)


def output_problem(path: str | os.PathLike[str], expected: tuple[int, int] | None) -> str | None:
    """Why an existing output cannot count as done (one line), or None when it is complete and
    ``expected`` (width, height; None: any size) is its size."""
    try:
        size = os.stat(path).st_size
        if size == 0:
            return "empty output (0 bytes)"
        if not _structure_complete(path, size):
            return "truncated output"
        width, height = image_size(path)
    except HeaderError as err:
        return f"unreadable output: {err}"
    except OSError as err:
        return f"unreadable output: {err.strerror or err}"
    if expected is not None and (width, height) != expected:
        return f"output is {width}x{height}, expected {expected[0]}x{expected[1]}"
    return None


def _structure_complete(path: str | os.PathLike[str], size: int) -> bool:
    """True when the file's structure reaches its proper end (see the module docstring)."""
    with open(path, "rb", buffering=_WALK_BUFFER) as handle:
        head = handle.read(8)
        if head.startswith(PNG_MAGIC):
            return _png_complete(handle, size)
        if head.startswith(JPEG_MAGIC):
            handle.seek(max(0, size - len(_JPEG_END)))
            return handle.read() == _JPEG_END
    if head.startswith(TIFF_MAGICS):
        return _tiff_complete(path, size)
    raise HeaderError("not a PNG, JPEG or TIFF file")


def _png_complete(handle: BinaryIO, size: int) -> bool:
    """Every chunk lies inside the file, up to IEND."""
    return any(kind == b"IEND" for kind, _position, _length in _png_chunks(handle, size))


def _png_chunks(handle: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, data length) of each PNG chunk that lies wholly inside the file, up to
    IEND; reads the chunk headers only, seeking over the data. ``handle`` should be opened
    with a large buffer: a seek inside it costs no system call, and a 96-megapixel PNG has
    thousands of chunks."""
    position = len(PNG_MAGIC)
    while position + _PNG_CHUNK_OVERHEAD <= size:
        handle.seek(position)
        length, kind = struct.unpack(">I4s", handle.read(8))
        if position + _PNG_CHUNK_OVERHEAD + length > size:
            return
        yield kind, position, length
        if kind == b"IEND":
            return
        position += _PNG_CHUNK_OVERHEAD + length


def _tiff_complete(path: str | os.PathLike[str], size: int) -> bool:
    """Every page's image data (strips or tiles) lies inside the file."""
    try:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                    if offset + count > size:
                        return False
    except Exception as err:  # a cut IFD chain: tifffile raises many types
        raise HeaderError(f"unreadable structure ({_one_line(err)})") from None
    return True


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__
