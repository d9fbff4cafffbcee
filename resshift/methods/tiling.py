"""Tiled inference helpers: tile placement, reflect padding, and plain-average blending.

Placement follows the official ``ImageSpliterTh``: per axis, starts ``range(0, L, stride)``, any
start with ``start + chop > L`` moved to ``L - chop``, duplicates removed keeping the first; a side
``L <= chop`` gets the single start 0 (and the tile is then only ``L`` long). Tiles are visited
row-major. Blending adds each tile's output into an accumulator in processing order and divides by
the per-pixel count (true division), which reproduces the official result bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def tile_starts(length: int, chop: int, stride: int) -> list[int]:
    """Start offsets along one axis of length ``length`` for tiles of side ``chop``."""
    if chop <= 0 or stride <= 0:
        raise ValueError(f"chop size and stride must be positive, got {chop} and {stride}")
    if stride > chop:
        raise ValueError(f"chop stride {stride} is larger than the chop size {chop} (tiles would leave gaps)")
    if length <= chop:
        return [0]
    starts: list[int] = []
    for s in range(0, length, stride):
        s = length - chop if s + chop > length else s
        if s not in starts:
            starts.append(s)
    return starts


@dataclass(frozen=True)
class Tile:
    """One tile: its index in processing order and its LR box ``[h0:h1, w0:w1]``."""

    index: int
    h0: int
    h1: int
    w0: int
    w1: int


def plan_tiles(height: int, width: int, chop: int, stride: int) -> list[Tile]:
    """Row-major tiles covering an LR image; a single whole-image tile when both sides are <= chop."""
    if height <= chop and width <= chop:
        return [Tile(0, 0, height, 0, width)]
    tiles = []
    for h in tile_starts(height, chop, stride):
        for w in tile_starts(width, chop, stride):
            tiles.append(Tile(len(tiles), h, min(h + chop, height), w, min(w + chop, width)))
    return tiles


OFFICIAL_DEFAULT_STRIDES: dict[int, int] = {512: 448, 256: 224, 64: 48}


def default_stride(chop: int) -> int:
    """The official default stride for a chop size (512 -> 448, 256 -> 224, 64 -> 48).

    The official CLI knows no default for other chop sizes, and neither do we: pass a stride.
    """
    if chop not in OFFICIAL_DEFAULT_STRIDES:
        known = ", ".join(str(k) for k in OFFICIAL_DEFAULT_STRIDES)
        raise ValueError(f"no default chop stride for chop size {chop} (defaults: {known}); give one")
    return OFFICIAL_DEFAULT_STRIDES[chop]


def reflect_pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad ``(B, C, H, W)`` on the bottom and right up to multiples of ``multiple``.

    Identical to a single ``F.pad(mode='reflect')`` whenever that is possible (pad < side). For
    sides too small for one reflection (which the official code cannot process), the reflection is
    repeated; a side of 1 is replicated.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    while pad_h or pad_w:
        h, w = x.shape[-2:]
        step_h, step_w = min(pad_h, h - 1), min(pad_w, w - 1)
        if (pad_h and step_h <= 0) or (pad_w and step_w <= 0):
            one_h = 1 if pad_h and step_h <= 0 else 0
            one_w = 1 if pad_w and step_w <= 0 else 0
            x = F.pad(x, (0, one_w, 0, one_h), mode="replicate")
            pad_h, pad_w = pad_h - one_h, pad_w - one_w
            continue
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h -= step_h
        pad_w -= step_w
    return x


class TileBlender:
    """Accumulate tile outputs (in processing order) and average them where they overlap."""

    def __init__(
        self, batch: int, channels: int, height: int, width: int, scale: int, device: torch.device | str
    ) -> None:
        self.scale = scale
        self.acc = torch.zeros(batch, channels, height * scale, width * scale, device=device)
        self.count = torch.zeros(1, 1, height * scale, width * scale, device=device)

    def add(self, tile: Tile, out: torch.Tensor) -> None:
        s = self.scale
        self.acc[:, :, tile.h0 * s : tile.h1 * s, tile.w0 * s : tile.w1 * s] += out.to(self.acc.dtype)
        self.count[:, :, tile.h0 * s : tile.h1 * s, tile.w0 * s : tile.w1 * s] += 1

    def result(self) -> torch.Tensor:
        if bool((self.count == 0).any()):
            raise RuntimeError("tiles do not cover the whole image")
        return self.acc / self.count
