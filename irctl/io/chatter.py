"""What the image libraries say while decoding, kept out of stderr and folded into one line.

A batch prints one line per file that fails. The libraries irctl decodes with talk on their own:
libpng (inside OpenCV) prints ``libpng error: …`` straight to file descriptor 2 from C,
tifffile logs ``<tifffile.TiffPage 0 @8> missing data offset tag`` through :mod:`logging`, and
Pillow emits :mod:`warnings` (corrupt EXIF, large images). Those lines name no file and arrive
out of order with the batch's own, so a reader cannot tell which image they are about. This
module collects them for the decode that caused them, so the caller can put them into that
file's one error line (or drop them when the file decoded fine).

Two mechanisms, because the chatter takes two routes:

* :func:`python_chatter` — warnings and tifffile's log records. Both go through process-wide
  hooks installed once; each hook hands a message to the *calling thread's* collector when that
  thread is inside the block and passes it on unchanged otherwise, so reader threads decoding at
  the same time never see each other's messages and the rest of the program is unaffected.
* :func:`c_stderr_chatter` — C code writing to fd 2. A file descriptor is shared by every thread,
  so this redirects fd 2 to a temporary file under a process-wide lock (one such block at a time)
  and, afterwards, writes back every line that is not library chatter: whatever another thread
  printed meanwhile (a progress line, another file's error) is delayed by the decode, never
  lost — except a line written between the two pieces libpng writes its message in
  (``libpng error: …``, then the newline), which cannot be told apart from it and ends up in
  that file's reason.
  The price is that PNG decoding (libpng is the C library that prints) runs one file at a
  time across reader threads; decoding is a small part of a restore, and libpng also prints
  warnings about good files (``iCCP: known incorrect sRGB profile``) that would otherwise
  reach the user as lines naming no file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

#: Loggers of the image libraries whose records are chatter about the file at hand (Pillow
#: warns through :mod:`warnings`; its loggers only say DEBUG things).
_LIBRARY_LOGGERS = ("tifffile",)
#: How a line on fd 2 written by a decoding library starts; other lines are someone else's.
_C_LIBRARY_PREFIXES = ("libpng ", "libpng:", "[ WARN:", "[ERROR:")

_local = threading.local()
_install_lock = threading.Lock()
_fd_lock = threading.Lock()
_previous_showwarning = warnings.showwarning


def _sink() -> list[str] | None:
    return getattr(_local, "sink", None)


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning: the thread's collector when it has one, else the previous hook."""
    sink = _sink()
    if sink is None:
        _previous_showwarning(message, category, filename, lineno, file, line)
        return
    sink.append(str(message))


class _CollectRecords(logging.Filter):
    """A logger filter that swallows records into the thread's collector when it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = _sink()
        if sink is None:
            return True
        sink.append(record.getMessage())
        return False


_COLLECT_RECORDS = _CollectRecords()


def _install_hooks() -> None:
    """Install the warnings and logging hooks (again if something, e.g. a test harness's
    ``catch_warnings``, replaced ``warnings.showwarning`` since)."""
    global _previous_showwarning
    with _install_lock:
        if warnings.showwarning is not _showwarning:
            _previous_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning
        for name in _LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            if _COLLECT_RECORDS not in logger.filters:
                logger.addFilter(_COLLECT_RECORDS)


@contextlib.contextmanager
def python_chatter() -> Iterator[list[str]]:
    """Collect the warnings and library log records this thread causes inside the block.

    Yields the list the messages are appended to, one string each. Nested blocks share the
    outermost collector.
    """
    _install_hooks()
    outer = _sink()
    if outer is not None:
        yield outer
        return
    collected: list[str] = []
    _local.sink = collected
    try:
        yield collected
    finally:
        _local.sink = None


@contextlib.contextmanager
def c_stderr_chatter() -> Iterator[list[str]]:
    """Run a block with fd 2 redirected; yields a list that, after the block, holds the lines C
    libraries wrote (libpng's, OpenCV's log lines).

    Serialised by a process-wide lock, since fd 2 is one for all threads. Lines that are not
    library chatter were written by other threads meanwhile and are written back to fd 2 when
    the block ends. If fd 2 cannot be redirected (closed, no temp dir), the block runs as is.
    """
    lines: list[str] = []
    with _fd_lock, _capture_file() as capture:
        saved = None if capture is None else _redirect_stderr(capture.fileno())
        try:
            yield lines
        finally:
            if saved is not None:
                _restore_stderr(saved)
        if capture is None or saved is None:
            return
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    ours, theirs = _split_library_lines(text)
    lines.extend(ours)
    if theirs:
        with contextlib.suppress(OSError):
            os.write(2, theirs.encode("utf-8", "replace"))


def _capture_file() -> contextlib.AbstractContextManager:
    """A temporary file to catch fd 2 in, or a stand-in None when none can be made."""
    try:
        return tempfile.TemporaryFile()
    except OSError:
        return contextlib.nullcontext(None)


def _redirect_stderr(target: int) -> int | None:
    """Point fd 2 at ``target``; returns a duplicate of the old fd 2 (None when impossible)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()  # Python's own buffered text belongs before the redirect
    try:
        saved = os.dup(2)
    except OSError:
        return None
    try:
        os.dup2(target, 2)
    except OSError:
        os.close(saved)
        return None
    return saved


def _restore_stderr(saved: int) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stderr.flush()  # another thread's Python text written during the block
    os.dup2(saved, 2)
    os.close(saved)


def _split_library_lines(text: str) -> tuple[list[str], str]:
    """(library lines, stripped; everything else, as written) of what fd 2 received."""
    ours: list[str] = []
    theirs: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(_C_LIBRARY_PREFIXES):
            ours.append(line.strip())
        else:
            theirs.append(line)
    return ours, "".join(theirs)
