"""The Swin transformer layer used inside ResShift's UNet (``models/swin_transformer.py`` upstream).

It works on ``B x C x H x W`` feature maps: a 1x1-conv patch embedding, ``depth`` Swin blocks
(window attention with relative-position bias, then a 1x1-conv MLP, both pre-norm with *GroupNorm*
and residual), a 1x1-conv patch un-embedding. There is no residual around the whole layer.

Parameter and buffer names equal the official ones, including ``attn.relative_position_index`` and
``attn_mask`` on shifted blocks. The ``attn_mask`` buffer is kept only for state_dict
compatibility: the official forward pass always recomputes the mask for the actual input size (it
compares a list to a tuple), with a quirky construction reproduced by :func:`shifted_window_mask`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from resshift.models.fast import Conv2d, fast_enabled
from resshift.models.layers import attention, normalization

MASK_VALUE = -100.0  # logit offset the official code uses for masked pairs


def relative_position_index(window: int) -> torch.Tensor:
    """``[window^2, window^2]`` index into the ``(2w-1)^2`` relative-position table (row-major tokens)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # 2 x N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # N x N x 2
    return (rel[..., 0] + window - 1) * (2 * window - 1) + (rel[..., 1] + window - 1)


def _row_labels(height: int, window: int, shift: int) -> list[int]:
    """Region label per image row, as the official ``calculate_mask`` ends up writing it.

    Upstream fills a ``(1, 1, H, W)`` tensor through ``[:, h_slice, w_slice, :]`` as if it were
    ``(1, H, W, 1)``: the height slices hit the singleton axis (only the last one is non-empty) and the
    width slices fall on the *rows*. The labels therefore depend on the row only: 6, 7, 8 for the
    three "width" slices applied to the row axis.
    """
    labels = [0] * height
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for value, sl in zip((6, 7, 8), slices, strict=True):
        for r in range(height)[sl]:
            labels[r] = value
    return labels


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """The official (quirky) shifted-window mask, ``[num_windows, window^2, window^2]`` of 0 / -100.

    Besides the row-only labels (see :func:`_row_labels`), upstream flattens each window
    column-major while the attention tokens are row-major, so token ``(r, c)`` of a window takes the
    label of window row ``c``. Net effect for ``shift = window/2``: only the bottom row of windows is
    masked, separating tokens with column ``< shift`` from the rest.
    """
    if height % window or width % window:
        raise ValueError(f"feature map {height}x{width} is not a multiple of the window {window}")
    n_cols = width // window
    return window_row_masks(height, window, shift).repeat_interleave(n_cols, dim=0)


def window_row_masks(height: int, window: int, shift: int) -> torch.Tensor:
    """The official mask per *row of windows*, ``[height // window, window^2, window^2]``.

    All windows of one row share the mask because the labels depend on the image row only.
    """
    n_rows = height // window
    labels = torch.tensor(_row_labels(height, window, shift), dtype=torch.float32).view(n_rows, window)
    token_label = labels[:, torch.arange(window * window) % window]  # token (r, c) -> labels[c]
    diff = token_label[:, None, :] - token_label[:, :, None]
    return torch.where(diff != 0, MASK_VALUE, 0.0)


