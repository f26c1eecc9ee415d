"""What latent Refusion's compressor keeps, on held-out cases (paper §4.1): the round trip
D(E(LQ), H_LQ) against the LQ image, and the ceiling D(E(GT), H_LQ) against the ground truth —
the best latent diffusion can reach with these skips. Outputs are quantised to 8 bits like every
row of ``irctl compare``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from irctl.io.images import to_dtype
from irctl.methods.base import SampleOptions
from irctl.metrics.fidelity import psnr

if TYPE_CHECKING:
    from irctl.methods.latent_refusion import LatentRefusionRestorer


@dataclass
class CompressorRow:
    photo: str
    input_psnr: float  # LQ vs GT
    round_trip_psnr: float  # D(E(LQ), H_LQ) vs LQ: what the compressor loses
    ceiling_psnr: float  # D(E(GT), H_LQ) vs GT: the best latent diffusion can reach


def _as8(x: Tensor) -> np.ndarray:
    return to_dtype(np.clip(x[0].float().cpu().numpy().transpose(1, 2, 0), 0.0, 1.0), np.uint8)


def compressor_rows(
    restorer: LatentRefusionRestorer,
    cases: list[tuple[str, Tensor, Tensor]],
    options: SampleOptions,
) -> list[CompressorRow]:
    """One row per (name, LQ, GT) case (1×3×H×W tensors in [0, 1] on the model's device)."""
    rows = []
    for name, lq, gt in cases:
        with torch.inference_mode():
            trip = restorer.round_trip(lq, options)
            ceiling = restorer.decode_with_skips_of(gt, lq, options)
        lq8, gt8 = _as8(lq), _as8(gt)
        rows.append(
            CompressorRow(
                photo=name,
                input_psnr=psnr(lq8, gt8, max_value=255),
                round_trip_psnr=psnr(_as8(trip), lq8, max_value=255),
                ceiling_psnr=psnr(_as8(ceiling), gt8, max_value=255),
            )
        )
    return rows


def compressor_markdown(name: str, rows: list[CompressorRow]) -> str:
    lines = [
        f"| {name} compressor | input vs GT (dB) | round trip D(E(LQ), H_LQ) vs LQ (dB) "
        "| ceiling D(E(GT), H_LQ) vs GT (dB) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.photo} | {r.input_psnr:.2f} | {r.round_trip_psnr:.2f} | {r.ceiling_psnr:.2f} |"
        )
    mean = [
        float(np.mean([getattr(r, k) for r in rows]))
        for k in ("input_psnr", "round_trip_psnr", "ceiling_psnr")
    ]
    lines.append(f"| **mean** | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} |")
    return "\n".join(lines) + "\n"
