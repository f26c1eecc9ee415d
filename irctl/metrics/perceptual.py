"""Perceptual image-quality metrics (LPIPS, DISTS, FID, NIQE, MUSIQ, CLIP-IQA), offline, via pyiqa.

The numbers are pyiqa's own: each metric is ``pyiqa.create_metric(name, device=..., as_loss=False)``
called on an NCHW float32 tensor in [0, 1] (or, for FID, on the two folders), exactly as a user
of pyiqa would call it, so a value here equals the value pyiqa gives for the same input.

**Where pyiqa lives.** pyiqa is an optional extra (``pip install 'irctl[perceptual]'``) that is
installed in an environment of its own (``tools/perceptual-env.sh`` makes ``.venv-perceptual``):
it hard-requires torchvision, whose wheels need the CUDA build of torch (it runs on a CPU, but
cannot load next to the CPU-only torch of the core install), and it is licensed PolyForm
Noncommercial 1.0.0, unlike irctl. Nothing here imports pyiqa until a :class:`PerceptualScorer`
is built; :func:`missing_weights` and friends work without it.

**Weights, offline.** pyiqa downloads its weights on first use; irctl never does. Before a metric
is built, every file it needs must already be in the torch cache (``$TORCH_HOME``, default
``~/.cache/torch``; ``--weights-dir DIR`` makes ``DIR`` the cache), laid out as torch and pyiqa
lay it out themselves, so a cache that pyiqa filled on a machine with a network can be copied
over unchanged. Files needed (pyiqa 0.1.16, read off its ``pyiqa/archs/*_arch.py``,
``pyiqa/archs/inception.py``, ``pyiqa/archs/clip_model.py`` and ``default_model_configs.py``;
``tests/test_perceptual.py`` checks this table against the installed pyiqa):

========== ===================================================================================
metric     files under the cache directory
========== ===================================================================================
lpips      ``hub/checkpoints/alexnet-owt-7be5be79.pth`` (torchvision AlexNet, ImageNet),
           ``hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth`` (LPIPS v0.1 linear layers)
lpips-vgg  ``hub/checkpoints/vgg16-397923af.pth`` (torchvision VGG16, ImageNet),
           ``hub/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth``
dists      ``hub/checkpoints/vgg16-397923af.pth``, ``hub/pyiqa/DISTS_weights-f5e65c96.pth``
fid        ``hub/pyiqa/pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's TF Inception v3)
niqe       ``hub/pyiqa/niqe_modelparameters.mat``
musiq      ``hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth`` (pyiqa's default: the KonIQ-10k model)
clipiqa    ``hub/clip/RN50.pt`` (OpenAI CLIP ResNet-50; must match its SHA-256, else pyiqa's
           CLIP loader would try to download it again)
========== ===================================================================================

:data:`WEIGHT_URLS` says where each file is published. As a second line of defence, building a
metric runs with every download function pyiqa can reach replaced by one that raises
:class:`MissingWeights`, so a file this table does not know of (a newer pyiqa) is reported the
same way instead of being fetched, or hanging on a network that is not there.

Note that pyiqa unpickles its weight files (``torch.load(..., weights_only=False)``): put only
files from the sources in :data:`WEIGHT_URLS` in the weights directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "FOLDER_METRICS",
    "FULL_REFERENCE",
    "LOWER_IS_BETTER",
    "NO_REFERENCE",
    "PERCEPTUAL_METRICS",
    "PYIQA_VERSION",
    "WEIGHT_FILES",
    "WEIGHT_URLS",
    "MissingWeights",
    "PerceptualScorer",
    "PerceptualUnavailable",
    "configure_cache",
    "missing_weights",
    "weights_directory",
]

#: The pyiqa release the tables below were read from (and are tested against).
PYIQA_VERSION = "0.1.16"

#: irctl's names; they are also pyiqa's (see :data:`_PYIQA_NAMES`).
PERCEPTUAL_METRICS: tuple[str, ...] = (
    "lpips",
    "lpips-vgg",
    "dists",
    "fid",
    "niqe",
    "musiq",
    "clipiqa",
)
#: Compare a prediction with its ground truth (pyiqa ``metric_mode == "FR"``).
FULL_REFERENCE = frozenset({"lpips", "lpips-vgg", "dists"})
#: Score a prediction alone (pyiqa ``metric_mode == "NR"``).
NO_REFERENCE = frozenset({"niqe", "musiq", "clipiqa"})
#: Compare a folder of predictions with a folder of ground truth as two distributions.
FOLDER_METRICS = frozenset({"fid"})
#: pyiqa's ``lower_better`` flag; the others are higher-is-better.
LOWER_IS_BETTER = frozenset({"lpips", "lpips-vgg", "dists", "fid", "niqe"})

_PYIQA_NAMES: Mapping[str, str] = MappingProxyType({name: name for name in PERCEPTUAL_METRICS})

# Sub-directories of the torch cache: torchvision's ``load_state_dict_from_url`` uses
# ``<hub>/checkpoints``, pyiqa's ``DEFAULT_CACHE_DIR`` is ``<hub>/pyiqa``, and pyiqa's copy of the
# CLIP loader uses ``<hub>/clip``, where ``<hub>`` is ``torch.hub.get_dir()`` = ``$TORCH_HOME/hub``.
_TORCHVISION = "hub/checkpoints"
_PYIQA = "hub/pyiqa"
_CLIP = "hub/clip"

#: metric → ((file name, sub-directory of the cache directory), ...), in the order pyiqa loads them.
WEIGHT_FILES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "lpips": (
            ("alexnet-owt-7be5be79.pth", _TORCHVISION),
            ("LPIPS_v0.1_alex-df73285e.pth", _PYIQA),
        ),
        "lpips-vgg": (
            ("vgg16-397923af.pth", _TORCHVISION),
            ("LPIPS_v0.1_vgg-a78928a0.pth", _PYIQA),
        ),
        "dists": (
            ("vgg16-397923af.pth", _TORCHVISION),
            ("DISTS_weights-f5e65c96.pth", _PYIQA),
        ),
        "fid": (("pt_inception-2015-12-05-6726825d.pth", _PYIQA),),
        "niqe": (("niqe_modelparameters.mat", _PYIQA),),
        "musiq": (("musiq_koniq_ckpt-e95806b9.pth", _PYIQA),),
        "clipiqa": (("RN50.pt", _CLIP),),
    }
)

_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
_RN50_SHA256 = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"

#: file name → the URL pyiqa / torchvision / CLIP would download it from.
WEIGHT_URLS: Mapping[str, str] = MappingProxyType(
    {
        "alexnet-owt-7be5be79.pth": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "vgg16-397923af.pth": "https://download.pytorch.org/models/vgg16-397923af.pth",
        "LPIPS_v0.1_alex-df73285e.pth": f"{_HF}/LPIPS_v0.1_alex-df73285e.pth",
        "LPIPS_v0.1_vgg-a78928a0.pth": f"{_HF}/LPIPS_v0.1_vgg-a78928a0.pth",
        "DISTS_weights-f5e65c96.pth": f"{_HF}/DISTS_weights-f5e65c96.pth",
        "pt_inception-2015-12-05-6726825d.pth": f"{_HF}/pt_inception-2015-12-05-6726825d.pth",
        "niqe_modelparameters.mat": f"{_HF}/niqe_modelparameters.mat",
        "musiq_koniq_ckpt-e95806b9.pth": f"{_HF}/musiq_koniq_ckpt-e95806b9.pth",
        "RN50.pt": f"https://openaipublic.azureedge.net/clip/models/{_RN50_SHA256}/RN50.pt",
    }
)

#: Files whose loader checks a SHA-256 and downloads again on a mismatch (CLIP's ``_download``).
_SHA256: Mapping[str, str] = MappingProxyType({"RN50.pt": _RN50_SHA256})

_INSTALL_HINT = (
    "install irctl's perceptual extra in an environment of its own: tools/perceptual-env.sh "
    "(python3 -m venv .venv-perceptual && .venv-perceptual/bin/pip install -e '.[perceptual]'; "
    "from a package index: pip install 'irctl[perceptual]'), then run .venv-perceptual/bin/irctl. "
    "Not in the core environment: pyiqa requires torchvision, whose wheels need the CUDA build "
    "of torch (it runs on a CPU too) and cannot load next to the CPU-only torch, and pyiqa is "
    "licensed PolyForm Noncommercial 1.0.0 (non-commercial use only)"
)


class PerceptualUnavailable(RuntimeError):
    """pyiqa cannot be imported here; the message says how to install it and why separately."""


class MissingWeights(RuntimeError):
    """A metric's weight files are not in the cache directory.

    ``files`` are paths relative to ``directory`` (e.g. ``hub/pyiqa/niqe_modelparameters.mat``);
    ``str()`` is one line naming them and the directory.
    """

    def __init__(self, metric: str, files: Sequence[str], directory: Path) -> None:
        self.metric = metric
        self.files = list(files)
        self.directory = Path(directory)
        super().__init__(
            f"{metric}: missing weight file(s) {', '.join(self.files)} — put them in "
            f"{self.directory}"
        )


def weights_directory(weights_dir: Path | None) -> Path:
    """The cache directory torch and pyiqa will read weights from (absolute).

    ``weights_dir`` when given (it becomes ``$TORCH_HOME``, see :func:`configure_cache`);
    otherwise what ``torch.hub`` derives from the environment: ``$TORCH_HOME``, else
    ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``.
    """
    if weights_dir is not None:
        return Path(weights_dir).expanduser().absolute()
    # Same expression as torch.hub._get_torch_home(), without importing torch.
    home = os.path.expanduser(
        os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    )
    return Path(home).absolute()


def _validate(metrics: Iterable[str]) -> list[str]:
    names: list[str] = []
    for raw in metrics:
        name = raw.strip().lower()
        if name and name not in names:
            names.append(name)
    known = ", ".join(PERCEPTUAL_METRICS)
    if not names:
        raise ValueError(f"no perceptual metric given; known: {known}")
    unknown = [n for n in names if n not in PERCEPTUAL_METRICS]
    if unknown:
        raise ValueError(
            f"unknown perceptual metric {', '.join(map(repr, unknown))}; known: {known}"
        )
    return names


# (path, size, mtime_ns) → sha256 hex, so checking then building hashes a 244 MB file once.
_sha_cache: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha_cache:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]


def missing_weights(metric: str, weights_dir: Path | None) -> list[str]:
    """The weight files ``metric`` needs that are not usable in :func:`weights_directory`.

    Paths relative to that directory, in the order pyiqa would load them; ``[]`` when all are
    there. An empty file counts as missing (``"… (empty)"``), and so does a file whose loader
    checks a SHA-256 that does not match (``"hub/clip/RN50.pt (wrong SHA-256)"``): with such a
    file pyiqa would try to download it again. Needs neither pyiqa nor torch.
    """
    (name,) = _validate([metric])
    root = weights_directory(weights_dir)
    missing: list[str] = []
    for filename, subdir in WEIGHT_FILES[name]:
        rel = f"{subdir}/{filename}"
        path = root / subdir / filename
        if not path.is_file():
            missing.append(rel)
        elif path.stat().st_size == 0:
            missing.append(f"{rel} (empty)")
        elif filename in _SHA256 and _sha256(path) != _SHA256[filename]:
            missing.append(f"{rel} (wrong SHA-256)")
    return missing


def configure_cache(weights_dir: Path | None) -> None:
    """Point torch/torchvision/pyiqa at the weights and keep every hub client offline.

    Call before importing pyiqa (:class:`PerceptualScorer` does). With ``weights_dir``, sets
    ``$TORCH_HOME`` to it: torchvision reads ``$TORCH_HOME/hub/checkpoints``, pyiqa
    ``$TORCH_HOME/hub/pyiqa`` (its ``DEFAULT_CACHE_DIR``, computed when pyiqa is imported, so it
    is updated too if pyiqa already is) and CLIP ``$TORCH_HOME/hub/clip``. Always sets
    ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` to 1.
    """
    if weights_dir is not None:
        root = weights_directory(weights_dir)
        os.environ["TORCH_HOME"] = str(root)
        hub = sys.modules.get("torch.hub")
        if hub is not None and getattr(hub, "_hub_dir", None) is not None:
            hub.set_dir(str(root / "hub"))  # someone called set_dir: it would win over TORCH_HOME
    download_util = sys.modules.get("pyiqa.utils.download_util")
    if download_util is not None:
        download_util.DEFAULT_CACHE_DIR = str(weights_directory(weights_dir) / _PYIQA)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"


#: What the core environment says for a perceptual metric: pyiqa is not there at all (its
#: missing weight files would be beside the point).
NOT_INSTALLED = "pyiqa is not installed (the `perceptual` extra: tools/perceptual-env.sh)"


def pyiqa_installed() -> bool:
    """Whether pyiqa can be found, without importing it (and torchvision) yet."""
    import importlib.util

    return importlib.util.find_spec("pyiqa") is not None


def _import_pyiqa() -> Any:
    try:
        import pyiqa
    except Exception as exc:  # ImportError, or torchvision failing to load against this torch
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise PerceptualUnavailable(
            f"perceptual metrics need pyiqa, which cannot be imported here ({reason}); "
            + _INSTALL_HINT
        ) from exc
    return pyiqa


class _DownloadRefused(Exception):
    def __init__(self, url: str, target: str | None) -> None:
        super().__init__(url)
        self.url = url
        self.target = target


@contextlib.contextmanager
def _no_downloads() -> Iterator[None]:
    """Replace every download function pyiqa's metrics reach with one that raises.

    torchvision and pyiqa download through ``torch.hub.download_url_to_file`` (pyiqa imported
    the name into ``pyiqa.utils.download_util``); pyiqa's CLIP loader calls
    ``urllib.request.urlopen``.
    """
    import torch.hub

    def refuse_file(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise _DownloadRefused(url, dst)

    def refuse_open(url: Any, *args: Any, **kwargs: Any) -> None:
        raise _DownloadRefused(str(getattr(url, "full_url", url)), None)

    patches: list[tuple[Any, str, Any]] = [
        (torch.hub, "download_url_to_file", refuse_file),
        (urllib.request, "urlopen", refuse_open),
    ]
    download_util = sys.modules.get("pyiqa.utils.download_util")
    if download_util is not None:
        patches.append((download_util, "download_url_to_file", refuse_file))
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, replacement in patches:
            setattr(obj, attr, replacement)
        yield
    finally:
        for obj, attr, original in saved:
            setattr(obj, attr, original)


class _Capture(io.TextIOBase):
    """Line-buffered stdout replacement that hands each line pyiqa prints to a callback."""

    def __init__(self, sink: Callable[[str], None] | None) -> None:
        self._sink = sink
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush_rest(self) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = ""

    def _emit(self, line: str) -> None:
        if line.strip() and self._sink is not None:
            self._sink(line.rstrip())


@contextlib.contextmanager
def _quiet(sink: Callable[[str], None] | None) -> Iterator[None]:
    """Keep pyiqa's prints off stdout (``irctl eval --json`` owns it) and its warnings in ``sink``.

    torchvision's deprecation warnings about pyiqa's ``pretrained=`` arguments are dropped: they
    are pyiqa's business, not the user's.
    """
    capture = _Capture(sink)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(capture):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            capture.flush_rest()
    for warning in caught:
        text = str(warning.message)
        if "deprecated since 0.13" in text:
            continue
        if sink is not None:
            sink(f"{warning.category.__name__}: {text}".splitlines()[0])


def _to_nchw(image: np.ndarray, label: str) -> np.ndarray:
    """HxW / HxWx1 / HxWx3 float in [0, 1] → 1x3xHxW float32 (grey replicated, as pyiqa's
    own image reader does with ``convert("RGB")``)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"{label} must be HxW, HxWx1 or HxWx3, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{label} must be float in [0, 1], got {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{label} contains NaN or infinite values")
    low, high = float(arr.min()), float(arr.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{label} has values outside [0, 1] (min {low:.6g}, max {high:.6g})")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


class PerceptualScorer:
    """pyiqa metrics built once, then applied to image pairs or folders.

    ``metrics``: names from :data:`PERCEPTUAL_METRICS`. Raises ``ValueError`` for unknown names,
    :class:`PerceptualUnavailable` when pyiqa cannot be imported, :class:`MissingWeights` for the
    first metric whose weight files are not all there (callers that want every missing file
    reported call :func:`missing_weights` per metric first). ``on_message`` receives the lines
    pyiqa prints and the warnings it raises (default: dropped), so stdout stays clean.
    """

    def __init__(
        self,
        metrics: list[str],
        *,
        weights_dir: Path | None = None,
        device: str = "cpu",
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        names = _validate(metrics)
        configure_cache(weights_dir)
        pyiqa = _import_pyiqa()
        configure_cache(weights_dir)  # again: pyiqa computed its cache dir on import
        root = weights_directory(weights_dir)
        for name in names:
            missing = missing_weights(name, weights_dir)
            if missing:
                raise MissingWeights(name, missing, root)

        import torch

        self._on_message = on_message
        self.device = torch.device(device)
        self._nets: dict[str, Any] = {}
        for name in names:
            try:
                with _quiet(on_message), _no_downloads():
                    self._nets[name] = pyiqa.create_metric(
                        _PYIQA_NAMES[name], device=self.device, as_loss=False
                    )
            except _DownloadRefused as exc:
                target = Path(exc.target) if exc.target else Path(exc.url.rsplit("/", 1)[-1])
                try:
                    rel = target.absolute().relative_to(root).as_posix()
                except ValueError:
                    rel = str(target)
                raise MissingWeights(name, [rel], root) from None

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this scorer computes, in the order they were asked for."""
        return tuple(self._nets)

    def score_pair(self, pred: np.ndarray, gt: np.ndarray | None) -> dict[str, float]:
        """Every full- and no-reference metric of this scorer on one image (FID is skipped).

        ``pred`` / ``gt``: float HxWxC in [0, 1], C = 1 or 3 (grey is replicated to RGB).
        ``gt`` may be ``None`` when no full-reference metric was asked for. Raises
        ``ValueError`` (one line, prefixed with the metric's name when a metric fails) for bad
        shapes or values, or an image a metric cannot handle.
        """
        import torch

        names = [n for n in self._nets if n not in FOLDER_METRICS]
        x = torch.from_numpy(_to_nchw(pred, "prediction")).to(self.device)
        y = None
        if any(n in FULL_REFERENCE for n in names):
            if gt is None:
                needing = ", ".join(n for n in names if n in FULL_REFERENCE)
                raise ValueError(f"{needing} need(s) a ground-truth image")
            y_np = _to_nchw(gt, "ground truth")
            if y_np.shape != x.shape:
                raise ValueError(
                    f"prediction is {x.shape[3]}x{x.shape[2]}, "
                    f"ground truth is {y_np.shape[3]}x{y_np.shape[2]}"
                )
            y = torch.from_numpy(y_np).to(self.device)
        scores: dict[str, float] = {}
        for name in names:
            net = self._nets[name]
            try:
                with _quiet(self._on_message):
                    value = net(x, y) if name in FULL_REFERENCE else net(x)
            except (AssertionError, RuntimeError, ValueError, IndexError) as exc:
                raise ValueError(f"{name}: {_one_line(exc)}") from exc
            scores[name] = float(value.item())
        return scores

    def score_folders(self, pred_dir: Path, gt_dir: Path) -> dict[str, float]:
        """FID between the images in ``pred_dir`` and those in ``gt_dir``: ``{"fid": value}``.

        pyiqa reads the folders itself (recursively, every file PIL knows by its extension,
        converted to 8-bit RGB by PIL), exactly as ``pyiqa.create_metric("fid")(pred, gt)``.
        Needs at least two images per folder (a covariance of one sample is undefined); FID on
        a few images is biased and only useful for comparing methods on the same images.
        Raises ``ValueError`` when the scorer has no FID, a folder is missing or too small, or
        an image cannot be read.
        """
        if "fid" not in self._nets:
            raise ValueError("score_folders computes fid, which this scorer was not built for")
        from pyiqa.utils.img_util import scandir_images

        for label, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
            if not Path(folder).is_dir():
                raise ValueError(f"fid: {label} folder not found: {folder}")
            n = len(scandir_images(str(folder)))
            if n < 2:
                raise ValueError(f"fid: needs at least 2 images per folder, {folder} has {n}")
        try:
            with _quiet(self._on_message):
                value = self._nets["fid"](str(pred_dir), str(gt_dir), num_workers=0, verbose=False)
        except (OSError, AssertionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"fid: {_one_line(exc)}") from exc
        return {"fid": float(value)}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
