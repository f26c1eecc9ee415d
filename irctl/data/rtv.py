"""Relative Total Variation (RTV) smoothing and the texture residual it leaves.

DTPM (Ye et al., CVPR 2024, Eq. 4) defines an image's texture as r = x − S(x), with S the
edge-preserving smoothing of Xu, Yan, Xia and Jia, "Structure Extraction from Texture via Relative
Total Variation", ACM TOG 31(6), 2012. This module implements S as that paper defines it and as
the authors' reference MATLAB code (``tsmooth.m``, v1.0, 2012) computes it.

The paper (equation numbers of Xu et al. 2012)
-----------------------------------------------
Eq. (4), the RTV objective, for an input I and its structure S::

    argmin_S  Σ_p (S_p − I_p)² + λ·( D_x(p) / (L_x(p) + ε) + D_y(p) / (L_y(p) + ε) )

with the windowed total variation D_x(p) = Σ_{q∈R(p)} g_{p,q}·|(∂_x S)_q| (Eq. 2), the windowed
inherent variation L_x(p) = |Σ_{q∈R(p)} g_{p,q}·(∂_x S)_q| (Eq. 3) and g_{p,q} a Gaussian of
scale σ (the texture scale). Section 4 makes the penalty quadratic, Σ_q u_{x,q}·w_{x,q}·(∂_x S)_q²,
with (Eq. 6-7)::

    u_x = G_σ * ( 1 / (|G_σ * ∂_x S| + ε) ),     w_x = 1 / (|∂_x S| + ε_s),

and each iteration t solves the linear system of Eq. (8)::

    (1 + λ·L^t) · v_S^{t+1} = v_I,    L^t = C_xᵀ U_x W_x C_x + C_yᵀ U_y W_y C_y,

C_x, C_y the forward-difference matrices, U, W diagonal. L^t is a weighted graph Laplacian on the
4-connected pixel grid, so the matrix is symmetric positive definite and sum-preserving.

What ``tsmooth.m`` does (and this module follows)
-------------------------------------------------
Where the code differs from the text, the code is followed, because it produced the paper's
figures and is what every later user (including, presumably, DTPM) ran:

* weights (``computeTextureWeights``), over the C channels of the current estimate S::

      w_o   = 1 / max( mean_c sqrt((∂_x S)² + (∂_y S)²), ε_s )          (one map for x and y)
      w_b,x = 1 / max( mean_c |∂_x (G_σ * S)|, ε ),   ε = 1e-3           (likewise y)
      w_x   = w_b,x · w_o,   w_y = w_b,y · w_o

  i.e. the outer Gaussian of u_x is dropped, G_σ*∂S is taken as ∂(G_σ*S), "+ε" becomes max(·, ε),
  w uses the gradient magnitude and both are shared by all channels (channel means);
* differences are forward differences with a zero in the last column / row, and the weight of the
  last column (x) and last row (y) is zero: no coupling across the image border (Neumann);
* G_σ is a separable, normalised 1-D Gaussian of odd length round(5σ) | 1, applied like MATLAB's
  ``conv2(·, 'same')``, i.e. with **zero padding** (so near the border the blurred image dips and
  w_b is smaller there; kept for fidelity);
* the system is ``(Id + (λ/2)·L_w)·S = I`` with L_w the 5-point Laplacian weighted by w_x, w_y
  (the code halves λ), solved per channel with one matrix shared by all channels, always from
  the original input I;
* 4 iterations by default, σ halved after every iteration and floored at 0.5
  (σ = 3, 1.5, 0.75, 0.5); defaults λ = 0.01, σ = 3, ε_s = 0.02.

Solver. ``tsmooth.m`` takes ``A\\b`` unless ``exist('ichol','builtin')`` (which is false for the
M-file ``ichol``), i.e. in practice an exact sparse Cholesky solve. SciPy has no sparse Cholesky.
Here the SPD system is solved matrix-free in torch, all channels as one C×H×W batch with the
shared weights, warm-started from the previous iteration's estimate, to a relative residual
``rtol`` per channel (default 1e-4): float64 iterative refinement around float32 conjugate
gradients preconditioned by a multigrid V-cycle (2×2 aggregation, Galerkin coarse grids, which
stay mass + 5-point Laplacian, down to 1×1; damped Jacobi smoothing). Since A = Id + (λ/2)·L_w ⪰
Id, the error obeys ‖S − S*‖₂ ≤ ‖b − A·S‖₂ ≤ rtol·‖I‖₂: an RMS error of at most 1e-4 for images in
[0, 1], 40× below one 8-bit level. Its condition number is at most 1 + 4λ·max w ≤ 2001 at the
defaults, whatever the image size, so the cost is linear in the pixel count. SuperLU
(``spsolve``/``splu``) refactorises every iteration and its fill grows faster than linearly (one
factorisation of a 512² system took 2.7 s), so it loses from about 256² up.

Inputs are H×W×C floating-point images in [0, 1] (the constants ε = 1e-3 and ε_s = 0.02 assume
that range). The computation runs in float64; the result is returned in the input's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "RTVParams",
    "gaussian_kernel",
    "rtv_smooth",
    "rtv_system",
    "sigma_schedule",
    "texture_residual",
    "texture_weights",
]

#: ε of Eq. (4): floor on the windowed inherent variation (``vareps`` in ``tsmooth.m``).
INHERENT_FLOOR = 1e-3
#: Smallest texture scale; ``tsmooth.m`` halves σ every iteration but never below this.
MIN_SIGMA = 0.5
#: Default relative residual ‖b − A·s‖ / ‖b‖ (per channel) at which conjugate gradients stop.
DEFAULT_RTOL = 1e-4
#: Conjugate-gradient iterations after which the solve gives up (never reached in practice).
MAX_CG_ITERATIONS = 5000
#: Relative residual of each float32 correction solve inside the float64 iterative refinement.
INNER_RTOL = 1e-2
#: Refinement rounds after which the solve gives up (about log(rtol)/log(INNER_RTOL) are needed).
MAX_REFINEMENTS = 50
#: Damping ω of the Jacobi smoother in the multigrid V-cycle (4/5: best smoothing of the 5-point
#: Laplacian; any ω ≤ 1 keeps the V-cycle positive definite).
JACOBI_DAMPING = 0.8


@dataclass(frozen=True)
class RTVParams:
    """Parameters of RTV smoothing; defaults are those of ``tsmooth.m``.

    ``lam`` is λ of Eq. (4) (larger: smoother; the code solves with λ/2), ``sigma`` the texture
    scale σ of the Gaussian window g (Eq. 2-3) in the first iteration, ``sharpness`` ε_s (smaller:
    sharper edges), ``iterations`` the number of re-weighted solves of Eq. (8).
    """

    lam: float = 0.01
    sigma: float = 3.0
    sharpness: float = 0.02
    iterations: int = 4

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"RTV λ (lam) must be a finite number >= 0, got {self.lam!r}")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"RTV σ (sigma) must be a finite number > 0, got {self.sigma!r}")
        if not (math.isfinite(self.sharpness) and self.sharpness > 0):
            raise ValueError(
                f"RTV sharpness ε_s must be a finite number > 0, got {self.sharpness!r}"
            )
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int | np.integer):
            raise ValueError(f"RTV iterations must be an integer, got {self.iterations!r}")
        if self.iterations < 0:
            raise ValueError(f"RTV iterations must be >= 0, got {self.iterations!r}")


def sigma_schedule(params: RTVParams) -> list[float]:
    """The texture scale of each iteration: σ, σ/2, σ/4, … floored at 0.5 (``tsmooth.m``)."""
    out = []
    sigma = float(params.sigma)
    for _ in range(params.iterations):
        out.append(sigma)
        sigma = max(sigma / 2.0, MIN_SIGMA)
    return out


def gaussian_kernel(sigma: float) -> NDArray[np.float64]:
    """Normalised 1-D Gaussian of odd length ``round(5σ) | 1`` (MATLAB ``fspecial('gaussian')``).

    The window g_{p,q} of Eq. (2)-(3); MATLAB rounds halves away from zero, hence floor(x + ½).
    """
    size = math.floor(5.0 * sigma + 0.5) | 1
    half = (size - 1) / 2.0
    t = np.arange(size, dtype=np.float64) - half
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def _forward_differences(img: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
    """∂_x and ∂_y of an H×W×C array as forward differences, zero in the last column / row."""
    dx = np.zeros_like(img)
    dy = np.zeros_like(img)
    dx[:, :-1] = img[:, 1:] - img[:, :-1]
    dy[:-1, :] = img[1:, :] - img[:-1, :]
    return dx, dy


def texture_weights(
    s: NDArray[np.floating], sigma: float, sharpness: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The RTV weights (w_x, w_y), each H×W, of the current estimate ``s`` (H×W×C).

    ``tsmooth.m``'s ``computeTextureWeights``, the code's form of u·w in Eq. (6)-(7)::

        w_x = 1/max(mean_c |∂_x(G_σ * S)|, ε) · 1/max(mean_c ‖∇S‖, ε_s),   ε = 1e-3

    (likewise w_y). ``w_x[:, -1]`` and ``w_y[-1, :]`` are 0: no edge leaves the image.
    """
    s = np.asarray(s, dtype=np.float64)
    fx, fy = _forward_differences(s)
    w_o = 1.0 / np.maximum(np.sqrt(fx * fx + fy * fy).mean(axis=2), sharpness)

    g = gaussian_kernel(sigma)
    blurred = ndimage.correlate1d(s, g, axis=1, mode="constant", cval=0.0)
    blurred = ndimage.correlate1d(blurred, g, axis=0, mode="constant", cval=0.0)
    gx, gy = _forward_differences(blurred)
    w_bx = 1.0 / np.maximum(np.abs(gx).mean(axis=2), INHERENT_FLOOR)
    w_by = 1.0 / np.maximum(np.abs(gy).mean(axis=2), INHERENT_FLOOR)

    wx = w_bx * w_o
    wy = w_by * w_o
    wx[:, -1] = 0.0
    wy[-1, :] = 0.0
    return wx, wy


