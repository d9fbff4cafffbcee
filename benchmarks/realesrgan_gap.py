"""Why Real-ESRGAN x4plus scores below its published ImageNet-Test row on val-sr: each suspect, measured.

``python benchmarks/realesrgan_gap.py`` (project root, package and ``[test]`` extra installed, the
shared data mirror at ``$RESSHIFT_SHARED``) runs the ncnn-converted Real-ESRGAN x4plus
(``realesrgan-x4plus-ncnn``) on val-sr's 32 pairs and prints PSNR/SSIM (the paper's Y channel,
:mod:`resshift.metrics.paper_y`) for:

* the suite's protocol (whole 64x64 images, RGB, float32, output clamped and rounded to 8 bits);
* **float16 weights**: the kernels moved by random amounts up to half a float16 step (where the float32
  release values may lie around round-to-nearest) and up to one step (truncation), ``--draws`` times;
* **float16 arithmetic** (the official ``inference_realesrgan.py`` default, ``--fp32`` off): the network
  and input in float16, where this CPU's PyTorch runs it;
* **pre-padding**: 10 LR pixels of reflection before the network, cropped after (``RealESRGANer``'s
  ``pre_pad``);
* **colour order**: the network fed BGR (a colour-handling defect would look like this);
* **the subset**: the 95 % bootstrap interval of the 32-image mean, bicubic on the same images, and,
  with ``--rebuilt DIR`` (a folder with ``gt/`` and ``lq/``, e.g. built by
  ``resshift data build imagenet-test --imagenet-val $RESSHIFT_SHARED/datasets/imagenet-samples
  --count 1000 --out DIR``), the same model and bicubic on that larger set made with ResShift's
  degradation recipe.

Nothing here is timed; the output is the table quoted in ``reports/real-weights/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from resshift.io import read_image
from resshift.methods import build_method
from resshift.metrics import paper_y
from resshift.paths import shared_dir
from resshift.reports.statistics import mean_interval

Forward = Callable[[torch.Tensor], torch.Tensor]


def pairs(root: Path, limit: int | None = None) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """``(name, lr, hr)`` of a folder with ``lq/`` and ``gt/`` (same file names), ``(1, 3, h, w)`` in [0, 1]."""
    out = []
    for lq in sorted((root / "lq").glob("*.png"))[:limit]:
        out.append((lq.stem, read_image(lq)[None], read_image(root / "gt" / lq.name)[None]))
    if not out:
        raise FileNotFoundError(f"{root}: no lq/*.png with gt/ partners")
    return out


def score(forward: Forward, data: list[tuple[str, torch.Tensor, torch.Tensor]]) -> tuple[list[float], list[float]]:
    psnr, ssim = [], []
    with torch.inference_mode():
        for _, lr, hr in data:
            sr = (forward(lr).float().clamp(0, 1) * 255).round() / 255  # as the SR PNGs are written
            psnr.append(float(paper_y.psnr(sr, hr)))
            ssim.append(float(paper_y.ssim(sr, hr)))
    return psnr, ssim


def perturbed(model: torch.nn.Module, steps: float, seed: int) -> torch.nn.Module:
    """A copy whose conv kernels moved uniformly by up to ``steps`` float16 spacings (biases kept)."""
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if name.endswith("weight"):
                spacing = (torch.nextafter(p.half(), torch.tensor(float("inf"), dtype=torch.half)).float()
                           - p.half().float()).abs()
                p.add_((torch.rand(p.shape, generator=g) * 2 - 1) * steps * spacing)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=3, help="random weight perturbations per size")
    ap.add_argument("--rebuilt", type=Path, default=None, help="a larger set (gt/, lq/) built with the same recipe")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    val_sr = shared_dir() / "datasets" / "resshift-testdata" / "Val_SR"
    data = pairs(val_sr, args.limit)
    method = build_method("realesrgan-x4plus-ncnn", download=False)
    net = method.descriptor.model.eval()
    rows: list[tuple[str, list[float], list[float]]] = []

    def add(label: str, forward: Forward, on=data) -> tuple[list[float], list[float]]:
        p, s = score(forward, on)
        rows.append((label, p, s))
        print(f"{label:58s} PSNR {statistics.fmean(p):7.4f}  SSIM {statistics.fmean(s):.4f}", flush=True)
        return p, s

    base_p, base_s = add("protocol (whole image, RGB, fp32; the method as registered)", method.upscale)
    for steps, what in ((0.5, "half"), (1.0, "one")):
        for d in range(args.draws):
            add(f"weights moved up to {what} float16 step (draw {d + 1})", perturbed(net, steps, d))
    try:
        half = net.half()
        add("float16 arithmetic (network and input in fp16)", lambda x: half(x.half()))
    except RuntimeError as err:  # some CPU builds lack float16 convolutions
        print(f"float16 arithmetic: not run on this CPU ({err})")
    finally:
        net.float()

    def prepad(x: torch.Tensor, pad: int = 10) -> torch.Tensor:
        return net(F.pad(x, (pad, pad, pad, pad), mode="reflect"))[..., 4 * pad:-4 * pad, 4 * pad:-4 * pad]

    add("pre-pad 10 LR px (reflect), cropped after", prepad)
    add("colour order swapped (BGR into the network)", lambda x: net(x.flip(1)).flip(1))
    add("bicubic (torch, A=-0.75)", lambda x: F.interpolate(x, scale_factor=4, mode="bicubic"))
    for label, values in (("PSNR", base_p), ("SSIM", base_s)):
        lo, hi, n = mean_interval(values)
        print(f"95 % bootstrap interval of the {n}-image {label} mean: [{lo:.4f}, {hi:.4f}]")
    if args.rebuilt is not None:
        big = pairs(args.rebuilt, args.limit)
        p, s = add(f"rebuilt set ({len(big)} images): Real-ESRGAN", method.upscale, big)
        add(f"rebuilt set ({len(big)} images): bicubic",
                     lambda x: F.interpolate(x, scale_factor=4, mode="bicubic"), big)
        for label, values in (("PSNR", p), ("SSIM", s)):
            lo, hi, n = mean_interval(values)
            print(f"rebuilt set, 95 % bootstrap interval of the {n}-image {label} mean: [{lo:.4f}, {hi:.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
