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
    """(official, irctl) key patterns: ``#`` stands for an index (digits), ``*`` for any rest;
    both sides of a rule hold the same wildcards in the same order. The first rule that
    matches a key rewrites it; a key no rule matches is kept."""

    rules: tuple[tuple[str, str], ...]

    def to_irctl(self, key: str) -> str:
        return self._apply(key, 0, 1)

    def to_official(self, key: str) -> str:
        return self._apply(key, 1, 0)

    def _apply(self, key: str, src: int, dst: int) -> str:
        for rule in self.rules:
            match = re.fullmatch(_regex(rule[src]), key)
            if match:
                return _fill(rule[dst], match.groups())
        return key


def _fill(pattern: str, groups: tuple[str, ...]) -> str:
    """``pattern`` with its wildcards replaced by ``groups`` in order."""
    parts = re.split(r"[*#]", pattern)
    return parts[0] + "".join(g + part for g, part in zip(groups, parts[1:], strict=True))


def _regex(pattern: str) -> str:
    return "".join("(\\d+)" if c == "#" else "(.*)" if c == "*" else re.escape(c) for c in pattern)


def compressor_key_map(levels: int) -> KeyMap:
    """The official latent U-Net (unet-latent UNet_arch.py) → irctl's UNetCompressor, for
    ``levels`` = len(ch_mult) levels. Per level the official ``encoder.i`` holds two ResBlocks
    (0, 1), the deepest level's attention (2) and the down conv (3); ``decoder.i`` (deepest
    first) holds two ResBlocks, the attention and the up path (3: nearest ×2 + conv at ``3.1``,
    a plain conv at the top level)."""
    deep, top = levels - 1, levels - 1
    return KeyMap(
        (
            ("init_conv.*", "init.*"),
            ("encoder.#.#.block1.proj.*", "enc_blocks.#.#.conv1.*"),
            ("encoder.#.#.block2.proj.*", "enc_blocks.#.#.conv2.*"),
            (f"encoder.{deep}.2.fn.fn.to_qkv.*", "enc_attn.qkv.*"),
            (f"encoder.{deep}.2.fn.fn.to_out.*", "enc_attn.out.*"),
            (f"encoder.{deep}.2.fn.norm.*", "enc_attn.norm.*"),
            ("encoder.#.3.*", "downs.#.*"),
            ("decoder.#.#.block1.proj.*", "dec_blocks.#.#.conv1.*"),
            ("decoder.#.#.block2.proj.*", "dec_blocks.#.#.conv2.*"),
            ("decoder.#.#.res_conv.*", "dec_blocks.#.#.skip.*"),
            ("decoder.0.2.fn.fn.to_qkv.*", "dec_attn.qkv.*"),
            ("decoder.0.2.fn.fn.to_out.*", "dec_attn.out.*"),
            ("decoder.0.2.fn.norm.*", "dec_attn.norm.*"),
            ("decoder.#.3.1.*", "ups.#.1.*"),
            (f"decoder.{top}.3.*", f"ups.{top}.*"),
            ("latent_conv.*", "to_latent.*"),
            ("post_latent_conv.*", "from_latent.*"),
            ("final_conv.*", "final.*"),
        )
    )


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


#: Refusion's latent-bokeh ConditionalNAFNet (official latent-bokeh DenoisingNAFNet_arch.py):
#: its ``time_mlp`` holds no sinusoid (Linear layers at 0 and 2), the lens/disparity MLP is
#: ``cam_mlp`` (irctl's ``cond.embed.mlp``), and a block's projections are ``time_mlp`` and
#: ``cam_mlp`` (irctl's ``time_proj`` and ``cond_proj``).
REFUSION_LATENT_BOKEH = KeyMap(
    (
        ("time_mlp.#.*", "time_embedding.mlp.#.*"),
        ("cam_mlp.#.*", "cond.embed.mlp.#.*"),
        ("middle_blks.#.time_mlp.*", "body.middle.#.time_proj.*"),
        ("middle_blks.#.cam_mlp.*", "body.middle.#.cond_proj.*"),
        ("middle_blks.*", "body.middle.*"),
        ("*.time_mlp.*", "body.*.time_proj.*"),
        ("*.cam_mlp.*", "body.*.cond_proj.*"),
        ("*", "body.*"),
    )
)


#: Refusion's stereo-SR ConditionalNAFNet (official stereo-sr DenoisingNAFNet_arch.py): the same
#: names, with each block's SCAM as ``fusion`` inside the block; irctl wraps every NAFBlock in a
#: StereoBlock that holds it as ``block`` beside its ``fusion``.
REFUSION_STEREO = KeyMap(
    (
        ("time_mlp.1.*", "time_embedding.mlp.0.*"),
        ("time_mlp.3.*", "time_embedding.mlp.2.*"),
        *(
            rule
            for official, ours in (
                ("middle_blks.#", "body.middle.#"),
                ("encoders.#.#", "body.encoders.#.#"),
                ("decoders.#.#", "body.decoders.#.#"),
            )
            for rule in (
                (f"{official}.fusion.*", f"{ours}.fusion.*"),
                (f"{official}.mlp.1.*", f"{ours}.block.time_proj.1.*"),
                (f"{official}.*", f"{ours}.block.*"),
            )
        ),
        ("*", "body.*"),
    )
)


