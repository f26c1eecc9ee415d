"""Resume verifies what it skips, and runs sharing one --dst split the work through claims.

Issue 18: a truncated or empty output in --dst counted as done; two runs on one --dst each
restored every image (24 restorations for 12 images); a killed run's claim must not block the
next run. Concurrency is orchestrated, never timed: a second run is started from inside the
first one's first "done" callback (both then hold claims at once), claims are planted as files.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.restore import RestoreOutcome, RestoreRequest, restore_folder
from irctl.engine.resume import unfinished
from irctl.io import claims
from irctl.io.claims import claim, claim_path
from irctl.io.images import read_image, write_image
from irctl.io.verify import image_size, output_problem
from irctl.presets import load_preset
from irctl.tasks import get_task
from irctl.tasks.base import Job

runner = CliRunner()


def _restore(*args: str):
    return runner.invoke(app, ["restore", *args])


def _summary(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def _names(rows: list[dict]) -> list[str]:
    return sorted(Path(row["src"]).name for row in rows)


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped, so nothing runs under it now)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_claim(output: Path, *, pid: int, host: str | None = None, age_s: float = 0.0) -> Path:
    """A claim file as another run would have left it for ``output``'s job."""
    path = claim_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pid": pid,
                "host": host or socket.gethostname(),
                "started": time.time() - age_s,
                "proc_start": claims._process_start_tick(pid),
                "token": "planted",
            }
        )
    )
    return path


# --------------------------------------------------------------------------- resume verifies


