"""Classic reference: bicubic upsampling (PyTorch's, A=-0.75, as ResShift uses for its y0)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from resshift.methods.base import SRMethod
from resshift.methods.registry import register_method


class BicubicUpsampler(SRMethod):
    """``F.interpolate(mode='bicubic', align_corners=False)`` by ``scale``, clamped to ``[0, 1]``."""

    name = "bicubic"
    nfe = 0

    def __init__(self, scale: int = 4, antialias: bool = False) -> None:
        self.scale = int(scale)
        self.antialias = bool(antialias)

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        out = F.interpolate(lr.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out.clamp_(0.0, 1.0)


@register_method("bicubic")
def _build(scale: int = 4, **_: object) -> BicubicUpsampler:
    return BicubicUpsampler(scale=scale)
