"""File names as people and programs see them: one printable line, and the exact bytes.

A POSIX file name is any bytes but ``/`` and NUL. Python decodes the bytes that are not UTF-8
with ``surrogateescape`` (lone surrogates U+DC80..U+DCFF), which no UTF-8 terminal, log or
strict JSON reader accepts, and a newline in a name would split the one line a file's message
is promised to be. So names are shown with :func:`shown` (a visible escape for every character
that is not printable: ``\\n``, ``\\t``, ``\\xNN`` for a byte that is not UTF-8) and carried in
JSON by :func:`json_name` as that form plus the raw bytes in hex, from which
``os.fsdecode(bytes.fromhex(...))`` gives back the very path.
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str | os.PathLike[str]) -> str:
    """``text`` (a path, or a message naming paths) as one printable line: printable
    characters as they are, ``\\n``/``\\r``/``\\t``, ``\\xNN`` for an undecodable byte or a
    control character, ``\\uNNNN``/``\\UNNNNNNNN`` for other unprintable characters."""
    out = []
    for char in os.fspath(text):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape keeps it
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        elif char in _NAMED:
            out.append(_NAMED[char])
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def json_name(key: str, path: str | os.PathLike[str]) -> dict[str, str]:
    """``{key: shown(path), key + "_hex": the path's bytes in hex}``: the first for people
    (always valid UTF-8, one line), the second lossless for programs, for every path alike so
    a script never has to guess which names were odd."""
    return {key: shown(path), f"{key}_hex": os.fsencode(path).hex()}
