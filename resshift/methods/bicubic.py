"""Classic reference: bicubic upsampling (PyTorch's, A=-0.75, as ResShift uses for its y0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from resshift.data.degradations.upscale import torch_bicubic_upscale
from resshift.methods.base import SRMethod
from resshift.methods.params import BicubicParams
from resshift.methods.registry import register_method


class BicubicUpsampler(SRMethod):
    """``F.interpolate(mode='bicubic', align_corners=False)`` by ``scale``, clamped to ``[0, 1]``.

    Parameters: :class:`~resshift.methods.params.BicubicParams` (``scale``; ``device``/``dtype`` are
    accepted and recorded: the interpolation runs on the input's device in float32).
    """

    name = "bicubic"
    nfe = 0
    Params = BicubicParams

    def __init__(self, scale: int | None = None, *, params: BicubicParams | None = None, **config: Any) -> None:
        if scale is not None:
            config["scale"] = scale
        self.params = self.resolve_params(params, config)
        self.scale = int(self.params.scale)

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        return torch_bicubic_upscale(lr, self.scale)


@register_method("bicubic", BicubicParams)
def _build(params: BicubicParams) -> BicubicUpsampler:
    return BicubicUpsampler(params=params)