def rtv_system(wx: NDArray[np.floating], wy: NDArray[np.floating], lam: float) -> sp.csr_matrix:
    """The sparse matrix A = Id + (λ/2)·L_w of Eq. (8), as ``tsmooth.m`` builds it.

    Pixels are numbered row-major (p = i·W + j, NumPy's order). L_w is the weighted graph
    Laplacian of the 4-connected grid: the edge p–(p+1) has weight w_x[i, j], the edge p–(p+W)
    weight w_y[i, j]; A_pq = −(λ/2)·w_pq off the diagonal and A_pp = 1 + (λ/2)·Σ_q w_pq. Rows and
    columns of A sum to 1, so A·S = I preserves Σ S = Σ I. ``lam`` is the user-facing λ; the
    halving is the code's (``lambda = lambda/2.0``).
    """
    wx = np.asarray(wx, dtype=np.float64)
    wy = np.asarray(wy, dtype=np.float64)
    if wx.shape != wy.shape or wx.ndim != 2:
        raise ValueError(f"weights must be two H×W maps, got {wx.shape} and {wy.shape}")
    h, w = wx.shape
    n = h * w
    half = 0.5 * lam
    east = half * wx.ravel()  # edge p–(p+1); zero in the last column, so rows never wrap
    south = half * wy.ravel()  # edge p–(p+W); zero in the last row
    west = np.concatenate(([0.0], east[:-1]))
    north = np.concatenate((np.zeros(min(w, n)), south[: n - w]))
    diagonal = 1.0 + east + west + south + north
    diagonals = [diagonal]
    offsets = [0]
    if n > 1:
        diagonals += [-east[:-1], -east[:-1]]
        offsets += [1, -1]
    if h > 1:
        diagonals += [-south[:-w], -south[:-w]]
        offsets += [w, -w]
    return sp.diags(diagonals, offsets, shape=(n, n), format="csr")


