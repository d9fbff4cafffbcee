"""Tiled inference: the one tile loop (:func:`run_tiles`), tile placement, reflect padding, blending.

Every method that tiles (ResShift, the diffusion baselines) runs :func:`run_tiles`: plan the tiles,
draw each tile's noise from a provider (one call per tile, in processing order), send ``tile_batch``
tiles through the method's function at once, and blend.

Placement follows the official ``ImageSpliterTh``: per axis, starts ``range(0, L, stride)``, any
start with ``start + chop > L`` moved to ``L - chop``, duplicates removed keeping the first; a side
``L <= chop`` gets the single start 0 (and the tile is then only ``L`` long). Tiles are visited
row-major. Blending adds each tile's output into an accumulator in processing order and divides by
the per-pixel count (true division), which reproduces the official result bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: ``(tile index, images in the batch, noise shape) -> {"noise": [tensors]} or {"generators": [one per
#: image]}``; called once per tile, in processing order (e.g. :func:`resshift.seeding.per_tile_generators`).
TileNoise = Callable[[int, int, tuple[int, ...]], dict[str, Any]]
#: ``(tiles [G*B, C, h, w], merged noise of the G tiles) -> outputs [G*B, C, scale*h, scale*w]``.
TileFn = Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]


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


def tile_plan(height: int, width: int, chop_size: int | None, chop_stride: int | None = None) -> list[Tile]:
    """:func:`plan_tiles` with a method's settings: ``chop_size=None`` is one whole-image tile,
    ``chop_stride=None`` means no overlap (stride = chop size)."""
    chop = chop_size or max(height, width)
    return plan_tiles(height, width, chop, chop_stride or chop)


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


def merge_noise(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The noise of several tiles stacked along the batch (tile-major), as one call expects it."""
    if all("generators" in p for p in parts):
        return {"generators": [g for p in parts for g in p["generators"]]}
    if all("noise" in p for p in parts):
        draws = len(parts[0]["noise"])
        return {"noise": [torch.cat([p["noise"][j] for p in parts]) for j in range(draws)]}
    raise ValueError("a noise provider must return either 'noise' or 'generators' for every tile")


def run_tiles(
    x: torch.Tensor,
    fn: TileFn,
    tile_noise: TileNoise,
    *,
    scale: int,
    chop_size: int | None,
    chop_stride: int | None = None,
    tile_batch: int = 1,
    noise_shape: Callable[[int, int, int], tuple[int, ...]] | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` (``[B, C, H, W]``) whole, or tile by tile when a side exceeds ``chop_size``.

    Tiles come from :func:`plan_tiles` (``chop_size=None``: one whole-image tile; ``chop_stride=None``:
    no overlap); ``tile_batch`` consecutive tiles (all tiles of a plan have one size) go through ``fn``
    in one call, stacked along the batch, with their noise merged by :func:`merge_noise`.
    ``noise_shape(B, h, w)`` gives the shape passed to ``tile_noise`` for a tile of ``h x w`` (default
    ``()``). Overlapping outputs are averaged by :class:`TileBlender`; a single tile is returned as
    ``fn`` made it. Returns ``[B, C, scale*H, scale*W]``.
    """
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
    b, c, h, w = x.shape
    tiles = tile_plan(h, w, chop_size, chop_stride)
    blender = TileBlender(b, c, h, w, scale, x.device) if len(tiles) > 1 else None
    out = None
    for start in range(0, len(tiles), tile_batch):
        group = tiles[start : start + tile_batch]
        patches = torch.cat([x[..., t.h0 : t.h1, t.w0 : t.w1] for t in group])
        shape = noise_shape(b, *patches.shape[-2:]) if noise_shape is not None else ()
        srs = fn(patches, merge_noise([tile_noise(t.index, b, shape) for t in group]))
        for j, tile in enumerate(group):
            if blender is None:
                out = srs[j * b : (j + 1) * b]
            else:
                blender.add(tile, srs[j * b : (j + 1) * b])
    result = blender.result() if blender is not None else out
    assert result is not None
    return result
