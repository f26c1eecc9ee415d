"""Tiled network evaluation (irctl/tiling.py): coverage, exactness and batching."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from allocations import LargeAllocations

from irctl.nets.nafnet import ConditionalNAFNet, NAFNetConfig
from irctl.tiling import (
    PER_IMAGE,
    SHARED,
    SPATIAL,
    Spatial,
    Tiler,
    TileSettings,
    blend_window,
    tile_layout,
)

H, W = 40, 56


def _image(shape=(1, 3, H, W), seed=0, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- tile_starts / blend_window ------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 16, 17, 40, 56, 63, 100])
@pytest.mark.parametrize("tile,overlap", [(8, 0), (8, 3), (16, 4), (16, 15), (24, 8), (32, 31)])
def test_tile_layout_covers_with_equal_tiles(length, tile, overlap):
    size, starts = tile_layout(length, tile, overlap)
    assert size <= min(tile, length)
    assert starts[0] == 0
    assert starts[-1] + size == length  # last tile flush with the end
    assert all(s >= 0 and s + size <= length for s in starts)  # every tile the same, in bounds
    assert all(b > a for a, b in itertools.pairwise(starts))
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        covered[s : s + size] = True
    assert bool(covered.all())
    if len(starts) > 1:
        overlaps = [a + size - b for a, b in itertools.pairwise(starts)]
        assert min(overlaps) >= overlap
        # No tile is wasted: the number of tiles is the minimum for this stride.
        assert len(starts) == math.ceil((length - size) / (tile - overlap)) + 1


def test_tile_layout_single_tile_when_it_fits_and_few_pixels_otherwise():
    assert tile_layout(40, 40, 8) == (40, [0])
    assert tile_layout(40, 64, 8) == (40, [0])
    assert tile_layout(40, 16, 0) == (14, [0, 13, 26])  # three tiles, shrunk to fit evenly
    assert tile_layout(512, 256, 32) == (192, [0, 160, 320])  # 3 tiles of 192, not of 256
    size, starts = tile_layout(600, 384, 32)
    assert len(starts) * size <= 1.1 * 600


@pytest.mark.parametrize("length", [1, 7, 16, 17, 40, 56, 63, 100, 1024, 2048])
@pytest.mark.parametrize("tile,overlap", [(8, 0), (8, 3), (16, 4), (16, 15), (24, 8), (512, 32)])
@pytest.mark.parametrize("align", [1, 16])
def test_full_tile_layout_keeps_every_tile_at_the_asked_size(length, tile, overlap, align):
    """ "full": the same tile count as "even", every tile exactly ``tile`` (aligned up, never
    past the image), spread evenly, overlapping by at least what was asked."""
    size, starts = tile_layout(length, tile, overlap, align, full=True)
    even_size, even_starts = tile_layout(length, tile, overlap, align)
    aligned = math.ceil(tile / align) * align
    assert size == min(length, aligned) if tile < length else size == length
    assert starts[0] == 0 and starts[-1] + size == length
    assert len(starts) <= len(even_starts) and size >= even_size
    covered = torch.zeros(length, dtype=torch.bool)
    for start in starts:
        covered[start : start + size] = True
    assert bool(covered.all())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(size - gap >= overlap for gap in gaps)
    assert max(gaps, default=0) - min(gaps, default=0) <= 1  # evenly spread


def test_full_tile_layout_sizes_of_the_official_benchmark():
    """512-px tiles with 32 px overlap: "even" shrinks them to 368 at 1024 and 448 (aligned
    to 16) at 2048, "full" keeps 512 at both, with more overlap."""
    assert tile_layout(1024, 512, 32, 16) == (368, [0, 328, 656])
    assert tile_layout(2048, 512, 32, 16)[0] == 448
    assert tile_layout(1024, 512, 32, 16, full=True) == (512, [0, 256, 512])
    assert tile_layout(2048, 512, 32, 16, full=True) == (512, [0, 384, 768, 1152, 1536])


@pytest.mark.parametrize(
    "h,w,overlap", [(16, 16, 4), (24, 16, 8), (5, 9, 3), (8, 8, 0), (6, 6, 10)]
)
def test_blend_window_shape_and_ramps(h, w, overlap):
    win = blend_window(h, w, overlap, torch.float64)  # every side borders another tile
    assert win.shape == (h, w)
    assert bool((win >= 0).all()) and bool((win <= 1).all())
    assert torch.equal(win, win.flip(0)) and torch.equal(win, win.flip(1))
    r_h, r_w = min(overlap, h // 2), min(overlap, w // 2)
    r_h, r_w = (r_h if r_h >= 2 else 0), (r_w if r_w >= 2 else 0)
    inner = win[r_h : h - r_h, r_w : w - r_w]
    assert torch.equal(inner, torch.ones_like(inner))
    if r_w:
        row = win[h // 2, :r_w]
        assert float(row[0]) == 0.0  # the outermost, zero-padded pixel of an inner side counts 0
        assert bool((row[1:] > row[:-1]).all())  # ramps up from the edge
    # Sides on the image border are not faded: nothing else covers those pixels.
    edge = blend_window(h, w, overlap, torch.float64, inner=(False, False, False, False))
    assert torch.equal(edge, torch.ones_like(edge))


def test_tiler_rejects_bad_settings():
    for kwargs in ({"tile": 16, "overlap": 16}, {"tile": -1}, {"overlap": -1}, {"batch": 0}):
        with pytest.raises(ValueError):
            Tiler(**kwargs)
    Tiler(tile=0, overlap=64)  # overlap is irrelevant when never tiling


# --- exactness -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cnafnet() -> ConditionalNAFNet:
    torch.manual_seed(0)
    net = ConditionalNAFNet(NAFNetConfig(width=8)).eval()
    # β/γ start at zero (every block is the identity): randomise them so the blocks matter.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(("beta", "gamma")):
                p.normal_(0, 0.5)
    return net


@pytest.mark.parametrize("tile", [0, 56, 64, 256])
def test_tile_covering_image_is_bit_identical(tiny_cnafnet, tile):
    x, mu = _image(seed=1), _image(seed=2)
    with torch.no_grad():
        direct = tiny_cnafnet(x, mu, 37)
        tiled = Tiler(tile=tile, overlap=8, batch=2).wrap(tiny_cnafnet, SPATIAL, SPATIAL, SHARED)(
            x, mu, 37
        )
    assert torch.equal(tiled, direct)


def test_nafnet_tiled_smaller_than_image_runs(tiny_cnafnet):
    """Tiles smaller than the image: same shape, finite, and close to (not equal to: the network's
    receptive field is global) the untiled output."""
    x, mu = _image(seed=1), _image(seed=2)
    with torch.no_grad():
        direct = tiny_cnafnet(x, mu, 5)
        tiled = Tiler(tile=32, overlap=8, batch=3).wrap(tiny_cnafnet, SPATIAL, SPATIAL, SHARED)(
            x, mu, 5
        )
    assert tiled.shape == direct.shape
    assert bool(torch.isfinite(tiled).all())
    assert not torch.equal(tiled, direct)


def _pointwise_net():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(6, 4, 1).double()

    def net(x, mu, t):
        return conv(torch.cat([x, mu], 1)) * t

    return net


@pytest.mark.parametrize(
    "tile,overlap,batch", [(16, 4, 1), (16, 4, 3), (24, 1, 2), (13, 5, 4), (32, 0, 1), (48, 8, 3)]
)
@pytest.mark.parametrize("full", [False, True])
def test_pointwise_net_tiled_equals_untiled(tile, overlap, batch, full):
    """Receptive field 0: the normalised blend must reproduce the untiled output everywhere,
    in either tile layout."""
    net = _pointwise_net()
    x, mu = _image((2, 3, H, W), 3, torch.float64), _image((2, 3, H, W), 4, torch.float64)
    tiler = Tiler(tile, overlap, batch, full=full)
    with torch.no_grad():
        direct = net(x, mu, 2.0)
        tiled = tiler.wrap(net, SPATIAL, SPATIAL, SHARED)(x, mu, 2.0)
    assert tiled.shape == direct.shape == (2, 4, H, W)
    assert torch.allclose(tiled, direct, atol=1e-12, rtol=0)


def test_full_layout_calls_the_network_on_tiles_of_one_size():
    """What "full" is for: the network sees one tensor shape whatever the image size."""
    shapes = set()

    def net(x):
        shapes.add(tuple(x.shape[-2:]))
        return x * 2.0

    for h, w in [(40, 56), (37, 100), (100, 33)]:
        Tiler(16, 4, 2, full=True).wrap(net, SPATIAL)(_image((1, 3, h, w)))
    assert shapes == {(16, 16)}
    settings = TileSettings(tile=16, overlap=4, layout="full")
    assert settings.on_grid(align=8).full and not TileSettings(tile=16).on_grid().full
    with pytest.raises(ValueError, match="tile layout"):
        TileSettings(layout="spread")


@pytest.mark.parametrize("tile,overlap", [(16, 2), (16, 4), (24, 8)])
def test_local_conv_tiled_equals_untiled(tile, overlap):
    """A 3x3 conv (radius 1): with overlap >= 1 every pixel has some tile that sees all its
    neighbours, so a seamless tiler reproduces the untiled output."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    x = _image(dtype=torch.float64)
    with torch.no_grad():
        direct = conv(x)
        tiled = Tiler(tile, overlap, 3).wrap(conv, SPATIAL)(x)
    assert torch.allclose(tiled, direct, atol=1e-6, rtol=0)


