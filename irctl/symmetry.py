"""The eight symmetries of the square (the dihedral group D4) on N×C×H×W tensors, for geometric
self-ensembles.

A model trained on pairs whose degradation looks the same after a flip or a transpose can
restore the flipped image as well as the original; averaging the restorations of all such
versions of an image, each turned back, removes errors that depend on orientation ("geometric
self-ensemble": Timofte, Rothe & Van Gool, "Seven ways to improve example-based single image
super resolution", CVPR 2016; EDSR+, Lim et al., CVPRW 2017). Which symmetries are allowed is a
property of the degradation, so each task names its own (irctl/tasks/): camera shake, noise,
bicubic downscaling and inpainting masks have no preferred direction; haze and bokeh grow with
a depth that recedes upward, so only the left–right mirror keeps them plausible; rain streaks
and snow fall within 30° of vertical (any flip, no transpose); a stereo pair allows only the
vertical flip.

Each symmetry is a transpose, then a horizontal flip, then a vertical flip, each optional; it
is undone in the reverse order. Pure functions of their inputs.
"""

from __future__ import annotations

from torch import Tensor

#: name → (transpose, flip left–right, flip top–bottom), applied in that order
SYMMETRIES: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False),
    "hflip": (False, True, False),
    "vflip": (False, False, True),
    "rot180": (False, True, True),
    "transpose": (True, False, False),
    "rot90": (True, False, True),  # a quarter turn counter-clockwise (numpy's rot90)
    "rot270": (True, True, False),
    "antitranspose": (True, True, True),
}

#: every symmetry of the square
DIHEDRAL = tuple(SYMMETRIES)
#: the flips (and their product, the half turn): no transpose
FLIPS = ("identity", "hflip", "vflip", "rot180")
#: the left–right mirror alone
MIRROR = ("identity", "hflip")


def _parts(name: str) -> tuple[bool, bool, bool]:
    try:
        return SYMMETRIES[name]
    except KeyError:
        raise ValueError(
            f"unknown symmetry {name!r}; symmetries: {', '.join(SYMMETRIES)}"
        ) from None


def transform(x: Tensor, name: str) -> Tensor:
    """``x`` (…×H×W) under the symmetry ``name``."""
    transpose, hflip, vflip = _parts(name)
    if transpose:
        x = x.transpose(-1, -2)
    if hflip:
        x = x.flip(-1)
    if vflip:
        x = x.flip(-2)
    return x


def untransform(x: Tensor, name: str) -> Tensor:
    """The inverse of :func:`transform`: ``untransform(transform(x, s), s)`` is ``x``."""
    transpose, hflip, vflip = _parts(name)
    if vflip:
        x = x.flip(-2)
    if hflip:
        x = x.flip(-1)
    if transpose:
        x = x.transpose(-1, -2)
    return x
