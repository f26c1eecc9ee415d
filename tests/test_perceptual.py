"""Perceptual metrics (irctl.metrics.perceptual).

Two halves:

* Without pyiqa (the core environment): the weight-file table, the offline checks and the
  "install it in its own environment" error. These run everywhere.
* With pyiqa (``.venv-perceptual``, see tools/perceptual-env.sh): the table checked against the
  installed pyiqa, and irctl's values compared with pyiqa's own (``==``) on the same inputs. No
  real weights exist offline, so the tests write weight files of the right format from randomly
  initialised networks into a temporary cache: test plumbing only, never to be shipped.

Nothing here may reach the network: an autouse fixture makes every socket connection fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image as PILImage

from irctl.io.images import read_image
from irctl.metrics import perceptual
from irctl.metrics.perceptual import (
    FOLDER_METRICS,
    FULL_REFERENCE,
    LOWER_IS_BETTER,
    NO_REFERENCE,
    PERCEPTUAL_METRICS,
    WEIGHT_FILES,
    WEIGHT_URLS,
    MissingWeights,
    PerceptualScorer,
    PerceptualUnavailable,
    configure_cache,
    missing_weights,
    weights_directory,
)

# What each metric needs, written out independently of the module's table (pyiqa 0.1.16).
EXPECTED_FILES = {
    "lpips": ["hub/checkpoints/alexnet-owt-7be5be79.pth", "hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"],
    "lpips-vgg": ["hub/checkpoints/vgg16-397923af.pth", "hub/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth"],
    "dists": ["hub/checkpoints/vgg16-397923af.pth", "hub/pyiqa/DISTS_weights-f5e65c96.pth"],
    "fid": ["hub/pyiqa/pt_inception-2015-12-05-6726825d.pth"],
    "niqe": ["hub/pyiqa/niqe_modelparameters.mat"],
    "musiq": ["hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth"],
    "clipiqa": ["hub/clip/RN50.pt"],
}
ENV_VARS = ("TORCH_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
ENV_VARS += ("TRANSFORMERS_OFFLINE",)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may touch the network, and none may leak cache settings to the next."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access is disabled in tests")

    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        real_connect(sock, address)  # local sockets: DataLoader workers talk over AF_UNIX

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ENV_VARS:  # setenv first, so that undo restores the value even if it was unset
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    download_util = sys.modules.get("pyiqa.utils.download_util")
    if download_util is not None:
        monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", download_util.DEFAULT_CACHE_DIR)


# ---------------------------------------------------------------- without pyiqa (everywhere)


def test_metric_groups_partition_the_metrics() -> None:
    assert set(PERCEPTUAL_METRICS) == FULL_REFERENCE | NO_REFERENCE | FOLDER_METRICS
    assert not (FULL_REFERENCE & NO_REFERENCE or FULL_REFERENCE & FOLDER_METRICS)
    assert not NO_REFERENCE & FOLDER_METRICS
    assert {"lpips", "lpips-vgg", "dists", "fid", "niqe"} == LOWER_IS_BETTER
    assert set(WEIGHT_FILES) == set(PERCEPTUAL_METRICS)
    assert {name for files in WEIGHT_FILES.values() for name, _ in files} == set(WEIGHT_URLS)


@pytest.mark.parametrize("metric", PERCEPTUAL_METRICS)
def test_missing_weights_names_each_file_until_it_is_there(metric: str, tmp_path: Path) -> None:
    assert missing_weights(metric, tmp_path) == EXPECTED_FILES[metric]
    for rel in EXPECTED_FILES[metric]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not real weights")
    if metric == "clipiqa":  # its loader checks a SHA-256: a wrong file is as good as none
        assert missing_weights(metric, tmp_path) == ["hub/clip/RN50.pt (wrong SHA-256)"]
    else:
        assert missing_weights(metric, tmp_path) == []


def test_missing_weights_accepts_the_file_with_the_right_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rn50 = tmp_path / "hub" / "clip" / "RN50.pt"
    rn50.parent.mkdir(parents=True)
    rn50.write_bytes(b"stand-in for the CLIP weights")
    digest = hashlib.sha256(rn50.read_bytes()).hexdigest()
    monkeypatch.setattr(perceptual, "_SHA256", {"RN50.pt": digest})
    assert missing_weights("clipiqa", tmp_path) == []


def test_an_empty_file_counts_as_missing(tmp_path: Path) -> None:
    mat = tmp_path / "hub" / "pyiqa" / "niqe_modelparameters.mat"
    mat.parent.mkdir(parents=True)
    mat.touch()
    assert missing_weights("niqe", tmp_path) == ["hub/pyiqa/niqe_modelparameters.mat (empty)"]


def test_missing_weights_follows_torch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "hub" / "pyiqa" / "niqe_modelparameters.mat").write_bytes(b"x")
    assert missing_weights("niqe", None) == []
    assert missing_weights("NIQE ", None) == []  # names are normalised like the fidelity ones
    with pytest.raises(ValueError, match="unknown perceptual metric 'psnr'"):
        missing_weights("psnr", None)


def test_weights_directory_is_where_torch_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.hub

    assert weights_directory(tmp_path / "w") == (tmp_path / "w").absolute()
    cases = [
        {"TORCH_HOME": str(tmp_path / "th"), "XDG_CACHE_HOME": str(tmp_path / "xdg")},
        {"XDG_CACHE_HOME": str(tmp_path / "xdg")},
        {},
    ]
    for env in cases:
        for var in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        assert weights_directory(None) == Path(torch.hub._get_torch_home()).absolute()
    assert weights_directory(None) == Path.home() / ".cache" / "torch"


def test_configure_cache_sets_torch_home_and_offline_flags(tmp_path: Path) -> None:
    configure_cache(tmp_path / "weights")
    assert os.environ["TORCH_HOME"] == str((tmp_path / "weights").absolute())
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    configure_cache(None)  # keeps TORCH_HOME as the environment has it
    assert os.environ["TORCH_HOME"] == str((tmp_path / "weights").absolute())


def test_missing_weights_error_is_one_line(tmp_path: Path) -> None:
    exc = MissingWeights("lpips", missing_weights("lpips", tmp_path), weights_directory(tmp_path))
    assert str(exc) == (
        "lpips: missing weight file(s) hub/checkpoints/alexnet-owt-7be5be79.pth, "
        f"hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth — put them in {tmp_path.absolute()}"
    )
    assert (exc.metric, exc.directory) == ("lpips", tmp_path.absolute())
    assert exc.files == EXPECTED_FILES["lpips"]


def _assert_install_hint(message: str) -> None:
    assert "\n" not in message
    for part in (
        "pip install 'irctl[perceptual]'",
        "tools/perceptual-env.sh",
        "torchvision",
        "CUDA",
        "PolyForm Noncommercial",
    ):
        assert part in message


def test_scorer_without_pyiqa_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` now fails, as in the core env
    with pytest.raises(PerceptualUnavailable) as info:
        PerceptualScorer(["lpips"], weights_dir=tmp_path)  # no weights either: pyiqa comes first
    _assert_install_hint(str(info.value))


@pytest.mark.skipif(importlib.util.find_spec("pyiqa") is not None, reason="pyiqa is installed")
def test_scorer_in_the_core_environment_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(PerceptualUnavailable, match="No module named 'pyiqa'") as info:
        PerceptualScorer(["fid"], weights_dir=tmp_path)
    _assert_install_hint(str(info.value))


def test_scorer_rejects_unknown_metrics_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown perceptual metric 'psnr'"):
        PerceptualScorer(["lpips", "psnr"], weights_dir=tmp_path)
    with pytest.raises(ValueError, match="no perceptual metric"):
        PerceptualScorer([" "], weights_dir=tmp_path)


def test_images_become_rgb_nchw_and_bad_ones_are_refused() -> None:
    grey = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = perceptual._to_nchw(grey, "prediction")
    assert out.shape == (1, 3, 3, 4) and out.dtype == np.float32
    assert all(np.array_equal(out[0, c], grey) for c in range(3))
    rgb = np.random.default_rng(0).random((3, 4, 3), dtype=np.float32)
    assert np.array_equal(perceptual._to_nchw(rgb, "x")[0], rgb.transpose(2, 0, 1))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        perceptual._to_nchw(rgb + 0.5, "prediction")
    with pytest.raises(ValueError, match="NaN"):
        perceptual._to_nchw(np.full((2, 2), np.nan, np.float32), "prediction")
    with pytest.raises(ValueError, match="float"):
        perceptual._to_nchw(np.zeros((2, 2, 3), np.uint8), "prediction")
    with pytest.raises(ValueError, match="HxWx3"):
        perceptual._to_nchw(np.zeros((2, 2, 4), np.float32), "prediction")


# ------------------------------------------------------ with pyiqa (.venv-perceptual only)


@pytest.fixture(scope="module")
def pyiqa():
    return pytest.importorskip("pyiqa", reason="pyiqa lives in .venv-perceptual")


def _kaiming_convs(module) -> None:
    """Variance-preserving random convs: with PyTorch's default init a deep random network's
    features shrink towards 0, and a parity check of 0 against 0 would prove nothing."""
    import torch

    gen = torch.Generator().manual_seed(0)
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            with torch.no_grad():
                sub.weight.normal_(0.0, (2.0 / sub.weight[0].numel()) ** 0.5, generator=gen)


def _backbone_state_dict(arch: str) -> dict:
    """A torchvision backbone's state dict: random convs, and the classifier (which LPIPS and
    DISTS never run) as stride-0 zeros, so the file is small and quick to write."""
    import torch
    import torchvision

    with torch.device("meta"):
        net = getattr(torchvision.models, arch)(weights=None)
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, meta in net.state_dict().items():
        if key.startswith("features.") and meta.ndim == 4:
            fan_in = meta[0].numel()
            state[key] = torch.randn(meta.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.startswith("features."):
            state[key] = torch.zeros(meta.shape)
        else:
            state[key] = torch.zeros(()).expand(meta.shape)
    return state


@pytest.fixture(scope="module")
def random_weights(pyiqa, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch cache with every file of lpips, lpips-vgg, dists, fid, niqe and musiq, written
    from randomly initialised networks in the formats pyiqa and torchvision load."""
    import scipy.io
    import torch
    from pyiqa.archs import inception
    from pyiqa.archs.dists_arch import DISTS
    from pyiqa.archs.lpips_arch import LPIPS
    from pyiqa.archs.musiq_arch import MUSIQ

    root = tmp_path_factory.mktemp("random-weights")
    checkpoints, cache = root / "hub" / "checkpoints", root / "hub" / "pyiqa"
    checkpoints.mkdir(parents=True)
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(_backbone_state_dict("alexnet"), checkpoints / "alexnet-owt-7be5be79.pth")
    torch.save(_backbone_state_dict("vgg16"), checkpoints / "vgg16-397923af.pth")
    # LPIPS/DISTS build their torchvision backbone from the cache even with pretrained=False.
    with mock.patch.dict(os.environ, {"TORCH_HOME": str(root)}):
        for net, name in (
            ("alex", "LPIPS_v0.1_alex-df73285e.pth"),
            ("vgg", "LPIPS_v0.1_vgg-a78928a0.pth"),
        ):
            lins = LPIPS(pretrained=False, net=net).state_dict()
            torch.save({k: v for k, v in lins.items() if k.startswith("lin")}, cache / name)
        dists = DISTS(pretrained=False).state_dict()
        torch.save({k: dists[k] for k in ("alpha", "beta")}, cache / "DISTS_weights-f5e65c96.pth")
    with mock.patch.object(inception, "load_pretrained_network", lambda *a, **k: None):
        net = inception.fid_inception_v3()
    _kaiming_convs(net)
    torch.save(net.state_dict(), cache / "pt_inception-2015-12-05-6726825d.pth")
    torch.save(MUSIQ(pretrained=False).state_dict(), cache / "musiq_koniq_ckpt-e95806b9.pth")
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(36, 36))
    scipy.io.savemat(
        cache / "niqe_modelparameters.mat",
        {
            "mu_prisparam": rng.normal(size=(1, 36)),
            "cov_prisparam": basis @ basis.T / 36 + np.eye(36),
        },
    )
    return root


