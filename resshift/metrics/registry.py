"""The metric registry: one frozen :class:`MetricSpec` per public metric name.

A spec says what a number means (full- or no-reference, which direction is better, expected range,
the input convention, who computes it and which version of our convention it follows) and how it is
shown (display order, decimals, arrow, log axis) and compared (reproduction tolerance). Every other
module reads these facts from here. The ``version`` tag changes whenever the meaning of a name
changes, so stored rows stay comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata

FULL_REFERENCE = "FR"
NO_REFERENCE = "NR"
# Needs the method's LR input: the reference is its bicubic upsampling (for sets without HR images).
LR_REFERENCE = "LR"

BACKEND_RESSHIFT = "resshift"
BACKEND_PYIQA = "pyiqa"

# How many values a metric gives a run: one per image (averaged in the summary), or one for the whole set
# of images (FID, KID: a distance between the SR set and the HR set; no per-image value exists).
LEVEL_IMAGE = "image"
LEVEL_SET = "set"

# Implementation kinds, as pyiqa's ``metric_opts.type`` names the class that computes a metric: for
# pyiqa metrics the kind *is* pyiqa's type (a test checks it); ours name the class in this package.
KIND_PAPER_Y = "PaperY"  # resshift.metrics.base.PaperYMetric
KIND_SPECTRAL = "Spectral"  # resshift.metrics.spectral.SpectralMetric

# The metrics the ResShift paper tables report (ImageNet-Test: all five; real data: the NR ones).
PAPER_METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "clipiqa", "musiq")


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name means. Immutable; ``version`` changes when the meaning changes.

    Attributes:
        name: public name used in configs and result rows (``"psnr"``).
        mode: ``"FR"`` (needs the HR reference), ``"NR"`` (SR image alone) or ``"LR"`` (needs the
            LR input; the reference is its bicubic upsampling).
        lower_better: True when a smaller value is better (LPIPS, NIQE).
        value_range: expected range ``(low, high)`` of the scores (rough for learned metrics).
        input_convention: what the metric does with the ``[0, 1]`` RGB tensors it is given.
        backend: ``"resshift"`` (computed here) or ``"pyiqa"``.
        version: tag of our convention, e.g. ``"psnr_y_ycbcr@1"``.
        description: one line for tables.
        source: where the convention comes from (paper / script / library).
        pyiqa_name: the pyiqa metric this wraps (pyiqa backend only).
        weights: keys of :data:`resshift.weights.METRIC_FILES` the metric needs.
        options: backend options (``y_channel``, ``border`` ...), as sorted ``(key, value)`` pairs.
        informational: True when no direction is better (e.g. a signed ratio whose ideal is 1):
            tables show it without an arrow and never mark a best value; ``lower_better`` is False.
        kind: implementation kind: pyiqa's ``metric_opts.type`` for pyiqa metrics (``"LPIPS"``),
            :data:`KIND_PAPER_Y` or :data:`KIND_SPECTRAL` for ours; :func:`resshift.metrics.build_metric`
            dispatches on it.
        order: display order in tables and plots (ascending; the paper's column order first).
        decimals: decimals shown in tables.
        tolerance: reproduction tolerance (absolute, in the metric's unit): about the scatter between
            independent re-runs of the same protocol; the band of the published-number comparison and
            the default band of ``resshift compare``. ``None``: no band (never compared).
        log_scale: True for ratios spread over orders of magnitude: plotted on a log axis and averaged
            geometrically in the frequency section.
        level: ``"image"`` (one value per image; the run's value is their mean) or ``"set"`` (one value
            per run, computed once from per-image features of all its images: FID, KID). A set-level
            metric has no per-image value, no interval over images and no paired test; its option
            ``warn_below_images`` is the image count under which its value is flagged as unreliable.
    """

    name: str
    mode: str
    lower_better: bool
    value_range: tuple[float, float]
    input_convention: str
    backend: str
    version: str
    description: str
    source: str
    pyiqa_name: str | None = None
    weights: tuple[str, ...] = ()
    options: tuple[tuple[str, object], ...] = field(default=())
    informational: bool = False
    kind: str = KIND_PAPER_Y
    order: int = 1000
    decimals: int = 4
    tolerance: float | None = None
    log_scale: bool = False
    level: str = LEVEL_IMAGE

    def __post_init__(self) -> None:
        if self.mode not in (FULL_REFERENCE, NO_REFERENCE, LR_REFERENCE):
            raise ValueError(f"metric {self.name!r}: mode must be 'FR', 'NR' or 'LR', got {self.mode!r}")
        if self.informational and self.lower_better:
            raise ValueError(f"metric {self.name!r}: an informational metric has no better direction")
        if self.backend not in (BACKEND_RESSHIFT, BACKEND_PYIQA):
            raise ValueError(f"metric {self.name!r}: unknown backend {self.backend!r}")
        if self.backend == BACKEND_PYIQA and not self.pyiqa_name:
            raise ValueError(f"metric {self.name!r}: a pyiqa metric needs pyiqa_name")
        if self.backend == BACKEND_RESSHIFT and self.kind not in (KIND_PAPER_Y, KIND_SPECTRAL):
            raise ValueError(f"metric {self.name!r}: kind must be {KIND_PAPER_Y!r} or {KIND_SPECTRAL!r} for "
                             f"the resshift backend, got {self.kind!r}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"metric {self.name!r}: tolerance must be >= 0 or None, got {self.tolerance!r}")
        if self.decimals < 0:
            raise ValueError(f"metric {self.name!r}: decimals must be >= 0, got {self.decimals!r}")
        if self.level not in (LEVEL_IMAGE, LEVEL_SET):
            raise ValueError(f"metric {self.name!r}: level must be {LEVEL_IMAGE!r} or {LEVEL_SET!r}, "
                             f"got {self.level!r}")

    @property
    def full_reference(self) -> bool:
        return self.mode == FULL_REFERENCE

    @property
    def set_level(self) -> bool:
        """True for a metric with one value per run (FID, KID), computed from the whole set of images."""
        return self.level == LEVEL_SET

    @property
    def better(self) -> str:
        """Which values are better: ``"lower"``, ``"higher"`` or ``"none"`` (informational)."""
        if self.informational:
            return "none"
        return "lower" if self.lower_better else "higher"

    @property
    def arrow(self) -> str:
        """``"↓"`` (lower is better), ``"↑"`` (higher) or ``"·"`` (informational)."""
        return {"lower": "↓", "higher": "↑", "none": "·"}[self.better]

    def format(self, value: float) -> str:
        """``value`` with this metric's table decimals."""
        return f"{float(value):.{self.decimals}f}"

    @property
    def option_dict(self) -> dict[str, object]:
        return dict(self.options)

    def backend_label(self) -> str:
        """The backend with its installed version, e.g. ``"pyiqa 0.1.16"`` (``"pyiqa (not installed)"``)."""
        dist = "resshift-bench" if self.backend == BACKEND_RESSHIFT else "pyiqa"
        try:
            return f"{self.backend} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            if self.backend == BACKEND_RESSHIFT:
                from resshift import __version__

                return f"{self.backend} {__version__}"
            return f"{self.backend} (not installed)"

    def as_record(self) -> dict[str, object]:
        """A JSON-friendly dict of the spec plus the resolved backend version (for provenance)."""
        rec = asdict(self)
        rec["value_range"] = list(self.value_range)
        rec["options"] = self.option_dict
        rec["weights"] = list(self.weights)
        rec["backend_version"] = self.backend_label()
        return rec


_Y_CONVENTION = (
    "RGB in [0,1] -> 8-bit round(clamp(x,0,1)*255) -> BT.601 Y = 16 + (65.481R + 128.553G + 24.966B)/255, "
    "rounded; border 0"
)
_PAPER_Y_SOURCE = (
    "ResShift util_image.calculate_psnr/ssim(ycbcr=True); MATLAB rgb2ycbcr; SSIM of Wang et al. 2004 "
    "(11x11 Gaussian, sigma 1.5, valid region)"
)

# Reproduction tolerances (``tolerance=``): about the scatter between independent re-runs of the same
# protocol (field notes: +-0.1 dB PSNR, +-0.01 CLIPIQA, +-0.8 MUSIQ), rounded up.
_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="psnr",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(0.0, math.inf),
        input_convention=_Y_CONVENTION,
        backend=BACKEND_RESSHIFT,
        version="psnr_y_ycbcr@1",
        description="PSNR (dB) on the BT.601 Y channel, paper protocol",
        source=_PAPER_Y_SOURCE,
        options=(("border", 0), ("statistic", "psnr"), ("y_channel", True)),
        order=10, decimals=2, tolerance=0.15,
    ),
    MetricSpec(
        name="ssim",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(-1.0, 1.0),
        input_convention=_Y_CONVENTION,
        backend=BACKEND_RESSHIFT,
        version="ssim_y_ycbcr@1",
        description="SSIM on the BT.601 Y channel, paper protocol",
        source=_PAPER_Y_SOURCE,
        options=(("border", 0), ("statistic", "ssim"), ("y_channel", True)),
        order=20, tolerance=0.01,
    ),
    MetricSpec(
        name="psnr-y-float",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(0.0, math.inf),
        input_convention=(
            "RGB in [0,1] -> 8-bit round(clamp(x,0,1)*255) -> BT.601 Y = 16 + (65.481R + 128.553G + "
            "24.966B)/255, NOT rounded; border 0"
        ),
        backend=BACKEND_RESSHIFT,
        version="psnr_y_ycbcr_float@1",
        description="PSNR (dB) on unrounded BT.601 Y, as pyiqa psnr(test_y_channel, color_space='ycbcr')",
        source="pyiqa PSNR with color_space='ycbcr' (SinSR evaluate.py, InvSR cal_metrics_ref.py)",
        options=(("border", 0), ("round_y", False), ("statistic", "psnr"), ("y_channel", True)),
        order=210, decimals=2, tolerance=0.15,  # as psnr: the same quantity, ~0.01 dB apart
    ),
    MetricSpec(
        name="ssim-pyiqa",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(0.0, 1.0),
        input_convention=_Y_CONVENTION + "; SSIM map's contrast-structure factor clamped at 0",
        backend=BACKEND_RESSHIFT,
        version="ssim_y_ycbcr_csclamp@1",
        description="SSIM on the BT.601 Y channel with cs clamped at 0, as pyiqa ssim(color_space='ycbcr')",
        source=(
            "pyiqa 'ssim' (SSIM arch, test_y_channel, color_space='ycbcr', no downsampling) as OSEDiff "
            "test_metrics.py uses it; computed here, not by pyiqa"
        ),
        options=(("border", 0), ("clamp_cs", True), ("statistic", "ssim"), ("y_channel", True)),
        order=212, tolerance=0.01,
    ),
    MetricSpec(
        name="psnr-rgb",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(0.0, math.inf),
        input_convention="RGB in [0,1] -> 8-bit round(clamp(x,0,1)*255); MSE over R, G, B; border 0",
        backend=BACKEND_RESSHIFT,
        version="psnr_rgb@1",
        description="PSNR (dB) over the RGB channels (not the paper protocol)",
        source="ResShift util_image.calculate_psnr(ycbcr=False)",
        options=(("border", 0), ("statistic", "psnr"), ("y_channel", False)),
        order=200, decimals=2,
    ),
    MetricSpec(
        name="ssim-rgb",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(-1.0, 1.0),
        input_convention="RGB in [0,1] -> 8-bit round(clamp(x,0,1)*255); mean of per-channel SSIM; border 0",
        backend=BACKEND_RESSHIFT,
        version="ssim_rgb@1",
        description="SSIM averaged over R, G, B (not the paper protocol)",
        source="ResShift util_image.calculate_ssim(ycbcr=False)",
        options=(("border", 0), ("statistic", "ssim"), ("y_channel", False)),
        order=220,
    ),
    MetricSpec(
        name="lpips",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(0.0, 1.0),
        input_convention="RGB in [0,1] float32, (sr, hr) order; pyiqa maps to [-1,1] internally",
        backend=BACKEND_PYIQA,
        version="lpips_alex_v0.1@1",
        description="LPIPS, AlexNet backbone, linear layers v0.1 (the papers' LPIPS)",
        source="Zhang et al. 2018; pyiqa 'lpips' as used by SinSR/OSEDiff evaluation scripts",
        pyiqa_name="lpips",
        weights=("lpips-alex-v0.1", "torchvision-alexnet"),
        kind="LPIPS", order=30, tolerance=0.01,
    ),
    MetricSpec(
        name="lpips-vgg",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(0.0, 1.0),
        input_convention="RGB in [0,1] float32, (sr, hr) order; pyiqa maps to [-1,1] internally",
        backend=BACKEND_PYIQA,
        version="lpips_vgg_v0.1@1",
        description="LPIPS, VGG-16 backbone, linear layers v0.1",
        source="Zhang et al. 2018; pyiqa 'lpips-vgg'",
        pyiqa_name="lpips-vgg",
        weights=("lpips-vgg-v0.1", "torchvision-vgg16"),
        kind="LPIPS", order=40, tolerance=0.01,
    ),
    MetricSpec(
        name="clipiqa",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(0.0, 1.0),
        input_convention=(
            "RGB in [0,1] float32 at full resolution (no resize); CLIP mean/std normalisation inside pyiqa"
        ),
        backend=BACKEND_PYIQA,
        version="clipiqa_rn50_5pairs@1",
        description="CLIP-IQA, CLIP RN50, 5 antonym prompt pairs, no positional embedding (pyiqa default)",
        source="Wang et al. AAAI 2023; pyiqa 'clipiqa' (differs from the 1-pair original)",
        pyiqa_name="clipiqa",
        weights=("clip-rn50",),
        kind="CLIPIQA", order=50, tolerance=0.01,
    ),
    MetricSpec(
        name="musiq",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(0.0, 100.0),
        input_convention=(
            "RGB in [0,1] float32 at full resolution; pyiqa maps to [-1,1] and builds multi-scale "
            "patches (224, 384, original)"
        ),
        backend=BACKEND_PYIQA,
        version="musiq_koniq@1",
        description="MUSIQ trained on KonIQ-10k (pyiqa 'musiq')",
        source="Ke et al. ICCV 2021; pyiqa 'musiq' (koniq10k checkpoint)",
        pyiqa_name="musiq",
        weights=("musiq-koniq",),
        kind="MUSIQ", order=60, decimals=2, tolerance=1.0,
    ),
    MetricSpec(
        name="niqe",
        mode=NO_REFERENCE,
        lower_better=True,
        value_range=(0.0, 100.0),
        input_convention="RGB in [0,1] float32; pyiqa uses the YIQ luma (x255); crop_border 0",
        backend=BACKEND_PYIQA,
        version="niqe_yiq_original@1",
        description="NIQE with the original model parameters (pyiqa 'niqe')",
        source="Mittal et al. 2013; pyiqa 'niqe' (not 'niqe_matlab')",
        pyiqa_name="niqe",
        weights=("niqe-params",),
        kind="NIQE", order=70, decimals=2, tolerance=0.3,
    ),
)