class Mlp(nn.Module):
    """1x1-conv MLP on ``B x C x H x W``: fc1, GELU, dropout, fc2, dropout."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = Conv2d(in_features, hidden_features, kernel_size=1)
        self.act = nn.GELU()
        self.fc2 = Conv2d(hidden_features, in_features, kernel_size=1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``drop(fc2(drop(gelu(fc1(x)))))``, plus ``residual`` if given."""
        if fast_enabled() and not self.training and isinstance(self.act, nn.GELU) and self.act.approximate == "none":
            return self.fc2(self.fc1(x, activation="gelu"), residual=residual)
        out = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
        return out if residual is None else residual + out


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned relative-position bias."""

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def reset_buffers(self) -> None:
        """Recompute the deterministic index buffer (after ``to_empty``)."""
        self.relative_position_index.copy_(relative_position_index(self.window_size))

    def position_bias(self) -> torch.Tensor:
        """The gathered relative-position bias, ``[num_heads, N, N]`` with ``N = window^2``."""
        n = self.window_size**2
        table = self.relative_position_bias_table
        return table[self.relative_position_index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x``: ``[..., N, C]`` tokens of windows; ``bias``: additive ``[num_heads, N, N]`` logits."""
        lead, (n, c) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, n, c)
        qkv = self.qkv(x).reshape(x.shape[0], n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B' x heads x N x d
        if self.training and self.attn_drop > 0:
            scores = (q * self.scale) @ k.transpose(-2, -1) + bias.to(q.dtype)
            weights = F.dropout(scores.softmax(-1), self.attn_drop, training=True)
            out = weights @ v
        else:
            out = attention(q, k, v, self.scale, bias)
        out = out.transpose(1, 2).reshape(x.shape[0], n, c)
        return self.proj_drop(self.proj(out)).view(*lead, n, c)


    def forward_windows(
        self, windows: torch.Tensor, row_groups: list[tuple[slice, torch.Tensor]], windows_per_row: int
    ) -> torch.Tensor:
        """Fast inference path on window-ordered tokens ``[B, nW * N, C]`` (windows row-major).

        ``row_groups`` are runs of window rows sharing one additive bias ``[heads, N, N]``. SDPA gets
        a 4-D bias, so the CPU flash kernel is used; outputs are written into one buffer.
        """
        b, length, c = windows.shape
        n, heads = self.window_size**2, self.num_heads
        n_win, d = length // n, c // heads
        qkv = F.linear(windows, self.qkv.weight, self.qkv.bias).view(b, n_win, n, 3, heads, d)
        out = torch.empty(b, n_win, n, heads, d, dtype=qkv.dtype, device=qkv.device)
        for rows, bias in row_groups:
            w0, w1 = rows.start * windows_per_row, rows.stop * windows_per_row
            if b == 1 or (w0 == 0 and w1 == n_win):
                parts = [(slice(None), qkv[:, w0:w1].reshape(-1, n, 3, heads, d))]
            else:  # a run of windows is not one strided block across samples
                parts = [(i, qkv[i, w0:w1]) for i in range(b)]
            bias4 = bias.unsqueeze(0)
            for sel, part in parts:
                q, k, v = part.permute(2, 0, 3, 1, 4).unbind(0)  # each B' x heads x N x d
                o = attention(q, k, v, self.scale, bias4).transpose(1, 2)  # B' x N x heads x d
                out[sel, w0:w1] = o.reshape(out[sel, w0:w1].shape)
        return F.linear(out.view(b, length, c), self.proj.weight, self.proj.bias)


class SwinTransformerBlock(nn.Module):
    """Pre-norm (GroupNorm) window attention and MLP, each with a residual; optionally shifted.

    If the construction resolution is not larger than the window, the window shrinks to it and
    the block is not shifted -- fixed at construction, as upstream (so the 1/8 level never shifts).
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if drop_path:
            raise ValueError("drop_path > 0 is not supported")
        self.dim = dim
        self.input_resolution = tuple(input_resolution)
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        if min(self.input_resolution) <= self.window_size:
            self.shift_size = 0
            self.window_size = min(self.input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size {shift_size} must be in [0, window_size {self.window_size})")
        self.norm1 = normalization(dim)
        self.attn = WindowAttention(
            dim, self.window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
            attn_drop=attn_drop, proj_drop=drop,
        )
        self.norm2 = normalization(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        # Stored for state_dict compatibility only; forward() recomputes the mask for the actual size.
        mask = self._stored_mask() if self.shift_size > 0 else None
        self.register_buffer("attn_mask", mask)
        self._mask_cache: dict[tuple, list[tuple[slice, torch.Tensor | None]]] = {}
        self._bias_cache: dict[tuple, list[tuple[slice, torch.Tensor]]] = {}
        self._order_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stored_mask(self) -> torch.Tensor:
        return shifted_window_mask(*self.input_resolution, self.window_size, self.shift_size)

    def reset_buffers(self) -> None:
        """Recompute the deterministic buffers (after ``to_empty``)."""
        if self.attn_mask is not None:
            self.attn_mask.copy_(self._stored_mask())

    def _mask_groups(self, height: int, device: torch.device) -> list[tuple[slice, torch.Tensor | None]]:
        """Runs of window rows sharing one mask: ``(row_slice, mask or None)`` (cached per size)."""
        key = (height, str(device))
        groups = self._mask_cache.get(key)
        if groups is None:
            if self.shift_size == 0:
                groups = [(slice(0, height // self.window_size), None)]
            else:
                rows = window_row_masks(height, self.window_size, self.shift_size)
                groups, start = [], 0
                for r in range(1, rows.shape[0] + 1):
                    if r == rows.shape[0] or not torch.equal(rows[r], rows[start]):
                        mask = rows[start]
                        groups.append((slice(start, r), mask.to(device) if mask.any() else None))
                        start = r
            self._mask_cache[key] = groups
        return groups

    def _group_biases(self, height: int, device: torch.device, dtype: torch.dtype):
        """Position bias plus mask for every run of window rows; cached unless autograd needs it."""
        table = self.attn.relative_position_bias_table
        cacheable = not (torch.is_grad_enabled() and table.requires_grad)
        key = (height, str(device), dtype, table.data_ptr(), table._version)
        if cacheable and key in self._bias_cache:
            return self._bias_cache[key]
        bias = self.attn.position_bias().to(dtype)
        out = [
            (rows, bias if mask is None else bias + mask.to(dtype))
            for rows, mask in self._mask_groups(height, device)
        ]
        if cacheable:
            if len(self._bias_cache) >= 8:
                self._bias_cache.clear()
            self._bias_cache[key] = out
        return out

    def window_order(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token permutations ``(order, inverse)`` of the shifted window partition (cached per size).

        ``tokens[:, order]`` lists the tokens of the map rolled by ``-shift`` window by window (row-major
        windows, row-major tokens inside), which is the roll plus partition of the reference path in
        one gather; ``windows[:, inverse]`` undoes both.
        """
        key = (height, width, str(device))
        cached = self._order_cache.get(key)
        if cached is None:
            ws, shift = self.window_size, self.shift_size
            rows = ((torch.arange(height) + shift) % height).view(height // ws, ws)
            cols = ((torch.arange(width) + shift) % width).view(width // ws, ws)
            order = (rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(-1)
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(order.numel())
            cached = (order.to(device), inverse.to(device))
            self._order_cache[key] = cached
        return cached

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        order, inverse = self.window_order(h, w, x.device)
        tokens = self.norm1(x).reshape(b, c, h * w).transpose(1, 2)  # B x HW x C view
        windows = tokens.index_select(1, order)
        groups = self._group_biases(h, x.device, windows.dtype)
        out = self.attn.forward_windows(windows, groups, w // self.window_size)
        y = out.index_select(1, inverse).transpose(1, 2).view(b, c, h, w)
        x = x + y
        return self.mlp(self.norm2(x), residual=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window_size
        if h % ws or w % ws:
            raise ValueError(f"Swin block got a {h}x{w} feature map, not a multiple of the window {ws}")
        if fast_enabled() and not self.training:
            return self._forward_fast(x)
        y = self.norm1(x)
        if self.shift_size:
            y = torch.roll(y, shifts=(-self.shift_size, -self.shift_size), dims=(2, 3))
        nh, nw = h // ws, w // ws
        windows = y.view(b, c, nh, ws, nw, ws).permute(0, 2, 4, 3, 5, 1).reshape(b, nh, nw, ws * ws, c)
        parts = [
            self.attn(windows[:, rows], bias)
            for rows, bias in self._group_biases(h, x.device, windows.dtype)
        ]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        y = out.view(b, nh, nw, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if self.shift_size:
            y = torch.roll(y, shifts=(self.shift_size, self.shift_size), dims=(2, 3))
        x = x + y
        return self.mlp(self.norm2(x), residual=x)


class PatchEmbed(nn.Module):
    """Conv patch embedding (``patch_size`` x ``patch_size``, stride ``patch_size``), optional norm."""

    def __init__(self, in_chans: int, img_size: int, patch_size: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.patches_resolution = (img_size // patch_size, img_size // patch_size)
        self.proj = Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = normalization(embed_dim) if patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class PatchUnEmbed(nn.Module):
    """1x1 conv back to the input channels, optional norm."""

    def __init__(self, out_chans: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.proj = Conv2d(embed_dim, out_chans, kernel_size=1)
        self.norm = normalization(out_chans) if patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class BasicLayer(nn.Module):
    """Patch embed -> ``depth`` Swin blocks (odd ones shifted by window/2) -> patch un-embed."""

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        num_heads: int,
        window_size: int,
        depth: int = 2,
        img_size: int = 224,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        use_checkpoint: bool = False,
        patch_norm: bool = True,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(in_chans, img_size, patch_size, embed_dim, patch_norm)
        self.input_resolution = self.patch_embed.patches_resolution
        self.patch_unembed = PatchUnEmbed(in_chans, embed_dim, patch_norm)
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                embed_dim, self.input_resolution, num_heads, window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop, attn_drop=attn_drop,
                drop_path=drop_path,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.patch_unembed(x)
