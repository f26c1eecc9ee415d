"""IR-SDE (Luo et al., ICML 2023): the mean-reverting SDE of Refusion with its original noise
network, a conditional U-Net with ResBlocks and linear attention (irctl/nets/irsde_unet.py).
Everything but the network is Refusion's (training loss, samplers, tiling), so this is Refusion
with another ``[network]`` table; the authors' released ``ir-sde.yml`` models import onto it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor, nn

from irctl.config import Preset
from irctl.diffusion.mrsde import MRSDEConfig
from irctl.methods.official_keys import IRSDE_UNET, import_state
from irctl.methods.refusion import RefusionRestorer, one_file
from irctl.nets.irsde_unet import IRSDEUNet, IRSDEUNetConfig


@dataclass(frozen=True)
class IRSDENetwork(IRSDEUNetConfig):
    """``[network]`` of IR-SDE: the U-Net's sizes; ``upscale`` > 1 for SR (the input is the LR
    image, μ its bicubic upsampling, as the official SR config feeds the network)."""

    upscale: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mu_input:
            raise ValueError(
                "a network without μ input needs the denoising SDE: method irsde_denoising"
            )


@dataclass(frozen=True)
class IRSDEConfig:
    network: IRSDENetwork = field(default_factory=IRSDENetwork)
    diffusion: MRSDEConfig = field(default_factory=MRSDEConfig)


class IRSDERestorer(RefusionRestorer):
    config_class: ClassVar[type] = IRSDEConfig

    @staticmethod
    def check_preset(preset: Preset) -> None:
        if preset.degradation.kind == "stereo_sr":
            raise ValueError("IR-SDE's U-Net restores single images, not stereo pairs")
        if preset.degradation.kind == "bicubic_sr" and preset.model.network.upscale != 1:
            raise ValueError(
                "a bicubic_sr input is already upsampled to the output size (the official SISR "
                "model's input): network.upscale must be 1"
            )

    def build_noise_network(self) -> nn.Module:
        return IRSDEUNet(self.config.network)

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """The official ConditionalUNet's state_dict (every released ir-sde.yml model)."""
        (state,) = one_file(states, "IR-SDE's noise network")
        what = f"IR-SDE's ConditionalUNet of {self.preset.name}'s sizes"
        return {"net": import_state(state, self.net, IRSDE_UNET, what)}
