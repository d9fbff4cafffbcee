"""Real-ESRGAN degradations: kernels, per-image determinism, batch invariance, statistics."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from resshift.data import open_dataset
from resshift.data.degradations import kernels as K
from resshift.data.degradations.realesrgan import TESTING, TRAINING, degrade, degrade_one, filter2d, jpeg
from resshift.seeding import image_generator


def test_kernels_are_normalised_and_shaped():
    g = torch.Generator().manual_seed(0)
    for kind in K.KERNEL_TYPES:
        kernel, params = K.random_mixed_kernel(g, 7, [kind], [1.0], (0.2, 3.0))
        assert kernel.shape == (7, 7) and params["type"] == kind
        torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))
        # symmetric under a 180-degree rotation (so correlation == convolution)
        torch.testing.assert_close(kernel, kernel.flip(0, 1))
    iso = K.gaussian_kernel(5, 1.0, 1.0, 0.0)
    torch.testing.assert_close(iso, iso.T)
    # a known value: 1-D Gaussian weights exp(-x^2/2) at x=0,1,2 for sigma 1, outer product
    w = torch.exp(-0.5 * torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(iso.double(), (torch.outer(w, w) / torch.outer(w, w).sum()), atol=1e-7, rtol=0)


def test_anisotropic_kernel_rotation():
    k0 = K.gaussian_kernel(9, 2.0, 0.5, 0.0)
    k90 = K.gaussian_kernel(9, 2.0, 0.5, math.pi / 2)
    torch.testing.assert_close(k90, k0.T, atol=1e-6, rtol=0)
    assert k0[4, 0] > k0[0, 4]  # elongated along x


def test_sinc_kernel_centre_value_and_lowpass():
    cutoff = math.pi / 2
    k = K.sinc_kernel(21, cutoff)
    raw_centre = cutoff**2 / (4 * math.pi)
    j1 = torch.special.bessel_j1(torch.tensor(cutoff, dtype=torch.float64))
    raw_neighbour = cutoff * j1 / (2 * math.pi)
    assert k[10, 10] / k[10, 11] == pytest.approx(raw_centre / raw_neighbour.item(), rel=1e-5)
    # a checkerboard (Nyquist) is removed much more strongly than a constant
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]).remainder(2).float().expand(3, 32, 32)
    out = filter2d(checker, k)
    assert out[:, 8:-8, 8:-8].std() < 0.05 * checker.std()


def test_uniform_and_choice_follow_the_generator():
    a = [K.uniform(torch.Generator().manual_seed(3), 1.0, 2.0) for _ in range(2)]
    assert a[0] == a[1] and 1.0 <= a[0] <= 2.0
    g = torch.Generator().manual_seed(0)
    picks = [K.choice(g, ["a", "b"], [0.9, 0.1]) for _ in range(400)]
    assert 320 < picks.count("a") < 395


def test_jpeg_roundtrip_quality_orders_error():
    g = torch.Generator().manual_seed(0)
    img = F.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(64, 64), mode="bilinear")[0]
    err = {q: (jpeg(img, q) - img).abs().mean().item() for q in (30, 95)}
    assert err[95] < err[30] < 0.1
    assert jpeg(img, 80).dtype == torch.float32 and jpeg(img, 80).shape == img.shape


@pytest.mark.parametrize("params", [TESTING, TRAINING], ids=["testing", "training"])
def test_per_image_determinism_and_batch_invariance(params):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    names = ["a", "b", "c"]
    out = degrade(x, [image_generator(7, n) for n in names], params)
    assert out.shape == (3, 3, 16, 16)
    assert torch.equal(out, (out * 255).round() / 255)  # 8-bit values
    # same image alone, and in another order -> identical
    alone = degrade(x[1:2], [image_generator(7, "b")], params)
    assert torch.equal(alone[0], out[1])
    rev = degrade(x.flip(0), [image_generator(7, n) for n in reversed(names)], params)
    assert torch.equal(rev.flip(0), out)
    # another seed gives another LR
    other = degrade(x[:1], [image_generator(8, "a")], params)
    assert not torch.equal(other[0], out[0])


def test_degrade_checks_inputs():
    with pytest.raises(ValueError, match="2 images but 1 generators"):
        degrade(torch.rand(2, 3, 16, 16), [torch.Generator()])
    with pytest.raises(ValueError, match="not divisible by the scale 4"):
        degrade_one(torch.rand(3, 18, 16), torch.Generator())


def test_info_records_the_draws():
    lr, info = degrade_one(torch.rand(3, 64, 64), image_generator(0, "x"), TESTING)
    assert info["params"] == "testing"
    assert info["stage1"]["kernel"]["size"] in (3, 5, 7, 9, 11)
    assert 70 <= info["stage1"]["jpeg"] <= 95 and 80 <= info["final"]["jpeg"] <= 100
    assert "stage2" not in info


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_shapes_and_is_deterministic():
    x = torch.rand(2, 3, 64, 64, device="cuda")
    gens = [image_generator(1, n, device="cuda") for n in "ab"]
    out = degrade(x, gens)
    again = degrade(x, [image_generator(1, n, device="cuda") for n in "ab"])
    assert out.device.type == "cuda" and out.shape == (2, 3, 16, 16) and torch.equal(out, again)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def _up(lr: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lr[None], scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)


def psnr_distributions(limit: int | None) -> tuple[list[float], list[float]]:
    """PSNR(bicubic-up(LR), GT) for the released Val_SR LR and for our testing degradation."""
    ds = open_dataset("val-sr")
    if limit is not None:
        ds = ds.select(ds.names()[:limit])
    released, ours = [], []
    for s in ds:
        released.append(_psnr(_up(s.lr), s.hr))
        lr, _ = degrade_one(s.hr, image_generator(10000, s.name), TESTING)
        ours.append(_psnr(_up(lr), s.hr))
    return released, ours


def _check_close(released: list[float], ours: list[float]) -> None:
    # Not a pairwise test (the released draws are unknowable): the two distributions must agree in
    # location and spread. Margins: 1.5 dB on the mean/median, 1.5 dB on the std.
    assert abs(statistics.mean(ours) - statistics.mean(released)) < 1.5
    assert abs(statistics.median(ours) - statistics.median(released)) < 1.5
    assert abs(statistics.stdev(ours) - statistics.stdev(released)) < 1.5


def test_testing_degradation_statistics_on_a_few_val_sr_images(mirror):
    released, ours = psnr_distributions(limit=8)
    assert len(ours) == 8
    assert abs(statistics.mean(ours) - statistics.mean(released)) < 2.5


@pytest.mark.slow
def test_testing_degradation_statistics_on_all_val_sr_images(mirror):
    released, ours = psnr_distributions(limit=None)
    assert len(ours) == 32
    _check_close(released, ours)
