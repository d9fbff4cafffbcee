"""PyTorch bicubic upscaling (Keys' kernel, A = -0.75, no antialiasing), the suite's ``bicubic``
reference: the ``bicubic`` method's output and the reference of LR-mode spectral metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def torch_bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """``(B, C, h, w)`` in ``[0, 1]`` -> ``(B, C, scale*h, scale*w)`` float32, clamped to ``[0, 1]``
    (``F.interpolate(mode="bicubic", align_corners=False)``)."""
    out = F.interpolate(lr.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return out.clamp_(0.0, 1.0)