def _reference(pyiqa, name: str, *inputs):
    """pyiqa's own value, computed the way its README does."""
    return pyiqa.create_metric(name, device="cpu")(*inputs)


def test_weight_table_matches_the_installed_pyiqa(pyiqa) -> None:
    import inspect

    from pyiqa.archs import clip_model, dists_arch, inception, lpips_arch, musiq_arch, niqe_arch
    from pyiqa.archs.clipiqa_arch import CLIPIQA
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    def opts(name: str) -> dict:
        return DEFAULT_CONFIGS[name]["metric_opts"]

    def lpips_url(name: str) -> str:
        return lpips_arch.default_model_urls[f"{opts(name)['version']}_{opts(name)['net']}"]

    assert opts("niqe").get("version", "original") == "original"
    backbone = inspect.signature(CLIPIQA.__init__).parameters["backbone"].default
    backbone = opts("clipiqa").get("backbone", backbone)
    expected_urls = {
        "lpips": [AlexNet_Weights.IMAGENET1K_V1.url, lpips_url("lpips")],
        "lpips-vgg": [VGG16_Weights.IMAGENET1K_V1.url, lpips_url("lpips-vgg")],
        "dists": [VGG16_Weights.IMAGENET1K_V1.url, dists_arch.default_model_urls["url"]],
        "fid": [inception.FID_WEIGHTS_URL],
        "niqe": [niqe_arch.default_model_urls["url"]],
        "musiq": [musiq_arch.default_model_urls[opts("musiq")["pretrained"]]],
        "clipiqa": [clip_model._MODELS[backbone]],
    }
    for metric, urls in expected_urls.items():
        assert [name for name, _ in WEIGHT_FILES[metric]] == [u.rsplit("/", 1)[1] for u in urls]
        assert [WEIGHT_URLS[u.rsplit("/", 1)[1]] for u in urls] == urls
    assert clip_model._MODELS[backbone].split("/")[-2] == perceptual._SHA256["RN50.pt"]
    for metric in PERCEPTUAL_METRICS:
        cfg = DEFAULT_CONFIGS[perceptual._PYIQA_NAMES[metric]]
        assert (metric in LOWER_IS_BETTER) == cfg.get("lower_better", False)
        mode = "FR" if metric in FULL_REFERENCE else "NR"  # pyiqa files FID under NR
        assert cfg["metric_mode"] == mode


