"""The unit of training data: a paired batch, with the per-image conditioning some tasks carry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass
class Batch:
    """NCHW float32 in [0,1] (LQ may leave [0,1] for unquantised noise); ``cond`` is N×k global
    scalars (bokeh: source and target lens codes) or None. ``known``, one dict per image when
    the synthesis records it, is what made the pair that a user's photo never tells (motion
    blur: its ``kernel``): for oracle baselines in held-out tables, never a model input."""

    lq: Tensor
    gt: Tensor
    cond: Tensor | None = None
    known: list[dict[str, np.ndarray]] | None = None

    def to(self, device: object) -> Batch:
        return Batch(
            lq=self.lq.to(device),
            gt=self.gt.to(device),
            cond=None if self.cond is None else self.cond.to(device),
            known=self.known,
        )
