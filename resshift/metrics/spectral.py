"""Frequency analysis of SR images: power spectra, high-frequency energy, band-limited PSNR.

Convention (``spectral@1``; every function here is batched and runs on the inputs' device):

1. **Pixels.** RGB in ``[0, 1]`` is quantised to 8 bits first, ``round(clamp(x, 0, 1) * 255)``, the
   rule used to write SR PNGs (as :mod:`resshift.metrics.paper_y`), so a tensor and its PNG score the
   same. Work is in float64.
2. **Luma.** Full-range ITU-R BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B`` on ``[0, 1]`` (the paper's
   limited-range coefficients divided by 219; no offset, no rounding).
3. **Frequency axis.** Radial frequency normalised to Nyquist: ``r = sqrt(fy^2 + fx^2) / 0.5`` with
   ``fy, fx`` in cycles per pixel, so ``r = 1`` is Nyquist along an axis (corners reach ``sqrt(2)``)
   and images of any size share one axis. For x4 SR, the LR image's Nyquist sits at ``r = 0.25``.
4. **Power spectrum.** The window-weighted mean is removed, a separable periodic Hann window
   applied, and ``P = |FFT(w * (y - mean_w))|^2 / sum(w^2)``: white noise of variance ``s^2`` has
   ``P = s^2`` in every bin whatever the image size, and the DC bin is exactly 0.
5. **Radial profile.** ``n_bands`` equal-width bands over ``0 <= r <= 1`` (band ``i`` covers
   ``[i, i + 1) / n_bands``, the last one includes ``r = 1``); each band is the mean ``P`` of its
   bins. Corner bins (``r > 1``) are left out of the profile. A band with no bin (tiny images) is NaN.
6. **High-frequency energy.** ``HF = sum(P over r >= 0.5) / (H W)``: the (windowed) variance carried
   above half Nyquist, corners included. ``hf_ratio = HF(SR) / HF(reference)``: 1 = the reference's
   HF energy, < 1 = smoother (energy lost), > 1 = energy added (noise, over-sharpening). Energies are
   floored at the 8-bit quantisation-noise level in that region (``(1/255)^2 / 12`` per bin, a level
   no 8-bit image can be told apart from), so two flat images give 1 instead of 0/0.
7. **Band-limited PSNR.** The luma error ``e = Y(SR) - Y(reference)`` (no window) is split by ideal
   radial masks of its FFT: low ``r < 0.25`` (what the x4 LR input can carry), mid
   ``0.25 <= r < 0.5``, high ``r >= 0.5`` (corners included). By Parseval the band MSEs
   ``sum_band |E|^2 / (H W)^2`` add up to the full-image luma MSE. ``PSNR = 10 log10(1 / MSE)``,
   capped at :data:`PSNR_CAP_DB` (MSE floored at ``1e-10``), so identical images score 100 dB.
"""

from __future__ import annotations

import math

import torch

from resshift.metrics.base import Metric, MetricInputError
from resshift.metrics.paper_y import PSNR_CAP_DB, YCBCR_Y_WEIGHTS, quantize_to_uint8_values

SPECTRAL_VERSION = "spectral@1"

# Full-range BT.601 luma weights (0.299, 0.587, 0.114), from the limited-range ones of paper_y.
LUMA_WEIGHTS: tuple[float, float, float] = tuple(w / 219.0 for w in YCBCR_Y_WEIGHTS)  # type: ignore[assignment]

N_BANDS = 32
HF_CUTOFF = 0.5  # fraction of Nyquist above which energy counts as high frequency
# Band edges of the band-limited PSNRs, as fractions of Nyquist (upper edge excluded; "high" takes
# everything from 0.5 up to the corners at sqrt(2)).
PSNR_BANDS: dict[str, tuple[float, float]] = {"low": (0.0, 0.25), "mid": (0.25, 0.5), "high": (0.5, math.inf)}
_MSE_FLOOR = 10.0 ** (-PSNR_CAP_DB / 10.0)
# Power of uniform 8-bit rounding noise per spectrum bin, on [0, 1] luma.
QUANTIZATION_POWER = (1.0 / 255.0) ** 2 / 12.0


