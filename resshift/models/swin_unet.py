"""ResShift's denoiser: a UNet with ResBlocks and Swin layers (``models.unet.UNetModelSwin`` upstream).

Constructed from the ``model.params`` section of the official configs (same keyword names and
values); ``state_dict`` keys and shapes are identical to the official ones. Only the network lives
here: the caller scales the latent and passes the raw integer step and the LR image.

Layout (released configs, 64x64 latent): conv 6->160; per level (160, 320, 320, 640 channels at
64, 32, 16, 8) two ResBlocks, the first followed by a Swin layer where the resolution is in
``attention_resolutions``; a middle ResBlock-Swin-ResBlock; a mirrored decoder with skip
concatenation; GroupNorm-SiLU-conv out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resshift.models.fast import (
    Conv2d,
    fast_enabled,
    group_norm_silu,
    inplace_ok,
    nearest_upsample_conv,
    upsample_conv_fusable,
)
from resshift.models.layers import normalization, timestep_embedding
from resshift.models.swin import BasicLayer, SwinTransformerBlock, WindowAttention


class TimestepEmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the timestep embedding to the ResBlocks among its children."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.conv = Conv2d(channels, self.out_channels, 3, padding=1)
        self.use_conv = use_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_conv and fast_enabled() and upsample_conv_fusable(self.conv):
            return nearest_upsample_conv(self, self.conv, x)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride-2 3x3 conv, or 2x2 average pooling without a conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("Downsample without conv cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """GN-SiLU-conv, timestep FiLM (scale/shift or additive), GN-SiLU-dropout-conv, plus skip."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), Conv2d(channels, self.out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            Conv2d(self.out_channels, self.out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers[2](group_norm_silu(self.in_layers[0], x))
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            if inplace_ok():  # the same arithmetic, written into the fresh norm output
                h = F.silu(self.out_layers[0](h).mul_(1 + scale).add_(shift), inplace=True)
            else:
                h = self.out_layers[1](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = group_norm_silu(self.out_layers[0], h + emb_out)
        return self.out_layers[3](self.out_layers[2](h), residual=self.skip_connection(x))  # skip(x) + h


def _as_list(value: int | Sequence[int], n: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries, channel_mult has {n}")
    return value


class UNetModelSwin(nn.Module):
    """The Swin-UNet denoiser; keyword names and defaults follow the official class.

    ``forward(x, timesteps, lq)``: ``x`` is the (already scaled) latent ``[B, in_channels, H, W]``,
    ``timesteps`` the raw step indices ``[B]``, ``lq`` the LR image in [-1, 1]. ``H`` and ``W`` must
    be multiples of ``min_size_multiple`` (64 for the released configs).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int | Sequence[int],
        attention_resolutions: Sequence[int],
        dropout: float = 0,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        conv_resample: bool = True,
        dims: int = 2,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        swin_depth: int = 2,
        swin_embed_dim: int = 96,
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        patch_norm: bool = False,
        cond_lq: bool = True,
        cond_mask: bool = False,
        lq_size: int = 256,
    ):
        super().__init__()
        if dims != 2:
            raise ValueError(f"only dims=2 is supported, got {dims}")
        if use_fp16:
            raise ValueError(
                "use_fp16=True (fp16 weights) is not supported; keep fp32 weights and run under "
                "torch.autocast, or convert with .half()"
            )
        num_res_blocks = _as_list(num_res_blocks, len(channel_mult), "num_res_blocks")
        heads = num_heads if num_head_channels == -1 else swin_embed_dim // num_head_channels
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.channel_mult = tuple(channel_mult)
        self.cond_lq = cond_lq
        self.cond_mask = cond_mask
        self.lq_size = lq_size

        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )

        # LR conditioning: identity if the LR has the latent's size, else a strided conv stack.
        if cond_lq and lq_size == image_size:
            self.feature_extractor: nn.Module = nn.Identity()
            cond_chn = 4 if cond_mask else 3
        else:
            layers: list[nn.Module] = []
            feat_chn, cond_chn = (4 if cond_mask else 3), 16
            for _ in range(int(math.log(lq_size / image_size) / math.log(2))):
                layers += [
                    Conv2d(feat_chn, cond_chn, 3, 1, 1),
                    nn.SiLU(),
                    Downsample(cond_chn, True, out_channels=cond_chn * 2),
                ]
                cond_chn *= 2
                feat_chn = cond_chn
            self.feature_extractor = nn.Sequential(*layers)
        self.lq_factor = lq_size // image_size

        def swin(ch: int, res: int) -> BasicLayer:
            return BasicLayer(
                in_chans=ch, embed_dim=swin_embed_dim, num_heads=heads, window_size=window_size,
                depth=swin_depth, img_size=res, patch_size=1, mlp_ratio=mlp_ratio, qkv_bias=True,
                qk_scale=None, drop=dropout, attn_drop=0.0, drop_path=0.0, use_checkpoint=False,
                patch_norm=patch_norm,
            )

        def resblock(ch: int, out: int | None = None, **kw: bool) -> ResBlock:
            return ResBlock(ch, time_embed_dim, dropout, out_channels=out,
                            use_scale_shift_norm=use_scale_shift_norm, **kw)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(Conv2d(in_channels + cond_chn, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = image_size
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks[level]):
                blocks: list[nn.Module] = [resblock(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in self.attention_resolutions and j == 0:
                    blocks.append(swin(ch, ds))
                self.input_blocks.append(TimestepEmbedSequential(*blocks))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = resblock(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds //= 2

        self.middle_block = TimestepEmbedSequential(resblock(ch), swin(ch, ds), resblock(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                blocks = [resblock(ch + skip_chans.pop(), int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in self.attention_resolutions and i == 0:
                    blocks.append(swin(ch, ds))
                if level and i == num_res_blocks[level]:
                    up = resblock(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch)
                    blocks.append(up)
                    ds *= 2
                self.output_blocks.append(TimestepEmbedSequential(*blocks))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), Conv2d(input_ch, out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)
        self.min_size_multiple = self._size_multiple()

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the network's weights (the torso computes in it; float32 for the released models)."""
        return self.input_blocks[0][0].weight.dtype

    def _size_multiple(self) -> int:
        """Latent sides must be multiples of this (downsampling levels and Swin windows)."""
        multiple = 2 ** (len(self.channel_mult) - 1)
        for module in self.modules():
            if isinstance(module, BasicLayer):
                factor = self.image_size // module.input_resolution[0]
                window = module.blocks[0].window_size if len(module.blocks) else 1
                multiple = math.lcm(multiple, factor * window)
        return multiple

    def reset_buffers(self) -> None:
        """Recompute every deterministic buffer (Swin position indices and masks)."""
        for module in self.modules():
            if isinstance(module, (WindowAttention, SwinTransformerBlock)):
                module.reset_buffers()

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, lq: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h_in, w_in = x.shape[-2:]
        m = self.min_size_multiple
        if h_in % m or w_in % m:
            raise ValueError(
                f"latent size {h_in}x{w_in} is not a multiple of {m}; pad the input first "
                f"(the official sampler reflect-pads the LR to multiples of {m})"
            )
        dtype = self.dtype
        t_emb = timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype)
        emb = self.time_embed(t_emb).to(dtype)
        if lq is None:
            if self.cond_lq:
                raise ValueError("this model is conditioned on the LR image: pass lq=")
        else:
            if not self.cond_lq:
                raise ValueError("this model is not LR-conditioned (cond_lq=False) but lq was given")
            expected = (h_in * self.lq_factor, w_in * self.lq_factor)
            if tuple(lq.shape[-2:]) != expected:
                raise ValueError(
                    f"lq has size {tuple(lq.shape[-2:])}, expected {expected} for latent {h_in}x{w_in}"
                )
            if mask is not None:
                if not self.cond_mask:
                    raise ValueError("mask given but the model was built with cond_mask=False")
                lq = torch.cat([lq, mask], dim=1)
            x = torch.cat([x, self.feature_extractor(lq.to(dtype))], dim=1)
        h = x.to(dtype)
        skips = []
        for module in self.input_blocks:
            h = module(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))
