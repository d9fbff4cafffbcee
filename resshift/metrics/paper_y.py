"""PSNR and SSIM exactly as the ResShift paper computes them (the one home of this convention).

Protocol (``psnr_y_ycbcr@1`` / ``ssim_y_ycbcr@1``):

1. Inputs are RGB images in ``[0, 1]``. They are quantised to 8 bits first with the rule used to write
   the SR outputs as PNG, ``round(clamp(x, 0, 1) * 255)`` (float32 arithmetic, as
   :func:`resshift.io.tensor_to_uint8`), so a tensor and the PNG written from it score the same.
   ``uint8`` tensors are taken as they are.
2. Luma is MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, limited range) on those 8-bit values:
   ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255, rounded to the
   nearest integer, so Y is an integer in 16..235. The weights are multiples of 1/1000, so
   ``Y = 16 + (65481 R + 128553 G + 24966 B) / 255000`` is a ratio of integers: it is computed in
   integer arithmetic, exactly, and the same on every machine. Exact ties (e.g. RGB (22, 206, 0):
   125.5) are rounded **half away from zero**, MATLAB's ``round`` and its conversion to ``uint8``.
   The official ResShift code (``utils/util_image.rgb2ycbcr``) computes the sum in float64 with
   NumPy and rounds with ``np.round`` (half to even): at a tie its float sum lands a hair above or
   below .5 depending on operation order and SIMD width, so it rounds ties either way, by machine.
   Ties are rare (a tie moves one pixel's Y by one level), so this changes no published number.
3. ``border`` pixels are cut from every side (0 in the paper protocol).
4. PSNR = ``10 log10(255^2 / MSE)`` per image, capped at :data:`PSNR_CAP_DB` = 100 dB (the official
   ``calculate_psnr`` returns ``inf`` for identical images, which would make any mean over a set that
   holds one infinite and any comparison meaningless; pyiqa adds 1e-8 to the MSE, an 80 dB cap on
   [0, 1] data). A 256x256 image one level off in one pixel scores 96 dB, so the cap only binds
   for identical (or near-identical, very large) images. The band PSNRs of
   :mod:`resshift.metrics.spectral` use the same cap.
   SSIM uses an 11x11 Gaussian window with sigma 1.5, only the 'valid' region (no padding), and
   ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``; the score is the mean of the SSIM map.
   This is the classic Wang et al. MATLAB ``ssim_index`` setting; scikit-image's
   ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
   data_range=255)`` computes the same number.

``psnr_y_ycbcr_float@1`` skips the rounding in step 2: that is what pyiqa's
``psnr(test_y_channel=True, color_space='ycbcr')`` computes (the later SinSR/InvSR scripts); it reads
about 0.01 dB higher on natural images and much higher near-lossless (rounding noise dominates there).
pyiqa also adds ``1e-8`` to the MSE of ``[0, 1]`` data (its 80 dB cap), which lowers its value by
``10 log10(1 + 1e-8 / MSE)`` dB: 4e-5 dB at 30 dB, 0.004 dB at 50 dB. That term is not part of
this convention (the golden test against OSEDiff's log adds it back when comparing).

``ssim_y_ycbcr_csclamp@1`` is step 4's SSIM with the contrast-structure factor of the map clamped
at 0, ``mean(l * max(cs, 0))`` with ``l = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)`` and
``cs = (2 cov + C2) / (var_a + var_b + C2)``: pyiqa's ``ssim`` does that (its ``ssim`` function in
``archs/ssim_arch.py``, pyiqa 0.1.16, on the rounded Y with the same window, constants and 'valid'
region, no downsampling), and OSEDiff's ``test_metrics.py`` and the one-step SR papers that copy it
report that number. It is higher than ``ssim_y_ycbcr@1`` wherever some windows correlate
negatively: by up to 0.022 on OSEDiff's RealSR outputs, 0.007 on its DRealSR ones.

The RGB variants (``psnr_rgb@1``, ``ssim_rgb@1``) skip step 2: PSNR uses the MSE over the three
channels, SSIM is the mean of the per-channel SSIM.

Everything is computed in float64 on the inputs' device and batched; results are float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ITU-R BT.601 limited-range luma, as MATLAB's rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255
# for 0..255 inputs. The weights in thousandths, so that Y is a ratio of integers over Y_DENOMINATOR.
YCBCR_Y_WEIGHTS_MILLI: tuple[int, int, int] = (65481, 128553, 24966)
Y_DENOMINATOR = 255 * 1000
YCBCR_Y_OFFSET = 16
YCBCR_Y_WEIGHTS: tuple[float, float, float] = tuple(w / 1000 for w in YCBCR_Y_WEIGHTS_MILLI)  # type: ignore[assignment]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0
#: PSNR of identical images (dB): every PSNR of the suite is capped here, so results stay finite.
PSNR_CAP_DB = 100.0


def quantize_to_uint8_values(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` float (or ``uint8``) images -> float64 tensor of integer values 0..255.

    Float inputs follow the PNG writing rule ``round(clamp(x, 0, 1) * 255)`` computed in float32.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float64)
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1] or a uint8 tensor, got {x.dtype}")
    return x.detach().to(torch.float32).clamp(0.0, 1.0).mul(255.0).round().to(torch.float64)


def rgb_to_y_ycbcr(rgb255: torch.Tensor, *, round_result: bool = True) -> torch.Tensor:
    """BT.601 limited-range luma of ``(B, 3, H, W)`` RGB values in 0..255 -> ``(B, 1, H, W)`` float64.

    ``Y = 16 + (65481 R + 128553 G + 24966 B) / 255000`` (MATLAB ``rgb2ycbcr``), computed exactly in
    int64. ``round_result=True`` gives the integer nearest to it, ties half away from zero (MATLAB's
    rule; see the module docstring); ``False`` gives the float64 nearest to the exact ratio.

    Raises:
        ValueError: wrong shape, or values that are not integers in 0..255.
    """
    if rgb255.ndim != 4 or rgb255.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB values, got shape {tuple(rgb255.shape)}")
    if rgb255.is_floating_point():
        levels = rgb255.round()
        if not torch.equal(levels, rgb255):
            raise ValueError("rgb_to_y_ycbcr needs integer 8-bit levels; quantize_to_uint8_values() makes them")
        rgb255 = levels
    x = rgb255.to(torch.int64)
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > 255):
        raise ValueError(f"RGB levels must lie in 0..255, got {int(x.min())}..{int(x.max())}")
    wr, wg, wb = YCBCR_Y_WEIGHTS_MILLI
    numerator = x[:, 0:1] * wr + x[:, 1:2] * wg + x[:, 2:3] * wb + YCBCR_Y_OFFSET * Y_DENOMINATOR
    if not round_result:
        return numerator.to(torch.float64) / Y_DENOMINATOR  # exact integers, one rounding
    # nearest integer, halves upward (all values are positive): floor((2n + d) / 2d)
    return torch.div(2 * numerator + Y_DENOMINATOR, 2 * Y_DENOMINATOR, rounding_mode="floor").to(torch.float64)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (float64), the separable factor of the SSIM window."""
    half = (size - 1) / 2.0
    t = torch.arange(size, dtype=torch.float64) - half
    g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def _crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"border {border} leaves nothing of a {h}x{w} image")
    return x[..., border : h - border, border : w - border]


