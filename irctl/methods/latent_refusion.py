"""Latent Refusion (Luo et al., CVPRW 2023, §4.1, Fig. 3): the IR-SDE runs in the latent of a
U-Net compressor whose decoder gets the LQ image's skip features, so the diffusion model works on
a 4×–8× smaller grid while the high-resolution detail reaches the output through the skips.

Two training stages (the paper's recipe): the compressor with the latent-replacing L1 losses
(Fig. 4), then the noise network in its frozen latent (μ = E(LQ), x0 = E(GT)). Restoring encodes
the LQ image, samples the mean-reverting SDE from E(LQ) + λz, and decodes with the LQ skips.

Large images: all three passes are tiled on the latent grid. The encoder runs on image tiles
and its latents are blended; the sampler's state stays the full latent; the decoder runs on
(latent tile, image tile) pairs and recomputes each tile's skips from the LQ pixels, so no
full-resolution skip features are ever held: memory is set by the tile, not the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from irctl.config import Preset
from irctl.data.batch import Batch
from irctl.diffusion import mrsde
from irctl.methods.base import Conditioning, ProgressFn, RestorerBase, SampleOptions
from irctl.methods.official_keys import (
    REFUSION_LATENT_BOKEH,
    REFUSION_NAFNET,
    compressor_key_map,
    import_state,
)
from irctl.methods.refusion import (
    bind_noise_model,
    check_lens_scalars,
    condition_tensor,
    matching_loss,
    mrsde_sampling,
    noise_net_roles,
    sample_reverse,
)
from irctl.nets.layers import pad_to_multiple
from irctl.nets.nafnet import ConditionalNAFNet, NAFNetConfig
from irctl.nets.unet_latent import CompressorConfig, UNetCompressor, latent_replacing_loss
from irctl.tiling import SPATIAL, Spatial, Tiler


@dataclass(frozen=True)
class LatentRefusionConfig:
    """Latent Refusion's tables: ``[latent]`` (the U-Net compressor), ``[network]`` (the noise
    NAFNet, run on the latent's channels) and ``[diffusion]``."""

    latent: CompressorConfig = field(default_factory=CompressorConfig)
    network: NAFNetConfig = field(default_factory=NAFNetConfig)
    diffusion: mrsde.MRSDEConfig = field(default_factory=mrsde.MRSDEConfig)


