"""Method registry: the only place that maps a preset's ``method`` to a Restorer class (whose
``config_class`` parses the method's own preset tables)."""

from __future__ import annotations

from irctl.config import Preset
from irctl.methods.base import Restorer
from irctl.methods.diffir import DiffIRRestorer
from irctl.methods.dtpm import DTPMRestorer
from irctl.methods.irsde import IRSDERestorer
from irctl.methods.irsde_denoising import IRSDEDenoisingRestorer
from irctl.methods.latent_refusion import LatentRefusionRestorer
from irctl.methods.refusion import RefusionRestorer
from irctl.methods.regression import RegressionRestorer

METHODS: dict[str, type] = {
    "refusion": RefusionRestorer,
    "latent_refusion": LatentRefusionRestorer,
    "regression": RegressionRestorer,
    "irsde": IRSDERestorer,
    "irsde_denoising": IRSDEDenoisingRestorer,
    "diffir": DiffIRRestorer,
    "dtpm": DTPMRestorer,
}


def build_restorer(preset: Preset) -> Restorer:
    try:
        cls = METHODS[preset.method]
    except KeyError:
        raise ValueError(
            f"preset {preset.name!r}: unknown method {preset.method!r}; known: {', '.join(METHODS)}"
        ) from None
    return cls(preset)
