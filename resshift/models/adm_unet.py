"""The ADM UNet (Dhariwal & Nichol, "guided diffusion"), configurable, with the official state_dict layout.

Hosts OpenAI's unconditional 256x256 ImageNet prior (``256x256_diffusion_uncond.pt``; constructor
arguments in :data:`ADM_256_UNCOND`) for the guided-prior baselines, and is the backbone of our
SR3-style network (:mod:`resshift.models.sr3_unet`). Only the network lives here: callers pass the
image in ``[-1, 1]`` and the (possibly fractional) timestep; samplers live in :mod:`resshift.diffusion`.

Layout (parameter names as in the official checkpoints):

* ``time_embed.{0,2}``: sinusoidal step embedding -> Linear-SiLU-Linear (4x model channels).
* ``input_blocks``: a 3x3 conv, then per level ``num_res_blocks`` ResBlocks (each followed by an
  attention block where the downsampling factor is in ``attention_ds``) and, between levels, a
  down-sampling ResBlock (``resblock_updown``) or a strided conv.
* ``middle_block``: ResBlock, attention, ResBlock.
* ``output_blocks``: mirrored, ``num_res_blocks + 1`` ResBlocks per level on the concatenated skip.
* ``out.{0,2}``: GroupNorm-SiLU-conv. With ``learn_sigma`` the last 3 output channels parameterise
  the variance (the samplers here use only the first 3, the noise prediction).

Attention uses the *legacy* QKV channel order of the released checkpoints (per head, q, k and v are
contiguous blocks of ``head_channels`` rows of the ``qkv`` 1x1 convolution) through PyTorch's SDPA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resshift.models.layers import attention, normalization, timestep_embedding

#: Constructor arguments matching OpenAI's ``256x256_diffusion_uncond.pt`` (flags
#: ``--attention_resolutions 32,16,8 --class_cond False --image_size 256 --learn_sigma True
#: --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True
#: --use_scale_shift_norm True``; 1000-step linear betas).
ADM_256_UNCOND: dict[str, Any] = {
    "in_channels": 3,
    "model_channels": 256,
    "out_channels": 6,
    "num_res_blocks": 2,
    "attention_ds": (8, 16, 32),
    "channel_mult": (1, 1, 2, 2, 4, 4),
    "num_head_channels": 64,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
}


class _Resample(nn.Module):
    """Nearest x2 up-sampling or 2x2 average-pool down-sampling, with an optional 3x3 conv."""

    def __init__(self, channels: int, up: bool, use_conv: bool) -> None:
        super().__init__()
        self.up = up
        # Official attribute names: ``Upsample.conv`` and ``Downsample.op``.
        if up:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else nn.Identity()
        else:
            self.op = (
                nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        return self.op(x)


class ResBlock(nn.Module):
    """GN-SiLU-conv, step-embedding FiLM (scale/shift or additive), GN-SiLU-dropout-conv, plus skip."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if self.updown:
            self.h_upd: nn.Module = _Resample(channels, up=up, use_conv=False)
            self.x_upd: nn.Module = _Resample(channels, up=up, use_conv=False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[2](self.h_upd(self.in_layers[:2](x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Full self-attention over all positions, legacy QKV order, residual, zero-initialised output."""

    def __init__(self, channels: int, num_head_channels: int = 64) -> None:
        super().__init__()
        if channels % num_head_channels:
            raise ValueError(f"{channels} channels are not divisible by {num_head_channels} per head")
        self.num_heads = channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        n = flat.shape[-1]
        d = c // self.num_heads
        qkv = self.qkv(self.norm(flat)).reshape(b, self.num_heads, 3, d, n).transpose(-1, -2)
        q, k, v = qkv.unbind(dim=2)  # each (b, heads, n, d)
        out = attention(q, k, v, scale=1.0 / math.sqrt(d))
        out = out.transpose(-1, -2).reshape(b, c, n)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the step embedding to its ResBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """ADM UNet: ``forward(x [B,C,H,W] in [-1,1], t [B]) -> [B, out_channels, H, W]``.

    ``H`` and ``W`` must be multiples of :attr:`size_multiple` (``2 ** (levels - 1)``).
    ``attention_ds`` lists the down-sampling factors (1, 2, 4, ...) at which attention blocks sit.
    """

    def __init__(
        self,
        in_channels: int = 3,
        model_channels: int = 128,
        out_channels: int = 3,
        num_res_blocks: int = 2,
        attention_ds: Sequence[int] = (16,),
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_head_channels: int = 64,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.channel_mult = tuple(channel_mult)
        self.config = {
            "in_channels": in_channels,
            "model_channels": model_channels,
            "out_channels": out_channels,
            "num_res_blocks": num_res_blocks,
            "attention_ds": list(attention_ds),
            "channel_mult": list(channel_mult),
            "num_head_channels": num_head_channels,
            "dropout": dropout,
            "use_scale_shift_norm": use_scale_shift_norm,
            "resblock_updown": resblock_updown,
        }
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        def resblock(ch: int, out: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(
                ch, emb_dim, out, dropout=dropout, use_scale_shift_norm=use_scale_shift_norm, **kw
            )

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_head_channels=num_head_channels)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [resblock(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = (
                    resblock(ch, ch, down=True) if resblock_updown else _Resample(ch, up=False, use_conv=True)
                )
                self.input_blocks.append(EmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(resblock(ch), attn(ch), resblock(ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [resblock(ch + skip_channels.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_ds:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(resblock(ch, ch, up=True) if resblock_updown else _Resample(ch, True, True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    @property
    def size_multiple(self) -> int:
        """Spatial sides must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        multiple = ADMUNet.size_multiple.fget(self)  # this UNet's own levels (subclasses may wrap the input)
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of {multiple}")
        dtype = self.time_embed[0].weight.dtype
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(dtype))
        h = x.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