def test_pyiqa_cache_is_the_weights_dir(pyiqa, tmp_path: Path) -> None:
    import torch.hub
    from pyiqa.utils import download_util

    configure_cache(tmp_path)
    assert str(tmp_path.absolute() / "hub" / "pyiqa") == download_util.DEFAULT_CACHE_DIR
    assert Path(torch.hub.get_dir()) == tmp_path.absolute() / "hub"


def test_clipiqa_looks_for_rn50_in_hub_clip(pyiqa, tmp_path: Path) -> None:
    from pyiqa.archs import clip_model

    asked: list[tuple[str, str]] = []

    def spy(url: str, root: str) -> str:
        asked.append((url, root))
        raise RuntimeError("stop here")

    configure_cache(tmp_path)
    with mock.patch.object(clip_model, "_download", spy), pytest.raises(RuntimeError, match="stop"):
        pyiqa.create_metric("clipiqa", device="cpu")
    ((url, root),) = asked
    expected = tmp_path.absolute() / EXPECTED_FILES["clipiqa"][0]
    assert Path(root) / url.rsplit("/", 1)[1] == expected


def test_scorer_names_the_first_metric_with_missing_files(pyiqa, tmp_path: Path) -> None:
    with pytest.raises(MissingWeights) as info:
        PerceptualScorer(["niqe", "lpips"], weights_dir=tmp_path)
    assert info.value.metric == "niqe"
    assert info.value.files == EXPECTED_FILES["niqe"]
    assert info.value.directory == tmp_path.absolute()
    assert not any(tmp_path.rglob("*.*")), "nothing may have been downloaded or created"