class _Grid:
    """Id-like mass plus weighted 5-point Laplacian on an H×W grid, applied matrix-free.

    ``kx[i, j]`` couples (i, j)–(i, j+1), ``ky[i, j]`` couples (i, j)–(i+1, j) (the last column of
    ``kx`` and last row of ``ky`` are 0), ``mass`` is the diagonal of the Id part: 1 on the image,
    the pixel count of each block on coarse grids. Vectors are C×H×W; the grid is shared by all C.
    """

    def __init__(self, mass: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> None:
        self.mass, self.kx, self.ky = mass, kx, ky
        self.east, self.south = kx[:, :-1], ky[:-1, :]
        self.diag = mass + kx + ky
        self.diag[:, 1:] += self.east
        self.diag[1:, :] += self.south
        self.jacobi = JACOBI_DAMPING / self.diag

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """A·v."""
        out = self.diag * v
        out[..., :, :-1].addcmul_(self.east, v[..., :, 1:], value=-1.0)
        out[..., :, 1:].addcmul_(self.east, v[..., :, :-1], value=-1.0)
        out[..., :-1, :].addcmul_(self.south, v[..., 1:, :], value=-1.0)
        out[..., 1:, :].addcmul_(self.south, v[..., :-1, :], value=-1.0)
        return out

    def residual(self, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """b − A·v, in as many passes as A·v."""
        out = torch.addcmul(b, self.diag, v, value=-1.0)
        out[..., :, :-1].addcmul_(self.east, v[..., :, 1:])
        out[..., :, 1:].addcmul_(self.east, v[..., :, :-1])
        out[..., :-1, :].addcmul_(self.south, v[..., 1:, :])
        out[..., 1:, :].addcmul_(self.south, v[..., :-1, :])
        return out

    def coarsen(self) -> _Grid:
        """The Galerkin operator Pᵀ·A·P for P constant on 2×2 blocks: again mass plus a 5-point
        Laplacian, the coarse coupling of two blocks the sum of the fine ones between them."""
        kx, ky = _pad_even(self.kx), _pad_even(self.ky)
        kx = kx[0::2, 1::2] + kx[1::2, 1::2]
        ky = ky[1::2, 0::2] + ky[1::2, 1::2]
        return _Grid(_restrict(self.mass), kx, ky)


def _pad_even(t: torch.Tensor) -> torch.Tensor:
    """``t`` zero-padded at the bottom / right to even height and width."""
    h, w = t.shape[-2:]
    return F.pad(t, (0, w % 2, 0, h % 2)) if h % 2 or w % 2 else t


def _restrict(t: torch.Tensor) -> torch.Tensor:
    """Pᵀ·t: sums over 2×2 blocks (a last odd row / column forms blocks of its own)."""
    t = _pad_even(t)
    t = t[..., 0::2, :] + t[..., 1::2, :]
    return t[..., 0::2] + t[..., 1::2]


def _vcycle(grids: list[_Grid], r: torch.Tensor, level: int = 0) -> torch.Tensor:
    """One symmetric V-cycle for A·e = r from e = 0: damped Jacobi before and after the coarse
    correction, exact on the 1×1 grid at the bottom. A fixed SPD operator, so CG may use it."""
    grid = grids[level]
    if level == len(grids) - 1:
        return r / grid.diag
    e = grid.jacobi * r
    coarse = _vcycle(grids, _restrict(grid.residual(r, e)), level + 1)
    h, w = r.shape[-2:]
    e += coarse.repeat_interleave(2, -2)[..., :h, :].repeat_interleave(2, -1)[..., :w]
    return e.addcmul_(grid.jacobi, grid.residual(r, e))


def _dots(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum((-2, -1))


def _pcg(grids: list[_Grid], b: torch.Tensor, rtol: float) -> tuple[torch.Tensor, int]:
    """Multigrid-preconditioned CG for A·x_c = b_c from x = 0, every channel c at once, each
    with its own α, β, frozen once ‖b_c − A·x_c‖ ≤ rtol·‖b_c‖. Returns x and the iterations."""
    x = torch.zeros_like(b)
    r = b.clone()
    target = rtol * rtol * _dots(b, b)
    z = _vcycle(grids, r)
    p = z.clone()
    rz = _dots(r, z)
    for iteration in range(MAX_CG_ITERATIONS):
        active = _dots(r, r) > target
        if not bool(active.any()):
            return x, iteration
        ap = grids[0].apply(p)
        pap = _dots(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap, 0.0)[:, None, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        z = _vcycle(grids, r)
        rz_new = _dots(r, z)
        beta = torch.where(active & (rz > 0), rz_new / rz, 0.0)[:, None, None]
        p = z.addcmul_(beta, p)
        rz = rz_new
    raise RuntimeError(
        f"RTV conjugate gradients did not reach rtol={rtol:g} in {MAX_CG_ITERATIONS} iterations"
    )


def _solve(
    wx: NDArray[np.float64],
    wy: NDArray[np.float64],
    lam: float,
    b: torch.Tensor,
    s: torch.Tensor,
    rtol: float,
    iterations: list[int] | None = None,
) -> torch.Tensor:
    """(Id + (λ/2)·L_w)·S_c = b_c for the C×H×W float64 ``b``, from the guess ``s``, until
    ‖b_c − A·S_c‖ ≤ rtol·‖b_c‖ for every channel c.

    Iterative refinement: the residual is taken in float64 and the correction solved in float32
    by :func:`_pcg` to :data:`INNER_RTOL`, which is as far as float32 goes (its own rounding of
    A·v is ~1e-5·‖A‖ relative) and halves the memory traffic. The CG iteration counts of the
    inner solves are appended to ``iterations`` if given.
    """
    half = 0.5 * lam
    kx, ky = torch.from_numpy(half * wx), torch.from_numpy(half * wy)
    fine = _Grid(torch.ones_like(kx), kx, ky)
    grids = [_Grid(fine.mass.float(), kx.float(), ky.float())]
    while grids[-1].mass.shape != (1, 1):
        grids.append(grids[-1].coarsen())
    target = rtol * torch.linalg.vector_norm(b, dim=(-2, -1))
    for _ in range(MAX_REFINEMENTS):
        r = fine.residual(b, s)
        norm = torch.linalg.vector_norm(r, dim=(-2, -1))
        if bool((norm <= target).all()):
            return s
        correction, count = _pcg(grids, r.float(), INNER_RTOL)
        s = s + correction.double()
        if iterations is not None:
            iterations.append(count)
    raise RuntimeError(f"RTV solve did not reach rtol={rtol:g} in {MAX_REFINEMENTS} refinements")


def _check_image(x: NDArray[np.floating]) -> NDArray[np.floating]:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(
            f"RTV expects an H×W×C image (add a channel axis for grey: x[..., None]), got shape "
            f"{x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"RTV expects a floating-point image in [0, 1], got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"RTV got an empty image of shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("RTV input contains NaN or infinite values")
    return x


def rtv_smooth(
    x: NDArray[np.floating],
    params: RTVParams | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
) -> NDArray[np.floating]:
    """The RTV structure S of ``x`` (H×W×C, float, [0, 1]), same shape and dtype.

    Iterates Eq. (8) as ``tsmooth.m`` does: weights from the current estimate (first the input
    itself) at the current σ, then (Id + (λ/2)·L_w)·S = I for all channels with one matrix, σ
    halved after each step. λ = 0 or 0 iterations return a copy of the input. ``rtol`` is the
    per-channel relative residual at which each solve stops.
    """
    params = RTVParams() if params is None else params
    x = _check_image(x)
    if not (math.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    if params.lam == 0 or params.iterations == 0:
        return x.copy()

    b = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 2, 0), dtype=np.float64))
    s = b.clone()
    for sigma in sigma_schedule(params):
        wx, wy = texture_weights(s.permute(1, 2, 0).numpy(), sigma, params.sharpness)
        s = _solve(wx, wy, params.lam, b, s, rtol)
    return s.permute(1, 2, 0).numpy().astype(x.dtype)


def texture_residual(
    x: NDArray[np.floating],
    params: RTVParams | None = None,
    *,
    rtol: float = DEFAULT_RTOL,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """DTPM's split of ``x`` into structure and texture (Eq. 4 of Ye et al. 2024).

    Returns ``(smooth, residual)`` in ``x``'s dtype with smooth = :func:`rtv_smooth` and
    residual = x − smooth, neither clipped. The residual is that difference rounded once, so
    ``smooth + residual`` gives back ``x`` bit for bit wherever the difference is representable
    (e.g. wherever smooth lies in [x/2, 2x], Sterbenz) and to within one rounding elsewhere: a
    floating-point pair cannot do better in general (float32: x = 1/255 and smooth = 0.5 admit no
    residual r with fl(0.5 + r) = x).
    """
    smooth = rtv_smooth(x, params, rtol=rtol)
    residual = np.asarray(x) - smooth
    return smooth, residual