def _as_rgb255(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected (B, 3, H, W) or (B, 1, H, W), got shape {tuple(x.shape)}")
    x = quantize_to_uint8_values(x)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _prepare(
    sr: torch.Tensor, hr: torch.Tensor, y_channel: bool, border: int, round_y: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_rgb255(sr, "sr")
    b = _as_rgb255(hr, "hr").to(a.device)
    if a.shape != b.shape:
        raise ValueError(f"sr and hr shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if y_channel:
        a, b = rgb_to_y_ycbcr(a, round_result=round_y), rgb_to_y_ycbcr(b, round_result=round_y)
    return _crop_border(a, border), _crop_border(b, border)


def psnr(
    sr: torch.Tensor, hr: torch.Tensor, *, y_channel: bool = True, border: int = 0, round_y: bool = True
) -> torch.Tensor:
    """Per-image PSNR in dB of ``(B, C, H, W)`` images in ``[0, 1]`` -> ``(B,)`` float32.

    ``y_channel=True`` is the paper protocol (8-bit quantisation, rounded BT.601 Y); ``False`` uses the
    MSE over the three RGB channels. ``round_y=False`` keeps Y unrounded, as pyiqa's
    ``psnr(test_y_channel=True, color_space='ycbcr')`` does. Identical images give :data:`PSNR_CAP_DB`.
    """
    a, b = _prepare(sr, hr, y_channel, border, round_y)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    out = 10.0 * torch.log10(DATA_RANGE**2 / mse)  # mse == 0 -> inf, capped below
    return out.clamp(max=PSNR_CAP_DB).to(torch.float32)


def _ssim_per_channel(a: torch.Tensor, b: torch.Tensor, clamp_cs: bool = False) -> torch.Tensor:
    """SSIM of float64 ``(N, 1, H, W)`` planes in 0..255 -> ``(N,)`` float64 (valid region).

    ``clamp_cs=True`` replaces the contrast-structure factor ``(2 cov + C2) / (var_a + var_b + C2)``
    by ``max(., 0)`` before it multiplies the luminance factor (see :func:`ssim`).
    """
    h, w = a.shape[-2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    g = gaussian_window_1d().to(a.device)
    gv, gh = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, gv), gh)

    # One pass over the five statistics: stack them along the batch axis.
    n = a.shape[0]
    stats = blur(torch.cat([a, b, a * a, b * b, a * b], dim=0))
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(n, dim=0)
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    if clamp_cs:
        luminance = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
        contrast_structure = ((2 * cov + c2) / (var_a + var_b + c2)).clamp(min=0.0)
        return (luminance * contrast_structure).flatten(1).mean(dim=1)
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    ssim_map = numerator / denominator
    return ssim_map.flatten(1).mean(dim=1)


def ssim(
    sr: torch.Tensor, hr: torch.Tensor, *, y_channel: bool = True, border: int = 0, clamp_cs: bool = False
) -> torch.Tensor:
    """Per-image SSIM of ``(B, C, H, W)`` images in ``[0, 1]`` -> ``(B,)`` float32.

    ``y_channel=True`` is the paper protocol; ``False`` averages the SSIM of the R, G and B planes.
    ``clamp_cs=True`` clamps the contrast-structure factor of the SSIM map at 0 (pixels where the
    local SR/HR covariance is negative enough count 0, never negative): the SSIM of pyiqa's ``ssim``
    (``ssim_y_ycbcr_csclamp@1``, what OSEDiff's ``test_metrics.py`` reports), always >= the
    unclamped value. Ranges: in ``[-1, 1]`` unclamped, ``[0, 1]`` clamped.
    """
    a, b = _prepare(sr, hr, y_channel, border)
    bsz, ch = a.shape[:2]
    planes_a = a.reshape(bsz * ch, 1, *a.shape[-2:])
    planes_b = b.reshape(bsz * ch, 1, *b.shape[-2:])
    per_plane = _ssim_per_channel(planes_a, planes_b, clamp_cs=clamp_cs)
    return per_plane.view(bsz, ch).mean(dim=1).to(torch.float32)

