"""Shared plumbing of the diffusion baselines: padding to the network's multiple around the tile loop.

Every baseline (SR3-style, LDM-SR, DDNM, DDRM) runs an image -- or each tile of a large image --
through ``fn(lr_tile [B,3,h,w] in [0,1], generators) -> [B,3,4h,4w] in [0,1]`` after reflect-padding
the tile to the network's size multiple. Tiles, their placement and their blending are ResShift's
(:func:`resshift.methods.tiling.run_tiles`), and so are the per-tile noise streams
(:func:`resshift.seeding.per_tile_generators`): an image's output depends only on
(run seed, image name, tile index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from resshift.methods.base import SRMethod
from resshift.methods.tiling import reflect_pad_to_multiple, run_tiles
from resshift.seeding import per_tile_generators

SampleFn = Callable[[torch.Tensor, Sequence[torch.Generator]], torch.Tensor]


def run_patchwise(
    lr: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    fn: SampleFn,
    *,
    scale: int,
    pad_multiple: int,
    chop_size: int | None = None,
    chop_stride: int | None = None,
    tile_batch: int = 1,
) -> torch.Tensor:
    """Apply ``fn`` to the whole LR batch, or tile by tile when a side exceeds ``chop_size``, through
    :func:`resshift.methods.tiling.run_tiles` with per-tile generators; clamps to ``[0, 1]``.

    Each tile batch is reflect-padded (bottom/right) to a multiple of ``pad_multiple`` LR pixels and
    the output cropped back; the result does not depend on ``tile_batch``, as every tile's noise
    comes from its own (image, tile) generator.
    """
    if generators is None or len(generators) != lr.shape[0]:
        n = "no" if generators is None else len(generators)
        raise ValueError(f"{n} generators given for a batch of {lr.shape[0]} images (one per image needed)")

    def sample(patches: torch.Tensor, noise: dict) -> torch.Tensor:
        height, width = patches.shape[-2:]
        sr = fn(reflect_pad_to_multiple(patches, pad_multiple), noise["generators"])
        return sr[..., : height * scale, : width * scale].float()

    out = run_tiles(lr, sample, per_tile_generators(generators), scale=scale, chop_size=chop_size,
                    chop_stride=chop_stride, tile_batch=tile_batch)
    return out.clamp(0.0, 1.0)


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
