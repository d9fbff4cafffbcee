"""The pixel-space ResShift denoiser: an :class:`~resshift.models.sr3_unet.SR3UNet` with the LR as
conditioning, and the identity "autoencoder" that keeps the chain on pixels.

The network receives 6 channels ``[x_t / sqrt(kappa^2 eta_t + 1), bicubic_x4(lq)]`` and the raw integer
step index (``level_scale = 1``), as the Swin-UNet does, and predicts x0. With ``residual`` its output is
added to the bicubic upsampling of the LR (x0 = bicubic_x4(lq) + net(...)): a global skip connection
that only reparametrises the x0-predictor. Networks only: the chain and sampler are
:mod:`resshift.diffusion`, the SR method :mod:`resshift.methods.resshift_pixel`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resshift.models.sr3_unet import SR3UNet

SCALE = 4


class IdentityAutoencoder:
    """``encode`` and ``decode`` that return their input: the chain runs on pixels."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


def upsample_lq(lq: torch.Tensor) -> torch.Tensor:
    """PyTorch bicubic x4 (align_corners=False, no clamp): the pixel-space y0 and the conditioning."""
    return F.interpolate(lq, scale_factor=SCALE, mode="bicubic")


class PixelResShiftNet(nn.Module):
    """``forward(x_scaled [B,3,H,W], t [B] int, lq [B,3,H/4,W/4]) -> x0 [B,3,H,W]`` (all in ``[-1, 1]``).

    ``clip_x0`` clamps the prediction to ``[-1, 1]`` (set by the SR method, not during training);
    ``residual`` adds the bicubic upsampling of ``lq`` to the network output.
    """

    def __init__(self, net: SR3UNet, clip_x0: bool = False, residual: bool = False) -> None:
        super().__init__()
        if net.in_channels != 6 or net.out_channels != 3:
            raise ValueError(f"the pixel ResShift denoiser needs 6 -> 3 channels, got {net.in_channels} -> "
                             f"{net.out_channels}")
        self.net = net
        self.clip_x0 = bool(clip_x0)
        self.residual = bool(residual)

    @property
    def size_multiple(self) -> int:
        return self.net.size_multiple

    def forward(self, x_scaled: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        cond = upsample_lq(lq)
        out = self.net(torch.cat([x_scaled, cond.to(x_scaled.dtype)], dim=1), t.float())
        if self.residual:
            out = out + cond.to(out.dtype)
        return out.clamp(-1.0, 1.0) if self.clip_x0 else out
