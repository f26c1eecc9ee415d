"""Stereo-SR networks (Refusion CVPRW 2023 §5.1; fact sheet shared/reference/refusion.md §3.2):
SCAM against a row-by-row reference, identity at init, information crossing views, row
locality at ¼ resolution, view-swap equivariance, odd sizes, batch independence, the wiring
against the mono networks and the official parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from irctl.nets.nafnet import ConditionalNAFNet, NAFBlock, NAFNet, NAFNetConfig
from irctl.nets.stereo import SCAM, StereoConditionalNAFNet, StereoNAFNet

TINY = NAFNetConfig(width=8, enc_blocks=(1, 1), middle_blocks=1, dec_blocks=(1, 1))


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every zero-initialised residual scale (NAFBlock and SCAM β/γ) and every LayerNorm a
    random value, so that no path of the network is switched off and views really interact."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("beta", "gamma"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif ".norm" in f".{name}":
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


def _tie(module: torch.nn.Module) -> None:
    """Make every SCAM view-symmetric: right weights := left weights, γ := β. The official SCAM
    has separate left/right weights, so only a tied module is exactly view-swap equivariant."""
    with torch.no_grad():
        for scam in (m for m in module.modules() if isinstance(m, SCAM)):
            scam.norm_r.load_state_dict(scam.norm_l.state_dict())
            scam.r_proj1.load_state_dict(scam.l_proj1.state_dict())
            scam.r_proj2.load_state_dict(scam.l_proj2.state_dict())
            scam.gamma.copy_(scam.beta)


def _scam(channels: int = 8, downscale: int = 4, antialias: bool = False, tie: bool = False):
    torch.manual_seed(0)
    m = SCAM(channels, downscale, antialias).double()
    _randomise(m)
    if tie:
        _tie(m)
    return m


def _swap(x: torch.Tensor) -> torch.Tensor:
    """L‖R → R‖L on the channel axis."""
    left, right = x.chunk(2, dim=1)
    return torch.cat([right, left], dim=1)


def _reference_scam(m: SCAM, x_l: torch.Tensor, x_r: torch.Tensor):
    """SCAM written out per image and per row with plain matrices, as the fact sheet describes it
    (and as the official code computes it with matmul/permute)."""
    h, w = x_l.shape[-2:]
    d = m.downscale
    if d > 1:
        size = (math.ceil(h / d), math.ceil(w / d))
        s_l, s_r = (
            F.interpolate(v, size=size, mode="bicubic", align_corners=False, antialias=m.antialias)
            for v in (x_l, x_r)
        )
    else:
        s_l, s_r = x_l, x_r
    q_l, q_r = m.l_proj1(m.norm_l(s_l)), m.r_proj1(m.norm_r(s_r))
    v_l, v_r = m.l_proj2(s_l), m.r_proj2(s_r)
    c = x_l.shape[1]
    r2l, l2r = torch.zeros_like(v_l), torch.zeros_like(v_r)
    for b in range(x_l.shape[0]):
        for row in range(s_l.shape[-2]):
            a = q_l[b, :, row, :].T @ q_r[b, :, row, :] / math.sqrt(c)  # W_left × W_right
            r2l[b, :, row, :] = (torch.softmax(a, dim=1) @ v_r[b, :, row, :].T).T
            l2r[b, :, row, :] = (torch.softmax(a.T, dim=1) @ v_l[b, :, row, :].T).T
    if d > 1:
        r2l, l2r = F.interpolate(r2l, size=(h, w)), F.interpolate(l2r, size=(h, w))
    return x_l + m.beta * r2l, x_r + m.gamma * l2r


# --- SCAM alone -----------------------------------------------------------------------------


@pytest.mark.parametrize("downscale", [1, 4])
def test_fresh_scam_is_identity(downscale):
    torch.manual_seed(0)
    m = SCAM(8, downscale)
    x_l, x_r = torch.randn(2, 8, 20, 28), torch.randn(2, 8, 20, 28)
    with torch.no_grad():
        y_l, y_r = m(x_l, x_r)
    assert torch.equal(y_l, x_l) and torch.equal(y_r, x_r)


@pytest.mark.parametrize(
    "downscale,antialias,size", [(1, False, (6, 10)), (4, False, (16, 24)), (4, True, (13, 22))]
)
def test_scam_matches_row_by_row_reference(downscale, antialias, size):
    m = _scam(downscale=downscale, antialias=antialias)
    x_l, x_r = torch.randn(2, 2, 8, *size, dtype=torch.float64)  # a batch of two
    with torch.no_grad():
        got, want = m(x_l, x_r), _reference_scam(m, x_l, x_r)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_scam_information_crosses_views():
    m = _scam()
    x_l, x_r = torch.randn(2, 1, 8, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        y_l, y_r = m(x_l, x_r)
        y_l2, _ = m(x_l, x_r + torch.randn_like(x_r))  # perturb the right view only
        _, z_r = m(x_l + torch.randn_like(x_l), x_r)  # perturb the left view only
    assert (y_l2 - y_l).abs().max() > 1e-3  # right → left
    assert (z_r - y_r).abs().max() > 1e-3  # left → right


@pytest.mark.parametrize("downscale", [1, 4])
def test_scam_view_swap_equivariance(downscale):
    x_l, x_r = torch.randn(2, 2, 8, 16, 20, dtype=torch.float64)
    tied = _scam(downscale=downscale, tie=True)
    with torch.no_grad():
        y_l, y_r = tied(x_l, x_r)
        s_l, s_r = tied(x_r, x_l)
    torch.testing.assert_close(s_l, y_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s_r, y_l, rtol=1e-10, atol=1e-12)
    assert (y_l - x_l).abs().max() > 1e-3  # the cross-view term is really there
    # The official module has separate left/right weights: untied, the views are not
    # interchangeable (guards against the two views accidentally sharing one module).
    untied = _scam(downscale=downscale)
    with torch.no_grad():
        y_l, y_r = untied(x_l, x_r)
        s_l, _ = untied(x_r, x_l)
    assert (s_l - y_r).abs().max() > 1e-3


@pytest.mark.parametrize(
    # Without antialiasing a ¼-row is a 4-tap cubic of exactly its own 4 input rows and nearest
    # upsampling returns it to those rows, so row 13 only reaches rows 12–15. Antialiased bicubic
    # ×¼ has a support of ±8 input rows, i.e. ¼-rows within ±2 of row 13's: rows 4–23 at most.
    "antialias,allowed",
    [(False, range(12, 16)), (True, range(4, 24))],
)
def test_scam_attention_is_row_wise(antialias, allowed):
    m = _scam(antialias=antialias)
    x_l, x_r = torch.randn(2, 1, 8, 32, 24, dtype=torch.float64)
    bumped = x_r.clone()
    bumped[..., 13, :] += 2 * torch.randn(8, 24, dtype=torch.float64)
    with torch.no_grad():
        y_l, _ = m(x_l, x_r)
        z_l, _ = m(x_l, bumped)
    change = (z_l - y_l).abs().amax(dim=(0, 1, 3))  # per output row
    outside = [r for r in range(32) if r not in allowed]
    assert change[outside].max() <= 1e-12, change
    assert change[13] > 1e-3
    if not antialias:
        assert (change[12:16] > 1e-3).all()  # the whole ¼-row block, nearest upsampled


@pytest.mark.parametrize("downscale", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scam_odd_sizes(downscale, dtype):
    m = _scam(downscale=downscale).to(dtype)
    for size in [(37, 53), (3, 5), (1, 1)]:
        x_l, x_r = torch.randn(2, 2, 8, *size, dtype=dtype)
        with torch.no_grad():
            y_l, y_r = m(x_l, x_r)
        assert y_l.shape == y_r.shape == x_l.shape and y_l.dtype == y_r.dtype == dtype
        assert torch.isfinite(y_l).all() and torch.isfinite(y_r).all()


# --- Whole networks ---------------------------------------------------------------------------


# Whole networks run in float32: the shared time embedding is float32 whatever the weights are
# (see test_network_odd_sizes_keep_shape_and_dtype). Deviations are then float32 round-off of
# outputs of order 1–10, far below the changes the tests look for.
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _net(kind: str, cfg: NAFNetConfig = TINY, seed: int = 0, tie: bool = False):
    torch.manual_seed(seed)
    net = (StereoConditionalNAFNet if kind == "conditional" else StereoNAFNet)(cfg)
    _randomise(net, seed)
    if tie:
        _tie(net)
    return net.eval()


def _run(net, x, mu, t):
    with torch.no_grad():
        return net(x, mu, t) if isinstance(net, ConditionalNAFNet) else net(mu)


@pytest.mark.parametrize("kind", ["conditional", "plain"])
def test_network_view_swap_equivariance(kind):
    net = _net(kind, tie=True)
    x, mu = torch.randn(2, 2, 6, 20, 24)
    t = torch.tensor([3, 40])
    out, swapped = _run(net, x, mu, t), _run(net, _swap(x), _swap(mu), t)
    torch.testing.assert_close(swapped, _swap(out), **TOL)
    # Not trivially symmetric: the left output does depend on the right input.
    mu2 = mu.clone()
    mu2[:, 3:] += torch.randn_like(mu2[:, 3:])
    x2 = x.clone()
    x2[:, 3:] += torch.randn_like(x2[:, 3:])
    assert (_run(net, x2, mu2, t)[:, :3] - out[:, :3]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["conditional", "plain"])
def test_network_without_scam_is_two_mono_networks(kind):
    """With SCAM's β/γ at zero (fresh) each view must go through exactly the mono network: this
    checks the channel split, the per-view [x_t − μ, μ] conditioning, the t duplication and the
    L‖R reassembly against the existing nets, and the documented state-dict layout."""
    net = _net(kind)
    mono = (ConditionalNAFNet if kind == "conditional" else NAFNet)(TINY).eval()
    state = {
        k.replace(".block.", "."): v for k, v in net.state_dict().items() if ".fusion." not in k
    }
    mono.load_state_dict(state)  # strict: every mono weight is there
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SCAM):
                m.beta.zero_()
                m.gamma.zero_()
    x, mu = torch.randn(2, 2, 6, 19, 21)
    t = torch.tensor([5, 60])
    out = _run(net, x, mu, t)
    for view in (slice(0, 3), slice(3, 6)):
        want = _run(mono, x[:, view], mu[:, view], t)
        torch.testing.assert_close(out[:, view], want, **TOL)


@pytest.mark.parametrize(
    "kind,dtype",
    [
        ("conditional", torch.float32),
        ("plain", torch.float32),
        ("plain", torch.float64),
        ("conditional", torch.float64),
    ],
)
def test_network_odd_sizes_keep_shape_and_dtype(kind, dtype):
    net = _net(kind, cfg=NAFNetConfig(width=8)).to(dtype)  # 4 levels: padded to 48×64
    x, mu = torch.randn(2, 1, 6, 37, 53, dtype=dtype)
    out = _run(net, x, mu, 7)
    assert out.shape == (1, 6, 37, 53) and out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["conditional", "plain"])
def test_network_batch_does_not_mix_samples(kind):
    net = _net(kind)
    x, mu = torch.randn(2, 2, 6, 16, 20)
    t = torch.tensor([4, 90])  # different times per sample: sample 0's views must both get t=4
    out = _run(net, x, mu, t)
    x2, mu2 = x.clone(), mu.clone()
    x2[1], mu2[1] = torch.randn_like(x2[1]), torch.randn_like(mu2[1])
    changed = _run(net, x2, mu2, torch.tensor([4, 11]))
    torch.testing.assert_close(changed[0], out[0], **TOL)
    alone = _run(net, x[:1], mu[:1], t[:1])
    torch.testing.assert_close(alone[0], out[0], **TOL)
    assert (changed[1] - out[1]).abs().max() > 1e-4


def test_network_rejects_mono_input():
    net = _net("conditional")
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="left‖right"):
        net(x, x, 1)


# --- Sizes ------------------------------------------------------------------------------------


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _block_widths(cfg: NAFNetConfig) -> list[int]:
    w, levels = cfg.width, len(cfg.enc_blocks)
    enc = [w * 2**i for i, n in enumerate(cfg.enc_blocks) for _ in range(n)]
    dec = [
        w * 2**i
        for i, n in zip(reversed(range(levels)), cfg.dec_blocks, strict=True)
        for _ in range(n)
    ]
    return enc + [w * 2**levels] * cfg.middle_blocks + dec


@pytest.mark.parametrize("kind", ["conditional", "plain"])
def test_parameter_count_adds_one_scam_per_block(kind):
    """Counted from the module description, not from the code: a SCAM on c channels has two
    LayerNorms (gain + bias: 4c), four 1×1 convs (4c² + 4c) and β, γ (2c)."""
    cfg = NAFNetConfig(width=16)
    stereo = (StereoConditionalNAFNet if kind == "conditional" else StereoNAFNet)(cfg)
    mono = (ConditionalNAFNet if kind == "conditional" else NAFNet)(cfg)
    added = sum(4 * c * c + 10 * c for c in _block_widths(cfg))
    print(f"{kind}: mono {_params(mono):,} stereo {_params(stereo):,}")
    assert _params(stereo) - _params(mono) == added
    assert 1e6 < _params(stereo) < 2e6  # width 16, one block per level: about 1.1–1.7M


def test_paper_size_matches_the_official_count():
    """Fact sheet §3.1/§3.2: the official w64 enc [1,1,1,28] networks have 76.61M (mono) and
    112.03M (stereo) parameters. The official LayerNorm has no bias; ours does (2 per NAFBlock,
    2 per SCAM), so those are left out before comparing. Built on the meta device: no memory."""
    cfg = NAFNetConfig(width=64, enc_blocks=(1, 1, 1, 28))
    with torch.device("meta"):
        mono, stereo = ConditionalNAFNet(cfg), StereoConditionalNAFNet(cfg)

    def official(net: torch.nn.Module) -> int:
        ln_bias = sum(m.bias.numel() for m in net.modules() if type(m).__name__ == "LayerNorm2d")
        return _params(net) - ln_bias

    assert round(official(mono) / 1e6, 2) == 76.61
    assert round(official(stereo) / 1e6, 2) == 112.03
    assert sum(isinstance(m, NAFBlock) for m in stereo.modules()) == len(_block_widths(cfg))


@pytest.mark.parametrize("downscale", [1, 4])
def test_tied_scam_has_one_weight_set_and_is_swap_equivariant(downscale):
    """``tied=True`` is the tied layout built in: no right-view parameters, and exactly
    equivariant to the view swap whatever its (random) weights."""
    torch.manual_seed(1)
    tied = SCAM(8, downscale, tied=True).double()
    _randomise(tied, seed=3)
    names = {n for n, _ in tied.named_parameters()}
    assert not any(n.startswith(("r_", "norm_r", "gamma")) for n in names)
    untied = SCAM(8, downscale)
    assert sum(p.numel() for p in untied.parameters()) == 2 * sum(
        p.numel() for p in tied.parameters()
    )
    x_l, x_r = torch.randn(2, 2, 8, 12, 20, dtype=torch.float64)
    with torch.no_grad():
        y_l, y_r = tied(x_l, x_r)
        s_l, s_r = tied(x_r, x_l)
    torch.testing.assert_close(s_l, y_r)
    torch.testing.assert_close(s_r, y_l)
    assert (y_l - x_l).abs().max() > 1e-3  # the randomised module does something


def test_nafssr_upscales_both_views_onto_the_bicubic_and_is_swap_equivariant_when_tied():
    from irctl.data.resize import upscale
    from irctl.nets.stereo import NAFSSR

    torch.manual_seed(0)
    net = NAFSSR(width=8, blocks=2, upscale=4, tied=True).double().eval()
    _randomise(net, seed=5)
    lq = torch.rand(2, 6, 10, 14, dtype=torch.float64)
    with torch.no_grad():
        out = net(lq)
        swapped = net(_swap(lq))
    assert out.shape == (2, 6, 40, 56)
    torch.testing.assert_close(swapped, _swap(out))
    # With the last conv zeroed the network is exactly the bicubic upsampling of each view.
    with torch.no_grad():
        net.up[0].weight.zero_()
        net.up[0].bias.zero_()
        torch.testing.assert_close(net(lq), upscale(lq, 4))
