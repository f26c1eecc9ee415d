"""Training data synthesised from the real photos that scikit-image ships.

Nothing can be downloaded here, so every model trains on crops of those photos with a synthetic
degradation; each preset fixes a train / val / test split of photo names and the test photos are
never trained on (they make the README's tables).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from irctl.config import DegradationConfig
from irctl.data.batch import Batch
from irctl.data.degrade import PairSynthesis

__all__ = [
    "Batch",
    "PairedCropSampler",
    "augment",
    "augment_stereo",
    "load_photo",
    "load_photos",
    "load_stereo_photo",
    "synthesize_pair",
]

#: The name of scikit-image's real rectified stereo pair (Middlebury 2014 "Motorcycle").
REAL_STEREO_PAIR = "motorcycle"


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def load_photo(name: str) -> np.ndarray:
    """An skimage photo by stem (``astronaut``) as float32 HxWx3 in [0,1]; grey photos replicated."""
    from PIL import Image as PILImage

    matches = sorted(skimage_data_dir().glob(f"{name}.*"))
    matches = [m for m in matches if m.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not matches:
        raise FileNotFoundError(f"scikit-image ships no photo named {name!r}")
    with PILImage.open(matches[0]) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return rgb / np.float32(255.0)


def load_stereo_photo(name: str, max_disparity: tuple[float, float]) -> np.ndarray:
    """An L‖R pair as float32 H×W×6: ``motorcycle`` is scikit-image's real pair (ground-truth
    disparity up to 60 px); any other photo becomes a synthetic pair by disparity warping
    (:func:`irctl.data.stereo.stereo_pair_from_photo`, unfilled columns trimmed), with a maximum
    disparity of U(``max_disparity``) × its width drawn from a generator seeded by the name, so
    every run and every split sees the same pair."""
    import zlib

    from irctl.data.stereo import stereo_pair_from_photo

    if name == REAL_STEREO_PAIR:
        left, right = load_photo("motorcycle_left"), load_photo("motorcycle_right")
    else:
        photo = load_photo(name)
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        disparity = rng.uniform(*max_disparity) * photo.shape[1]
        left, right = stereo_pair_from_photo(photo, disparity, rng, trim=True)
    return np.concatenate([left, right], axis=2).astype(np.float32)


def load_photos(
    names: list[str] | tuple[str, ...], degradation: DegradationConfig
) -> list[np.ndarray]:
    """The clean images a preset trains and tests on: RGB photos, or L‖R pairs for stereo SR."""
    if degradation.kind == "stereo_sr":
        return [load_stereo_photo(n, degradation.stereo_max_disparity) for n in names]
    if degradation.kind == "rtv_texture":
        return [_with_structure(load_photo(n), degradation) for n in names]
    return [load_photo(n) for n in names]


def _with_structure(photo: np.ndarray, degradation: DegradationConfig) -> np.ndarray:
    """photo ‖ its RTV structure (H×W×6): smoothed once, whole, then cropped with the photo
    (RTV costs seconds per megapixel, far too much to redo on every training crop)."""
    from irctl.data.degrade import rtv_params
    from irctl.data.rtv import rtv_smooth

    structure = rtv_smooth(photo, rtv_params(degradation))  # float64 inside, photo's dtype out
    return np.concatenate([photo, structure], axis=2)


def augment(x: Tensor, flags: Tensor) -> Tensor:
    """Random hflip / vflip / transpose (the 8 dihedral symmetries), as BasicSR's ``augment``."""
    if flags[0]:
        x = x.flip(-1)
    if flags[1]:
        x = x.flip(-2)
    if flags[2]:
        x = x.transpose(-1, -2)
    return x


def augment_stereo(x: Tensor, flags: Tensor) -> Tensor:
    """The flips that keep a rectified L‖R pair (2C×H×W) a valid one: a vertical flip, and a
    horizontal mirror of both views *with the views swapped* (the mirror image of a left view
    is a right view; mirroring alone would turn every disparity negative). No transpose: it
    would make the disparity vertical. ``flags[2]`` is unused."""
    if flags[0]:
        left, right = x.flip(-1).chunk(2, dim=0)
        x = torch.cat([right, left], dim=0)
    if flags[1]:
        x = x.flip(-2)
    return x


