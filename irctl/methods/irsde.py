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
from irctl.methods.refusion import HOLES, UPSAMPLERS, RefusionRestorer, one_file
from irctl.nets.irsde_unet import IRSDEUNet, IRSDEUNetConfig


@dataclass(frozen=True)
class IRSDENetwork(IRSDEUNetConfig):
    """``[network]`` of IR-SDE: the U-Net's sizes; ``upscale`` > 1 for SR (the input is the LR
    image, μ its bicubic upsampling — ``upsampler = "torch"`` for the released ×4 model, whose
    code upsamples with PyTorch's bicubic — and the SDE runs at the output size)."""

    upscale: int = 1
    upsampler: str = "matlab"
    #: "white": the input is an inpainting one, the network sees the image with white holes
    holes: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.holes not in HOLES:
            raise ValueError(f"network.holes must be one of {HOLES}, got {self.holes!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(
                f"network.upsampler must be one of {', '.join(UPSAMPLERS)}, got {self.upsampler!r}"
            )
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
        deg, network = preset.degradation, preset.model.network
        if deg.kind == "stereo_sr":
            raise ValueError("IR-SDE's U-Net restores single images, not stereo pairs")
        if (deg.kind == "inpaint_mask") != (network.holes != ""):
            raise ValueError(
                'an inpaint_mask degradation and network.holes = "white" go together (the '
                "network's form of an image and its mask)"
            )
        if deg.kind == "bicubic_sr" and network.upscale != deg.scale:
            raise ValueError(
                f"a bicubic_sr degradation needs network.upscale = degradation.scale = "
                f"{deg.scale}, got {network.upscale}"
            )

    def build_noise_network(self) -> nn.Module:
        return IRSDEUNet(self.config.network)

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """The official ConditionalUNet's state_dict (every released ir-sde.yml model)."""
        (state,) = one_file(states, "IR-SDE's noise network")
        what = f"IR-SDE's ConditionalUNet of {self.preset.name}'s sizes"
        return {"net": import_state(state, self.net, IRSDE_UNET, what)}
