"""Speed of the samplers: one ResShift reverse step, whole small-model chains, one DDIM step."""

from __future__ import annotations

import pytest
import torch

from resshift.diffusion.gaussian import sample_ddim
from resshift.diffusion.resshift_chain import p_mean_variance, p_sample_step
from resshift.diffusion.schedule import ResShiftSchedule
from resshift.models.pixel_resshift import PixelResShiftNet, upsample_lq
from resshift.models.sr3_unet import SR3UNet

SMALL = {"model_channels": 32, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "attention_ds": [4],
         "num_head_channels": 32, "patch_size": 2}


@pytest.fixture(scope="module")
def pixel_net():
    torch.manual_seed(0)
    return PixelResShiftNet(SR3UNet(in_channels=6, level_scale=1.0, **SMALL), clip_x0=True).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    return lq, upsample_lq(lq)


def test_resshift_reverse_step(benchmark, pixel_net, batch):
    """One reverse step (network call + posterior + noise) of the small pixel ResShift, 4 x 64x64."""
    schedule = ResShiftSchedule.from_config(steps=15, kappa=2.0, min_noise_level=0.04)
    lq, y0 = batch
    x = y0 + 0.5 * torch.randn_like(y0)
    noise = torch.randn_like(y0)
    t = torch.full((4,), 7, dtype=torch.long)

    @torch.inference_mode()
    def step():
        out = p_mean_variance(pixel_net, x, t, lq, schedule)
        return p_sample_step(out["mean"], t, noise, schedule)

    assert benchmark(step).shape == y0.shape


def test_small_resshift_upscale(benchmark):
    """The shipped small ResShift, whole method (15 steps), one 64x64 LR -> 256x256."""
    from resshift.methods import build_method

    try:
        method = build_method("small-resshift")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    lr = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = benchmark(lambda: method.upscale(lr, [torch.Generator().manual_seed(0)]))
    assert out.shape == (1, 3, 256, 256)


def test_ddim_step_small_sr3(benchmark, batch):
    """One DDIM step of an SR3-style network of the small models' size, 4 x 64x64."""
    torch.manual_seed(0)
    net = SR3UNet(in_channels=6, **SMALL).eval()
    _, cond = batch
    x = torch.randn_like(cond)

    @torch.inference_mode()
    def one_step():
        return sample_ddim(lambda z, ab: net(torch.cat([z, cond], 1), ab.sqrt().float()), x, [0.5])

    assert benchmark(one_step).shape == x.shape
