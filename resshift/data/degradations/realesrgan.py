"""The Real-ESRGAN degradation pipeline (high-order blur / resize / noise / JPEG), batched in torch.

Parameter sets (values from ResShift's configs, as recorded in ``resshift-spec.md``):

* :data:`TESTING` - ``configs/degradation_testing_realesrgan.yaml``, used to make ImageNet-Test:
  one stage only;
* :data:`TRAINING` - the ``RealESRGANDataset`` training settings of ResShift (second stage w.p. 0.5).

Pipeline per image (``hr`` of size ``H x W`` -> LR ``H/scale x W/scale``):

1. blur with a random kernel (mixed Gaussian family, or sinc w.p. ``sinc_prob``);
2. random resize: up / down / keep with ``resize_prob``, factor from ``resize_range``, mode
   area / bilinear / bicubic (``F.interpolate``, no antialiasing);
3. Gaussian noise (w.p. ``gaussian_noise_prob``, sigma in ``noise_range`` / 255) else Poisson noise
   (scale in ``poisson_scale_range``); gray noise (one channel shared by R, G, B) w.p.
   ``gray_noise_prob``; clamp to [0, 1];
4. JPEG with quality in ``jpeg_range``;
5. second stage (w.p. ``second_order_prob``): the same with the ``*2`` settings, resized relative to
   the final size;
6. final stage in random order (50/50): [resize to ``H/scale x W/scale`` + sinc filter w.p.
   ``final_sinc_prob``] then JPEG ``jpeg_range2``, or JPEG then [resize + sinc];
7. round to 8 bits.

Randomness: every draw for image ``i`` comes from ``generators[i]`` in a fixed order, so an image's LR
depends only on (its generator's seed, its pixels) and not on batch composition or order. Use
:func:`resshift.seeding.image_generator` (seed, image name) to make the generators.

JPEG: ``torchvision.io.encode_jpeg`` / ``decode_jpeg`` (libjpeg-turbo on CPU, nvJPEG on CUDA;
maintained with torchvision, works on both devices). The image is rounded to 8 bits before encoding
and the random quality is rounded to an integer. The Real-ESRGAN reference uses DiffJPEG, a
differentiable re-implementation that accepts float images and float qualities; the two differ by
the rounding and by the codec's exact quantisation/colour conversion, so outputs are close in
distribution, not identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from resshift.data.degradations.kernels import choice, pulse_kernel, random_mixed_kernel, sinc_kernel, uniform

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class StageParams:
    """Settings of one degradation stage."""

    kernel_sizes: tuple[int, ...]
    kernel_list: tuple[str, ...]
    kernel_prob: tuple[float, ...]
    sigma_range: tuple[float, float]
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    blur_prob: float = 1.0
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class DegradationParams:
    """A full parameter set: stage 1, optional stage 2, final stage."""

    name: str
    stage1: StageParams
    stage2: StageParams | None = None
    second_order_prob: float = 0.0
    final_sinc_prob: float = 0.8
    final_kernel_sizes: tuple[int, ...] = field(default_factory=lambda: tuple(range(3, 21, 2)))
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    scale: int = 4


_MIXED = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_MIXED_PROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)

#: ResShift's ImageNet-Test degradation (configs/degradation_testing_realesrgan.yaml), with the
#: final sinc kernel size drawn from {3, 5} as the spec records.
TESTING = DegradationParams(
    name="testing",
    stage1=StageParams(
        kernel_sizes=tuple(range(3, 13, 2)),
        kernel_list=("iso", "aniso"),
        kernel_prob=(0.6, 0.4),
        sigma_range=(0.2, 0.8),
        sinc_prob=0.1,
        resize_prob=(0.2, 0.7, 0.1),
        resize_range=(0.5, 1.5),
        gaussian_noise_prob=0.5,
        noise_range=(1.0, 15.0),
        poisson_scale_range=(0.05, 0.3),
        gray_noise_prob=0.4,
        jpeg_range=(70.0, 95.0),
    ),
    second_order_prob=0.0,
    final_sinc_prob=0.2,
    final_kernel_sizes=(3, 5),
    jpeg_range2=(80.0, 100.0),
)

#: ResShift's training degradation (RealESRGANDataset settings of the realsr configs). Values the
#: spec does not state are Real-ESRGAN's defaults: stage-2 resize probabilities (0.3, 0.4, 0.3) and
#: the generalised/plateau beta ranges (0.5, 4) and (1, 2).
TRAINING = DegradationParams(
    name="training",
    stage1=StageParams(
        kernel_sizes=tuple(range(3, 21, 2)),
        kernel_list=_MIXED,
        kernel_prob=_MIXED_PROB,
        sigma_range=(0.2, 3.0),
        sinc_prob=0.1,
        resize_prob=(0.2, 0.7, 0.1),
        resize_range=(0.15, 1.5),
        gaussian_noise_prob=0.5,
        noise_range=(1.0, 30.0),
        poisson_scale_range=(0.05, 3.0),
        gray_noise_prob=0.4,
        jpeg_range=(30.0, 95.0),
    ),
    stage2=StageParams(
        kernel_sizes=tuple(range(3, 15, 2)),
        kernel_list=_MIXED,
        kernel_prob=_MIXED_PROB,
        sigma_range=(0.2, 1.5),
        sinc_prob=0.1,
        blur_prob=0.8,
        resize_prob=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        gaussian_noise_prob=0.5,
        noise_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
        gray_noise_prob=0.4,
        jpeg_range=(30.0, 95.0),
    ),
    second_order_prob=0.5,
    final_sinc_prob=0.8,
    final_kernel_sizes=tuple(range(3, 21, 2)),
    jpeg_range2=(30.0, 95.0),
)

PRESETS: dict[str, DegradationParams] = {"testing": TESTING, "training": TRAINING}


def get_params(name: str | DegradationParams) -> DegradationParams:
    """A preset by name (``testing``, ``training``) or the given parameters."""
    if isinstance(name, DegradationParams):
        return name
    if name not in PRESETS:
        raise KeyError(f"unknown degradation {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve ``(3, H, W)`` with a ``(k, k)`` kernel, reflect padding (the kernel is symmetric
    under 180-degree rotation for every family used, so correlation equals convolution)."""
    k = kernel.shape[-1]
    x = F.pad(img[None], (k // 2,) * 4, mode="reflect") if k > 1 else img[None]
    w = kernel.to(img.device, img.dtype)[None, None].expand(img.shape[0], 1, k, k)
    return F.conv2d(x, w, groups=img.shape[0])[0]


def _blur_kernel(gen: torch.Generator, st: StageParams) -> tuple[torch.Tensor, dict]:
    size = int(choice(gen, list(st.kernel_sizes)))
    if uniform(gen, 0.0, 1.0) < st.sinc_prob:
        cutoff = uniform(gen, math.pi / 3, math.pi) if size < 13 else uniform(gen, math.pi / 5, math.pi)
        return sinc_kernel(size, cutoff), {"type": "sinc", "size": size, "cutoff": cutoff}
    return random_mixed_kernel(
        gen, size, st.kernel_list, st.kernel_prob, st.sigma_range,
        betag_range=st.betag_range, betap_range=st.betap_range,
    )


def _resize_factor(gen: torch.Generator, st: StageParams) -> tuple[float, str]:
    direction = choice(gen, ["up", "down", "keep"], list(st.resize_prob))
    if direction == "up":
        factor = uniform(gen, 1.0, st.resize_range[1])
    elif direction == "down":
        factor = uniform(gen, st.resize_range[0], 1.0)
    else:
        factor = 1.0
    mode = choice(gen, list(RESIZE_MODES))
    return factor, mode


def resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``F.interpolate`` to ``size`` (no antialiasing, ``align_corners=False``)."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(img[None], size=size, mode=mode, **kwargs)[0]


def _gray(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], device=img.device, dtype=img.dtype)
    return (img * w[:, None, None]).sum(0, keepdim=True)


def add_noise(img: torch.Tensor, gen: torch.Generator, st: StageParams, info: dict) -> torch.Tensor:
    """Gaussian or Poisson noise (optionally gray), clamped to [0, 1]."""
    gray = False
    dev = gen.device
    if uniform(gen, 0.0, 1.0) < st.gaussian_noise_prob:
        sigma = uniform(gen, *st.noise_range) / 255.0
        gray = uniform(gen, 0.0, 1.0) < st.gray_noise_prob
        shape = (1 if gray else 3, *img.shape[-2:])
        noise = torch.randn(shape, generator=gen, device=dev).to(img.device, img.dtype) * sigma
        info.update(noise="gaussian", sigma=sigma * 255.0, gray=gray)
    else:
        scale = uniform(gen, *st.poisson_scale_range)
        gray = uniform(gen, 0.0, 1.0) < st.gray_noise_prob
        base = _gray(img) if gray else img
        base = base.mul(255.0).round().clamp(0.0, 255.0) / 255.0
        levels = max(int(torch.unique(base).numel()), 1)
        levels = 2 ** math.ceil(math.log2(levels)) if levels > 1 else 1
        rate = (base * levels).to(dev, torch.float32)
        sample = torch.poisson(rate, generator=gen).to(img.device, img.dtype) / levels
        noise = (sample - base) * scale
        info.update(noise="poisson", scale=scale, gray=gray)
    return (img + noise.expand_as(img)).clamp(0.0, 1.0)


def jpeg(img: torch.Tensor, quality: float) -> torch.Tensor:
    """Compress and decompress with libjpeg (CPU) or nvJPEG (CUDA) via torchvision."""
    q = int(min(100, max(1, round(quality))))
    x8 = img.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    try:
        data = encode_jpeg(x8, quality=q)
    except RuntimeError:  # a torchvision build without CUDA JPEG encoding
        data = encode_jpeg(x8.cpu(), quality=q)
    out = decode_jpeg(data.cpu(), device=img.device) if img.is_cuda else decode_jpeg(data)
    return out.to(img.device, img.dtype).div(255.0)


def _stage(img: torch.Tensor, gen: torch.Generator, st: StageParams, target: tuple[int, int],
           info: dict) -> torch.Tensor:
    """Blur, resize (relative to ``target``), noise, JPEG."""
    if uniform(gen, 0.0, 1.0) < st.blur_prob:
        kernel, kinfo = _blur_kernel(gen, st)
        img = filter2d(img, kernel)
        info["kernel"] = kinfo
    factor, mode = _resize_factor(gen, st)
    img = resize(img, (int(target[0] * factor), int(target[1] * factor)), mode)
    info["resize"] = {"factor": factor, "mode": mode}
    img = add_noise(img, gen, st, info)
    q = uniform(gen, *st.jpeg_range)
    info["jpeg"] = q
    return jpeg(img, q)


def degrade_one(hr: torch.Tensor, gen: torch.Generator, params: DegradationParams | str = TESTING
                ) -> tuple[torch.Tensor, dict]:
    """Degrade one ``(3, H, W)`` image in [0, 1]; return the 8-bit-rounded LR and what was drawn."""
    p = get_params(params)
    if hr.ndim != 3 or hr.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    if h % p.scale or w % p.scale:
        raise ValueError(f"image size {h}x{w} is not divisible by the scale {p.scale}")
    out_size = (h // p.scale, w // p.scale)
    info: dict = {"params": p.name, "stage1": {}}
    img = _stage(hr.float(), gen, p.stage1, (h, w), info["stage1"])
    if p.stage2 is not None and uniform(gen, 0.0, 1.0) < p.second_order_prob:
        info["stage2"] = {}
        img = _stage(img, gen, p.stage2, out_size, info["stage2"])
    # Final stage: sinc kernel (or identity), order, resize mode and JPEG quality.
    if uniform(gen, 0.0, 1.0) < p.final_sinc_prob:
        size = int(choice(gen, list(p.final_kernel_sizes)))
        cutoff = uniform(gen, math.pi / 3, math.pi)
        final_kernel = sinc_kernel(size, cutoff)
        info["final_sinc"] = {"size": size, "cutoff": cutoff}
    else:
        final_kernel = pulse_kernel(1)
    resize_first = uniform(gen, 0.0, 1.0) < 0.5
    mode = choice(gen, list(RESIZE_MODES))
    q = uniform(gen, *p.jpeg_range2)
    info["final"] = {"resize_first": resize_first, "mode": mode, "jpeg": q}
    if resize_first:
        img = filter2d(resize(img, out_size, mode), final_kernel)
        img = jpeg(img, q)
    else:
        img = jpeg(img, q)
        img = filter2d(resize(img, out_size, mode), final_kernel)
    lr = img.mul(255.0).round().clamp(0.0, 255.0).div(255.0)
    return lr.to(hr.dtype if hr.dtype.is_floating_point else torch.float32), info


def degrade(hr: torch.Tensor, generators: Sequence[torch.Generator],
            params: DegradationParams | str = TESTING, scale: int | None = None) -> torch.Tensor:
    """Degrade a batch ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H/scale, W/scale)`` 8-bit-rounded LR.

    ``generators[i]`` drives image ``i`` only (CPU or CUDA generators; images may live on either
    device). Images are processed one after another because their random resize factors give
    intermediate images of different sizes; the output is stacked.
    """
    p = get_params(params)
    if scale is not None and scale != p.scale:
        p = replace(p, scale=int(scale))
    if hr.ndim != 4:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(hr.shape)}")
    if len(generators) != hr.shape[0]:
        raise ValueError(f"{hr.shape[0]} images but {len(generators)} generators")
    return torch.stack([degrade_one(x, g, p)[0] for x, g in zip(hr, generators, strict=True)])
