"""Pixel-space ResShift for small models: the ResShift chain with the identity as "autoencoder".

The chain, schedule, sampler and tiling are those of the latent method (:class:`ResShiftSR`); only
the space changes. x0 is the HR image in ``[-1, 1]``, the chain's endpoint y0 is the PyTorch-bicubic
x4 upsampling of the LR (exactly what :meth:`ResShiftSR.encode` computes, with an identity encoder),
and decoding is the identity. The denoiser is an :class:`~resshift.models.sr3_unet.SR3UNet` with
6 input channels ``[x_t / sqrt(kappa^2 eta_t + 1), bicubic_x4(lq)]`` that receives the raw integer
step index (``level_scale = 1``), as the Swin-UNet does. As in the official code's pixel branch
(``clip_denoised`` when there is no autoencoder) the x0 prediction is clamped to ``[-1, 1]`` while
sampling; training uses the raw prediction. With ``residual`` the network's output is added to
the bicubic upsampling of the LR (x0 = bicubic_x4(lq) + net(...)): a global skip connection, as
many SR networks have; it only reparametrises the x0-predictor, the chain is unchanged, and it
lets a briefly trained network start from the bicubic image instead of from zero.

Checkpoint: one ``.safetensors`` file whose metadata holds ``format`` (:data:`CHECKPOINT_FORMAT`) and
``config`` (JSON: ``model`` = SR3UNet arguments, ``schedule`` = :meth:`ResShiftSchedule.describe`,
plus training facts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resshift.diffusion.schedule import ResShiftSchedule
from resshift.methods.registry import register_method
from resshift.methods.resshift_method import ResShiftSR
from resshift.models.sr3_unet import SR3UNet, read_unet_file

CHECKPOINT_FORMAT = "resshift-bench/resshift-pixel/1"
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


def schedule_from_description(desc: dict[str, Any]) -> ResShiftSchedule:
    """Rebuild a :class:`ResShiftSchedule` from :meth:`ResShiftSchedule.describe` output."""
    if desc.get("schedule", "exponential") != "exponential":
        raise ValueError(f"unknown ResShift schedule {desc.get('schedule')!r}")
    return ResShiftSchedule.from_config(
        steps=int(desc["steps"]),
        kappa=float(desc["kappa"]),
        min_noise_level=float(desc["min_noise_level"]),
        etas_end=float(desc["etas_end"]),
        power=float(desc["power"]),
        legacy_cap=bool(desc.get("legacy_cap", False)),
    )


def save_checkpoint(path: str | Path, net: SR3UNet, schedule: ResShiftSchedule,
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                    residual: bool = False) -> Path:
    """Write the denoiser ``net`` (optionally cast to ``dtype``, e.g. fp16) with its schedule as metadata."""
    from safetensors.torch import save_file

    config = {"model": net.config, "schedule": schedule.describe(), "space": "pixel", "residual": bool(residual),
              **(extra or {})}
    state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in net.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": CHECKPOINT_FORMAT, "config": json.dumps(config)})
    return path


def load_checkpoint(path: str | Path) -> tuple[SR3UNet, ResShiftSchedule, dict[str, Any]]:
    """Read a file written by :func:`save_checkpoint`: ``(net in float32, eval mode; schedule; config)``."""
    net, config = read_unet_file(path, CHECKPOINT_FORMAT)
    return net, schedule_from_description(config["schedule"]), config


def build_pixel_resshift(net: SR3UNet, schedule: ResShiftSchedule, *, name: str = "resshift-pixel",
                         chop_size: int = 512, chop_stride: int | None = None, tile_batch: int = 1,
                         device: str = "cpu", dtype: str = "fp32", residual: bool = False,
                         provenance: dict[str, object] | None = None) -> ResShiftSR:
    """A :class:`ResShiftSR` on pixels: identity autoencoder, clamped x0, LR padded to the net's multiple."""
    denoiser = PixelResShiftNet(net, clip_x0=True, residual=residual)
    return ResShiftSR(
        denoiser,
        IdentityAutoencoder(),
        schedule,
        name=name,
        chop_size=chop_size,
        chop_stride=chop_stride,
        tile_batch=tile_batch,
        device=device,
        dtype=dtype,
        padding_offset=max(1, -(-net.size_multiple // SCALE)),
        provenance=provenance,
    )


@register_method("resshift-pixel")
def _build(checkpoint: str | None = None, chop_size: int = 512, chop_stride: int | None = None,
           tile_batch: int = 1, device: str = "cpu", dtype: str = "fp32") -> ResShiftSR:
    if not checkpoint:
        raise FileNotFoundError("resshift-pixel needs method.params.checkpoint=PATH (a resshift-pixel "
                                "safetensors file, e.g. one written by `python -m resshift.train.app`)")
    from resshift.provenance import file_sha256

    net, schedule, config = load_checkpoint(Path(checkpoint).expanduser())
    provenance = {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "space": "pixel",
                  "residual": bool(config.get("residual", False))}
    return build_pixel_resshift(
        net, schedule, chop_size=chop_size, chop_stride=chop_stride, tile_batch=tile_batch, device=device,
        dtype=dtype, residual=bool(config.get("residual", False)), provenance=provenance,
    )
