"""Geometric self-ensemble (irctl/symmetry.py, `--self-ensemble`): the symmetries, the average,
and which tasks allow which."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from irctl.cli.app import app
from irctl.engine.compare import CompareRequest, _model_runs
from irctl.engine.models import describe_sampling, load_restorer, resolve_options
from irctl.engine.restore import restore_array
from irctl.symmetry import DIHEDRAL, SYMMETRIES, transform, untransform
from irctl.tasks import TASKS

CPU = torch.device("cpu")


def test_the_symmetries_are_numpys_and_each_is_undone() -> None:
    a = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    m = a.numpy()
    expected = {
        "identity": m,
        "hflip": m[..., ::-1],
        "vflip": m[..., ::-1, :],
        "rot180": np.rot90(m, 2, axes=(-2, -1)),
        "transpose": m.swapaxes(-1, -2),
        "rot90": np.rot90(m, 1, axes=(-2, -1)),
        "rot270": np.rot90(m, -1, axes=(-2, -1)),
        "antitranspose": np.rot90(m, 2, axes=(-2, -1)).swapaxes(-1, -2),
    }
    assert set(expected) == set(SYMMETRIES)
    seen = set()
    for name in SYMMETRIES:
        moved = transform(a, name)
        assert np.array_equal(moved.numpy(), expected[name]), name
        assert torch.equal(untransform(moved, name), a), name
        seen.add(moved.numpy().tobytes())
    assert len(seen) == 8  # eight different images: no two names are the same symmetry
    with pytest.raises(ValueError, match="unknown symmetry"):
        transform(a, "rot45")


def test_every_task_names_a_group_of_known_symmetries() -> None:
    """Each task's set starts with the identity and is closed under composition (a group), so
    the average is the same whichever of its versions the user hands in."""
    probe = torch.arange(16.0).reshape(1, 1, 4, 4)
    for task in TASKS.values():
        assert task.symmetries[0] == "identity", task.name
        assert set(task.symmetries) <= set(SYMMETRIES), task.name
        versions = {transform(probe, s).numpy().tobytes() for s in task.symmetries}
        for s in task.symmetries:
            for t in task.symmetries:
                both = transform(transform(probe, s), t).numpy().tobytes()
                assert both in versions, (task.name, s, t)
    # a mirrored left view is a right view: a stereo pair is only ever flipped vertically
    assert TASKS["stereo-sr"].symmetries == ("identity", "vflip")
    assert TASKS["deblur"].symmetries == DIHEDRAL


@pytest.fixture(scope="module")
def deblurrer():
    return load_restorer(weights=None, preset="deblur-diffir-tiny", task=None, device=CPU)


def test_the_ensemble_is_the_mean_of_the_turned_back_restorations(deblurrer) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, (24, 40, 3)).astype(np.float32)
    plain = resolve_options(deblurrer)
    ensemble = resolve_options(deblurrer, self_ensemble=True)
    single = restore_array(deblurrer, pixels, plain, seed=3, device=CPU)
    steps: list[tuple[int, int]] = []
    mean = restore_array(
        deblurrer, pixels, ensemble, seed=3, device=CPU, callback=lambda d, t: steps.append((d, t))
    )
    members = []
    for name in DIHEDRAL:
        moved = transform(torch.from_numpy(pixels).permute(2, 0, 1), name).permute(1, 2, 0)
        out = restore_array(deblurrer, moved.numpy().copy(), plain, seed=3, device=CPU)
        members.append(untransform(torch.from_numpy(out).permute(2, 0, 1), name))
    expected = (torch.stack(members).sum(0) / 8).permute(1, 2, 0).numpy()
    assert mean.shape == single.shape == pixels.shape
    assert np.allclose(mean, expected, atol=1e-6)
    assert np.abs(mean - single).max() > 1e-4  # the ensemble is not the plain restoration
    # one progress bar over the 8 restorations: one total, never going back, ending full
    totals = {total for _, total in steps}
    done = [d for d, _ in steps]
    assert len(totals) == 1 and done == sorted(done) and done[-1] == totals.pop()
    assert done[0] < done[-1] / 8 + 1e-9
    again = restore_array(deblurrer, pixels, ensemble, seed=3, device=CPU)
    assert np.array_equal(mean, again)  # deterministic
    assert describe_sampling(deblurrer, ensemble, 3).endswith("self-ensemble of 8")


def test_compare_adds_an_ensemble_row_beside_each_model_row(deblurrer, tmp_path) -> None:
    request = CompareRequest(task="deblur", out=tmp_path, self_ensemble=True)
    labels = list(_model_runs(deblurrer, request, CPU))
    name = deblurrer.preset.name
    plain = f"{name} (posterior_mean, 4 steps)"
    assert labels[:2] == [plain, f"{plain} self-ensemble of 8"]
    request = CompareRequest(task="deblur", out=tmp_path)
    assert not any("self-ensemble" in label for label in _model_runs(deblurrer, request, CPU))


def test_restore_self_ensemble_through_the_cli(tmp_path) -> None:
    from PIL import Image

    src = tmp_path / "in.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(src)
    runner = CliRunner()
    outs = {}
    for flag in ([], ["--self-ensemble"]):
        dst = tmp_path / ("ens" if flag else "plain")
        result = runner.invoke(
            app,
            ["restore", "--task", "dehaze", "--src", str(src), "--dst", str(dst), *flag],
        )
        assert result.exit_code == 0, result.output
        assert ("self-ensemble of 2" in result.output) == bool(flag)
        outs[bool(flag)] = np.asarray(Image.open(dst / "in.png"))
    assert outs[True].shape == outs[False].shape and not np.array_equal(outs[True], outs[False])