def test_a_file_missing_from_the_table_is_refused_not_downloaded(
    pyiqa,
    random_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If a newer pyiqa wanted a file the table does not list, building the metric must fail
    with MissingWeights naming it, not try to fetch it."""
    alexnet = Path("hub/checkpoints/alexnet-owt-7be5be79.pth")
    (tmp_path / alexnet).parent.mkdir(parents=True)
    (tmp_path / alexnet).symlink_to(random_weights / alexnet)
    table = dict(WEIGHT_FILES)
    table["lpips"] = (("alexnet-owt-7be5be79.pth", "hub/checkpoints"),)
    monkeypatch.setattr(perceptual, "WEIGHT_FILES", table)
    with pytest.raises(MissingWeights) as info:
        PerceptualScorer(["lpips"], weights_dir=tmp_path)
    assert info.value.files == ["hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"]
    assert info.value.directory == tmp_path.absolute()


def test_pair_metrics_equal_pyiqa_exactly(
    pyiqa,
    random_weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every metric is built offline from exactly the table's files (a file missing from it
    would raise MissingWeights), and gives pyiqa's own value for the same tensors."""
    import torch

    messages: list[str] = []
    names = ["lpips", "lpips-vgg", "dists", "niqe", "musiq"]
    scorer = PerceptualScorer(names, weights_dir=random_weights, on_message=messages.append)
    rng = np.random.default_rng(3)
    gt = rng.random((192, 160, 3), dtype=np.float32)
    pred = np.clip(gt + rng.normal(0, 0.1, gt.shape).astype(np.float32), 0, 1)
    got = scorer.score_pair(pred, gt)
    assert list(got) == names
    assert capsys.readouterr().out == "", "pyiqa's prints must stay off stdout"
    assert any("Loading pretrained model" in m for m in messages)

    x = torch.from_numpy(pred.transpose(2, 0, 1).copy())[None]
    y = torch.from_numpy(gt.transpose(2, 0, 1).copy())[None]
    for name in names:
        args = (x, y) if name in FULL_REFERENCE else (x,)
        want = _reference(pyiqa, name, *args).item()
        assert got[name] == want, name
        assert np.isfinite(want) and want != 0.0, name
    assert got["lpips"] != scorer.score_pair(gt, gt)["lpips"]


def test_lpips_on_files_equals_pyiqa_reading_them(
    pyiqa,
    random_weights: Path,
    tmp_path: Path,
) -> None:
    """8-bit PNGs read by irctl give what pyiqa gives when it reads the same files itself
    (grey files too: pyiqa converts them to RGB, irctl replicates the channel)."""
    scorer = PerceptualScorer(["lpips"], weights_dir=random_weights)
    rng = np.random.default_rng(4)
    for mode, shape in (("RGB", (40, 48, 3)), ("L", (40, 48))):
        paths = []
        for name in ("pred", "gt"):
            path = tmp_path / f"{name}-{mode}.png"
            PILImage.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
            paths.append(path)
        pred, gt = (read_image(p).pixels for p in paths)
        got = scorer.score_pair(pred, gt)["lpips"]
        assert got == _reference(pyiqa, "lpips", str(paths[0]), str(paths[1])).item(), mode


def test_score_pair_refuses_bad_pairs(pyiqa, random_weights: Path) -> None:
    scorer = PerceptualScorer(["lpips"], weights_dir=random_weights)
    image = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="lpips need"):
        scorer.score_pair(image, None)
    with pytest.raises(ValueError, match="32x32, ground truth is 40x32"):
        scorer.score_pair(image, np.zeros((32, 40, 3), np.float32))
    with pytest.raises(ValueError, match="not built for"):
        scorer.score_folders(Path("a"), Path("b"))


def _write_folder(folder: Path, seed: int, brightness: float, n: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = np.clip(rng.random((48, 40, 3)) * brightness * 255, 0, 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def test_fid_equals_pyiqa_exactly(pyiqa, random_weights: Path, tmp_path: Path) -> None:
    """FID on two folders of three tiny images (the fewest that give a covariance with some
    rank; the value is meaningless as a quality measure but fully deterministic)."""
    pred = _write_folder(tmp_path / "pred", seed=5, brightness=1.0)
    gt = _write_folder(tmp_path / "gt", seed=6, brightness=0.5)
    scorer = PerceptualScorer(["fid"], weights_dir=random_weights)
    assert scorer.score_pair(np.zeros((8, 8, 3), np.float32), None) == {}
    got = scorer.score_folders(pred, gt)
    want = float(_reference(pyiqa, "fid", str(pred), str(gt)))  # pyiqa's defaults throughout
    assert got == {"fid": want}
    assert want > 1e-3, "random features must not collapse (0 == 0 would prove nothing)"

    lonely = _write_folder(tmp_path / "lonely", seed=7, brightness=1.0, n=1)
    with pytest.raises(ValueError, match="at least 2 images"):
        scorer.score_folders(lonely, gt)