#: IR-SDE's ConditionalUNet (official DenoisingUNet_arch.py) → irctl's IRSDEUNet: the time MLP's
#: Linear layers at 1 and 3, a ResBlock's ``block1.proj``/``block2.proj``/``res_conv``/``mlp``
#: are ``conv1``/``conv2``/``skip``/``time_proj``, ``Residual(PreNorm(attention))`` is an
#: AttentionBlock (``fn.norm`` → ``norm``, ``fn.fn.to_qkv``/``to_out`` → ``attn.qkv``/``out``).
IRSDE_UNET = KeyMap(
    (
        ("time_mlp.1.*", "time_embedding.0.*"),
        ("time_mlp.3.*", "time_embedding.2.*"),
        ("init_conv.*", "init.*"),
        ("*.mlp.1.*", "*.time_proj.1.*"),
        ("*.block1.proj.*", "*.conv1.*"),
        ("*.block2.proj.*", "*.conv2.*"),
        ("*.res_conv.*", "*.skip.*"),
        ("*.fn.fn.to_qkv.*", "*.attn.qkv.*"),
        ("*.fn.fn.to_out.*", "*.attn.out.*"),
        ("*.fn.norm.*", "*.norm.*"),
    )
)


def _dirformer_key_map(upscale: bool) -> KeyMap:
    """DiffIR's DIRformer (official ``G``, S2_arch.py) → irctl's DIRformer: levels are lists
    (``encoder_level1`` → ``encoders.0``, ``decoder_level3`` → ``decoders.0``), a layer norm's
    ``body`` wrapper is gone, the IPR projections ``kernel.0`` are ``modulation``; the SR tail's
    sub-pixel convs are ``upsample`` and its last conv ``output``."""
    containers = {
        **{f"encoder_level{i + 1}": f"encoders.{i}" for i in range(3)},
        "latent": "latent",
        **{f"decoder_level{3 - i}": f"decoders.{i}" for i in range(3)},
        "refinement": "refinement",
    }
    inner = (
        ("norm1.body.*", "norm1.*"),
        ("norm2.body.*", "norm2.*"),
        ("attn.kernel.0.*", "attn.modulation.*"),
        ("attn.qkv_dwconv.*", "attn.qkv_dw.*"),
        ("attn.project_out.*", "attn.out.*"),
        ("ffn.kernel.0.*", "ffn.modulation.*"),
        ("ffn.dwconv.*", "ffn.dw.*"),
        ("*", "*"),
    )
    rules = [
        (f"{official}.#.{a}", f"{ours}.#.{b}")
        for official, ours in containers.items()
        for a, b in inner
    ]
    rules += [
        ("patch_embed.proj.*", "embed.*"),
        *((f"down{i + 1}_{i + 2}.body.0.*", f"downs.{i}.0.*") for i in range(3)),
        *((f"up{4 - i}_{3 - i}.body.0.*", f"ups.{i}.0.*") for i in range(3)),
        ("reduce_chan_level3.*", "reduce.0.*"),
        ("reduce_chan_level2.*", "reduce.1.*"),
    ]
    if upscale:
        rules += [
            ("tail.0.0.*", "upsample.0.*"),
            ("tail.0.2.*", "upsample.2.*"),
            ("tail.1.*", "output.*"),
        ]
    return KeyMap(tuple(rules))


def diffir_key_maps(denoiser_blocks: int, upscale: bool) -> dict[str, KeyMap]:
    """DiffIRS2's parts (official prefixes ``G.``, ``condition.``, ``denoise.`` removed) →
    irctl's ``dirformer``, ``cpen`` and ``denoiser``. CPEN keeps the official ``E`` layer
    order as ``features`` (a ResBlock's ``body.0``/``body.2`` are ``conv1``/``conv2``); the
    denoiser's first Linear is ``inp`` and its hidden ones, official ``resmlp.{2+k}.resmlp.0``,
    are ``hidden.k``."""
    cpen = KeyMap(
        (
            ("E.#.body.0.*", "features.#.conv1.*"),
            ("E.#.body.2.*", "features.#.conv2.*"),
            ("E.*", "features.*"),
        )
    )
    denoiser = KeyMap(
        (
            ("resmlp.0.*", "inp.*"),
            *((f"resmlp.{k + 2}.resmlp.0.*", f"hidden.{k}.*") for k in range(denoiser_blocks)),
        )
    )
    return {"dirformer": _dirformer_key_map(upscale), "cpen": cpen, "denoiser": denoiser}


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
