"""Frequency analysis of SR images: power spectra, high-frequency energy, band-limited PSNR.

Convention (``spectral@1``; every function here is batched and runs on the inputs' device):

1. **Pixels.** RGB in ``[0, 1]`` is quantised to 8 bits first, ``round(clamp(x, 0, 1) * 255)``, the
   rule used to write SR PNGs (as :mod:`resshift.metrics.paper_y`), so a tensor and its PNG score the
   same.
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

**Precision and memory.** Images of any size are scored in bounded memory (a 16000x12000 SR image
in about 1.6 GB besides the inputs): luma is computed in float64 row chunks and kept as one float32
plane; the 2-D FFT runs as float64 row FFTs stored once as a complex64 half spectrum (the input is
real), then float64 column FFTs streamed by column chunks straight into the sums, each half-spectrum
column counted with its mirror. Sums are float64. Against the dense float64 computation the values
agree to ~1e-7 relative (tested at 1e-5); band assignment uses the same float64 radial frequencies.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from resshift.data.degradations.upscale import torch_bicubic_upscale
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


# Working set of one chunk, in elements. Full-size buffers are one float32 luma plane and one complex64
# half spectrum per image (8 bytes per pixel each); float64 only ever holds one chunk.
CHUNK_ELEMENTS = 1 << 20


def _chunks(length: int, stride_elements: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``range(length)``, each of about :data:`CHUNK_ELEMENTS`
    elements when one index spans ``stride_elements`` elements."""
    step = max(1, CHUNK_ELEMENTS // max(1, stride_elements))
    return [(i, min(i + step, length)) for i in range(0, length, step)]


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 3, H, W) or (B, 1, H, W) images, got shape {tuple(x.shape)}")


def _luma64(x: torch.Tensor) -> torch.Tensor:
    """Float64 luma of a (chunk of a) ``(B, 3|1, h, W)`` batch (steps 1-2 of the module convention)."""
    v = quantize_to_uint8_values(x) / 255.0
    if v.shape[1] == 1:
        return v[:, 0]
    wr, wg, wb = LUMA_WEIGHTS
    return v[:, 0] * wr + v[:, 1] * wg + v[:, 2] * wb


def luma(x: torch.Tensor, minus: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 3|1, H, W)`` RGB in ``[0, 1]`` (or uint8) -> ``(B, H, W)`` float32 luma on ``[0, 1]``.

    8-bit quantisation first (step 1 of the module convention), then full-range BT.601, computed in
    float64 row chunks and rounded once to float32 (relative error <= 6e-8). With ``minus`` (a batch
    of the same shape) returns ``luma(x) - luma(minus)``, the difference also taken in float64.
    """
    _check_images(x)
    if minus is not None and minus.shape != x.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(minus.shape)}")
    b, c, h, w = x.shape
    out = torch.empty(b, h, w, dtype=torch.float32, device=x.device)
    for r0, r1 in _chunks(h, b * c * w):
        y = _luma64(x[:, :, r0:r1])
        if minus is not None:
            y = y - _luma64(minus[:, :, r0:r1].to(x.device))
        out[:, r0:r1] = y
    return out


def upsampled_luma(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``luma(upsample_lr_reference(lr, size))`` -> ``(B, H, W)`` float32, computed in row chunks.

    Bicubic output rows depend on the input rows within 2 of their source position, so each chunk
    upsamples only its LR rows plus a margin of 3 (same source positions and weights as the whole
    image, away from the chunk's cut): the full-size RGB upsampling is never held.
    """
    _check_images(lr)
    scale = _integer_scale(lr, size)
    b, c, h, w = lr.shape
    out = torch.empty(b, size[0], size[1], dtype=torch.float32, device=lr.device)
    margin = 3
    for r0, r1 in _chunks(h, b * c * size[1] * scale):
        a0, a1 = max(0, r0 - margin), min(h, r1 + margin)
        with torch.inference_mode():
            rows = torch_bicubic_upscale(lr[:, :, a0:a1], scale)[:, :, (r0 - a0) * scale : (r1 - a0) * scale]
        out[:, r0 * scale : r1 * scale] = luma(rows)
    return out


