"""The paper's Y-channel PSNR/SSIM against hand-computed values and independent references."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from resshift.io import read_image, write_png
from resshift.metrics import build_metrics
from resshift.metrics.base import MetricInputError
from resshift.metrics.paper_y import psnr, quantize_to_uint8_values, rgb_to_y_ycbcr, ssim

# --- independent NumPy references (MATLAB conventions, written from the formulas) -----------------


def np_y(rgb_u8: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma of an HWC uint8 RGB array, as uint8: the exact ratio
    16 + (65481 R + 128553 G + 24966 B) / 255000 by integer division, halves rounded up (away from 0)."""
    n = rgb_u8.astype(np.int64) @ np.array([65481, 128553, 24966], dtype=np.int64)
    q, r = np.divmod(n, 255000)
    return (16 + q + (2 * r >= 255000)).astype(np.uint8)


def np_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))


def np_ssim_valid(a: np.ndarray, b: np.ndarray, clamp_cs: bool = False) -> float:
    """Wang et al. SSIM with cv2 filtering, 11x11 Gaussian sigma 1.5, 'valid' region, 255 scale;
    ``clamp_cs``: the contrast-structure factor of the map is clamped at 0 first (pyiqa's ssim)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    k = cv2.getGaussianKernel(11, 1.5)
    w = np.outer(k, k.T)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1 = cv2.filter2D(a, -1, w)[5:-5, 5:-5]
    mu2 = cv2.filter2D(b, -1, w)[5:-5, 5:-5]
    s11 = cv2.filter2D(a * a, -1, w)[5:-5, 5:-5] - mu1**2
    s22 = cv2.filter2D(b * b, -1, w)[5:-5, 5:-5] - mu2**2
    s12 = cv2.filter2D(a * b, -1, w)[5:-5, 5:-5] - mu1 * mu2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    if clamp_cs:
        cs = np.maximum(cs, 0.0)
    m = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) * cs
    return float(m.mean())


def to_u8_hwc(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def pair(seed: int, b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference batch and a noisy, blurred 'SR' of it, both exactly on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(b, 3, h, w, generator=g)
    hr = torch.nn.functional.avg_pool2d(hr, 3, 1, 1)  # some structure
    sr = (hr + 0.08 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return sr.mul(255).round() / 255, hr.mul(255).round() / 255


# --- hand-computed cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "y"),
    [((0, 0, 0), 16), ((255, 255, 255), 235), ((255, 0, 0), 81), ((0, 255, 0), 145), ((0, 0, 255), 41)],
)
def test_y_of_primaries_matches_matlab(rgb, y):
    # MATLAB rgb2ycbcr(uint8) gives Y = 16/235/81/145/41 for black/white/red/green/blue.
    x = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1)
    assert rgb_to_y_ycbcr(x).item() == y


def test_y_is_exact_on_every_8bit_colour():
    # All 2^24 colours as one 4096x4096 image, against exact rational arithmetic (integer division with
    # remainder), and every tie against Fraction with MATLAB's half-away-from-zero rule.
    from fractions import Fraction

    code = np.arange(1 << 24, dtype=np.int64)
    rgb = np.stack([code >> 16, (code >> 8) & 255, code & 255])  # (3, 2^24)
    got = rgb_to_y_ycbcr(torch.from_numpy(rgb.reshape(1, 3, 4096, 4096)))[0, 0].numpy().reshape(-1)
    n = 65481 * rgb[0] + 128553 * rgb[1] + 24966 * rgb[2]
    q, r = np.divmod(n, 255000)
    np.testing.assert_array_equal(got, 16 + q + (2 * r >= 255000))
    ties = np.flatnonzero(2 * r == 255000)
    assert len(ties) == 194  # exact ties: about one colour in 86,000
    for i in ties[:: len(ties) // 50]:
        exact = 16 + Fraction(65481 * int(rgb[0, i]) + 128553 * int(rgb[1, i]) + 24966 * int(rgb[2, i]), 255000)
        assert exact.denominator == 2 and got[i] == exact + Fraction(1, 2)  # half away from zero
    unrounded = rgb_to_y_ycbcr(torch.from_numpy(rgb[:, ties].reshape(1, 3, 1, -1)), round_result=False)
    assert torch.equal(unrounded.frac(), torch.full_like(unrounded, 0.5))


def test_y_tie_example_and_bad_levels():
    # (22, 206, 0): 16 + (65.481*22 + 128.553*206) / 255 = 125.5 exactly; MATLAB rounds it to 126.
    x = torch.tensor([22.0, 206.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert rgb_to_y_ycbcr(x).item() == 126 and rgb_to_y_ycbcr(x, round_result=False).item() == 125.5
    assert rgb_to_y_ycbcr(x.to(torch.uint8)).item() == 126
    with pytest.raises(ValueError, match="integer 8-bit levels"):
        rgb_to_y_ycbcr(x + 0.25)
    with pytest.raises(ValueError, match=r"0\.\.255"):
        rgb_to_y_ycbcr(x * 2)


def test_psnr_hand_computed_flat_grey():
    # grey 100 -> Y round(16 + 219*100/255) = 102; grey 110 -> 110; MSE 64.
    hr = torch.full((1, 3, 16, 16), 100 / 255)
    sr = torch.full((1, 3, 16, 16), 110 / 255)
    assert psnr(sr, hr).item() == pytest.approx(10 * math.log10(255**2 / 64), abs=1e-5)
    assert psnr(sr, hr, y_channel=False).item() == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-5)


def test_ssim_hand_computed_flat_images():
    # Constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    hr = torch.full((1, 3, 16, 16), 100 / 255)
    sr = torch.full((1, 3, 16, 16), 110 / 255)
    a, b, c1 = 110.0, 102.0, (0.01 * 255) ** 2
    assert ssim(sr, hr).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)


def test_identical_images():
    _, hr = pair(0, 2, 24, 24)
    assert torch.equal(psnr(hr, hr), torch.full((2,), 100.0))  # PSNR_CAP_DB, never inf
    assert torch.allclose(ssim(hr, hr), torch.ones(2))


# --- against references -----------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(48, 48), (37, 53), (11, 11)])
def test_psnr_ssim_match_numpy_reference_and_skimage(h, w):
    sr, hr = pair(1, 3, h, w)
    got_p, got_s = psnr(sr, hr), ssim(sr, hr)
    got_p_rgb, got_s_rgb = psnr(sr, hr, y_channel=False), ssim(sr, hr, y_channel=False)
    for i in range(3):
        a, b = to_u8_hwc(sr[i]), to_u8_hwc(hr[i])
        ya, yb = np_y(a), np_y(b)
        assert got_p[i].item() == pytest.approx(np_psnr(ya, yb), abs=1e-4)
        assert got_s[i].item() == pytest.approx(np_ssim_valid(ya, yb), abs=1e-6)
        sk = structural_similarity(
            ya.astype(np.float64), yb.astype(np.float64),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
        )
        assert got_s[i].item() == pytest.approx(sk, abs=1e-6)
        assert got_p_rgb[i].item() == pytest.approx(np_psnr(a, b), abs=1e-4)
        per_channel = np.mean([np_ssim_valid(a[..., c], b[..., c]) for c in range(3)])
        assert got_s_rgb[i].item() == pytest.approx(per_channel, abs=1e-6)


def test_y_differs_from_rgb_and_float_luma():
    """Guard against silently computing the RGB or unrounded variant."""
    sr, hr = pair(2, 1, 32, 32)
    y_rounded = psnr(sr, hr).item()
    assert abs(y_rounded - psnr(sr, hr, y_channel=False).item()) > 0.1
    ya = rgb_to_y_ycbcr(quantize_to_uint8_values(sr), round_result=False)
    yb = rgb_to_y_ycbcr(quantize_to_uint8_values(hr), round_result=False)
    unrounded = 10 * math.log10(255**2 / float((ya - yb).pow(2).mean()))
    assert y_rounded != pytest.approx(unrounded, abs=1e-6)


def test_border_crop():
    sr, hr = pair(3, 2, 40, 36)
    crop = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert torch.equal(psnr(sr, hr, border=4), psnr(sr[crop], hr[crop]))
    assert torch.equal(ssim(sr, hr, border=4), ssim(sr[crop], hr[crop]))


# --- conventions: quantisation, range, grayscale, batching ------------------------------------------


def test_float_input_scores_like_the_png_written_from_it(tmp_path):
    g = torch.Generator().manual_seed(4)
    sr = torch.rand(1, 3, 20, 24, generator=g)  # off the 8-bit grid
    _, hr = pair(4, 1, 20, 24)
    write_png(tmp_path / "sr.png", sr[0])
    from_png = read_image(tmp_path / "sr.png")[None]
    assert torch.equal(psnr(sr, hr), psnr(from_png, hr))
    assert torch.equal(ssim(sr, hr), ssim(from_png, hr))
    u8 = (sr * 255).round().to(torch.uint8)
    assert torch.equal(psnr(u8, hr), psnr(sr, hr))


def test_grayscale_equals_replicated_rgb():
    sr, hr = pair(5, 2, 19, 23)
    sr_g, hr_g = sr[:, :1], hr[:, :1]
    assert torch.equal(psnr(sr_g, hr_g), psnr(sr_g.expand(-1, 3, -1, -1), hr_g.expand(-1, 3, -1, -1)))
    assert torch.equal(ssim(sr_g, hr_g), ssim(sr_g.expand(-1, 3, -1, -1), hr_g.expand(-1, 3, -1, -1)))


def test_batched_equals_per_image_through_registry():
    available, unavailable = build_metrics(["psnr", "ssim", "psnr-rgb", "ssim-rgb"])
    assert unavailable == {}
    sr, hr = pair(6, 4, 29, 31)
    for metric in available.values():
        batched = metric.compute(sr, hr)
        assert batched.dtype == torch.float32 and batched.shape == (4,)
        single = torch.cat([metric.compute(sr[i : i + 1], hr[i : i + 1]) for i in range(4)])
        assert torch.equal(batched, single), metric.name


def test_metric_rejects_minus_one_to_one_input_with_hint():
    (metrics, _) = build_metrics(["psnr"])
    sr, hr = pair(7, 1, 16, 16)
    with pytest.raises(MetricInputError, match=r"\[-1, 1\]"):
        metrics["psnr"].compute(sr * 2 - 1, hr)
    with pytest.raises(MetricInputError, match="needs the hr batch"):
        metrics["psnr"].compute(sr)
    with pytest.raises(MetricInputError, match="shapes differ"):
        metrics["psnr"].compute(sr, hr[..., :8])


def test_ssim_too_small_and_border_errors():
    sr, hr = pair(8, 1, 10, 30)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(sr, hr)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(sr, hr, border=5)


def anti_pair(seed: int, b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference batch and an 'SR' whose texture is partly inverted: many SSIM windows with a
    negative SR/HR covariance, where clamping the contrast-structure factor matters."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.nn.functional.avg_pool2d(torch.rand(b, 3, h, w, generator=g), 3, 1, 1)
    flip = (torch.arange(w) >= w // 2).to(hr.dtype)  # right half inverted
    sr = (hr * (1 - flip) + (1 - hr) * flip + 0.05 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return sr.mul(255).round() / 255, hr.mul(255).round() / 255


def test_ssim_clamped_cs_matches_numpy_reference_and_bounds_plain_ssim():
    sr, hr = anti_pair(11, 2, 40, 48)
    plain = ssim(sr, hr)
    clamped = ssim(sr, hr, clamp_cs=True)
    for i in range(2):
        ya, yb = np_y(to_u8_hwc(sr[i])), np_y(to_u8_hwc(hr[i]))
        assert clamped[i].item() == pytest.approx(np_ssim_valid(ya, yb, clamp_cs=True), abs=1e-6)
        assert plain[i].item() == pytest.approx(np_ssim_valid(ya, yb), abs=1e-6)
    assert bool((clamped - plain > 0.05).all())  # the inverted half: clamping changes the score
    # where no window correlates negatively, the two conventions are the same number
    sr2, hr2 = pair(12, 2, 40, 48)
    torch.testing.assert_close(ssim(sr2, hr2, clamp_cs=True), ssim(sr2, hr2), atol=1e-7, rtol=0)
    (metrics, _) = build_metrics(["ssim-pyiqa"])
    torch.testing.assert_close(metrics["ssim-pyiqa"].compute(sr, hr), clamped, atol=0, rtol=0)


def test_agreement_with_pyiqa_ycbcr_psnr_and_ssim():
    """pyiqa (no weights needed) is an independent implementation of the same formulas.

    pyiqa's PSNR keeps Y unrounded: it must equal our ``psnr-y-float``; its SSIM rounds Y like ours.
    """
    pyiqa = pytest.importorskip("pyiqa")
    sr, hr = pair(9, 3, 45, 51)
    p_psnr = pyiqa.create_metric("psnr", device="cpu", test_y_channel=True, color_space="ycbcr")
    p_ssim = pyiqa.create_metric("ssim", device="cpu", color_space="ycbcr")
    (metrics, _) = build_metrics(["psnr", "psnr-y-float", "ssim"])
    with torch.no_grad():
        ref_p = p_psnr(sr, hr).reshape(-1)
        ref_s = p_ssim(sr, hr).reshape(-1)
    torch.testing.assert_close(metrics["psnr-y-float"].compute(sr, hr), ref_p.float(), atol=1e-3, rtol=0)
    torch.testing.assert_close(metrics["ssim"].compute(sr, hr), ref_s.float(), atol=2e-4, rtol=0)
    assert not torch.allclose(metrics["psnr"].compute(sr, hr), ref_p.float(), atol=1e-3, rtol=0)


def test_ssim_pyiqa_equals_pyiqa_ssim_where_windows_anticorrelate():
    """pyiqa's ``ssim`` clamps the contrast-structure factor at 0: ``ssim-pyiqa`` computes the same
    number (to 2e-6: pyiqa rounds a float32 Y half to even, we round the exact Y half away from
    zero, which moves a few near-tie pixels by one level); ``ssim`` does not."""
    pyiqa = pytest.importorskip("pyiqa")
    sr, hr = anti_pair(13, 2, 45, 51)
    p_ssim = pyiqa.create_metric("ssim", device="cpu", test_y_channel=True, color_space="ycbcr")
    (metrics, _) = build_metrics(["ssim", "ssim-pyiqa"])
    with torch.no_grad():
        ref = p_ssim(sr, hr).reshape(-1).float()
    torch.testing.assert_close(metrics["ssim-pyiqa"].compute(sr, hr), ref, atol=2e-6, rtol=0)
    assert bool(((ref - metrics["ssim"].compute(sr, hr)) > 0.05).all())
