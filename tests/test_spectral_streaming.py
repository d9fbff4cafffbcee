"""The streamed spectral metrics (float32 planes, half-spectrum FFTs by chunks) against the dense
float64 computation of the module convention, with chunks forced small so that every chunk seam,
odd size and mirrored column is exercised."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from resshift.metrics import spectral as S

pytestmark = pytest.mark.usefixtures("one_thread")

# Stated tolerance of the streamed computation against the dense float64 one (relative).
REL_TOL = 1e-5


def _dense_luma(x: torch.Tensor) -> torch.Tensor:
    v = (x.float().clamp(0, 1) * 255).round().double() / 255
    wr, wg, wb = S.LUMA_WEIGHTS
    return v[:, 0] * wr + v[:, 1] * wg + v[:, 2] * wb


def _radius(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5


def _dense_power(y: torch.Tensor) -> torch.Tensor:
    h, w = y.shape[-2:]
    win = (torch.hann_window(h, periodic=True, dtype=torch.float64)[:, None]
           * torch.hann_window(w, periodic=True, dtype=torch.float64)[None, :])
    mean = (y * win).sum(dim=(-2, -1), keepdim=True) / win.sum()
    spec = torch.fft.fft2((y - mean) * win)
    return spec.abs() ** 2 / win.pow(2).sum()


def _dense_profile(y: torch.Tensor, n_bands: int = S.N_BANDS) -> torch.Tensor:
    p = _dense_power(y)
    r = _radius(*y.shape[-2:])
    index = torch.clamp((r * n_bands).floor().long(), max=n_bands - 1)
    out = torch.full((y.shape[0], n_bands), math.nan, dtype=torch.float64)
    for band in range(n_bands):
        sel = (index == band) & (r <= 1 + 1e-12)
        if sel.any():
            out[:, band] = p[:, sel].mean(dim=1)
    return out


def _dense_hf(y: torch.Tensor, cutoff: float = S.HF_CUTOFF) -> torch.Tensor:
    h, w = y.shape[-2:]
    mask = _radius(h, w) >= cutoff
    energy = (_dense_power(y) * mask).sum(dim=(-2, -1)) / (h * w)
    return energy.clamp(min=S.QUANTIZATION_POWER * float(mask.sum()) / (h * w))


def _dense_band_mse(a: torch.Tensor, b: torch.Tensor, low: float, high: float) -> torch.Tensor:
    err = _dense_luma(a) - _dense_luma(b)
    h, w = err.shape[-2:]
    r = _radius(h, w)
    return (torch.fft.fft2(err).abs() ** 2 * ((r >= low) & (r < high))).sum(dim=(-2, -1)) / float(h * w) ** 2


def _pair(h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Textured HR, a noisy SR of it and an LR (area x1/4 where the size allows)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(2, 3, max(2, h // 8), max(2, w // 8), generator=g)
    hr = (F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
          + 0.1 * torch.rand(2, 3, h, w, generator=g)).clamp(0, 1)
    sr = (hr + 0.03 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return sr, hr, F.interpolate(hr, scale_factor=0.25, mode="area")


@pytest.fixture(params=[300, 1 << 20], ids=["tiny-chunks", "default-chunks"])
def chunk(request, monkeypatch) -> int:
    monkeypatch.setattr(S, "CHUNK_ELEMENTS", request.param)
    return request.param


@pytest.mark.parametrize("h,w", [(64, 64), (63, 77), (96, 128), (130, 257)])
def test_streamed_values_equal_the_dense_float64_ones(chunk, h, w) -> None:
    sr, hr, _ = _pair(h, w, seed=h * w)
    y_sr, y_hr = _dense_luma(sr), _dense_luma(hr)
    luma = S.luma(sr)
    assert luma.dtype == torch.float32
    torch.testing.assert_close(luma.double(), y_sr, rtol=0, atol=6e-8)
    profile, dense = S.radial_power_spectrum(sr), _dense_profile(y_sr)
    assert torch.equal(profile.isnan(), dense.isnan())
    torch.testing.assert_close(profile.nan_to_num(), dense.nan_to_num(), rtol=REL_TOL, atol=1e-12)
    torch.testing.assert_close(S.hf_ratio(sr, hr), _dense_hf(y_sr) / _dense_hf(y_hr), rtol=REL_TOL, atol=0)
    for band, (low, high) in S.PSNR_BANDS.items():
        expected = -10 * torch.log10(_dense_band_mse(sr, hr, low, high))
        torch.testing.assert_close(S.band_psnr(sr, hr, band), expected, rtol=0, atol=1e-4)


def test_lr_reference_equals_the_upsampled_image(chunk) -> None:
    sr, _, lr = _pair(96, 128, seed=3)
    up = S.upsample_lr_reference(lr, (96, 128))
    # Row-chunked bicubic gives the same 8-bit values: lumas differ by float32 round-off only.
    torch.testing.assert_close(S.upsampled_luma(lr, (96, 128)).double(), _dense_luma(up), rtol=0, atol=6e-8)
    torch.testing.assert_close(S.hf_ratio(sr, lr, lr_reference=True), S.hf_ratio(sr, up), rtol=REL_TOL, atol=0)
    torch.testing.assert_close(S.radial_power_spectrum(lr, upsample_to=(96, 128)), S.radial_power_spectrum(up),
                               rtol=REL_TOL, atol=1e-12)
    torch.testing.assert_close(S.band_psnr(sr, lr, "mid", lr_reference=True), S.band_psnr(sr, up, "mid"),
                               rtol=0, atol=1e-4)
    with pytest.raises(S.MetricInputError, match="not one integer multiple"):
        S.hf_ratio(sr, lr[..., :-1], lr_reference=True)


def test_chunks_cover_the_range_once() -> None:
    for length, stride in [(1, 10**9), (7, 1), (1000, 37), (12000, 16000 * 3)]:
        spans = S._chunks(length, stride)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.slow
def test_whole_run_peak_rss_is_measured_in_a_fresh_process() -> None:
    """`python benchmarks/cpu_speed.py --run-memory` on a small image: a whole bicubic run with the default
    metrics in a subprocess; the SR of bicubic is its own LR reference, so hf-ratio-lrup is 1."""
    from bench_script import cpu_speed

    result = cpu_speed().run_peak_rss(64, 48)
    assert result["sr_size"] == [256, 192]
    assert result["metrics"]["hf-ratio-lrup"] == pytest.approx(1.0, abs=1e-12)
    assert 0 < result["peak_rss_MiB"] < 8 * 1024