def radial_frequency(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W)`` float64 radial frequency in units of Nyquist, in unshifted FFT layout."""
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5


def _hann(n: int, device: torch.device | str) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float64, device=device)


def _half_spectrum(y: torch.Tensor, window: bool) -> tuple[torch.Tensor, float]:
    """Row FFTs of one ``(H, W)`` plane -> ``(H, W // 2 + 1)`` complex64, and the power normaliser.

    With ``window`` the window-weighted mean is removed and the separable Hann window applied
    (step 4); the normaliser is then ``sum(w^2)``, else 1. Each row chunk is transformed in float64
    and stored once rounded to complex64 (the only full-size intermediate).
    """
    h, w = y.shape
    device = y.device
    buf = torch.empty(h, w // 2 + 1, dtype=torch.complex64, device=device)
    if window:
        wy, wx = _hann(h, device), _hann(w, device)
        weighted = sum(float((y[r0:r1].double() * wy[r0:r1, None]).sum(0) @ wx) for r0, r1 in _chunks(h, w))
        mean = weighted / float(wy.sum() * wx.sum())
        norm = float(wy.pow(2).sum() * wx.pow(2).sum())
    for r0, r1 in _chunks(h, w):
        rows = y[r0:r1].double()
        if window:
            rows = (rows - mean) * wy[r0:r1, None] * wx[None, :]
        buf[r0:r1] = torch.fft.rfft(rows, dim=-1)
    return buf, (norm if window else 1.0)


def _power_chunks(y: torch.Tensor, window: bool):
    """Stream the 2-D power spectrum ``|FFT2|^2 / norm`` of one ``(H, W)`` plane by column chunks.

    Yields ``(power, r, weight)``: ``(H, c)`` float64 power and radial frequency (Nyquist units)
    of half-spectrum columns, and their ``(c,)`` multiplicity in the full spectrum (2 for the
    columns whose mirror ``W - k`` is left out, else 1), so sums over the full spectrum are sums
    of ``weight * ...`` here. The columns' FFTs run in float64.
    """
    h, w = y.shape
    buf, norm = _half_spectrum(y, window)
    fy = torch.fft.fftfreq(h, device=y.device, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, device=y.device, dtype=torch.float64)[: w // 2 + 1].abs()
    weight = torch.full_like(fx, 2.0)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    for c0, c1 in _chunks(buf.shape[1], 2 * h):
        spec = torch.fft.fft(buf[:, c0:c1].to(torch.complex128), dim=0)
        power = (spec.real**2 + spec.imag**2) / norm
        if window and c0 == 0:
            power[0, 0] = 0.0  # DC of the mean-removed windowed image: 0 up to round-off
        r = torch.sqrt(fy[:, None] ** 2 + fx[None, c0:c1] ** 2) / 0.5
        yield power, r, weight[c0:c1]


def band_edges(n_bands: int = N_BANDS) -> torch.Tensor:
    """``(n_bands + 1,)`` float64 edges of the radial bands on ``[0, 1]`` (fractions of Nyquist)."""
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    return torch.linspace(0.0, 1.0, n_bands + 1, dtype=torch.float64)


def band_centres(n_bands: int = N_BANDS) -> torch.Tensor:
    """``(n_bands,)`` float64 centres of the radial bands (fractions of Nyquist)."""
    e = band_edges(n_bands)
    return 0.5 * (e[:-1] + e[1:])


def _radial_profile_of_luma(y: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Mean windowed power of one ``(H, W)`` luma plane over each radial band -> ``(n_bands,)``
    float64; NaN for empty bands (step 5)."""
    sums = torch.zeros(n_bands, dtype=torch.float64, device=y.device)
    counts = torch.zeros(n_bands, dtype=torch.float64, device=y.device)
    for power, r, weight in _power_chunks(y, window=True):
        keep = r <= 1.0 + 1e-12
        index = torch.clamp((r[keep] * n_bands).floor().long(), max=n_bands - 1)
        weights = weight.expand_as(r)[keep]
        sums.index_add_(0, index, power[keep] * weights)
        counts.index_add_(0, index, weights)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))