_MANIQA_CONVENTION = (
    "RGB in [0,1] float32; pyiqa normalises with the Inception mean/std, bilinear-upscales an image whose "
    "short side is <= 224 to 225, then scores 20 224x224 crops on a uniform grid (pyiqa >= 0.1.12; up to "
    "0.1.11 the 20 test crops were random) and averages them; the timm ViT-B/8 is built without its "
    "ImageNet weights, since the MANIQA checkpoint (loaded strictly) holds all of them"
)
_MANIQA_SOURCE = "Yang et al. CVPRW 2022 (NTIRE 2022 NR-IQA winner); pyiqa {} ({} checkpoint)"

# The metrics the one-step diffusion SR papers report since OSEDiff (2024) beside the paper's five.
_MODERN_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="dists",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(0.0, 1.0),
        input_convention=(
            "RGB in [0,1] float32, (sr, hr) order; pyiqa normalises with the ImageNet mean/std; full "
            "resolution, no resize"
        ),
        backend=BACKEND_PYIQA,
        version="dists_vgg16@1",
        description="DISTS: structure and texture similarity of VGG16 features (pyiqa 'dists')",
        source="Ding et al. TPAMI 2020; pyiqa 'dists' as used by OSEDiff test_metrics.py and InvSR",
        pyiqa_name="dists",
        weights=("dists", "torchvision-vgg16"),
        kind="DISTS", order=45,
    ),
    MetricSpec(
        name="maniqa-pipal",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(0.0, 1.0),
        input_convention=_MANIQA_CONVENTION + "; Swin scale 0.13 (pyiqa's default for 'maniqa-pipal')",
        backend=BACKEND_PYIQA,
        version="maniqa_pipal_uniform20@1",
        description="MANIQA trained on PIPAL (pyiqa 'maniqa-pipal': what OSEDiff and TSD-SR report)",
        source=_MANIQA_SOURCE.format("'maniqa-pipal'", "PIPAL"),
        pyiqa_name="maniqa-pipal",
        weights=("maniqa-pipal",),
        kind="MANIQA", order=72,
    ),
    MetricSpec(
        name="maniqa-koniq",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(0.0, 1.0),
        input_convention=_MANIQA_CONVENTION + "; Swin scale 0.8 (pyiqa's setting for 'maniqa')",
        backend=BACKEND_PYIQA,
        version="maniqa_koniq_uniform20@1",
        description="MANIQA trained on KonIQ-10k (pyiqa 'maniqa', its default: what InvSR and NTIRE report)",
        source=_MANIQA_SOURCE.format("'maniqa'", "KonIQ-10k"),
        pyiqa_name="maniqa",
        weights=("maniqa-koniq",),
        kind="MANIQA", order=74,
    ),
    MetricSpec(
        name="topiq-nr",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(0.0, 1.0),
        input_convention=(
            "RGB in [0,1] float32 at full resolution (no resize, one crop = the whole image); pyiqa "
            "normalises with the ImageNet mean/std; the timm ResNet50 is built without its ImageNet "
            "weights, since the TOPIQ checkpoint (loaded strictly) holds all of them"
        ),
        backend=BACKEND_PYIQA,
        version="topiq_nr_koniq_res50@1",
        description="TOPIQ-NR, ResNet50 backbone, trained on KonIQ-10k (pyiqa 'topiq_nr')",
        source="Chen et al. TIP 2024; pyiqa 'topiq_nr' (cfanet_nr_koniq_res50)",
        pyiqa_name="topiq_nr",
        weights=("topiq-nr-koniq",),
        kind="CFANet", order=76,
    ),
    MetricSpec(
        name="liqe",
        mode=NO_REFERENCE,
        lower_better=False,
        value_range=(1.0, 5.0),
        input_convention=(
            "RGB in [0,1] float32, short side >= 224 (a smaller image is an error of that image, never "
            "resized); pyiqa normalises with the CLIP mean/std, cuts 224x224 patches at stride 32 and "
            "scores 15 of them evenly spaced; quality-only prompts (5 levels)"
        ),
        backend=BACKEND_PYIQA,
        version="liqe_koniq@1",
        description="LIQE, CLIP ViT-B/32 fine-tuned on KonIQ-10k (pyiqa 'liqe', not the multitask 'liqe_mix')",
        source="Zhang et al. CVPR 2023; pyiqa 'liqe' (the name pyiqa's table and CLI give LIQE)",
        pyiqa_name="liqe",
        weights=("liqe-koniq", "clip-vit-b32"),
        options=(("min_side", 224),),
        kind="LIQE", order=78,
    ),
)