def luma(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3|1, H, W)`` RGB in ``[0, 1]`` (or uint8) -> ``(B, H, W)`` float64 luma on ``[0, 1]``.

    8-bit quantisation first (step 1 of the module convention), then full-range BT.601.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3, H, W) or (B, 1, H, W) images, got shape {tuple(x.shape)}")
    v = quantize_to_uint8_values(x) / 255.0
    if v.shape[1] == 1:
        return v[:, 0]
    wr, wg, wb = LUMA_WEIGHTS
    return v[:, 0] * wr + v[:, 1] * wg + v[:, 2] * wb


def radial_frequency(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W)`` float64 radial frequency in units of Nyquist, in unshifted FFT layout."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5


def hann_window_2d(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Separable periodic Hann window, ``(H, W)`` float64."""
    wy = torch.hann_window(height, periodic=True, dtype=torch.float64, device=device)
    wx = torch.hann_window(width, periodic=True, dtype=torch.float64, device=device)
    return wy[:, None] * wx[None, :]


def power_spectrum_of_luma(y: torch.Tensor) -> torch.Tensor:
    """Windowed power spectrum of ``(B, H, W)`` luma -> ``(B, H, W)`` float64 (unshifted layout)."""
    h, w = y.shape[-2:]
    win = hann_window_2d(h, w, y.device)
    # Window-weighted mean removed: the windowed image then has exactly zero DC, so no DC leakage.
    mean = (y * win).sum(dim=(-2, -1), keepdim=True) / win.sum()
    centred = (y - mean) * win
    spec = torch.fft.fft2(centred)
    return (spec.real**2 + spec.imag**2) / win.pow(2).sum()


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Windowed luma power spectrum of ``(B, 3|1, H, W)`` images -> ``(B, H, W)`` float64."""
    return power_spectrum_of_luma(luma(x))


def band_edges(n_bands: int = N_BANDS) -> torch.Tensor:
    """``(n_bands + 1,)`` float64 edges of the radial bands on ``[0, 1]`` (fractions of Nyquist)."""
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    return torch.linspace(0.0, 1.0, n_bands + 1, dtype=torch.float64)


def band_centres(n_bands: int = N_BANDS) -> torch.Tensor:
    """``(n_bands,)`` float64 centres of the radial bands (fractions of Nyquist)."""
    e = band_edges(n_bands)
    return 0.5 * (e[:-1] + e[1:])


def radial_profile(power: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Mean of ``(B, H, W)`` power over each radial band -> ``(B, n_bands)``; NaN for empty bands."""
    b, h, w = power.shape
    r = radial_frequency(h, w, power.device).reshape(-1)
    index = torch.clamp((r * n_bands).floor().long(), max=n_bands - 1)
    keep = r <= 1.0 + 1e-12
    index, flat = index[keep], power.reshape(b, -1)[:, keep]
    sums = torch.zeros(b, n_bands, dtype=power.dtype, device=power.device).index_add_(1, index, flat)
    counts = torch.bincount(index, minlength=n_bands).to(power.dtype)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))


def radial_power_spectrum(x: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Radially averaged windowed luma power spectrum of images -> ``(B, n_bands)`` float64."""
    return radial_profile(power_spectrum(x), n_bands)


def spectrum_ratio(sr: torch.Tensor, ref: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Per-band power ratio SR / reference -> ``(B, n_bands)``; both floored at the quantisation power."""
    p_sr = radial_power_spectrum(sr, n_bands).clamp(min=QUANTIZATION_POWER)
    p_ref = radial_power_spectrum(ref, n_bands).clamp(min=QUANTIZATION_POWER)
    return p_sr / p_ref


def hf_energy(x: torch.Tensor, cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """Windowed luma variance above ``cutoff`` (fraction of Nyquist) -> ``(B,)`` float64, floored at
    the 8-bit quantisation-noise level of that region."""
    p = power_spectrum(x)
    h, w = p.shape[-2:]
    mask = radial_frequency(h, w, p.device) >= cutoff
    energy = (p * mask).sum(dim=(-2, -1)) / (h * w)
    floor = QUANTIZATION_POWER * float(mask.sum()) / (h * w)
    return energy.clamp(min=floor)


def hf_ratio(sr: torch.Tensor, ref: torch.Tensor, cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """``HF(sr) / HF(ref)`` per image -> ``(B,)`` float64 (1 = same HF energy as the reference)."""
    return hf_energy(sr, cutoff) / hf_energy(ref, cutoff)


def band_mse(sr: torch.Tensor, ref: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Luma MSE carried by radial frequencies ``low <= r < high`` (Nyquist units) -> ``(B,)`` float64."""
    err = luma(sr) - luma(ref).to(sr.device)
    h, w = err.shape[-2:]
    spec = torch.fft.fft2(err)
    r = radial_frequency(h, w, err.device)
    mask = (r >= low) & (r < high)
    return ((spec.real**2 + spec.imag**2) * mask).sum(dim=(-2, -1)) / float(h * w) ** 2


def band_psnr(sr: torch.Tensor, ref: torch.Tensor, band: str) -> torch.Tensor:
    """Band-limited luma PSNR in dB (peak 1) for ``band`` in :data:`PSNR_BANDS` -> ``(B,)`` float64,
    capped at :data:`PSNR_CAP_DB`."""
    if band not in PSNR_BANDS:
        raise ValueError(f"unknown band {band!r}; known: {', '.join(PSNR_BANDS)}")
    low, high = PSNR_BANDS[band]
    mse = band_mse(sr, ref, low, high).clamp(min=_MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def upsample_lr_reference(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference of LR-mode metrics: the LR batch bicubic-upsampled to ``size`` exactly as the
    ``bicubic`` method does it (PyTorch bicubic, A = -0.75, no antialiasing, clamped to ``[0, 1]``).

    ``size`` must be an integer multiple of the LR size, the same factor on both axes.
    """
    from resshift.methods.bicubic import BicubicUpsampler

    (h, w), (sh, sw) = lr.shape[-2:], size
    if sh % h or sw % w or sh // h != sw // w:
        raise MetricInputError(
            f"SR size {sh}x{sw} is not one integer multiple of the LR size {h}x{w} on both axes"
        )
    return BicubicUpsampler(scale=sh // h).upscale(lr)


# ----------------------------------------------------------------------------------------------------
# Registry glue: the Metric built for specs of kind Spectral; their option 'statistic' is one of these.

SPECTRAL_STATISTICS = ("hf-ratio", "hf-log-ratio-abs", "band-psnr")


class SpectralMetric(Metric):
    """HF energy ratio / band PSNR per the spec options (``statistic``, ``band``, ``cutoff``).

    FR specs compare with the HR batch; LR-mode specs get the LR batch and compare with its bicubic
    upsampling (:func:`upsample_lr_reference`).
    """

    def _compute(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        assert hr is not None
        opts = self.spec.option_dict
        ref = upsample_lr_reference(hr, tuple(sr.shape[-2:])) if self.spec.mode == "LR" else hr
        statistic = opts.get("statistic")
        if statistic == "band-psnr":
            return band_psnr(sr, ref, str(opts["band"]))
        ratio = hf_ratio(sr, ref, float(opts.get("cutoff", HF_CUTOFF)))
        if statistic == "hf-ratio":
            return ratio
        if statistic == "hf-log-ratio-abs":
            return torch.log2(ratio).abs()
        raise ValueError(f"{self.name}: spec option 'statistic' must be one of {SPECTRAL_STATISTICS}, "
                         f"got {statistic!r}")
