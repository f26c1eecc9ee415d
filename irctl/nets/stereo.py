"""Stereo networks for stereo super-resolution (Refusion, CVPRW 2023, §5.1 "Stereo Image
Super-Resolution"; fact sheet shared/reference/refusion.md §3.2).

The paper only says the noise network is "slightly modified" with "dual inputs" for stereo SR
(§4.1). The official stereo-SR ``ConditionalNAFNet`` (repo: stereo-sr/models/modules/
DenoisingNAFNet_arch.py) does this:

* the input is L‖R (2C channels); each view is conditioned on its own, the two views are
  stacked on the batch axis (2N) with the time duplicated, and the output goes back to L‖R;
* every NAFBlock (encoder, middle and decoder) ends with SCAM, NAFSSR's stereo cross-attention
  module (Chu et al., CVPRW 2022), which Refusion runs at ¼ resolution to save memory.

**How SCAM is inserted.** The networks reuse the mono ones whole: :class:`StereoNAFNet`
subclasses :class:`~irctl.nets.nafnet.NAFNet` and :class:`StereoConditionalNAFNet` subclasses
:class:`~irctl.nets.nafnet.ConditionalNAFNet`. After building the mono body, every NAFBlock in it
is replaced in place by a :class:`StereoBlock` that runs the original block and then SCAM between
the left and the right half of the batch. The body's own forward (padding to a multiple of
2^levels, intro conv, skips, down/up-sampling, ending conv, crop back) therefore runs unchanged on
the 2N stacked views; nothing of it is duplicated here. The cost of this choice is the
state-dict layout: a block's weights live at ``….<i>.block.*`` and its SCAM at ``….<i>.fusion.*``
(the mono net has ``….<i>.*``), so warm-starting from a mono checkpoint needs a key remap.

Time and conditioning scalars: the views run stacked as the 2N batch [L_0..L_{N−1}, R_0..R_{N−1}],
so a per-image t or ``cond`` of N rows is duplicated as [t; t], the official
``torch.cat([time, time])`` (:func:`both_views`). The tiler hands the network one row per tile
already, so this is the only repetition.

Zero padding added for the multiple-of-2^levels constraint takes part in the (mask-free)
attention, as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irctl.data.resize import upscale
from irctl.nets.layers import LAYER_NORMS
from irctl.nets.nafnet import ConditionalNAFNet, NAFBlock, NAFNet, NAFNetConfig, _UNetBody

#: How SCAM reaches its low resolution: "ceil" (⌈H/d⌉×⌈W/d⌉, every input row covered; irctl's
#: own models) or "scale_factor" (the official code's F.interpolate(scale_factor=1/d): ⌊H/d⌋,
#: identical for sizes divisible by d; what the released stereo weights were trained with).
SCAM_RESIZES = ("ceil", "scale_factor")

#: SCAM resolution divisor of Refusion's stereo-SR network (fact sheet §3.2); NAFSSR uses 1.
REFUSION_SCAM_DOWNSCALE = 4


class SCAM(nn.Module):
    """Stereo cross-attention module: each view attends, row by row, to the other view.

    Following the official stereo-SR SCAM (fact sheet §3.2, NAFSSR's design):

    * both views are resampled bicubically to 1/``downscale`` resolution (Refusion: ¼);
    * Q = 1×1(LN(x)) and V = 1×1(x), with separate weights for the left and the right view;
    * for every image row, a W×W attention A = Q_L Q_Rᵀ · c^−½ is computed once and used in both
      directions: F_R→L = softmax_row(A) V_R and F_L→R = softmax_row(Aᵀ) V_L. Stereo pairs are
      rectified, so corresponding pixels lie on the same row and row-wise attention suffices;
    * F_R→L·β and F_L→R·γ are resized back to the input size (nearest) and added to the left and
      the right view. β and γ start at zero, so a fresh module is the identity (like NAFBlock's
      residual scales) and a network starts out as two independent mono networks.

    Because the left and right weights are separate (as in the official code), the module is not
    symmetric under swapping the views; it is exactly view-swap equivariant when the right
    weights equal the left ones and γ = β. ``tied=True`` builds it that way (one set of weights
    for both views, no right-view parameters): the attention has no positional term, so a view
    needs no weights of its own, and a tied network restores (R, L) as the swap of (L, R) —
    irctl's tiny stereo presets use it; the paper-size ones keep the official layout.

    Resampling choices:

    * ``antialias=False`` (default) matches the official ``F.interpolate(scale_factor=0.25,
      mode='bicubic')``, so official weights behave the same. For a size divisible by 4 it also
      keeps the row structure exact: each ¼-resolution row is a 4-tap cubic of exactly its own 4
      input rows, and nearest upsampling gives it back to the same 4 rows, so a change in input
      row r only reaches output rows 4⌊r/4⌋ … 4⌊r/4⌋+3. ``antialias=True`` low-passes first
      (support ±2·downscale input rows), which avoids aliasing in the keys/values but lets a row
      reach ±2 neighbouring ¼-rows and no longer matches official weights.
    * The low-resolution size is ⌈H/d⌉×⌈W/d⌉ given explicitly (official: ⌊H·0.25⌋ from the scale
      factor). For sizes divisible by d the two are identical; ceil covers every input row and
      never gives an empty tensor at the deepest, smallest levels of the U-Net (where the
      official ⌊·⌋ size is 0 below 4 pixels). The result is resized back to the exact input size, so sizes
      that are not multiples of d work.
    * ``downscale=1`` skips both resamplings: NAFSSR's full-resolution SCAM.

    The attention is mask-free and batched: ``einsum`` over (B, H, W, C) rows.
    """

    def __init__(
        self,
        channels: int,
        downscale: int = 4,
        antialias: bool = False,
        tied: bool = False,
        layer_norm: str = "nafnet",
        resize: str = "ceil",
    ) -> None:
        super().__init__()
        if downscale < 1:
            raise ValueError(f"downscale must be ≥ 1, got {downscale}")
        if resize not in SCAM_RESIZES:
            raise ValueError(
                f"SCAM resize must be one of {', '.join(SCAM_RESIZES)}, got {resize!r}"
            )
        norm = LAYER_NORMS[layer_norm]
        self.downscale = downscale
        self.antialias = antialias
        self.tied = tied
        self.resize = resize
        self.scale = channels**-0.5
        self.norm_l = norm(channels)
        self.l_proj1 = nn.Conv2d(channels, channels, 1)  # Q_L
        self.l_proj2 = nn.Conv2d(channels, channels, 1)  # V_L
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))  # scales right → left
        if not tied:
            self.norm_r = norm(channels)
            self.r_proj1 = nn.Conv2d(channels, channels, 1)  # Q_R
            self.r_proj2 = nn.Conv2d(channels, channels, 1)  # V_R
            self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))  # scales left → right

    def _right(self) -> tuple[nn.Module, nn.Module, nn.Module, Tensor]:
        """The right view's (norm, Q projection, V projection, scale): the left's when tied."""
        if self.tied:
            return self.norm_l, self.l_proj1, self.l_proj2, self.beta
        return self.norm_r, self.r_proj1, self.r_proj2, self.gamma

    def _down(self, x: Tensor) -> Tensor:
        if self.downscale == 1:
            return x
        if self.resize == "scale_factor":  # the official code: ⌊H/d⌋×⌊W/d⌋, source grid of 1/d
            return F.interpolate(
                x, scale_factor=1 / self.downscale, mode="bicubic", antialias=self.antialias
            )
        h, w = x.shape[-2:]
        d = self.downscale
        size = (-(-h // d), -(-w // d))
        return F.interpolate(
            x, size=size, mode="bicubic", align_corners=False, antialias=self.antialias
        )

    def _up(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if self.downscale == 1:
            return x
        return F.interpolate(x, size=size, mode="nearest")

    def forward(self, x_left: Tensor, x_right: Tensor) -> tuple[Tensor, Tensor]:
        if x_left.shape != x_right.shape:
            raise ValueError(f"views differ in shape: {x_left.shape} vs {x_right.shape}")
        size = (x_left.shape[-2], x_left.shape[-1])
        small_l, small_r = self._down(x_left), self._down(x_right)
        # (B, C, h, w) → (B, h, w, C): one attention problem per image row.
        norm_r, proj1_r, proj2_r, gamma = self._right()
        q_l = self.l_proj1(self.norm_l(small_l)).permute(0, 2, 3, 1)
        q_r = proj1_r(norm_r(small_r)).permute(0, 2, 3, 1)
        v_l = self.l_proj2(small_l).permute(0, 2, 3, 1)
        v_r = proj2_r(small_r).permute(0, 2, 3, 1)
        # attn[b, h, i, j]: left column i against right column j.
        attn = torch.einsum("bhic,bhjc->bhij", q_l, q_r) * self.scale
        r2l = torch.einsum("bhij,bhjc->bhic", attn.softmax(dim=-1), v_r)
        # Right column j attends over left columns i: softmax of Aᵀ along its rows = dim −2 of A.
        l2r = torch.einsum("bhij,bhic->bhjc", attn.softmax(dim=-2), v_l)
        r2l = self._up(r2l.permute(0, 3, 1, 2) * self.beta, size)
        l2r = self._up(l2r.permute(0, 3, 1, 2) * gamma, size)
        return x_left + r2l, x_right + l2r


class StereoBlock(nn.Module):
    """A NAFBlock followed by SCAM between the left and the right half of its batch.

    The batch holds the views stacked as [L_0..L_{N−1}, R_0..R_{N−1}] (official stereo-SR
    network), so sample k's left view is paired with sample k's right view and nothing crosses
    samples. Takes and returns what NAFBlock does, so the mono body's forward drives it."""

    def __init__(
        self,
        block: NAFBlock,
        downscale: int = REFUSION_SCAM_DOWNSCALE,
        antialias: bool = False,
        tied: bool = False,
        layer_norm: str = "nafnet",
        resize: str = "ceil",
    ) -> None:
        super().__init__()
        self.block = block
        channels = block.beta.shape[1]
        self.fusion = SCAM(channels, downscale, antialias, tied, layer_norm, resize)

    def forward(self, x: Tensor, temb: Tensor | None = None, cemb: Tensor | None = None) -> Tensor:
        x = self.block(x, temb, cemb)
        if x.shape[0] % 2:
            raise ValueError(f"stereo batch must stack L and R views, got batch {x.shape[0]}")
        left, right = self.fusion(*x.chunk(2, dim=0))
        return torch.cat([left, right], dim=0)


def add_scam(
    body: _UNetBody,
    downscale: int = REFUSION_SCAM_DOWNSCALE,
    antialias: bool = False,
    tied: bool = False,
    layer_norm: str = "nafnet",
    resize: str = "ceil",
) -> None:
    """Wrap every NAFBlock of a NAFNet body (encoder, middle, decoder) in a :class:`StereoBlock`,
    in place."""
    for blocks in [*body.encoders, body.middle, *body.decoders]:
        for i, block in enumerate(blocks):
            if not isinstance(block, NAFBlock):
                raise TypeError(f"expected a NAFBlock, found {type(block).__name__}")
            blocks[i] = StereoBlock(block, downscale, antialias, tied, layer_norm, resize)


def both_views(x: Tensor | int | None) -> Tensor | int | None:
    """A per-image t or conditioning (N rows) for the stacked 2N views: [x; x]. Ints, 0-d
    tensors and None apply to every view as they are."""
    if isinstance(x, Tensor) and x.ndim >= 1:
        return torch.cat([x, x], dim=0)
    return x


def views_to_batch(x: Tensor, channels: int) -> Tensor:
    """N×2C×H×W (L‖R) → 2N×C×H×W stacked as [L_0..L_{N−1}, R_0..R_{N−1}]."""
    if x.ndim != 4 or x.shape[1] != 2 * channels:
        raise ValueError(f"expected N×{2 * channels}×H×W (left‖right), got {tuple(x.shape)}")
    return torch.cat(x.split(channels, dim=1), dim=0)


def batch_to_views(x: Tensor) -> Tensor:
    """Inverse of :func:`views_to_batch`: 2N×C×H×W → N×2C×H×W (L‖R)."""
    left, right = x.chunk(2, dim=0)
    return torch.cat([left, right], dim=1)


class _StereoBody:
    """Mixin: build the mono network, then put SCAM after every one of its NAFBlocks."""

    body: _UNetBody

    def __init__(
        self,
        cfg: NAFNetConfig,
        *,
        scam_downscale: int = REFUSION_SCAM_DOWNSCALE,
        antialias: bool = False,
        tied: bool = False,
        scam_resize: str = "ceil",
    ) -> None:
        super().__init__(cfg)  # type: ignore[call-arg]
        self.channels = cfg.channels
        add_scam(self.body, scam_downscale, antialias, tied, cfg.layer_norm, scam_resize)


class StereoNAFNet(_StereoBody, NAFNet):
    """Plain stereo NAFNet for L1 regression: L‖R in, L‖R out, each view restored = lq + body(lq)
    with SCAM after every block. The regression counterpart of Refusion's stereo noise network
    (NAFSSR, the paper's Table 1 baseline, is a different, non-U-Net NAFNet with full-resolution
    SCAM; ``scam_downscale=1`` gives the full-resolution module here)."""

    def forward(self, lq: Tensor, cond: Tensor | None = None) -> Tensor:
        stacked = views_to_batch(lq, self.channels)
        return batch_to_views(super().forward(stacked, both_views(cond)))


class StereoConditionalNAFNet(_StereoBody, ConditionalNAFNet):
    """Refusion's stereo-SR noise network (fact sheet §3.2): ε̂_L‖ε̂_R = net(x_t, μ, t[, cond]).

    x_t and μ are N×2C×H×W (L‖R). Each view gets the mono conditioning concat[x_t − μ, μ]; the
    views run stacked on the batch axis with t duplicated (t of shape (N,) acts as (2N,) =
    [t; t]; an int or 0-d t is broadcast), and SCAM follows every NAFBlock."""

    def forward(
        self, x_t: Tensor, mu: Tensor, t: Tensor | int, cond: Tensor | None = None
    ) -> Tensor:
        if x_t.shape != mu.shape:
            raise ValueError(f"x_t and mu differ in shape: {x_t.shape} vs {mu.shape}")
        c = self.channels
        stacked_x, stacked_mu = views_to_batch(x_t, c), views_to_batch(mu, c)
        eps = super().forward(stacked_x, stacked_mu, both_views(t), both_views(cond))
        return batch_to_views(eps)


class NAFSSR(nn.Module):
    """NAFSSR (Chu et al., CVPRW 2022), the stereo-SR network Refusion's Table 1 compares
    against, used here as the task's L1 regression baseline: it works on the low-resolution
    views, which makes it ~16× cheaper per parameter than a network run at HR size.

    L‖R LR views (N×2C×h×w) → intro 3×3 conv per view → ``blocks`` × (NAFBlock + full-resolution
    SCAM) on the views stacked on the batch axis → 3×3 conv to C·r² + PixelShuffle(r) → plus the
    bicubic ×r upsampled LR (global residual) → N×2C×rh×rw. The official NAFSSR adds a bilinear
    upsample; the MATLAB bicubic here is the same μ the Refusion model starts from, so the two
    methods differ only in what they learn on top of one baseline.
    """

    def __init__(
        self, width: int, blocks: int, upscale: int, channels: int = 3, tied: bool = False
    ) -> None:
        super().__init__()
        if upscale < 1 or blocks < 1:
            raise ValueError(f"upscale and blocks must be ≥ 1, got {upscale} and {blocks}")
        self.channels = channels
        self.upscale = upscale
        self.intro = nn.Conv2d(channels, width, 3, padding=1)
        self.body = nn.ModuleList(
            StereoBlock(NAFBlock(width), downscale=1, tied=tied) for _ in range(blocks)
        )
        self.up = nn.Sequential(
            nn.Conv2d(width, channels * upscale**2, 3, padding=1), nn.PixelShuffle(upscale)
        )

    #: no downsampling, no padding: tiles need no alignment
    multiple = 1

    def forward(self, lq: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            raise ValueError("NAFSSR takes no conditioning")
        x = self.intro(views_to_batch(lq, self.channels))
        for block in self.body:
            x = block(x)
        return batch_to_views(self.up(x)) + upscale(lq, self.upscale)