def test_truncated_empty_and_wrong_sized_outputs_are_redone_with_a_line(
    tiny_weights: Path, src_folder: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    args = ["--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst)]
    assert _restore(*args).exit_code == 0
    reference = {p.name: p.read_bytes() for p in dst.iterdir()}
    (dst / "img0.png").write_bytes(reference["img0.png"][: len(reference["img0.png"]) // 2])
    (dst / "img1.png").write_bytes(b"")
    write_image(dst / "img2.png", np.zeros((20, 24, 3), np.float32), dtype=np.uint8)

    result = _restore(*args, "--json")
    assert result.exit_code == 0, result.output
    assert _names(_summary(result)["restored"]) == ["img0.png", "img1.png", "img2.png"]
    redo = [line for line in result.stderr.splitlines() if line.startswith("redoing")]
    assert redo == [
        f"redoing {dst / 'img0.png'}: truncated output",
        f"redoing {dst / 'img1.png'}: empty output (0 bytes)",
        f"redoing {dst / 'img2.png'}: output is 24x20, expected 48x40",
    ]
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == reference

    again = _restore(*args, "--json")
    assert _names(_summary(again)["skipped"]) == ["img0.png", "img1.png", "img2.png"]
    assert "redoing" not in again.stderr


@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_output_problem_sees_truncation_in_every_format(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"x.{ext}"
    write_image(path, np.random.default_rng(0).random((40, 48, 3), np.float32), dtype=np.uint8)
    data = path.read_bytes()
    assert output_problem(path, (48, 40)) is None
    assert output_problem(path, (40, 48)) == "output is 48x40, expected 40x48"
    for cut in (1, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        assert output_problem(path, (48, 40)) is not None, cut
    path.write_bytes(b"")
    assert output_problem(path, None) == "empty output (0 bytes)"


def test_expected_size_follows_the_task_scale_and_the_input_orientation(tmp_path: Path) -> None:
    """sr4 outputs are 4× their input; a JPEG turned by its EXIF orientation is read turned."""
    src = tmp_path / "photo.jpg"
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90°: the pixels are read as 30 wide, 20 tall
    PILImage.new("RGB", (20, 30)).save(src, exif=exif)
    assert image_size(src) == (30, 20)
    assert read_image(src).pixels.shape[:2] == (20, 30)
    job = Job({"image": src}, {"image": tmp_path / "out.jpg"})
    preset = load_preset("sr4-diffir-tiny")
    assert get_task("sr4").output_sizes(job, preset.degradation) == {"image": (120, 80)}
    assert get_task("denoise").output_sizes(job, preset.degradation) == {"image": (30, 20)}


def test_a_stereo_pair_is_done_only_when_both_views_verify(tmp_path: Path) -> None:
    task = get_task("stereo-sr")
    degradation = load_preset("stereo-sr-tiny").degradation
    view = np.random.default_rng(1).random((20, 28, 3), np.float32)
    inputs = {"left": tmp_path / "in" / "a_L.png", "right": tmp_path / "in" / "a_R.png"}
    outputs = {"left": tmp_path / "out" / "a_L.png", "right": tmp_path / "out" / "a_R.png"}
    for path in inputs.values():
        write_image(path, view, dtype=np.uint8)
    big = np.repeat(np.repeat(view, 4, axis=0), 4, axis=1)
    for path in outputs.values():
        write_image(path, big, dtype=np.uint8)
    job = Job(inputs, outputs)
    assert unfinished(task, job, degradation) is None
    right = outputs["right"].read_bytes()
    outputs["right"].write_bytes(right[:-20])
    state = unfinished(task, job, degradation)
    assert state is not None and (state.path, state.reason) == (
        outputs["right"],
        "truncated output",
    )
    write_image(outputs["right"], view, dtype=np.uint8)  # the input's size, not 4×
    state = unfinished(task, job, degradation)
    assert state is not None and state.reason == "output is 28x20, expected 112x80"
    outputs["right"].unlink()
    state = unfinished(task, job, degradation)
    assert state is not None and state.reason is None  # not there: redone without a line


# --------------------------------------------------------------------------- claims


def test_claims_exclusive_released_and_only_by_their_owner(tmp_path: Path) -> None:
    output = tmp_path / "x.png"
    first = claim(output)
    assert first.claim is not None and first.holder is None
    second = claim(output)
    assert second.claim is None and second.holder is not None
    assert second.holder.pid == os.getpid()
    stolen = claims.Claim(first.claim.path, token="not-ours")
    stolen.release()
    assert claim_path(output).exists()
    first.claim.release()
    assert not claim_path(output).exists()
    assert claim(output).claim is not None


def test_staleness_rules(tmp_path: Path) -> None:
    output = tmp_path / "x.png"
    now = time.time()

    def info(**fields) -> claims.ClaimInfo:
        base = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": now,
            "proc_start": claims._process_start_tick(os.getpid()),
            "token": "t",
        }
        return claims.ClaimInfo(**{**base, **fields})

    assert not info().is_stale(now)
    assert info(pid=_dead_pid()).is_stale(now)
    if claims._process_start_tick(os.getpid()) is not None:  # Linux: a reused pid is seen
        assert info(proc_start=claims._process_start_tick(os.getpid()) - 1).is_stale(now)
    assert not info(host="other-machine", pid=1).is_stale(now + claims.STALE_AFTER_S - 60)
    assert info(host="other-machine", pid=1).is_stale(now + claims.STALE_AFTER_S + 60)
    unreadable = claim_path(output)
    unreadable.write_bytes(b"")
    held = claims._read(unreadable)
    assert held is not None and held.pid == 0
    assert not held.is_stale(time.time())
    assert held.is_stale(time.time() + claims.UNREADABLE_AFTER_S + 1)


def test_a_dead_runs_claim_is_taken_over(tmp_path: Path) -> None:
    output = tmp_path / "x.png"
    dead = _dead_pid()
    _plant_claim(output, pid=dead)
    attempt = claim(output)
    assert attempt.claim is not None
    assert attempt.holder is not None and attempt.holder.pid == dead
    assert json.loads(claim_path(output).read_text())["pid"] == os.getpid()


def test_breaking_a_stale_claim_never_removes_a_fresh_one(tmp_path: Path) -> None:
    """Two runs judge one claim stale; the first replaces it with its own; the second, still
    holding the stale one's content, must leave the first run's claim in place."""
    output = tmp_path / "x.png"
    path = _plant_claim(output, pid=_dead_pid())
    stale = claims._read(path)
    assert stale is not None and stale.is_stale(time.time())
    assert claims._break(path, stale)
    fresh = claim(output)
    assert fresh.claim is not None
    assert not claims._break(path, stale)
    assert json.loads(path.read_text())["token"] == fresh.claim.token
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no private copies left


def test_a_live_claim_is_left_to_its_run_and_exits_zero(
    tiny_weights: Path, src_folder: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    planted = _plant_claim(dst / "img1.png", pid=os.getpid())  # this process: alive
    args = ["--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst), "--json"]
    result = _restore(*args)
    assert result.exit_code == 0, result.output
    summary = _summary(result)
    assert _names(summary["restored"]) == ["img0.png", "img2.png"]
    assert _names(summary["claimed"]) == ["img1.png"] and summary["failed"] == []
    assert "1 claimed by another run" in result.stderr
    assert planted.exists() and not (dst / "img1.png").exists()

    for name in ("img0.png", "img2.png"):  # everything left is claimed: nothing to do, exit 0
        (dst / name).unlink()
        _plant_claim(dst / name, pid=os.getpid())
    result = _restore(*args)
    assert result.exit_code == 0, result.output
    summary = _summary(result)
    assert summary["restored"] == [] and len(summary["claimed"]) == 3


def test_a_killed_runs_claim_is_recovered_by_the_next_run(
    tiny_weights: Path, src_folder: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "dst"
    dead = _dead_pid()
    planted = _plant_claim(dst / "img1.png", pid=dead)
    args = ["--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst), "--json"]
    result = _restore(*args)
    assert result.exit_code == 0, result.output
    assert _names(_summary(result)["restored"]) == ["img0.png", "img1.png", "img2.png"]
    assert f"removed a claim left by a run that is gone (pid {dead} on" in result.stderr
    assert not planted.exists()
    assert sorted(p.name for p in dst.iterdir()) == ["img0.png", "img1.png", "img2.png"]


class _Recorder:
    """A reporter that keeps what a run says; ``on_first_done`` runs once, inside the run."""

    def __init__(self, on_first_done=None) -> None:
        self.lines: list[str] = []
        self.done_jobs: list[Job] = []
        self.on_first_done = on_first_done

    def info(self, message: str) -> None:
        self.lines.append(message)

    def error(self, path: Path, reason: str) -> None:
        self.lines.append(f"error: {path}: {reason}")

    def start(self, noun: str, jobs: int, steps: int) -> None:
        pass

    def step(self, done: int, total: int) -> None:
        pass

    def done(self, job: Job, seconds: float) -> None:
        self.done_jobs.append(job)
        hook, self.on_first_done = self.on_first_done, None
        if hook is not None:
            hook()


def test_two_overlapping_runs_split_twelve_images(
    tiny_weights: Path, photo_crops: list[np.ndarray], tmp_path: Path
) -> None:
    """Run B starts and finishes while run A is mid-batch (from A's first "done"), so both hold
    claims at once whatever the timing: each image is restored by exactly one of them."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(12):
        write_image(src / f"p{i:02d}.png", photo_crops[i % 3], dtype=np.uint8)

    def request() -> RestoreRequest:
        return RestoreRequest(src=str(src), dst=dst, weights=tiny_weights, threads=1)

    second: list[RestoreOutcome] = []
    first = restore_folder(
        request(),
        _Recorder(on_first_done=lambda: second.append(restore_folder(request(), _Recorder()))),
    )
    (b,) = second
    for outcome in (first, b):
        assert outcome.failed == []
    restored = [job.src.name for job in first.summary.restored + b.summary.restored]
    assert sorted(restored) == sorted(p.name for p in src.iterdir())  # 12, none twice
    assert b.summary.restored and first.summary.restored
    assert b.summary.claimed or b.plan.skipped
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in src.iterdir())
    task = get_task("denoise")
    degradation = load_preset("denoise-tiny").degradation
    for job in first.summary.restored + b.summary.restored:
        assert unfinished(task, job, degradation) is None
        read_image(job.dst)


@pytest.mark.slow
def test_two_concurrent_processes_restore_each_image_once(
    tiny_weights: Path, photo_crops: list[np.ndarray], tmp_path: Path
) -> None:
    """Two `irctl restore` processes started together on one --dst: whatever their timing,
    12 restorations in all and 12 valid outputs, no claim or temp file left behind."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(12):
        write_image(src / f"p{i:02d}.png", np.tile(photo_crops[i % 3], (2, 2, 1)), dtype=np.uint8)
    cmd = [sys.executable, "-m", "irctl", "restore", "--weights", str(tiny_weights)]
    cmd += ["--src", str(src), "--dst", str(dst), "--json", "--threads", "1"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=600) for proc in procs]
    summaries = []
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    restored = [row["src"] for summary in summaries for row in summary["restored"]]
    assert sorted(Path(s).name for s in restored) == sorted(p.name for p in src.iterdir())
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in src.iterdir())
    for path in dst.iterdir():
        assert read_image(path).pixels.shape == (80, 96, 3)


@pytest.mark.slow
def test_claims_of_a_run_killed_mid_batch_are_taken_over(
    tiny_weights: Path, photo_crops: list[np.ndarray], tmp_path: Path
) -> None:
    """kill -9 while the run holds claims (waiting for one to appear, not for a time): the
    next run removes each claim the killed one left, restores the rest, and leaves only the
    outputs."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    n = 8
    for i in range(n):
        write_image(src / f"p{i}.png", np.tile(photo_crops[i % 3], (3, 3, 1)), dtype=np.uint8)
    cmd = [sys.executable, "-m", "irctl", "restore", "--weights", str(tiny_weights)]
    cmd += ["--src", str(src), "--dst", str(dst), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if dst.is_dir() and any(dst.glob(".*.claim")):
            break
        time.sleep(0.01)  # polling for the claim to appear, not a synchronisation
    proc.kill()
    proc.wait()
    left = sorted(dst.glob(".*.claim"))
    assert left, "the run was killed holding no claim (it had finished?)"
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    removed = [line for line in rerun.stderr.splitlines() if "claim left by a run" in line]
    assert len(removed) == len(left)
    assert all(f"(pid {proc.pid} on" in line for line in removed)
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert len(summary["restored"]) + len(summary["skipped"]) == n
    assert summary["claimed"] == [] and summary["failed"] == []
    assert sorted(p.name for p in dst.iterdir()) == [f"p{i}.png" for i in range(n)]


def test_a_long_output_name_gets_a_claim_the_filesystem_accepts(tmp_path: Path) -> None:
    output = tmp_path / ("é" * 120 + ".png")  # 245 bytes: its claim name would pass 255
    output.write_bytes(b"")  # the filesystem takes the output's own name
    attempt = claim(output)
    assert attempt.claim is not None and attempt.claim.path.exists()
    assert claim(output).claim is None  # the same name again: one claim per output
    assert claim(tmp_path / ("é" * 119 + "e.png")).claim is not None  # another output's


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_huge_output_is_verified_from_its_header_without_decoding(tmp_path: Path) -> None:
    """A ×4 SR output of a 24-megapixel photo has 384 megapixels: Pillow's open would refuse
    it as a decompression bomb, and decoding it to check it would take seconds."""
    import struct
    import zlib

    png = tmp_path / "huge.png"
    header = struct.pack(">IIBBBBB", 24000, 16000, 8, 2, 0, 0, 0)
    exif = PILImage.Exif()
    exif[0x0112] = 6
    png.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))  # the pixels are never looked at
        + _png_chunk(b"eXIf", exif.tobytes())  # after the pixels: still read
        + _png_chunk(b"IEND", b"")
    )
    assert output_problem(png, (16000, 24000)) is None
    jpeg = tmp_path / "huge.jpg"
    PILImage.new("RGB", (48, 40)).save(jpeg)
    data = bytearray(jpeg.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 16000, 24000)  # height, width
    jpeg.write_bytes(bytes(data))
    assert output_problem(jpeg, (24000, 16000)) is None
    assert output_problem(jpeg, (48, 40)) == "output is 24000x16000, expected 48x40"


def test_a_claim_from_another_pid_namespace_is_judged_by_age(tmp_path: Path) -> None:
    """A container with this host's name sees other pids: its claimant's pid cannot be looked
    up here, so only age makes the claim stale."""
    if claims._pid_namespace() is None:
        pytest.skip("no /proc: pid namespaces are not known here")
    now = time.time()
    foreign = claims.ClaimInfo(
        pid=_dead_pid(),
        host=socket.gethostname(),
        started=now,
        proc_start=None,
        token="t",
        pid_namespace=claims._pid_namespace() + 1,
    )
    assert not foreign.is_stale(now)
    assert foreign.is_stale(now + claims.STALE_AFTER_S + 60)


def test_a_released_claim_takes_the_folders_it_made_with_it(tmp_path: Path) -> None:
    """A job that fails leaves no empty mirror folder; one that wrote its output keeps it."""
    failed = claim(tmp_path / "dst" / "a" / "b" / "x.png")
    assert failed.claim is not None and (tmp_path / "dst" / "a" / "b").is_dir()
    done = claim(tmp_path / "dst" / "c" / "y.png")
    assert done.claim is not None
    (tmp_path / "dst" / "c" / "y.png").write_bytes(b"an output")
    failed.claim.release()
    done.claim.release()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "dst",
        "dst/c",
        "dst/c/y.png",
    ]


def test_a_failed_file_in_a_subfolder_leaves_no_folder_behind(
    tiny_weights: Path, src_folder: Path, tmp_path: Path
) -> None:
    (src_folder / "sub").mkdir()
    (src_folder / "sub" / "broken.png").write_bytes(b"not a PNG at all")
    dst = tmp_path / "dst"
    result = _restore("--weights", str(tiny_weights), "--src", str(src_folder), "--dst", str(dst))
    assert result.exit_code == 1
    assert sorted(p.name for p in dst.iterdir()) == ["img0.png", "img1.png", "img2.png"]