_FEATURES_CONVENTION = (
    "the SR images against the HR images of the same names (the images scored; no pairing is used); each "
    "image quantised to 8 bits, each channel resized to 299x299 by PIL bicubic on float32 (clean-fid's "
    "antialiased 'clean' resize), clipped to [0, 255], normalised as (x - 128) / 128; the 2048-d pool3 "
    "features of pytorch-fid's port of TensorFlow's Inception-v3 2015-12-05 (pt_inception-2015-12-05), the "
    "network of pyiqa 'fid'"
)
# Under this many images FID and KID are biased and vary strongly with the sample (StableSR issue #105).
RELIABLE_SET_SIZE = 1000

# Set-level metrics: one value per run from the Inception features of every image (folder vs folder).
_SET_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="fid",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(0.0, math.inf),
        input_convention=_FEATURES_CONVENTION + "; Frechet distance between Gaussians with the two sets' sample "
        "means and covariances (ddof 1)",
        backend=BACKEND_PYIQA,
        version="fid_clean_pt_inception@1",
        description="FID of the SR set against the HR set (one value per run; pyiqa 'fid', clean mode)",
        source="Heusel et al. NeurIPS 2017; clean resize of Parmar et al. CVPR 2022 (clean-fid); pyiqa 'fid' "
               "folder vs folder as OSEDiff test_metrics.py runs it",
        pyiqa_name="fid",
        weights=("fid-inception",),
        options=(("distance_type", "frechet"), ("warn_below_images", RELIABLE_SET_SIZE)),
        kind="FID", order=46, decimals=2, level=LEVEL_SET,
    ),
    MetricSpec(
        name="kid",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(-math.inf, math.inf),  # the unbiased estimate falls below 0 for alike sets
        input_convention=_FEATURES_CONVENTION + "; unbiased MMD^2 with the polynomial kernel (x.y/2048 + 1)^3, "
        "averaged over 100 subsets of min(n, 1000) images drawn without replacement from each set (seeded; "
        "with n <= 1000 images in both sets every subset is the whole set); not scaled by 1000; can be "
        "slightly negative when the sets are alike",
        backend=BACKEND_PYIQA,
        version="kid_clean_pt_inception_poly3@1",
        description="KID of the SR set against the HR set (one value per run; pyiqa 'fid' with "
                    "distance_type='mmd')",
        source="Binkowski et al. ICLR 2018; clean-fid's kernel_distance convention, as pyiqa 'fid' "
               "(distance_type='mmd', kernel_type='polynomial')",
        pyiqa_name="fid",
        weights=("fid-inception",),
        options=(("distance_type", "mmd"), ("kernel_type", "polynomial"), ("subset_seed", 0), ("subset_size", 1000),
                 ("subsets", 100), ("warn_below_images", RELIABLE_SET_SIZE)),
        kind="FID", order=47, decimals=5, level=LEVEL_SET,
    ),
)