def test_local_conv_tiled_is_exact_away_from_tile_borders():
    """What does hold today: pixels whose 3x3 neighbourhood lies inside every tile covering them
    are exact, so the error is confined to tile borders (measures the normalisation)."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    x = _image(dtype=torch.float64)
    tile, overlap = 16, 4
    with torch.no_grad():
        direct = conv(x)
        tiled = Tiler(tile, overlap, 3).wrap(conv, SPATIAL)(x)
    bad = torch.zeros(H, W, dtype=torch.bool)
    th, tops = tile_layout(H, tile, overlap)
    tw, lefts = tile_layout(W, tile, overlap)
    for top in tops:
        for edge in (top, top + th - 1):
            if 0 < edge < H - 1:
                bad[edge, :] = True
    for left in lefts:
        for edge in (left, left + tw - 1):
            if 0 < edge < W - 1:
                bad[:, edge] = True
    err = (tiled - direct).abs().amax(dim=(0, 1))
    assert float(err[~bad].max()) < 1e-12


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize(
    "shape,tile,overlap",
    [
        ((1, 3, 40, 56), 16, 4),
        ((2, 3, 37, 23), 10, 3),
        ((3, 1, 50, 31), 17, 16),
        ((2, 3, 9, 64), 8, 0),
    ],
)
def test_identity_net_tiled_reproduces_input(shape, tile, overlap, batch):
    tiler = Tiler(tile, overlap, batch)
    x = _image(shape, seed=5, dtype=torch.float64)
    out = tiler.wrap(lambda a: a.clone(), SPATIAL)(x)
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-12, rtol=0)
    # float32: up to ~(tile/stride)² windows are summed per pixel, so allow a few ulp more.
    x = x.float()
    assert torch.allclose(tiler.wrap(lambda a: a.clone(), SPATIAL)(x), x, atol=4e-6, rtol=0)


# --- argument handling and batching --------------------------------------------------------------


def test_roles_cut_repeat_or_pass_each_argument_and_tiles_are_batched():
    """Spatial arguments are cut, a per-image one reaches every tile of its image unchanged
    (its row repeated for each tile of the call, tile-major), a shared one passes as it is."""
    x, mu = _image((2, 3, H, W), seed=6), _image((2, 3, H, W), seed=7)
    per_image = torch.tensor([3.0, 4.0])
    code = torch.randn(2, 5, 4, 4)  # a low-resolution global code: per image, not spatial
    seen = []

    def net(a, b, t, scale, g):
        seen.append((a.shape, b.shape, t, scale.clone(), g.clone()))
        return a - b + t * scale.view(-1, 1, 1, 1)

    tiler = Tiler(tile=16, overlap=4, batch=3)
    (th, tops), (tw, lefts) = tile_layout(H, 16, 4), tile_layout(W, 16, 4)
    n_tiles = len(tops) * len(lefts)
    wrapped = tiler.wrap(net, SPATIAL, SPATIAL, SHARED, PER_IMAGE, PER_IMAGE)
    out = wrapped(x, mu, 7, per_image, code)
    assert len(seen) == math.ceil(n_tiles / 3)
    sizes = [a[0] for a, *_ in seen]
    assert sum(sizes) == 2 * n_tiles and all(s == 2 * 3 for s in sizes[:-1])
    for a_shape, b_shape, t, scale, g in seen:
        k = a_shape[0] // 2
        assert tuple(a_shape[1:]) == (3, th, tw) and max(th, tw) <= 16 and b_shape == a_shape
        assert t == 7
        assert torch.equal(scale, per_image.repeat(k))  # [tile 0: img 0, img 1, tile 1: ...]
        assert torch.equal(g, code.repeat(k, 1, 1, 1))
    # Both spatial arguments were cut at the same place and each image kept its own value.
    assert torch.allclose(out, x - mu + 7 * per_image.view(2, 1, 1, 1), atol=1e-6)


def test_an_argument_that_fits_no_grid_is_an_error():
    """A low-resolution tensor declared spatial must not be cut at the wrong place or handed
    whole to every tile: the tiler refuses it."""
    x, small = _image((1, 3, H, W), seed=1), _image((1, 3, H // 2 + 1, W // 2), seed=2)
    with pytest.raises(ValueError, match="fits no tile grid"):
        Tiler(tile=16, overlap=4).wrap(lambda a, b: a, SPATIAL, SPATIAL)(x, small)
    with pytest.raises(ValueError, match="fits no tile grid"):
        Tiler(tile=16, overlap=4).wrap(lambda a, b: a, SPATIAL, Spatial(2))(x, x)


def test_a_per_image_argument_needs_one_row_per_image():
    x = _image((2, 3, H, W), seed=1)
    with pytest.raises(ValueError, match="per image"):
        Tiler(tile=16, overlap=4).wrap(lambda a, c: a, SPATIAL, PER_IMAGE)(x, torch.ones(1, 4))
    with pytest.raises(ValueError, match="tiling roles"):
        Tiler(tile=16, overlap=4).wrap(lambda a, c: a, SPATIAL)(x, torch.ones(2, 4))


def test_tile_settings_convert_pixels_to_a_grid_once():
    """--tile/--tile-overlap are image pixels; a latent grid f× coarser gets ⌈tile/f⌉ and
    ⌊overlap/f⌋, the overlap kept below the tile; 0 stays 'never tile'."""
    settings = TileSettings(tile=512, overlap=64, batch=2)
    assert settings.on_grid() == Tiler(512, 64, 2, 1)
    assert settings.on_grid(factor=4, align=16) == Tiler(128, 16, 2, 16)
    assert TileSettings(tile=30, overlap=29).on_grid(factor=4) == Tiler(8, 7, 4, 1)
    assert TileSettings(tile=0, overlap=64).on_grid(factor=4).tile == 0


def test_single_call_when_covering():
    calls = []

    def net(a):
        calls.append(a)
        return a

    x = _image(seed=8)
    Tiler(tile=64, overlap=8, batch=1).wrap(net, SPATIAL)(x)
    assert len(calls) == 1 and calls[0] is x


def test_tiles_of_a_multi_image_batch_stay_with_their_image():
    """With B images per call the net gets B·k tiles; every piece must go back to its image."""
    x = _image((3, 2, 33, 45), seed=9)
    per_image = torch.tensor([1.0, -2.0, 5.0]).view(3, 1, 1, 1)

    def net(a):
        # Tiles come in as [tile0 img0..img2, tile1 img0..img2, ...]: scale each by its image.
        return a * per_image.repeat(a.shape[0] // 3, 1, 1, 1)

    out = Tiler(tile=16, overlap=5, batch=2).wrap(net, SPATIAL)(x)
    assert torch.allclose(out, x * per_image, atol=1e-6)


def test_aligned_layout_keeps_tiles_a_multiple_of_the_network_padding():
    for length in (100, 333, 1000, 1024):
        size, starts = tile_layout(length, 256, 32, align=16)
        assert size == length or size % 16 == 0
        assert starts[-1] + size == length
        if len(starts) > 1:
            assert min(a + size - b for a, b in itertools.pairwise(starts)) >= 32


def test_restorers_align_tiles_to_their_networks_padding_multiple():
    """Each method asks its networks for their padding multiple (nothing outside reads the
    network's sizes): NAFNet U-Nets pad to 2^levels, latent Refusion's compressor to 2 latent
    pixels, NAFSSR not at all."""
    from irctl.methods import build_restorer
    from irctl.methods.base import SampleOptions
    from irctl.presets import load_preset

    restorer = build_restorer(load_preset("dehaze-latent-tiny"))
    options = SampleOptions.from_preset(restorer.preset, tile=300, overlap=40)
    compressor_tiler, net_tiler = restorer.tilers(options)
    assert net_tiler.align == restorer.net.multiple == 2 ** len(restorer.preset.network.enc_blocks)
    assert compressor_tiler.align == 2 and compressor_tiler.tile == net_tiler.tile == 75
    assert build_restorer(load_preset("denoise-tiny")).net.multiple == 16
    assert build_restorer(load_preset("stereo-sr-regression-tiny")).net.multiple == 1


# --- tiling on a coarser grid (latent Refusion's compressor) -------------------------------------


def test_grid_tiling_of_a_downscaling_net_matches_untiled():
    """An 'encoder' that maps each aligned 4×4 block to one latent pixel is local on the latent
    grid, so tiles laid out on that grid reproduce the untiled latent (blend weights sum to 1)."""
    x = _image((2, 3, 4 * 21, 4 * 30), seed=3)

    def encode(img: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(img, 4) * 3.0

    tiled = Tiler(tile=8, overlap=3, batch=2, align=2).wrap(encode, Spatial(4))(x)
    assert tiled.shape == (2, 3, 21, 30)
    assert torch.allclose(tiled, encode(x), atol=1e-6, rtol=0)


def test_grid_tiling_of_an_upscaling_net_cuts_each_argument_at_its_own_scale():
    """A 'decoder' taking (latent, image at 4× the latent size) gets matching boxes of both; a
    box mismatch would add the wrong image pixels and show up as a large error."""
    z = _image((1, 3, 13, 17), seed=4)
    img = _image((1, 3, 52, 68), seed=5)

    def decode(latent: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(latent, scale_factor=4, mode="nearest") + image

    tiled = Tiler(tile=6, overlap=2, batch=3).wrap(decode, SPATIAL, Spatial(4))(z, img)
    assert tiled.shape == img.shape
    assert torch.allclose(tiled, decode(z, img), atol=1e-6, rtol=0)


def test_grid_must_divide_the_input():
    with pytest.raises(ValueError, match="multiple of the grid"):
        Tiler(tile=8, overlap=2).wrap(lambda a: a, Spatial(4))(_image((1, 3, 30, 32)))


# --- the blend's arithmetic and memory -----------------------------------------------------------


def _blend_with_full_weight_map(net, x, tiler):
    """The blend written plainly: every tile's weighted prediction and its window added, in tile
    order, into full-size output and weight maps, then one division."""
    height, width = x.shape[-2:]
    th, tops = tile_layout(height, tiler.tile, tiler.overlap, tiler.align)
    tw, lefts = tile_layout(width, tiler.tile, tiler.overlap, tiler.align)
    out = weight = None
    for top, left in itertools.product(tops, lefts):
        pred = net(x[..., top : top + th, left : left + tw])
        k = pred.shape[-2] // th
        if out is None:
            out = pred.new_zeros((*pred.shape[:2], k * height, k * width))
            weight = pred.new_zeros((1, 1, k * height, k * width))
        inner = (top > 0, top + th < height, left > 0, left + tw < width)
        window = blend_window(k * th, k * tw, k * tiler.overlap, pred.dtype, inner)
        rows, cols = slice(k * top, k * (top + th)), slice(k * left, k * (left + tw))
        out[..., rows, cols] += pred * window
        weight[..., rows, cols] += window
    return out / weight


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize(
    "tile,overlap,batch", [(16, 4, 1), (16, 4, 3), (13, 5, 4), (24, 8, 2), (20, 0, 5)]
)
def test_blend_is_the_full_weight_map_blend_bit_for_bit(tile, overlap, batch, scale):
    """Weights rebuilt band by band, division in place: the same float32 sums in the same tile
    order, so the same bytes as full-size output and weight maps."""
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(3, 2 * scale * scale, 3, padding=1)

    def net(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pixel_shuffle(conv(x), scale) if scale > 1 else conv(x)

    x = _image((2, 3, H, W), seed=6)
    tiler = Tiler(tile, overlap, batch)
    with torch.no_grad():
        assert torch.equal(tiler.wrap(net, SPATIAL)(x), _blend_with_full_weight_map(net, x, tiler))


def test_blend_allocates_one_full_size_buffer():
    """The output is the tiler's only image-sized allocation (no weight map, no divided copy,
    no list of tile outputs), however many tiles and bands."""
    x = _image((1, 3, 4 * H, 4 * W), seed=7)
    allocations = LargeAllocations(x[0, 0].numel())  # a one-channel image-sized map counts
    tiled = Tiler(tile=48, overlap=8, batch=3).wrap(lambda a: a * 2.0, SPATIAL)
    with torch.no_grad(), allocations:
        tiled(x)
    assert allocations.shapes == [tuple(x.shape)]
