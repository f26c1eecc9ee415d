"""Measure `irctl restore` at each CPU thread count, on an idle and on a loaded machine, under
OpenMP's two wait policies: the numbers behind irctl's default thread count (README, "Threads").

Why: torch's CPU kernels run on an OpenMP pool with one thread per core. When other work holds
some of the cores, a pool thread that is not scheduled stalls every parallel region at its
barrier, and with the default policy the other pool threads spin while they wait, taking the
core the late thread needs. The audit in issue 18 saw the default run 8.5–23× slower than one
thread on a busy machine. This script reproduces that comparison with a controlled load: busy
processes (a pure-Python loop each, one per loaded core) started before and stopped after each
timed run.

Each timed run is a fresh `irctl restore` process (OpenMP reads its environment at start-up) on
the shipped photo ``chelsea`` with the task's bundled default model; the wall time covers the
whole command, start-up included, as a user sees it.

Usage: python tools/measure_threads.py [--task denoise] [--repeats 1]
       [--markdown results/threads-cpu.md] [--json results/threads-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import skimage.data

BUSY_LOOP = "while True:\n    pass\n"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _timed_restore(src: Path, dst: Path, task: str, threads: int, policy: str) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    # An empty value is no policy to libgomp (its default: spin a while, then sleep), and it
    # stops irctl's CLI from setting its own default (it only fills an unset variable).
    env["OMP_WAIT_POLICY"] = policy
    shutil.rmtree(dst, ignore_errors=True)
    command = [sys.executable, "-m", "irctl", "restore", "--task", task]
    command += ["--src", str(src), "--dst", str(dst), "--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _with_load(busy: int, run):
    """``run()`` while ``busy`` single-core busy loops hold the machine."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)
        return run()
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="denoise")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--markdown", type=Path, default=Path("results/threads-cpu.md"))
    parser.add_argument("--json", type=Path, default=Path("results/threads-cpu.json"))
    args = parser.parse_args()

    cores = _cores()
    thread_counts = sorted({1, max(1, cores // 2), cores})
    loads = sorted({0, cores // 2, cores - 1} - {cores}) if cores > 1 else [0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "in")
        src.mkdir()
        iio.imwrite(src / "chelsea.png", skimage.data.chelsea())
        for busy in loads:
            for policy in ("", "PASSIVE"):
                for threads in thread_counts:
                    seconds = [
                        _with_load(
                            busy,
                            lambda t=threads, p=policy: _timed_restore(
                                src, Path(tmp, "out"), args.task, t, p
                            ),
                        )
                        for _ in range(args.repeats)
                    ]
                    row = {
                        "busy_cores": busy,
                        "cores": cores,
                        "omp_wait_policy": policy or "unset (libgomp's default)",
                        "threads": threads,
                        "seconds": statistics.median(seconds),
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "| other work (busy cores of "
        f"{cores}) | OMP_WAIT_POLICY | threads | s / image (whole command) |",
        "|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['busy_cores']} | {row['omp_wait_policy']} | {row['threads']} "
            f"| {row['seconds']:.1f} |"
        )
    args.markdown.write_text("\n".join(lines) + "\n")
    print(args.markdown.read_text())


if __name__ == "__main__":
    main()
