"""Claim files: which run restores a job, so that runs sharing one ``--dst`` split the work.

Two runs on one output folder (a cron job overlapping the previous one, a second terminal)
would otherwise both restore every image. Before a job is read, its run creates the claim file
``.<first output name>.claim`` beside the job's first output, atomically and only if absent; the
file says who holds it (JSON: pid, host, start time, the process's start tick, a random token).
It is removed when the job is committed or has failed. Another run that finds a live claim skips
the job: that run restores it.

Atomic creation: the content is written to a temp file first and hard-linked to the claim name
(``link`` fails if the name exists, on local filesystems and NFS alike), so a claim is never
seen half-written; where hard links are not supported, ``O_CREAT|O_EXCL`` is used instead.

Staleness — a claim left by a killed run is recovered by the next run that meets it:

- same host (and pid namespace): the pid is not running, or it is running but started at
  another time than the claimant (a reused pid; the start tick from ``/proc`` where there is
  one);
- another host (a shared filesystem), or another container's pids: older than :data:`STALE_AFTER_S` (24 h), which no single
  job comes near; a killed run's claims on another machine are taken over by a run on that
  machine at once, or after 24 h by anyone (or delete ``.*.claim`` files by hand when no run
  is active);
- unreadable content (only a killed ``O_EXCL`` writer leaves that): older than a minute.

Under torchrun the job list is sharded by RANK/WORLD_SIZE first, and a rank claims only its
own shard's jobs: ranks never contend, and two launches on one ``--dst`` split each shard. A
claim names its process and host, so ranks on one machine never take each other's for stale.

Taking a stale claim over renames it to a private name first, then checks that the file moved
is the stale one (a racing run may have replaced it with a fresh claim, which is then put
back), so two runs that both find a claim stale never both win it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from irctl.io.partials import partial_name, process_alive

CLAIM_SUFFIX = ".claim"
#: a claim from another host counts as abandoned after this long (seconds)
STALE_AFTER_S = 24 * 3600.0
#: a claim whose content cannot be read counts as abandoned after this long (seconds)
UNREADABLE_AFTER_S = 60.0
_ATTEMPTS = 3
_MAX_NAME_BYTES = 200  # leaves room for the temp names made from a claim's name


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds a claim, as its file says (``pid`` 0 and empty ``host``: unreadable content)."""

    pid: int
    host: str
    started: float  # wall-clock seconds since the epoch
    proc_start: int | None  # the process's start tick since boot (Linux), to tell pid reuse
    token: str
    #: the pid namespace (Linux): containers sharing a host name see other pids
    pid_namespace: int | None = None
    raw: bytes = field(default=b"", repr=False, compare=False)

    def describe(self) -> str:
        if not self.pid:
            return "an unreadable claim"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, since {when}"

    def is_stale(self, now: float) -> bool:
        """True when the run that made this claim cannot still be working on it."""
        if not self.pid:
            return now - self.started > UNREADABLE_AFTER_S
        if not self._pids_visible():
            return now - self.started > STALE_AFTER_S
        if not process_alive(self.pid):
            return True
        current = _process_start_tick(self.pid)
        return None not in (current, self.proc_start) and current != self.proc_start

    def _pids_visible(self) -> bool:
        """True when this process can look the claimant's pid up: same host, same pid
        namespace (where both are known)."""
        if self.host != socket.gethostname():
            return False
        ours = _pid_namespace()
        return None in (ours, self.pid_namespace) or ours == self.pid_namespace


@dataclass(frozen=True)
class Claim:
    """A claim this process holds; :meth:`release` removes it (only if it is still ours)."""

    path: Path
    token: str
    #: the output folders this claim had to create, deepest first: removed again on release
    #: while empty (a failed job leaves no empty mirror folder behind)
    created: tuple[Path, ...] = ()

    def release(self) -> None:
        held = _read(self.path)
        if held is not None and held.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the job's outputs, or another job's claim or outputs
                break


@dataclass(frozen=True)
class ClaimAttempt:
    """The outcome of :func:`claim`: ``claim`` is ours, or None when another live run holds the
    job (``holder``); with a claim, ``holder`` is the stale claim taken over (or None)."""

    claim: Claim | None
    holder: ClaimInfo | None = None


