"""Blur kernels of the Real-ESRGAN degradation model, sampled from a per-image ``torch.Generator``.

Kernel families (``k`` odd, grid ``x`` centred on the kernel, covariance
``S = R(theta) diag(sx^2, sy^2) R(theta)^T``, ``q = x^T S^-1 x``):

* ``iso`` / ``aniso``: Gaussian ``exp(-q / 2)`` (iso: ``sx = sy``, ``theta = 0``);
* ``generalized_iso`` / ``generalized_aniso``: ``exp(-q^beta / 2)``;
* ``plateau_iso`` / ``plateau_aniso``: ``1 / (q^beta + 1)``;
* ``sinc``: the circular low-pass filter ``wc J1(wc r) / (2 pi r)`` (``wc^2 / (4 pi)`` at the centre).

Every kernel is normalised to sum to one. Kernels are built in float64 on the CPU (they are tiny)
and returned as float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One draw from U(low, high) using ``gen`` (on whatever device the generator lives)."""
    u = torch.rand((), generator=gen, device=gen.device, dtype=torch.float64).item()
    return low + (high - low) * u


def choice(gen: torch.Generator, options: Sequence, probs: Sequence[float] | None = None):
    """Pick one of ``options`` (uniformly, or with ``probs``) using ``gen``."""
    if probs is None:
        probs = [1.0 / len(options)] * len(options)
    if len(probs) != len(options):
        raise ValueError(f"{len(options)} options but {len(probs)} probabilities")
    u = uniform(gen, 0.0, 1.0) * sum(probs)
    acc = 0.0
    for opt, p in zip(options, probs, strict=True):
        acc += p
        if u < acc:
            return opt
    return options[-1]


def _grid(k: int) -> torch.Tensor:
    """``(k, k, 2)`` float64 grid of (x, y) offsets from the kernel centre."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {k}")
    ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _quadratic_form(k: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    g = _grid(k)
    return torch.einsum("...i,ij,...j->...", g, inv, g)


def _normalise(kernel: torch.Tensor) -> torch.Tensor:
    return (kernel / kernel.sum()).float()


def gaussian_kernel(k: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """Anisotropic Gaussian kernel (isotropic when ``sigma_x == sigma_y``)."""
    return _normalise(torch.exp(-0.5 * _quadratic_form(k, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    k: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """Generalised Gaussian ``exp(-q^beta / 2)``."""
    return _normalise(torch.exp(-0.5 * _quadratic_form(k, sigma_x, sigma_y, theta).pow(beta)))


def plateau_kernel(k: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    """Plateau-shaped kernel ``1 / (q^beta + 1)``."""
    return _normalise(1.0 / (_quadratic_form(k, sigma_x, sigma_y, theta).pow(beta) + 1.0))


def sinc_kernel(k: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernel with cutoff ``cutoff`` (radians per pixel)."""
    g = _grid(k)
    r = g.pow(2).sum(-1).sqrt()
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), kernel)
    return _normalise(kernel)


def pulse_kernel(k: int = 1) -> torch.Tensor:
    """The identity kernel (a single one at the centre)."""
    kernel = torch.zeros(k, k)
    kernel[k // 2, k // 2] = 1.0
    return kernel


def _beta(gen: torch.Generator, beta_range: Sequence[float]) -> float:
    # Half of the draws below 1, half above (as the Real-ESRGAN reference does).
    if uniform(gen, 0.0, 1.0) < 0.5:
        return uniform(gen, beta_range[0], 1.0)
    return uniform(gen, 1.0, beta_range[1])


def random_mixed_kernel(
    gen: torch.Generator,
    kernel_size: int,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    sigma_range: Sequence[float],
    rotation_range: Sequence[float] = (-math.pi, math.pi),
    betag_range: Sequence[float] = (0.5, 4.0),
    betap_range: Sequence[float] = (1.0, 2.0),
) -> tuple[torch.Tensor, dict]:
    """Sample a kernel type and its parameters; return ``(kernel, params)``."""
    kind = choice(gen, list(kernel_list), list(kernel_prob))
    if kind not in KERNEL_TYPES:
        raise ValueError(f"unknown kernel type {kind!r}; known: {', '.join(KERNEL_TYPES)}")
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sx = uniform(gen, *sigma_range)
    if iso:
        sy, theta = sx, 0.0
    else:
        sy = uniform(gen, *sigma_range)
        theta = uniform(gen, *rotation_range)
    params: dict = {"type": kind, "size": kernel_size, "sigma_x": sx, "sigma_y": sy, "theta": theta}
    if kind.startswith("generalized"):
        params["beta"] = _beta(gen, betag_range)
        kernel = generalized_gaussian_kernel(kernel_size, sx, sy, theta, params["beta"])
    elif kind.startswith("plateau"):
        params["beta"] = _beta(gen, betap_range)
        kernel = plateau_kernel(kernel_size, sx, sy, theta, params["beta"])
    else:
        kernel = gaussian_kernel(kernel_size, sx, sy, theta)
    return kernel, params
