"""Renaming the keys of the authors' released checkpoints onto irctl's modules, both ways.

A :class:`KeyMap` is an ordered list of (official pattern, irctl pattern) regex rewrites; it
turns an official state_dict into irctl's names and, for messages, irctl's expected keys back
into the official names a user's file should hold. :func:`import_state` does the renaming and
checks the key set and every shape before anything is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from irctl.io.state_dict import compare_keys


@dataclass(frozen=True)
class KeyMap:
    """(official, irctl) key prefixes as regexes with one group for the rest of the key."""

    rules: tuple[tuple[str, str], ...]

    def to_irctl(self, key: str) -> str:
        return self._apply(key, 0, 1)

    def to_official(self, key: str) -> str:
        return self._apply(key, 1, 0)

    def _apply(self, key: str, src: int, dst: int) -> str:
        for rule in self.rules:
            pattern = "(.*)".join(re.escape(part) for part in rule[src].split("*"))
            match = re.fullmatch(pattern, key)
            if match:
                return rule[dst].replace("*", "{}").format(*match.groups())
        return key


#: Refusion's ConditionalNAFNet (official DenoisingNAFNet_arch.py) → irctl's ConditionalNAFNet:
#: the time MLP's Linear layers sit at 1 and 3 of ``time_mlp`` (the sinusoid and the gate are
#: 0 and 2), irctl's body holds the U-Net, the middle blocks are ``middle_blks``, a block's time
#: projection is ``mlp``. The layer norm's gain is ``g`` in both (layer_norm = "gain").
REFUSION_NAFNET = KeyMap(
    (
        ("time_mlp.1.*", "time_embedding.mlp.0.*"),
        ("time_mlp.3.*", "time_embedding.mlp.2.*"),
        ("middle_blks.*.mlp.1.*", "body.middle.*.time_proj.1.*"),
        ("middle_blks.*", "body.middle.*"),
        ("*.mlp.1.*", "body.*.time_proj.1.*"),
        ("*", "body.*"),
    )
)


def import_state(
    state: Mapping[str, Tensor], module: nn.Module, key_map: KeyMap, what: str
) -> dict[str, Tensor]:
    """``state`` (official names) renamed for ``module``, after checking that it holds exactly
    the module's keys with the module's shapes; the error names the first mismatches in the
    official names (what the user's file holds)."""
    expected = {key_map.to_official(k): tuple(v.shape) for k, v in module.state_dict().items()}
    report = compare_keys(state, expected)
    if not report.ok:
        raise ValueError(f"not a checkpoint of {what}: {report.message()}")
    return {key_map.to_irctl(k): v for k, v in state.items()}
