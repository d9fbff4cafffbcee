"""MATLAB-compatible ``imresize(..., 'bicubic')`` in torch, batched, CPU or CUDA.

MATLAB's rule, re-implemented from its definition:

* cubic kernel with ``a = -0.5`` (Keys): ``1.5|x|^3 - 2.5|x|^2 + 1`` on ``|x| <= 1``,
  ``-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` on ``1 < |x| <= 2``;
* output pixel ``i`` (1-based) maps to input coordinate ``u = i/s + (1 - 1/s)/2``;
* when shrinking (``s < 1``) with antialiasing the kernel is stretched: ``s * k(s * x)`` over a
  width ``4/s``;
* weights are normalised to sum to one; out-of-range taps are mirrored (symmetric padding);
* output length is ``ceil(s * n)`` when a scale is given.

Each axis is a dense ``(out, in)`` matrix, so a resize is two matrix products; the matrices are
cached per (length, scale, device, dtype). The two axes are linear and separable, so the order of
the passes only changes floating-point rounding (MATLAB resizes the more-shrunk axis first; we do
height, then width, as MATLAB does for equal scales).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def cubic(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's bicubic kernel (``a = -0.5``)."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


@lru_cache(maxsize=64)
def _weights_cpu(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """The ``(out_len, in_len)`` float64 resampling matrix along one axis."""
    kernel_width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        kernel_width = kernel_width / scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based input indices
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if stretch else cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # Symmetric (mirror) padding: MATLAB's aux = [1:n, n:-1:1].
    period = 2 * in_len
    k = torch.remainder(idx.long() - 1, period)
    k = torch.where(k < in_len, k, period - 1 - k)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, k, w)
    return mat


def resize_matrix(
    in_len: int,
    out_len: int,
    scale: float | None = None,
    *,
    antialias: bool = True,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``(out_len, in_len)`` MATLAB-bicubic resampling matrix; ``scale`` defaults to out/in."""
    s = float(scale) if scale is not None else out_len / in_len
    return _weights_cpu(int(in_len), int(out_len), s, bool(antialias)).to(device=device, dtype=dtype)


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size for a scale factor: ``ceil(scale * n)`` per axis."""
    return tuple(int(math.ceil(scale * n - 1e-9)) for n in size)  # type: ignore[return-value]


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resize ``(..., H, W)`` images like MATLAB ``imresize(x, scale, 'bicubic')``.

    Give either ``scale`` (same on both axes) or ``size=(H_out, W_out)``. The result is not clamped
    or rounded (MATLAB rounds only for integer inputs; do ``round(255 * y) / 255`` to emulate an
    8-bit output). ``compute_dtype`` defaults to float64 on CPU and the input's float dtype on CUDA.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    if x.ndim < 2:
        raise ValueError(f"expected (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    if size is None:
        assert scale is not None
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out_h, out_w = output_size((h, w), scale)
        sh = sw = float(scale)
    else:
        out_h, out_w = int(size[0]), int(size[1])
        sh, sw = out_h / h, out_w / w
    if compute_dtype is None:
        compute_dtype = torch.float64 if x.device.type == "cpu" else (
            x.dtype if x.dtype.is_floating_point else torch.float32
        )
    y = x.to(compute_dtype)
    if (out_h, sh) != (h, 1.0):
        mh = resize_matrix(h, out_h, sh, antialias=antialias, device=x.device, dtype=compute_dtype)
        y = torch.matmul(mh, y)
    if (out_w, sw) != (w, 1.0):
        mw = resize_matrix(w, out_w, sw, antialias=antialias, device=x.device, dtype=compute_dtype)
        y = torch.matmul(y, mw.transpose(0, 1))
    out_dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    return y.to(out_dtype)


def bicubic_downscale_8bit(hr: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """MATLAB-bicubic ``1/factor`` (antialiased), rounded to 8 bits; input and output in ``[0, 1]``."""
    y = imresize(hr, 1.0 / factor)
    return y.mul(255.0).round_().clamp_(0.0, 255.0).div_(255.0).to(hr.dtype)