class PairedCropSampler:
    """Random crops of clean photos, augmented, made into pairs on the fly.

    Every draw depends only on the generator passed in, so a training step's batch is a pure
    function of (seed, step): that is what makes ``--resume`` bit-exact.
    """

    def __init__(
        self,
        photos: list[np.ndarray],
        synthesize: PairSynthesis,
        patch: int,
        batch: int,
        use_augment: bool = True,
        augment_fn: Callable[[Tensor, Tensor], Tensor] = augment,
        focus: int = 1,
    ) -> None:
        if focus < 1:
            raise ValueError(f"train.focus must be ≥ 1 (1: plain crops), got {focus}")
        small = [p.shape for p in photos if min(p.shape[:2]) < patch * focus]
        if small:
            what = "the patch size" if focus == 1 else f"{focus} × the patch size"
            raise ValueError(f"photos smaller than {what} {patch * focus}: {small}")
        self.photos = [torch.from_numpy(np.ascontiguousarray(p.transpose(2, 0, 1))) for p in photos]
        # Photos are drawn uniformly, not by area: the two largest shipped photos (retina,
        # hubble_deep_field) are mostly black background and would otherwise dominate.
        self.weights = torch.full((len(self.photos),), 1.0 / len(self.photos), dtype=torch.float64)
        self.synthesize = synthesize
        self.patch = patch
        self.focus = focus
        self.batch = batch
        self.use_augment = use_augment
        self.augment_fn = augment_fn

    def sample(self, generator: torch.Generator) -> Batch:
        crops = []
        size = self.patch * self.focus
        picks = torch.multinomial(self.weights, self.batch, replacement=True, generator=generator)
        for idx in picks.tolist():
            photo = self.photos[idx]
            h, w = photo.shape[-2:]
            top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
            crop = photo[:, top : top + size, left : left + size]
            if self.use_augment:
                crop = self.augment_fn(crop, torch.rand(3, generator=generator) < 0.5)
            crops.append(crop)
        pairs = self.synthesize(torch.stack(crops).contiguous(), generator)
        if self.focus == 1:
            return pairs
        return degraded_windows(pairs, self.patch, generator)


def degraded_windows(pairs: Batch, patch: int, generator: torch.Generator) -> Batch:
    """Each pair cut to one patch×patch window, drawn with probability proportional to how much
    its input differs from its truth (the sum of |LQ − GT| over the window; LQ's first channels
    when it carries more, as an inpainting mask): a crop of a photo with a few raindrops lands
    on them instead of on the clear glass between. Windows with no degradation at all are
    drawn only when every window is clean. What the synthesis knew (``known``) is dropped: it
    described the larger crop, and training never reads it."""
    lq, gt = pairs.lq, pairs.gt
    if lq.shape[-2:] != gt.shape[-2:]:
        raise ValueError(
            f"train.focus needs an input the size of its output; this task's input is "
            f"{tuple(lq.shape[-2:])} for an output of {tuple(gt.shape[-2:])}"
        )
    difference = (lq[:, : gt.shape[1]] - gt).abs().sum(1, keepdim=True).double()
    energy = F.avg_pool2d(difference, patch, stride=1)[:, 0]  # N × positions
    cols = energy.shape[-1]
    weights = energy.reshape(len(energy), -1)
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    chosen = torch.multinomial(weights, 1, generator=generator)[:, 0].tolist()
    corners = [(i // cols, i % cols) for i in chosen]

    def cut(x: Tensor) -> Tensor:
        return torch.stack(
            [im[:, t : t + patch, s : s + patch] for im, (t, s) in zip(x, corners, strict=True)]
        )

    return Batch(lq=cut(lq), gt=cut(gt), cond=pairs.cond)


def synthesize_pair(
    photo: np.ndarray, synthesize: PairSynthesis, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], dict[str, np.ndarray]]:
    """Deterministic (LQ, GT, conditioning scalars, what the synthesis knew — :class:`Batch`'s
    ``known``) for one whole photo (HxWx3 float)."""
    clean = torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1)))[None]
    pair = synthesize(clean, torch.Generator().manual_seed(seed))
    cond = () if pair.cond is None else tuple(float(v) for v in pair.cond[0])
    known = {} if pair.known is None else dict(pair.known[0])
    lq, gt = pair.lq[0].numpy().transpose(1, 2, 0), pair.gt[0].numpy().transpose(1, 2, 0)
    return lq, gt, cond, known
