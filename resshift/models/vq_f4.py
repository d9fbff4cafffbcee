"""The VQ-f4 first stage (``ldm.models.autoencoder.VQModelTorch`` upstream, LDM's VQ-regularised AE).

Constructed as ``VQModelTorch(ddconfig, n_embed, embed_dim)`` from the ``autoencoder.params`` section
of the official configs; ``state_dict`` keys (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
``quant_conv.*``, ``post_quant_conv.*``) and shapes are identical to the official ones.

ResShift uses it asymmetrically: :meth:`VQModelTorch.encode` returns the *continuous* latent
(encoder + ``quant_conv``, no quantisation) while :meth:`VQModelTorch.decode` first snaps every latent
vector to its nearest codebook entry. The mid-block global attention runs through
:func:`resshift.models.layers.attention` (fused SDPA, O(N) memory where the backend allows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resshift.models.fast import (
    Conv2d,
    cached_derived,
    fast_enabled,
    group_norm_silu,
    nearest_upsample_conv,
    upsample_conv_fusable,
)
from resshift.models.layers import attention

# Distance rows computed per chunk in the quantiser (keeps B*H*W x n_embed bounded).
_MAX_DISTANCES_PER_CHUNK = 1 << 24
# The fast CPU path uses blocks that stay in cache (1M distances, 4 MiB in float32).
_FAST_DISTANCES_PER_CHUNK = 1 << 20


def _normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GN-swish-conv, GN-swish-dropout-conv, plus a (1x1 or 3x3 conv) shortcut. No time embedding."""

    def __init__(self, in_channels: int, out_channels: int | None = None, conv_shortcut: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _normalize(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut_name = None
        if in_channels != out_channels:
            self.shortcut_name = "conv_shortcut" if conv_shortcut else "nin_shortcut"
            kernel = 3 if conv_shortcut else 1
            shortcut = Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
            setattr(self, self.shortcut_name, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(group_norm_silu(self.norm1, x))
        h = self.dropout(group_norm_silu(self.norm2, h))
        if self.shortcut_name is not None:
            x = getattr(self, self.shortcut_name)(x)
        return self.conv2(h, residual=x)  # x + conv2(h)


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions (1x1 q/k/v/proj convs), residual."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.norm = _normalize(in_channels)
        self.q = Conv2d(in_channels, in_channels, 1)
        self.k = Conv2d(in_channels, in_channels, 1)
        self.v = Conv2d(in_channels, in_channels, 1)
        self.proj_out = Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_enabled():
            return self._forward_fast(x)
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q, k, v = (conv(h).reshape(b, 1, c, hh * ww).transpose(-1, -2) for conv in (self.q, self.k, self.v))
        out = attention(q, k, v, scale=c**-0.5)  # b x 1 x hw x c
        out = out.transpose(-1, -2).reshape(b, c, hh, ww)
        return x + self.proj_out(out)

    def _fused_qkv(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The q, k, v 1x1 convs as one ``[3c, c]`` matrix and ``[3c]`` bias (cached per weight version)."""
        convs = (self.q, self.k, self.v)

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            weight = torch.cat([conv.weight.reshape(self.in_channels, self.in_channels) for conv in convs])
            return weight, torch.cat([conv.bias for conv in convs])

        tensors = [t for conv in convs for t in (conv.weight, conv.bias)]
        return cached_derived(self, tensors, build)

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """One q/k/v matrix product on the token matrix, SDPA on ``[b, 1, hw, c]`` with unit-stride
        features (the flash kernel on CPU: O(hw) memory), projection with the residual fused."""
        b, c, hh, ww = x.shape
        tokens = self.norm(x).reshape(b, c, hh * ww).transpose(1, 2)
        weight, bias = self._fused_qkv()
        qkv = F.linear(tokens, weight, bias).unsqueeze(1)  # b x 1 x hw x 3c
        out = attention(qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :], scale=c**-0.5)
        out = out.transpose(-1, -2).reshape(b, c, hh, ww).contiguous()
        return self.proj_out(out, residual=x)


class Downsample(nn.Module):
    """Pad right/bottom by one, stride-2 3x3 conv (or 2x2 average pooling without conv)."""

    def __init__(self, in_channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = Conv2d(in_channels, in_channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv."""

    def __init__(self, in_channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = Conv2d(in_channels, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv and fast_enabled() and upsample_conv_fusable(self.conv):
            return nearest_upsample_conv(self, self.conv, x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


def _check_attn_type(attn_type: str, use_linear_attn: bool) -> None:
    # "vanilla-xformers" upstream is the same maths as "vanilla"; both run through SDPA here.
    if use_linear_attn or attn_type not in ("vanilla", "vanilla-xformers"):
        raise ValueError(f"unsupported attention type {attn_type!r} (only 'vanilla' is implemented)")


# ddconfig keys the official classes accept and ignore.
_IGNORED_DDCONFIG_KEYS = frozenset({"padding_mode", "double_z", "give_pre_end", "tanh_out"})


def _check_extra(extra: dict, allowed: frozenset[str], cls: str) -> None:
    unknown = set(extra) - allowed
    if unknown:
        raise TypeError(f"{cls} got unexpected ddconfig keys: {sorted(unknown)}")


class Encoder(nn.Module):
    """conv_in; per level ResnetBlocks (+attention at ``attn_resolutions``) and a downsample; mid
    (ResnetBlock, AttnBlock, ResnetBlock); GN, swish, conv_out to ``z_channels`` (x2 if ``double_z``)."""

    def __init__(
        self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int | Sequence[int], attn_resolutions: Sequence[int], dropout: float = 0.0,
        resamp_with_conv: bool = True, in_channels: int, resolution: int, z_channels: int,
        double_z: bool = True, use_linear_attn: bool = False, attn_type: str = "vanilla", **ignored: object,
    ):
        super().__init__()
        _check_attn_type(attn_type, use_linear_attn)
        _check_extra(ignored, _IGNORED_DDCONFIG_KEYS, "Encoder")
        self.num_resolutions = len(ch_mult)
        blocks = [num_res_blocks] * len(ch_mult) if isinstance(num_res_blocks, int) else list(num_res_blocks)
        self.num_res_blocks = blocks
        self.conv_in = Conv2d(in_channels, ch, 3, padding=1)
        in_ch_mult = (1, *ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(blocks[i_level]):
                level.block.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i_level != self.num_resolutions - 1:
                level.downsample = Downsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.norm_out = _normalize(block_in)
        self.conv_out = Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i_level, level in enumerate(self.down):
            for i_block, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(group_norm_silu(self.norm_out, h))


class Decoder(nn.Module):
    """conv_in from ``z_channels``; mid; per level (coarse to fine) ResnetBlocks and an upsample;
    GN, swish, conv_out (optionally tanh)."""

    def __init__(
        self, *, ch: int, out_ch: int, ch_mult: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int | Sequence[int], attn_resolutions: Sequence[int], dropout: float = 0.0,
        resamp_with_conv: bool = True, in_channels: int, resolution: int, z_channels: int,
        give_pre_end: bool = False, tanh_out: bool = False, use_linear_attn: bool = False,
        attn_type: str = "vanilla", **ignored: object,
    ):
        super().__init__()
        _check_attn_type(attn_type, use_linear_attn)
        _check_extra(ignored, _IGNORED_DDCONFIG_KEYS, "Decoder")
        self.num_resolutions = len(ch_mult)
        blocks = [num_res_blocks] * len(ch_mult) if isinstance(num_res_blocks, int) else list(num_res_blocks)
        self.num_res_blocks = blocks
        self.give_pre_end, self.tanh_out = give_pre_end, tanh_out
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout)
        levels: list[nn.Module] = []
        for i_level in reversed(range(self.num_resolutions)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(blocks[i_level] + 1):
                level.block.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i_level != 0:
                level.upsample = Upsample(block_in, resamp_with_conv)
                curr_res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _normalize(block_in)
        self.conv_out = Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(group_norm_silu(self.norm_out, h))
        return torch.tanh(h) if self.tanh_out else h


@dataclass
class Quantized:
    """Result of :class:`VectorQuantizer`: straight-through ``z_q`` (``[B, C, H, W]``) and the
    chosen codebook ``indices`` (``[B, H, W]``, int64)."""

    z_q: torch.Tensor
    indices: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantiser (``VectorQuantizer2`` upstream, no remap, legacy beta)."""

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_e, 1.0 / n_e)

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest entry for each row of ``z_flat`` ``[M, e_dim]``.

        Uses the official expansion ``|z|^2 + |e|^2 - 2 z.e`` in chunks of rows, so ties resolve
        exactly as upstream up to float round-off. Always computed in float32 (autocast disabled):
        the search must not depend on the precision the rest of the network runs in.
        """
        with torch.autocast(z_flat.device.type, enabled=False):
            return self._nearest_fp32(z_flat.float(), self.embedding.weight.float())

    def _nearest_fp32(self, z_flat: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        e_sq = torch.sum(codebook**2, dim=1)
        z_sq = torch.sum(z_flat**2, dim=1, keepdim=True)
        out = torch.empty(z_flat.shape[0], dtype=torch.long, device=z_flat.device)
        if fast_enabled() and z_flat.device.type == "cpu":
            # Cache-sized blocks and in-place updates; the distances are bit-identical:
            # (|z|^2 + |e|^2) - 2 z.e, with 2 z.e exact and one rounding for the subtraction.
            step = max(1, _FAST_DISTANCES_PER_CHUNK // self.n_e)
            for start in range(0, z_flat.shape[0], step):
                d = torch.add(z_sq[start : start + step], e_sq)
                d.sub_(z_flat[start : start + step] @ codebook.t(), alpha=2)
                out[start : start + step] = torch.argmin(d, dim=1)
            return out
        step = max(1, _MAX_DISTANCES_PER_CHUNK // self.n_e)
        for start in range(0, z_flat.shape[0], step):
            zc = z_flat[start:start + step]
            d = z_sq[start:start + step] + e_sq - 2 * (zc @ codebook.t())
            out[start:start + step] = torch.argmin(d, dim=1)
        return out

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for ``indices`` ``[B, H, W]`` as a ``[B, e_dim, H, W]`` latent."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> Quantized:
        if z.shape[1] != self.e_dim:
            raise ValueError(f"latent has {z.shape[1]} channels, codebook vectors have {self.e_dim}")
        b, _, h, w = z.shape
        z_last = z.permute(0, 2, 3, 1).contiguous()
        indices = self.nearest(z_last.view(-1, self.e_dim))
        z_q = self.embedding(indices).view(z_last.shape)
        z_q = z_last + (z_q - z_last).detach()  # straight-through value, rounds as upstream
        return Quantized(z_q.permute(0, 3, 1, 2).contiguous(), indices.view(b, h, w))


class VQModelTorch(nn.Module):
    """VQ-regularised autoencoder: ``encode`` (continuous), ``quantize``, ``decode`` (quantises)."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, remap: str | None = None,
                 sane_index_shape: bool = False):
        super().__init__()
        if remap is not None:
            raise ValueError("codebook remapping (remap=...) is not supported")
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = Conv2d(embed_dim, ddconfig["z_channels"], 1)
        self.downsample_factor = 2 ** (len(ddconfig.get("ch_mult", (1, 2, 4, 8))) - 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> latent ``quant_conv(encoder(x))``, *not* quantised."""
        return self.quant_conv(self.encoder(x))

    def decode(self, h: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        """Latent -> image: quantise (unless ``force_not_quantize``), ``post_quant_conv``, decoder."""
        quant = h if force_not_quantize else self.quantize(h).z_q
        return self.decoder(self.post_quant_conv(quant))

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        """Decode codebook indices ``[B, H, W]``."""
        return self.decode(self.quantize.lookup(indices), force_not_quantize=True)

    def forward(self, x: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        return self.decode(self.encode(x), force_not_quantize)