def _hf_energy_of_luma(y: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Step 6 for one ``(H, W)`` luma plane -> float64 scalar."""
    h, w = y.shape
    energy, bins = 0.0, 0.0
    for power, r, weight in _power_chunks(y, window=True):
        mask = (r >= cutoff) * weight
        energy += float((power * mask).sum())
        bins += float(mask.sum())
    floor = QUANTIZATION_POWER * bins / (h * w)
    return torch.tensor(max(energy / (h * w), floor), dtype=torch.float64)


def _band_mse_of_error(err: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Step 7 for one ``(H, W)`` luma error plane -> float64 scalar."""
    h, w = err.shape
    total = 0.0
    for power, r, weight in _power_chunks(err, window=False):
        total += float((power * (((r >= low) & (r < high)) * weight)).sum())
    return torch.tensor(total / float(h * w) ** 2, dtype=torch.float64)


def _reference_lumas(ref: torch.Tensor, size: tuple[int, int] | None):
    """Luma planes of a reference batch, one at a time: of ``ref`` itself, or (``size`` given) of the
    LR batch ``ref`` bicubic-upsampled to ``size`` (:func:`upsampled_luma`)."""
    for i in range(ref.shape[0]):
        one = ref[i : i + 1]
        yield (luma(one) if size is None else upsampled_luma(one, size))[0]


def radial_power_spectrum(x: torch.Tensor, n_bands: int = N_BANDS,
                          upsample_to: tuple[int, int] | None = None) -> torch.Tensor:
    """Radially averaged windowed luma power spectrum of images -> ``(B, n_bands)`` float64.

    With ``upsample_to`` ``x`` is an LR batch and the spectrum is that of its bicubic upsampling to
    that size (:func:`upsample_lr_reference`), computed without holding the upsampled RGB.
    """
    if n_bands < 1:
        raise ValueError(f"n_bands must be >= 1, got {n_bands}")
    _check_images(x)
    return torch.stack([_radial_profile_of_luma(y, n_bands) for y in _reference_lumas(x, upsample_to)])


def spectrum_ratio(sr: torch.Tensor, ref: torch.Tensor, n_bands: int = N_BANDS) -> torch.Tensor:
    """Per-band power ratio SR / reference -> ``(B, n_bands)``; both floored at the quantisation power."""
    p_sr = radial_power_spectrum(sr, n_bands).clamp(min=QUANTIZATION_POWER)
    p_ref = radial_power_spectrum(ref, n_bands).clamp(min=QUANTIZATION_POWER)
    return p_sr / p_ref


def band_log2_ratios(power_sr: np.ndarray, power_ref: np.ndarray) -> np.ndarray:
    """Per-image ``log2(P_sr / P_ref)`` per band from recorded spectra ``(N, n_bands)``, both floored at the
    quantisation power as :func:`spectrum_ratio`; NaN where a spectrum is NaN (no GT, empty band)."""
    with np.errstate(invalid="ignore"):
        return np.log2(np.maximum(power_sr, QUANTIZATION_POWER) / np.maximum(power_ref, QUANTIZATION_POWER))


def mean_band_ratio(power_sr: np.ndarray, power_ref: np.ndarray) -> np.ndarray:
    """A run's mean spectrum ratio curve ``(n_bands,)``: the geometric mean over images of the per-image
    band ratios SR / reference (each image counts the same whatever its contrast); NaN for a band no
    image has."""
    logs = band_log2_ratios(power_sr, power_ref)
    out = np.full(logs.shape[1], np.nan)
    valid = np.isfinite(logs)
    counts = valid.sum(axis=0)
    sums = np.where(valid, logs, 0.0).sum(axis=0)
    np.divide(sums, counts, out=out, where=counts > 0)
    return np.exp2(out)


def hf_energy(x: torch.Tensor, cutoff: float = HF_CUTOFF, upsample_to: tuple[int, int] | None = None) -> torch.Tensor:
    """Windowed luma variance above ``cutoff`` (fraction of Nyquist) -> ``(B,)`` float64, floored at
    the 8-bit quantisation-noise level of that region. ``upsample_to``: as :func:`radial_power_spectrum`."""
    _check_images(x)
    return torch.stack([_hf_energy_of_luma(y, cutoff) for y in _reference_lumas(x, upsample_to)]).to(x.device)


def hf_ratio(sr: torch.Tensor, ref: torch.Tensor, cutoff: float = HF_CUTOFF,
             lr_reference: bool = False) -> torch.Tensor:
    """``HF(sr) / HF(ref)`` per image -> ``(B,)`` float64 (1 = same HF energy as the reference).

    ``lr_reference``: ``ref`` is the LR batch, compared through its bicubic upsampling to the SR size.
    """
    size = _lr_reference_size(sr, ref) if lr_reference else None
    return hf_energy(sr, cutoff) / hf_energy(ref, cutoff, upsample_to=size).to(sr.device)


def band_mse(sr: torch.Tensor, ref: torch.Tensor, low: float, high: float, lr_reference: bool = False) -> torch.Tensor:
    """Luma MSE carried by radial frequencies ``low <= r < high`` (Nyquist units) -> ``(B,)`` float64.

    The error plane is ``luma(sr, minus=ref)`` (difference in float64, stored as float32); with
    ``lr_reference`` (``ref`` an LR batch) it is ``luma(sr) - upsampled_luma(ref)`` in float32.
    """
    _check_images(sr)
    size = _lr_reference_size(sr, ref) if lr_reference else None
    out = []
    for i in range(sr.shape[0]):
        one, ref_one = sr[i : i + 1], ref[i : i + 1]
        if size is None:
            err = luma(one, minus=ref_one)[0]
        else:
            err = luma(one)[0].sub_(upsampled_luma(ref_one, size)[0].to(sr.device))
        out.append(_band_mse_of_error(err, low, high))
    return torch.stack(out).to(sr.device)


def band_psnr(sr: torch.Tensor, ref: torch.Tensor, band: str, lr_reference: bool = False) -> torch.Tensor:
    """Band-limited luma PSNR in dB (peak 1) for ``band`` in :data:`PSNR_BANDS` -> ``(B,)`` float64,
    capped at :data:`PSNR_CAP_DB`. ``lr_reference``: as :func:`hf_ratio`."""
    if band not in PSNR_BANDS:
        raise ValueError(f"unknown band {band!r}; known: {', '.join(PSNR_BANDS)}")
    low, high = PSNR_BANDS[band]
    mse = band_mse(sr, ref, low, high, lr_reference).clamp(min=_MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def _integer_scale(lr: torch.Tensor, size: tuple[int, int]) -> int:
    """The one integer factor from the LR size to ``size`` on both axes, else ``MetricInputError``."""
    (h, w), (sh, sw) = lr.shape[-2:], size
    if sh % h or sw % w or sh // h != sw // w:
        raise MetricInputError(
            f"SR size {sh}x{sw} is not one integer multiple of the LR size {h}x{w} on both axes"
        )
    return sh // h


def _lr_reference_size(sr: torch.Tensor, lr: torch.Tensor) -> tuple[int, int]:
    size = (int(sr.shape[-2]), int(sr.shape[-1]))
    _integer_scale(lr, size)
    return size


def upsample_lr_reference(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The reference of LR-mode metrics: the LR batch bicubic-upsampled to ``size`` exactly as the
    ``bicubic`` method does it (PyTorch bicubic, A = -0.75, no antialiasing, clamped to ``[0, 1]``).

    ``size`` must be an integer multiple of the LR size, the same factor on both axes. (The metrics
    use :func:`upsampled_luma`, which gives the luma of this without holding it.)
    """
    with torch.inference_mode():
        return torch_bicubic_upscale(lr, _integer_scale(lr, size))


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
        lr_reference = self.spec.mode == "LR"  # the reference is the LR batch, bicubic-upsampled
        statistic = opts.get("statistic")
        if statistic == "band-psnr":
            return band_psnr(sr, hr, str(opts["band"]), lr_reference)
        ratio = hf_ratio(sr, hr, float(opts.get("cutoff", HF_CUTOFF)), lr_reference)
        if statistic == "hf-ratio":
            return ratio
        if statistic == "hf-log-ratio-abs":
            return torch.log2(ratio).abs()
        raise ValueError(f"{self.name}: spec option 'statistic' must be one of {SPECTRAL_STATISTICS}, "
                         f"got {statistic!r}")
