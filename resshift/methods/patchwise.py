"""Shared plumbing of the diffusion baselines: precision, padding, tiling and per-tile noise.

Every baseline (SR3-style, LDM-SR, DDNM, DDRM) runs an image -- or each tile of a large image --
through ``fn(lr_tile [B,3,h,w] in [0,1], generators) -> [B,3,4h,4w] in [0,1]`` after reflect-padding
the tile to the network's size multiple. Tiles, their placement and their blending are ResShift's
(:mod:`resshift.methods.tiling`), and so are the per-tile noise streams
(:func:`resshift.methods.resshift_method.per_tile_generators`): an image's output depends only on
(run seed, image name, tile index).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from resshift.methods.base import SRMethod
from resshift.methods.resshift_method import DTYPES, per_tile_generators  # noqa: F401 (re-exported)
from resshift.methods.tiling import TileBlender, plan_tiles, reflect_pad_to_multiple

TileFn = Callable[[torch.Tensor, Sequence[torch.Generator]], torch.Tensor]


def check_precision(dtype: str | torch.dtype, device: torch.device) -> str:
    """Normalise ``dtype`` to ``"fp32"``/``"fp16"``/``"bf16"``; half precision needs CUDA (autocast)."""
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"unsupported dtype {dtype}")
        dtype = names[dtype]
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype != "fp32" and device.type != "cuda":
        raise ValueError(f"dtype {dtype} needs a CUDA device (autocast); on {device.type} use fp32")
    return dtype


def autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for half precision; a no-op for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def run_patchwise(
    lr: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    fn: TileFn,
    *,
    scale: int,
    pad_multiple: int,
    chop_size: int | None = None,
    chop_stride: int | None = None,
    tile_batch: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` to the whole LR batch, or tile by tile when a side exceeds ``chop_size``.

    Each tile is reflect-padded (bottom/right) to a multiple of ``pad_multiple`` LR pixels and the
    output cropped back; overlapping tiles are averaged. ``tile_batch`` consecutive tiles (all tiles of
    a plan have one size) go through ``fn`` in one call, stacked along the batch as the ResShift method
    does; the result does not change, as every tile's noise comes from its own (image, tile) generator.
    """
    if generators is None or len(generators) != lr.shape[0]:
        n = "no" if generators is None else len(generators)
        raise ValueError(f"{n} generators given for a batch of {lr.shape[0]} images (one per image needed)")
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
    b, c, h, w = lr.shape
    chop = chop_size or max(h, w)
    tiles = plan_tiles(h, w, chop, chop_stride or chop)
    noise = per_tile_generators(generators)
    blender = TileBlender(b, c, h, w, scale, lr.device) if len(tiles) > 1 else None
    out = None
    for start in range(0, len(tiles), tile_batch):
        group = tiles[start : start + tile_batch]
        parts = [reflect_pad_to_multiple(lr[..., t.h0 : t.h1, t.w0 : t.w1], pad_multiple) for t in group]
        gens = [g for t in group for g in noise(t.index, b, ())["generators"]]
        srs = fn(torch.cat(parts), gens).split(b)
        for tile, sr in zip(group, srs, strict=True):
            sr = sr[..., : (tile.h1 - tile.h0) * scale, : (tile.w1 - tile.w0) * scale].float()
            if blender is None:
                out = sr
            else:
                blender.add(tile, sr)
    result = blender.result() if blender is not None else out
    assert result is not None
    return result.clamp(0.0, 1.0)


class PatchwiseSRMethod(SRMethod):
    """A baseline whose ``upscale`` is :func:`run_patchwise` over its ``_sample`` (one tile batch).

    Subclasses set ``device``, ``chop_size``, ``chop_stride`` (and may set ``tile_batch``) and implement
    ``_sample`` and :meth:`lr_pad_multiple`.
    """

    device: torch.device
    chop_size: int | None = None
    chop_stride: int | None = None
    tile_batch: int = 1

    def lr_pad_multiple(self) -> int:
        """The LR size multiple each tile is reflect-padded to (the network's, in LR pixels)."""
        raise NotImplementedError

    def _sample(self, lr: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        return run_patchwise(
            lr.to(self.device, torch.float32),
            generators,
            self._sample,
            scale=self.scale,
            pad_multiple=self.lr_pad_multiple(),
            chop_size=self.chop_size,
            chop_stride=self.chop_stride,
            tile_batch=self.tile_batch,
        )