_SPECTRAL_CONVENTION = (
    "RGB in [0,1] -> 8-bit round(clamp(x,0,1)*255) -> full-range BT.601 luma on [0,1]; radial frequency in "
    "units of Nyquist (see resshift.metrics.spectral)"
)
_HF_CONVENTION = (
    _SPECTRAL_CONVENTION + "; mean removed, periodic Hann window, power summed over r >= 0.5 (corners "
    "included), floored at the 8-bit quantisation-noise power"
)
_BAND_PSNR_CONVENTION = (
    _SPECTRAL_CONVENTION + "; luma error split by ideal radial FFT masks, no window; PSNR peak 1, capped "
    "at 100 dB"
)
_SPECTRAL_SOURCE = "this suite (frequency analysis); band edges: x4 LR Nyquist = 0.25, half Nyquist = 0.5"


def _band_psnr_spec(band: str, edges: str, order: int) -> MetricSpec:
    return MetricSpec(
        name=f"psnr-{band}",
        mode=FULL_REFERENCE,
        lower_better=False,
        value_range=(0.0, 100.0),
        input_convention=_BAND_PSNR_CONVENTION,
        backend=BACKEND_RESSHIFT,
        version=f"psnr_{band}_band@1",
        description=f"luma PSNR (dB) of the error at {edges} of Nyquist",
        source=_SPECTRAL_SOURCE,
        options=(("band", band), ("statistic", "band-psnr")),
        kind=KIND_SPECTRAL,
        order=order,
        decimals=2,
    )


