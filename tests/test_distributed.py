"""torchrun: data-parallel training keeps replicas identical; restore shards the file list."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES

from irctl.engine.checkpoint import load_checkpoint
from irctl.io.images import write_image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "irctl",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_two_rank_training_keeps_replicas_in_sync(tmp_path: Path) -> None:
    sets = [
        a for o in [*TINY_OVERRIDES, "train.batch=4", "train.val_every=3"] for a in ("--set", o)
    ]
    out = tmp_path / "run"
    result = _torchrun(
        "train", "--preset", "denoise-tiny", "--out", str(out), "--threads", "1", *sets
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and last["ranks"] == 2 and last["replicas_in_sync"] is True
    assert load_checkpoint(out / "weights.safetensors").step == 3
    assert result.stderr.count("done at step 3") == 1  # only rank 0 talks


@pytest.mark.slow
def test_two_rank_restore_shards_the_files(tiny_weights: Path, tmp_path: Path, photo_crops) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(5):
        write_image(src / f"p{i}.png", photo_crops[i % 3], dtype=np.uint8)
    result = _torchrun(
        "restore", "--weights", str(tiny_weights), "--src", str(src), "--dst", str(dst), "--json"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    restored = [item["src"] for s in summaries for item in s["restored"]]
    assert len(summaries) == 2 and sorted(restored) == sorted(
        str(src / f"p{i}.png") for i in range(5)
    )
    assert sorted(p.name for p in dst.iterdir()) == [f"p{i}.png" for i in range(5)]
