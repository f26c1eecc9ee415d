"""The lens registry for bokeh effect transformation.

The names are those of the NTIRE 2023 Bokeh Effect Transformation challenge (lens-to-lens
rendering; Conde et al. 2023), the task the Refusion paper (Luo et al., CVPRW 2023) conditions
on source and target lens. Refusion's official code turns a lens name into one number, the signed
f-number: Canon → −N, Sony → +N, so a network sees both brand and aperture in one scalar.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LENSES", "Lens", "UnknownLensError", "parse_lens"]

BRAND_SIGN = {"Canon": -1.0, "Sony": 1.0}


@dataclass(frozen=True)
class Lens:
    """One lens of the challenge: ``name`` as in the dataset, its ``brand`` and f-number."""

    name: str
    brand: str
    f_number: float

    @property
    def code(self) -> float:
        """Refusion's scalar lens code: −f_number for Canon, +f_number for Sony."""
        return BRAND_SIGN[self.brand] * self.f_number


LENSES: dict[str, Lens] = {
    lens.name: lens
    for lens in (
        Lens("Sony50mmf1.8BS", "Sony", 1.8),
        Lens("Sony50mmf16.0BS", "Sony", 16.0),
        Lens("Canon50mmf1.8BS", "Canon", 1.8),
        Lens("Canon50mmf1.4BS", "Canon", 1.4),
        Lens("Canon50mmf16.0BS", "Canon", 16.0),
    )
}


class UnknownLensError(ValueError):
    """A lens name that is not one of :data:`LENSES`."""


def parse_lens(name: str) -> Lens:
    """The lens called ``name``: exact match first, then case-insensitive."""
    if name in LENSES:
        return LENSES[name]
    folded = {key.lower(): lens for key, lens in LENSES.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    raise UnknownLensError(f"unknown lens {name!r}; known lenses: {', '.join(LENSES)}")