_SPECTRAL_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="hf-ratio",
        mode=FULL_REFERENCE,
        lower_better=False,
        informational=True,
        value_range=(0.0, math.inf),
        input_convention=_HF_CONVENTION,
        backend=BACKEND_RESSHIFT,
        version="hf_ratio_gt@1",
        description="HF energy above half Nyquist, SR / GT (1 = as GT; < 1 smoother; > 1 added energy)",
        source=_SPECTRAL_SOURCE,
        options=(("cutoff", 0.5), ("statistic", "hf-ratio")),
        kind=KIND_SPECTRAL, order=110, log_scale=True,
    ),
    MetricSpec(
        name="hf-log-ratio-abs",
        mode=FULL_REFERENCE,
        lower_better=True,
        value_range=(0.0, math.inf),
        input_convention=_HF_CONVENTION,
        backend=BACKEND_RESSHIFT,
        version="hf_log2_ratio_abs_gt@1",
        description="|log2 hf-ratio|: distance of the HF energy from GT's, either way (0 = as GT)",
        source=_SPECTRAL_SOURCE,
        options=(("cutoff", 0.5), ("statistic", "hf-log-ratio-abs")),
        kind=KIND_SPECTRAL, order=120,
    ),
    _band_psnr_spec("low", "r < 0.25", 80),
    _band_psnr_spec("mid", "0.25 <= r < 0.5", 90),
    _band_psnr_spec("high", "r >= 0.5", 100),
    MetricSpec(
        name="hf-ratio-lrup",
        mode=LR_REFERENCE,
        lower_better=False,
        informational=True,
        value_range=(0.0, math.inf),
        input_convention=_HF_CONVENTION + "; reference = the LR input, bicubic-upsampled (no GT used)",
        backend=BACKEND_RESSHIFT,
        version="hf_ratio_lr_bicubic@1",
        description="HF energy above half Nyquist, SR / bicubic-upsampled LR input (not GT; > 1 = "
        "energy added over bicubic)",
        source=_SPECTRAL_SOURCE,
        options=(("cutoff", 0.5), ("statistic", "hf-ratio")),
        kind=KIND_SPECTRAL, order=130, log_scale=True,
    ),
)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec for spec in _SPECS + _MODERN_SPECS + _SET_SPECS + _SPECTRAL_SPECS
}


def metric_names() -> list[str]:
    """Public metric names in registry order."""
    return list(METRICS)


def display_order(names: Iterable[str]) -> list[str]:
    """The registered names among ``names`` (duplicates dropped), sorted by :attr:`MetricSpec.order`,
    then by name; unregistered names are left out."""
    return sorted({n for n in names if n in METRICS}, key=lambda n: (METRICS[n].order, n))


def tolerances() -> dict[str, float]:
    """Reproduction tolerance of every metric that has one (:attr:`MetricSpec.tolerance`)."""
    return {n: s.tolerance for n, s in METRICS.items() if s.tolerance is not None}


def get_spec(name: str) -> MetricSpec:
    """The spec of a public metric name; unknown names raise ``KeyError`` listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
