"""Speed of the paper's Y-channel PSNR/SSIM and of the degradation used for training pairs."""

from __future__ import annotations

import torch

from resshift.data.degradations.realesrgan import degrade
from resshift.metrics.paper_y import psnr, ssim


def _pair(n: int = 4, size: int = 256):
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(n, 3, size, size, generator=g)
    sr = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return sr, hr


def test_psnr_y_256(benchmark):
    sr, hr = _pair()
    assert benchmark(psnr, sr, hr).shape == (4,)


def test_ssim_y_256(benchmark):
    sr, hr = _pair()
    assert benchmark(ssim, sr, hr).shape == (4,)


def test_realesrgan_training_degradation_16_patches(benchmark):
    """Making one training batch's LR (16 patches of 64x64, Real-ESRGAN training parameters)."""
    hr, _ = _pair(16, 64)

    def run():
        gens = [torch.Generator().manual_seed(i) for i in range(16)]
        return degrade(hr, gens, "training")

    assert benchmark(run).shape == (16, 3, 16, 16)
