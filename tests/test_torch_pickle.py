"""Reading torch checkpoint files without running code from them (irctl/io/torch_pickle.py)."""

from __future__ import annotations

import collections
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import pytest
import torch

from irctl.io.torch_pickle import (
    CheckpointFileError,
    Placeholder,
    UnsafePickleError,
    read_torch_file,
)


def test_tensors_and_containers_come_back_exactly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    saved = {
        "state_dict": collections.OrderedDict(
            [
                ("conv.weight", torch.nn.Parameter(torch.randn(4, 3, 3, 3, generator=g))),
                ("half", torch.randn(7, generator=g).half()),
                ("bf16", torch.randn(3, generator=g).bfloat16()),
                ("steps", torch.arange(5)),
                ("mask", torch.tensor([True, False, True])),
                ("view", base[1:, ::2]),  # non-contiguous, shares its storage with "base"
                ("base", base),
                ("scalar", torch.tensor(3.5, dtype=torch.float64)),
                ("empty", torch.zeros(0, 4)),
            ]
        ),
        "meta": {"epoch": 3, "name": "x", "ratio": 0.5, "tags": ("a", "b"), "none": None},
    }
    path = tmp_path / "w.pth"
    torch.save(saved, path)
    loaded = read_torch_file(path)
    assert isinstance(loaded["state_dict"], collections.OrderedDict)
    assert list(loaded["state_dict"]) == list(saved["state_dict"])
    for key, value in saved["state_dict"].items():
        got = loaded["state_dict"][key]
        assert type(got) is torch.Tensor and got.dtype == value.dtype and got.shape == value.shape
        assert torch.equal(got, value.detach()), key
    assert loaded["meta"] == saved["meta"]


def _zip_with_pickle(path: Path, payload: bytes) -> Path:
    """A torch-style archive whose data.pkl is ``payload``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return path


class _CallOnLoad:
    """Unpickling this calls ``function(*args)``: what a hostile checkpoint does."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_pickle_that_calls_os_system_or_exec_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    hostile = {
        "os.system": _CallOnLoad(os.system, f"touch {marker}"),
        "exec": _CallOnLoad(exec, f"open({str(marker)!r}, 'w').write('x')"),
        "eval": _CallOnLoad(eval, f"open({str(marker)!r}, 'w')"),
    }
    for name, payload in hostile.items():
        path = _zip_with_pickle(tmp_path / f"{name}.pth", pickle.dumps({"w": payload}, protocol))
        with pytest.raises(UnsafePickleError, match="refused"):
            read_torch_file(path)
        assert not marker.exists(), name
    # The same object, unpickled the ordinary way, does run: the test would notice.
    pickle.loads(pickle.dumps(hostile["exec"], protocol))
    assert marker.exists()


def test_objects_of_unknown_classes_become_inert_placeholders(tmp_path: Path) -> None:
    """A Lightning checkpoint pickles config objects (omegaconf's DictConfig): they load as
    placeholders holding their state; their module is never imported."""
    module = types.ModuleType("irctl_test_missing_pkg")

    class Config:
        def __init__(self) -> None:
            self.lr = 1e-4
            self.name = "run"

        def __setstate__(self, state):  # must never run at load time
            raise AssertionError("the real class ran")

    Config.__module__, Config.__qualname__ = module.__name__, "Config"
    module.Config = Config
    sys.modules[module.__name__] = module
    try:
        path = tmp_path / "best.ckpt"
        torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": Config()}, path)
    finally:
        del sys.modules[module.__name__]
    loaded = read_torch_file(path)
    config = loaded["hyper_parameters"]
    assert isinstance(config, Placeholder)
    assert type(config).__module__ == "irctl_test_missing_pkg" and type(config).__name__ == "Config"
    assert config.placeholder_state == {"lr": 1e-4, "name": "run"}
    assert module.__name__ not in sys.modules
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        broken = tmp_path / f"cut{cut}.pth"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointFileError) as err:
            read_torch_file(broken)
        assert str(broken) in str(err.value) and "\n" not in str(err.value)
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(CheckpointFileError, match="not a PyTorch zip checkpoint"):
        read_torch_file(legacy)
    with pytest.raises(CheckpointFileError, match="no such file"):
        read_torch_file(tmp_path / "missing.pth")


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    """A damaged size in the pickle must not read out of bounds."""
    path = tmp_path / "w.pth"
    torch.save({"w": torch.arange(6.0)}, path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    name = next(n for n in members if n.endswith("data.pkl"))
    # Rewrite the tensor's size (6,) as (60,) in the pickle's opcodes.
    assert b"K\x06\x85" in members[name]  # BININT1 6, TUPLE1: the size (6,)
    members[name] = members[name].replace(b"K\x06\x85", b"K<\x85", 1)
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(broken, "w") as archive:
        for n, data in members.items():
            archive.writestr(n, data)
    with pytest.raises(CheckpointFileError, match="past its storage"):
        read_torch_file(broken)