class LatentRefusionRestorer(RestorerBase):
    config_class: ClassVar[type] = LatentRefusionConfig
    stages: ClassVar[list[str]] = ["compressor", "diffusion"]

    @staticmethod
    def check_preset(preset: Preset) -> None:
        """Images, not stereo pairs: the compressor and the network see one view."""
        if preset.degradation.kind == "stereo_sr":
            raise ValueError("latent Refusion restores single images, not stereo pairs")
        check_lens_scalars(preset, preset.model.network)

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        self.config: LatentRefusionConfig = preset.model
        self.schedule = self.config.diffusion.build()
        self.sampling = mrsde_sampling(self.schedule)
        self.compressor = UNetCompressor(self.config.latent)
        latent_net = replace(self.config.network, channels=self.config.latent.latent_channels)
        self.net = ConditionalNAFNet(latent_net)

    @property
    def factor(self) -> int:
        return self.compressor.config.factor

    def modules(self) -> dict[str, nn.Module]:
        return {"compressor": self.compressor, "net": self.net}

    def trainable(self, stage: str) -> dict[str, nn.Module]:
        if stage == "compressor":
            return {"compressor": self.compressor}
        return {"net": self.net}

    def loss(
        self, batch: Batch, generator: torch.Generator, stage: str | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        if stage == "compressor":
            return latent_replacing_loss(self.compressor, batch.lq, batch.gt)
        with torch.no_grad():  # the compressor is frozen in the diffusion stage
            mu, _ = self.compressor.encode(batch.lq)
            x0, _ = self.compressor.encode(batch.gt)
        n = x0.shape[0]
        t = torch.randint(1, self.schedule.T + 1, (n,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        return matching_loss(self.net, self.schedule, x0, mu, t, noise, batch.cond)

    def tile_multiple(self) -> int:
        """The compressor's multiple: it is the network that sees image pixels. The latent
        network rounds its tiles up to its own multiple on the coarser grid (``factor`` ×
        ``net.multiple`` image pixels) by itself; requiring that much of ``--tile`` would
        refuse the 32-pixel tiles the recorded golden outputs were made with."""
        return self.compressor.config.multiple

    def tilers(self, options: SampleOptions) -> tuple[Tiler, Tiler]:
        """(compressor tiler, latent-network tiler), both on the latent grid (``--tile`` and
        ``--tile-overlap`` are image pixels). Compressor tiles are whole multiples of its
        padding multiple (in latent pixels), the network's of its own, so no tile pads inside
        the image."""
        f = self.factor
        return (
            options.tiles.on_grid(factor=f, align=self.compressor.config.multiple // f),
            options.tiles.on_grid(factor=f, align=self.net.multiple),
        )

    def encode(self, lq: Tensor, tiler: Tiler) -> Tensor:
        """E(LQ) for an image already padded to the compressor's multiple, tiled."""
        return tiler.wrap(lambda x: self.compressor.encode(x)[0], Spatial(self.factor))(lq)

    def decode(self, z: Tensor, lq: Tensor, tiler: Tiler) -> Tensor:
        """D(z, H_LQ), tiled: each tile's skips are recomputed from its LQ pixels."""

        def decode_tile(z_tile: Tensor, lq_tile: Tensor) -> Tensor:
            return self.compressor.decode(z_tile, self.compressor.encode(lq_tile)[1])

        return tiler.wrap(decode_tile, SPATIAL, Spatial(self.factor))(z, lq)

    @torch.no_grad()
    def round_trip(self, image: Tensor, options: SampleOptions) -> Tensor:
        """D(E(x), H_x): the compressor alone, which must not lose detail (paper §4.1)."""
        return self.decode_with_skips_of(image, image, options)

    @torch.no_grad()
    def decode_with_skips_of(self, image: Tensor, lq: Tensor, options: SampleOptions) -> Tensor:
        """D(E(image), H_LQ). With the ground truth as ``image`` this is the best latent
        diffusion can do: a perfect sampler would reach E(GT), decoded with the LQ skips."""
        h, w = lq.shape[-2:]
        multiple = self.compressor.config.multiple
        compressor_tiler, _ = self.tilers(options)
        padded_lq = pad_to_multiple(lq, multiple)
        z = self.encode(pad_to_multiple(image, multiple), compressor_tiler)
        return self.decode(z, padded_lq, compressor_tiler)[..., :h, :w]

    def official_modules(self, states: list[dict[str, Tensor]]) -> dict[str, dict[str, Tensor]]:
        """The released latent models: two files, the U-Net compressor (``pretrain_model_L``,
        told apart by its ``init_conv``) and the latent ConditionalNAFNet (``pretrain_model_G``),
        for a preset of their sizes with the official layer norm. The dehazing net is the plain
        layout (with ``global_skip``, which no weight shows); a preset with three conditioning
        scalars is the bokeh net, whose lens/disparity MLP has its own names."""
        if len(states) != 2:
            raise ValueError(
                f"latent Refusion is released as two files (compressor and noise network), "
                f"got {len(states)}"
            )
        compressors = [s for s in states if "init_conv.weight" in s]
        if len(compressors) != 1:
            raise ValueError(
                "expected one compressor file (with init_conv.weight) and one noise network"
            )
        (compressor,) = compressors
        (noise_net,) = [s for s in states if s is not compressor]
        network = self.config.network
        official_layout = {0: REFUSION_NAFNET, 3: REFUSION_LATENT_BOKEH}
        if network.layer_norm != "gain" or network.cond_scalars not in official_layout:
            raise ValueError(
                'importing needs an official noise network: network.layer_norm = "gain" and '
                "no conditioning (dehazing) or three scalars (bokeh: lenses and disparity)"
            )
        key_map = compressor_key_map(len(self.config.latent.mult))
        name = self.preset.name
        return {
            "compressor": import_state(
                compressor, self.compressor, key_map, f"{name}'s compressor"
            ),
            "net": import_state(
                noise_net,
                self.net,
                official_layout[network.cond_scalars],
                f"{name}'s noise network",
            ),
        }

    def condition(self, lq: Tensor, cond: Conditioning) -> Tensor | None:
        wanted = self.config.network.cond_scalars
        return condition_tensor(self.preset, wanted, cond, lq.shape[0], lq.device)

    @torch.no_grad()
    def restore(
        self,
        lq: Tensor,
        condition: Tensor | None,
        options: SampleOptions,
        generator: torch.Generator | None,
        callback: ProgressFn | None = None,
    ) -> Tensor:
        h, w = lq.shape[-2:]
        padded = pad_to_multiple(lq, self.compressor.config.multiple)
        compressor_tiler, net_tiler = self.tilers(options)
        mu = self.encode(padded, compressor_tiler)
        tiled = net_tiler.wrap(self.net, *noise_net_roles(condition))
        model = bind_noise_model(tiled, mu, condition)
        noise = mrsde.gaussian_noise(generator)
        z0 = sample_reverse(model, mu, self.schedule, options, noise, callback)
        return self.decode(z0, padded, compressor_tiler)[..., :h, :w]

    def reports(
        self, cases: list[tuple[str, Tensor, Tensor]], options: SampleOptions
    ) -> dict[str, str]:
        """The compressor's own quality on the held-out cases (paper §4.1): round trip and
        the ceiling of latent diffusion."""
        from irctl.methods.compressor_report import compressor_markdown, compressor_rows

        rows = compressor_rows(self, cases, options)
        return {f"compressor-{self.preset.name}": compressor_markdown(self.preset.name, rows)}
