"""Small building blocks shared by the ResShift networks.

* :class:`GroupNorm32` -- the UNet's group norm (32 groups) that always normalises in float32.
* :func:`timestep_embedding` -- the sinusoidal embedding of the (integer) diffusion step.
* :func:`attention` -- scaled dot-product attention through
  :func:`torch.nn.functional.scaled_dot_product_attention`, split over query blocks when the score
  matrix would be huge, so that a backend without a fused kernel still runs in bounded memory.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Above this many attention scores per call the queries are processed in blocks.
_MAX_SCORES_PER_CALL = 1 << 28


class GroupNorm32(nn.GroupNorm):
    """Group norm computed in float32 and cast back to the input dtype (as the official UNet does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """The UNet/Swin normalisation layer: 32 groups, eps 1e-5, float32 compute."""
    return GroupNorm32(32, channels)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t*f_k), sin(t*f_k)]`` with ``f_k = exp(-ln(max_period) k / (dim//2))``.

    ``timesteps`` is a 1-D tensor (integer or fractional); returns ``[len(timesteps), dim]`` float32.
    The float32 operation order matches the official code, so the result is bit-identical.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be 1-D, got shape {tuple(timesteps.shape)}")
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
    max_scores: int = _MAX_SCORES_PER_CALL,
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` for ``q, k, v`` of shape ``[..., L, E]``.

    Uses PyTorch's fused SDPA kernels (flash / memory-efficient on CUDA, the blocked flash kernel on
    CPU). If ``L * S`` exceeds ``max_scores`` the queries are split into blocks; every query row is
    independent, so the split does not change the result and bounds the memory of the math fallback.
    """
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    n_q, n_k = q.shape[-2], k.shape[-2]
    if n_q * n_k <= max_scores:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    block = max(1, max_scores // n_k)
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    for start in range(0, n_q, block):
        stop = min(start + block, n_q)
        part_bias = None if bias is None else bias[..., start:stop, :]
        out[..., start:stop, :] = F.scaled_dot_product_attention(
            q[..., start:stop, :], k, v, attn_mask=part_bias, scale=scale
        )
    return out
