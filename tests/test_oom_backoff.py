"""Out-of-memory back-off (issue 18): an image whose network call runs out of memory is retried
with half the tile, with one warning line; the smaller tile is kept for the rest of the batch
and the output is byte for byte what a run started with that tile writes.

The network is made to run out of memory on inputs larger than 64 pixels, the way CUDA
(``torch.OutOfMemoryError``) and PyTorch's CPU allocator (a ``RuntimeError``) report it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.backoff import MIN_TILE, halved, is_out_of_memory
from irctl.io.images import write_image
from irctl.methods.base import SampleOptions
from irctl.nets.nafnet import ConditionalNAFNet
from irctl.tiling import TileSettings

runner = CliRunner()


def _cpu_out_of_memory() -> BaseException:
    """The error PyTorch's CPU allocator really raises (an exabyte never fits)."""
    try:
        torch.empty(1 << 60, dtype=torch.uint8)
    except RuntimeError as err:
        return err
    raise AssertionError("an exabyte was allocated")


OUT_OF_MEMORY = {
    "cuda": lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB"),
    "cpu": _cpu_out_of_memory,
}


def _restore(*args: str):
    return runner.invoke(app, ["restore", *args])


def _fits_only(monkeypatch: pytest.MonkeyPatch, largest: int, error) -> list[tuple[int, int]]:
    """Make the noise network run out of memory on inputs larger than ``largest`` pixels; the
    returned list records the size of every call."""
    calls: list[tuple[int, int]] = []
    forward = ConditionalNAFNet.forward

    def limited(self, x, *args, **kwargs):
        calls.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > largest:
            raise error()
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(ConditionalNAFNet, "forward", limited)
    return calls


@pytest.fixture()
def src(tmp_path: Path, photo_crops: list[np.ndarray]) -> Path:
    """Two 80×96 images (the tiny model restores them untiled unless told otherwise)."""
    folder = tmp_path / "src"
    for i, crop in enumerate(photo_crops[:2]):
        write_image(folder / f"img{i}.png", np.tile(crop, (2, 2, 1)), dtype=np.uint8)
    return folder


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
@pytest.mark.parametrize("tile", ["0", "96"])
def test_out_of_memory_halves_the_tile_once_for_the_batch(
    tiny_weights: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind, tile
) -> None:
    """Untiled (tile 0) and a tile covering the image both fall back to tiles of half the
    longer side (96 / 2 = 48, raised to the floor of 64 pixels): one line, and the second image
    starts with the smaller tile."""
    common = ["--weights", str(tiny_weights), "--src", str(src), "--json"]
    calls = _fits_only(monkeypatch, 64, OUT_OF_MEMORY[kind])
    result = _restore(*common, "--dst", str(tmp_path / "backoff"), "--tile", tile)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "out of memory" in line]
    assert warnings == [
        f"warning: out of memory with tile {'off' if tile == '0' else tile} on {src / 'img0.png'}"
        ": restored with tile 64, kept for the rest of the batch"
    ]
    assert len(json.loads(result.stdout.strip().splitlines()[-1])["restored"]) == 2
    assert sum(max(size) > 64 for size in calls) == 1  # img1 never tried the large tile
    monkeypatch.undo()

    direct = _restore(*common, "--dst", str(tmp_path / "direct"), "--tile", "64")
    assert direct.exit_code == 0, direct.output
    assert "out of memory" not in direct.stderr
    for name in ("img0.png", "img1.png"):
        assert (tmp_path / "backoff" / name).read_bytes() == (
            tmp_path / "direct" / name
        ).read_bytes()


def test_out_of_memory_at_the_floor_fails_the_image_with_one_line(
    tiny_weights: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing fits: each image tries the untiled size, then 64-pixel tiles, and fails with
    its line; the second image starts again from the batch's own tile (untiled)."""
    calls = _fits_only(monkeypatch, 8, OUT_OF_MEMORY["cpu"])
    dst = tmp_path / "dst"
    result = _restore("--weights", str(tiny_weights), "--src", str(src), "--dst", str(dst))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert all("out of memory even with tile 64" in line for line in errors)
    assert "warning:" not in result.stderr
    assert [max(size) for size in calls] == [96, 64, 96, 64]
    assert not dst.exists() or not any(p for p in dst.iterdir() if not p.is_dir())


def test_other_errors_are_not_retried(
    tiny_weights: Path, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fits_only(monkeypatch, 8, lambda: RuntimeError("mat1 and mat2 shapes differ"))
    result = _restore(
        "--weights", str(tiny_weights), "--src", str(src), "--dst", str(tmp_path / "dst")
    )
    assert result.exit_code == 1
    assert len(calls) == 2  # one call per image: no retry
    assert "out of memory" not in result.stderr


def _tiles(tile: int, overlap: int = 16) -> SampleOptions:
    """Options as the run resolves them: the overlap clamped below the tile (none untiled)."""
    return SampleOptions(tiles=TileSettings(tile=tile, overlap=min(overlap, max(tile - 1, 0))))


@pytest.mark.parametrize(
    "tile, overlap, expected",
    [
        (0, 16, 500),  # untiled: half the longer side, with the overlap a tiled run gets
        (2000, 16, 500),  # a tile covering the image is untiled too
        (256, 16, 128),
        (100, 16, MIN_TILE),  # never below the floor...
        (MIN_TILE, 16, None),  # ...and at the floor, no smaller tile
        (160, 48, 96),  # the floor is twice the overlap when that is larger
    ],
)
def test_halving_stops_at_the_floor(tile: int, overlap: int, expected: int | None) -> None:
    smaller = halved(_tiles(tile, overlap), 300, 1000, lambda t: _tiles(t, overlap))
    assert (smaller and smaller.tiles) == (expected and TileSettings(expected, overlap))


def test_an_image_smaller_than_the_floor_is_not_retiled() -> None:
    assert halved(_tiles(0), 40, 60, _tiles) is None


def test_what_counts_as_out_of_memory() -> None:
    assert is_out_of_memory(OUT_OF_MEMORY["cuda"]())
    cpu = OUT_OF_MEMORY["cpu"]()
    assert "DefaultCPUAllocator: can't allocate memory" in str(cpu) and is_out_of_memory(cpu)
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))
