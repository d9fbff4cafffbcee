"""Guided priors: known x4 degradation operators, DDNM and DDRM over an unconditional Gaussian prior.

Operators are *separable*: ``A x = M_h x M_w^T`` per channel, with one 1-D matrix per axis:

* ``"avgpool"``: 4x4 block average; its pseudo-inverse is nearest-neighbour replication (``4 M^T``).
* ``"bicubic"``: MATLAB ``imresize(x, 1/4)`` (cubic kernel ``a = -0.5`` widened 4x for
  antialiasing, weights normalised per output pixel, symmetric boundary), the operator behind
  MATLAB-bicubic LR test sets. Its pseudo-inverse is the exact least-squares one, from the SVD.

The SVD of a separable operator is the Kronecker product of the per-axis SVDs
(``M = U diag(s) V^T`` per axis; singular values ``s_h[i] s_w[j]``), which gives DDRM its spectral
domain and DDNM+ its per-component noise handling without forming any large matrix.

Samplers follow the papers' update rules (Wang et al., DDNM, ICLR 2023; Kawar et al., DDRM,
NeurIPS 2022) with the conventions of :mod:`resshift.diffusion.gaussian`: images in ``[-1, 1]``,
``levels`` = increasing ``alpha_bar``, one generator per image. ``sigma_y`` is the std of the
measurement noise **in the ``[-1, 1]`` range** (twice its value in ``[0, 1]`` units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from resshift.data.degradations.matlab_resize import resize_matrix
from resshift.diffusion.gaussian import EpsFn, StepCallback, _call, _levels, batch_randn, predict_x0

OPERATORS = ("avgpool", "bicubic")


# --------------------------------------------------------------------------------------------------
# 1-D operator matrices
# --------------------------------------------------------------------------------------------------


def avgpool_matrix(length: int, scale: int = 4) -> torch.Tensor:
    """``[length/scale, length]`` float64 block-average matrix."""
    if length % scale:
        raise ValueError(f"length {length} is not a multiple of the scale {scale}")
    m = torch.zeros(length // scale, length, dtype=torch.float64)
    for i in range(length // scale):
        m[i, i * scale : (i + 1) * scale] = 1.0 / scale
    return m


def bicubic_matrix(length: int, scale: int = 4) -> torch.Tensor:
    """``[length/scale, length]`` float64 matrix of MATLAB's antialiased bicubic ``imresize(., 1/scale)``
    (the one implementation, :func:`resshift.data.degradations.matlab_resize.resize_matrix`)."""
    if length % scale:
        raise ValueError(f"length {length} is not a multiple of the scale {scale}")
    return resize_matrix(length, length // scale, 1.0 / scale, antialias=True, dtype=torch.float64)


def operator_matrix(kind: str, length: int, scale: int = 4) -> torch.Tensor:
    """The 1-D matrix of operator ``kind`` (``"avgpool"`` or ``"bicubic"``)."""
    if kind == "avgpool":
        return avgpool_matrix(length, scale)
    if kind == "bicubic":
        return bicubic_matrix(length, scale)
    raise ValueError(f"unknown degradation operator {kind!r} (known: {', '.join(OPERATORS)})")


# --------------------------------------------------------------------------------------------------
# Separable operator with its SVD
# --------------------------------------------------------------------------------------------------


@dataclass
class _Axis:
    m: torch.Tensor  # [n, N]
    pinv: torch.Tensor  # [N, n]
    u: torch.Tensor  # [n, n]
    s: torch.Tensor  # [n]
    v: torch.Tensor  # [N, N] (first n columns span the row space)


def _axis(kind: str, length: int, scale: int, device: torch.device) -> _Axis:
    m = operator_matrix(kind, length, scale)
    u, s, vt = torch.linalg.svd(m, full_matrices=True)
    pinv = vt[: len(s)].T @ torch.diag(1.0 / s) @ u.T
    f32 = dict(device=device, dtype=torch.float32)
    return _Axis(m.to(**f32), pinv.to(**f32), u.to(**f32), s.to(**f32), vt.T.contiguous().to(**f32))


class SeparableOperator:
    """A known x``scale`` degradation ``y = A x`` of ``[B, C, H, W]`` images, with ``A^+`` and the SVD.

    Per-size matrices are built in float64 on first use and cached (float32, on the image's device).
    """

    def __init__(self, kind: str, scale: int = 4) -> None:
        if kind not in OPERATORS:
            raise ValueError(f"unknown degradation operator {kind!r} (known: {', '.join(OPERATORS)})")
        self.kind = kind
        self.scale = int(scale)
        self._cache: dict[tuple[int, str], _Axis] = {}

    def axis(self, length: int, device: torch.device | str) -> _Axis:
        key = (length, str(device))
        if key not in self._cache:
            self._cache[key] = _axis(self.kind, length, self.scale, torch.device(device))
        return self._cache[key]

    def _axes(self, hr_hw: tuple[int, int], device: torch.device) -> tuple[_Axis, _Axis]:
        return self.axis(hr_hw[0], device), self.axis(hr_hw[1], device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: ``[..., H, W] -> [..., H/s, W/s]``."""
        ah, aw = self._axes(x.shape[-2:], x.device)
        return ah.m @ x.float() @ aw.m.T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y``: ``[..., h, w] -> [..., s h, s w]`` (least-squares minimum-norm solution)."""
        ah, aw = self._axes((y.shape[-2] * self.scale, y.shape[-1] * self.scale), y.device)
        return ah.pinv @ y.float() @ aw.pinv.T

    # Spectral domain: x_bar = V^T x (V = V_h (x) V_w), y_bar = U^T y.
    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        ah, aw = self._axes(x.shape[-2:], x.device)
        return ah.v.T @ x.float() @ aw.v

    def from_spectral(self, xb: torch.Tensor) -> torch.Tensor:
        ah, aw = self._axes(xb.shape[-2:], xb.device)
        return ah.v @ xb @ aw.v.T

    def y_spectral(self, y: torch.Tensor) -> torch.Tensor:
        ah, aw = self._axes((y.shape[-2] * self.scale, y.shape[-1] * self.scale), y.device)
        return ah.u.T @ y.float() @ aw.u

    def singular_values(self, hr_hw: tuple[int, int], device: torch.device | str) -> torch.Tensor:
        """``[H, W]`` map of singular values in the spectral layout (zero outside the ``[h, w]`` block)."""
        ah, aw = self._axes(hr_hw, torch.device(device))
        out = torch.zeros(hr_hw, device=device)
        out[: len(ah.s), : len(aw.s)] = torch.outer(ah.s, aw.s)
        return out


# --------------------------------------------------------------------------------------------------
# DDNM
# --------------------------------------------------------------------------------------------------


def sample_ddnm(
    eps_fn: EpsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    op: SeparableOperator,
    levels: torch.Tensor | Sequence[float],
    generators: Sequence[torch.Generator],
    eta: float = 0.85,
    sigma_y: float = 0.0,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDNM: at every step replace the range-space part of ``x0_hat`` by the measurement's.

    Noiseless (``sigma_y = 0``): ``x0_hat <- x0_hat - A^+(A x0_hat - y)``, then
    ``x_next = sqrt(ab') x0_hat + sqrt(1-ab') (eta z + sqrt(1-eta^2) eps)``; the final output
    satisfies ``A x = y`` exactly (up to round-off).

    Noisy (DDNM+, ``sigma_y > 0``): per spectral component with singular value ``s``, the correction
    is scaled by ``lambda = min(1, sigma_t s / (a_t sigma_y))`` and the injected noise variance
    reduced to ``sigma_t^2 - (a_t lambda sigma_y / s)^2``, where ``a_t = sqrt(ab')`` and
    ``sigma_t = eta sqrt(1-ab')`` (so ``eta > 0`` is needed for any guidance).
    """
    lv = _levels(levels)
    y = y.float()
    if sigma_y > 0:
        s_map = op.singular_values(x.shape[-2:], x.device)
        in_range = s_map > 0
        h, w = y.shape[-2:]
        y_bar = op.y_spectral(y) / s_map[:h, :w]
    for i, ab in enumerate(lv):
        ab_next = lv[i + 1] if i + 1 < len(lv) else 1.0
        eps = _call(eps_fn, x, ab)
        x0 = predict_x0(x, eps, ab)
        c1 = math.sqrt(1.0 - ab_next) * eta
        c2 = math.sqrt(1.0 - ab_next) * math.sqrt(max(1.0 - eta * eta, 0.0))
        a = math.sqrt(ab_next)
        if sigma_y <= 0:
            x0_hat = x0 - op.pinv(op(x0) - y)
            x = a * x0_hat + c2 * eps
            if c1 > 0:
                x = x + c1 * batch_randn(x.shape, generators, x.device, x.dtype)
        else:
            xb = op.to_spectral(x0)
            lam = torch.zeros_like(s_map)
            lam[in_range] = (c1 * s_map[in_range] / (a * sigma_y)).clamp(max=1.0)
            xb_range = xb[..., :h, :w]
            xb[..., :h, :w] = xb_range - lam[:h, :w] * (xb_range - y_bar)
            x0_hat = op.from_spectral(xb)
            gamma = torch.full_like(s_map, c1 * c1)
            gamma[in_range] = (c1 * c1 - (a * lam[in_range] * sigma_y / s_map[in_range]) ** 2).clamp(min=0)
            z = op.to_spectral(batch_randn(x.shape, generators, x.device, x.dtype))
            x = a * x0_hat + c2 * eps + op.from_spectral(gamma.sqrt() * z)
        if callback is not None:
            callback(i, x, x0_hat)
    return x


# --------------------------------------------------------------------------------------------------
# DDRM
# --------------------------------------------------------------------------------------------------


def sample_ddrm(
    eps_fn: EpsFn,
    x_noise: torch.Tensor,
    y: torch.Tensor,
    op: SeparableOperator,
    levels: torch.Tensor | Sequence[float],
    generators: Sequence[torch.Generator],
    eta: float = 0.85,
    eta_b: float = 1.0,
    sigma_y: float = 0.0,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDRM in the operator's spectral domain, variance-exploding variables ``sigma = sqrt((1-ab)/ab)``.

    ``x_noise`` is standard normal noise of the HR shape (the start of the chain). Per spectral
    component with singular value ``s`` (``y_bar = (U^T y)/s``, ``n = sigma_y / s``), going to ``sigma'``:

    * null space (``s = 0``), or ``s sigma' = sigma_y``:
      ``x0 + sqrt(1-eta^2) sigma' eps_bar + eta sigma' z``;
    * less noisy than ``y`` (``sigma' < n``): ``x0 + sqrt(1-eta^2) sigma' (y_bar - x0)/n + eta sigma' z``;
    * noisier than ``y`` (``sigma' > n``): ``(1-eta_b) x0 + eta_b y_bar + sqrt(sigma'^2 - eta_b^2 n^2) z``.

    The start is ``y_bar + sqrt(sigma_T^2 - n^2) z`` where ``s sigma_T > sigma_y``, else ``sigma_T z``.
    The chain returns the last step's ``x`` (at ``sigma' = 0``, i.e. the final ``x0`` prediction).
    """
    lv = _levels(levels)
    dev = x_noise.device
    s_map = op.singular_values(x_noise.shape[-2:], dev)
    h, w = y.shape[-2:]
    s_r = s_map[:h, :w]
    y_bar = op.y_spectral(y.float()) / s_r
    nsr = sigma_y / s_r

    def sig(ab: float) -> float:
        return math.sqrt((1.0 - ab) / ab)

    # Initial state (VE, spectral), then to VP pixels.
    sigma_t = sig(lv[0])
    xb = sigma_t * op.to_spectral(x_noise.float())
    start = s_r * sigma_t > sigma_y
    xb_r = xb[..., :h, :w]
    zr = xb_r / sigma_t
    init_r = y_bar + (sigma_t**2 - nsr**2).clamp(min=0).sqrt() * zr
    xb[..., :h, :w] = torch.where(start, init_r, xb_r)
    x = math.sqrt(lv[0]) * op.from_spectral(xb)
    c = math.sqrt(max(1.0 - eta * eta, 0.0))
    for i, ab in enumerate(lv):
        ab_next = lv[i + 1] if i + 1 < len(lv) else 1.0
        sn = sig(ab_next)
        eps = _call(eps_fn, x, ab)
        x0 = predict_x0(x, eps, ab)
        x0b = op.to_spectral(x0)
        epsb = op.to_spectral(eps)
        z = op.to_spectral(batch_randn(x.shape, generators, dev, x.dtype))
        nxt = x0b + c * sn * epsb + eta * sn * z  # null space (and the boundary case)
        x0r, zr = x0b[..., :h, :w], z[..., :h, :w]
        after = s_r * sn < sigma_y
        before = s_r * sn > sigma_y
        safe_n = torch.where(after, nsr, torch.ones_like(nsr))
        val_after = x0r + c * sn * (y_bar - x0r) / safe_n + eta * sn * zr
        val_before = (1 - eta_b) * x0r + eta_b * y_bar + (sn**2 - (eta_b * nsr) ** 2).clamp(min=0).sqrt() * zr
        nxt_r = nxt[..., :h, :w]
        nxt[..., :h, :w] = torch.where(after, val_after, torch.where(before, val_before, nxt_r))
        x = math.sqrt(ab_next) * op.from_spectral(nxt)
        if callback is not None:
            callback(i, x, x0)
    return x