def claim_path(output: Path) -> Path:
    """The claim file of the job whose first output is ``output`` (hidden: never an input).
    A name too long for the filesystem's 255 bytes is cut and made unique with its hash."""
    name = f".{output.name}{CLAIM_SUFFIX}"
    if len(os.fsencode(name)) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(os.fsencode(output.name)).hexdigest()[:16]
        name = f".{os.fsdecode(os.fsencode(output.name)[:100])}~{digest}{CLAIM_SUFFIX}"
    return output.with_name(name)


def claim(output: Path) -> ClaimAttempt:
    """Claim the job whose first output is ``output``, taking over a stale claim."""
    path = claim_path(output)
    created = _make_folders(path.parent)
    recovered: ClaimInfo | None = None
    holder: ClaimInfo | None = None
    for _ in range(_ATTEMPTS):
        token = secrets.token_hex(8)
        try:
            made = _create(path, _content(token))
        except FileNotFoundError:  # another run removed the folder with its last claim there
            created = _make_folders(path.parent)
            continue
        if made:
            return ClaimAttempt(Claim(path, token, created), recovered)
        holder = _read(path)
        if holder is None:  # released between our try and our look: try again
            continue
        if not holder.is_stale(time.time()):
            return ClaimAttempt(None, holder)
        if _break(path, holder):
            recovered = holder
    return ClaimAttempt(None, holder)


def _make_folders(folder: Path) -> tuple[Path, ...]:
    """Create ``folder`` and its missing parents; the ones that were missing, deepest first."""
    missing = []
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return tuple(missing)


def remove_stale_claims(directory: str | os.PathLike[str]) -> list[tuple[Path, ClaimInfo]]:
    """Remove the stale claims under ``directory`` (a killed run's, whose job was committed or
    is not retried): each removed claim file and who had made it."""
    removed: list[tuple[Path, ClaimInfo]] = []
    now = time.time()
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if not (name.startswith(".") and name.endswith(CLAIM_SUFFIX)):
                continue
            path = Path(root) / name
            holder = _read(path)
            if holder is not None and holder.is_stale(now) and _break(path, holder):
                removed.append((path, holder))
    return sorted(removed, key=lambda item: item[0])


def _content(token: str) -> bytes:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "proc_start": _process_start_tick(os.getpid()),
            "pid_namespace": _pid_namespace(),
            "token": token,
        }
    ).encode()


def _create(path: Path, content: bytes) -> bool:
    """Create ``path`` holding ``content`` if it does not exist; False if it does."""
    temporary = path.with_name(partial_name(path.name))
    try:
        with open(temporary, "xb") as handle:
            handle.write(content)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network or FAT filesystems)
            return _create_exclusive(path, content)
        return True
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _create_exclusive(path: Path, content: bytes) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    return True


def _read(path: Path) -> ClaimInfo | None:
    """The claim at ``path``; None when there is none (any more)."""
    try:
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        raw, mtime = b"", time.time()
    try:
        fields = json.loads(raw)
        return ClaimInfo(
            pid=int(fields["pid"]),
            host=str(fields["host"]),
            started=float(fields["started"]),
            proc_start=_optional_int(fields.get("proc_start")),
            token=str(fields["token"]),
            pid_namespace=_optional_int(fields.get("pid_namespace")),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError):
        return ClaimInfo(pid=0, host="", started=mtime, proc_start=None, token="", raw=raw)


def _break(path: Path, stale: ClaimInfo) -> bool:
    """Remove the claim at ``path`` if it is still ``stale``; True when this call removed it.
    The rename makes the check and the removal one step: the file we check is the file we
    took, and a fresh claim taken by mistake (a racing run replaced the stale one) goes back."""
    private = path.with_name(partial_name(path.name))
    try:
        os.replace(path, private)
    except FileNotFoundError:
        return False
    try:
        moved = private.read_bytes()
    except OSError:
        moved = b""
    if moved == stale.raw:
        private.unlink(missing_ok=True)
        return True
    with contextlib.suppress(OSError):
        os.link(private, path)  # put the other run's claim back (unless a third has one)
    private.unlink(missing_ok=True)
    return False


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def _pid_namespace() -> int | None:
    """This process's pid namespace (the inode of ``/proc/self/ns/pid``); None without /proc."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _process_start_tick(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (Linux ``/proc``); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
