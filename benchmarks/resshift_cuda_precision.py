"""CUDA check of the ResShift fast path and of half-precision VQ (needs a GPU; not a test).

Full-size networks with random weights (as ``benchmarks/cpu_speed.py``). Measures, on one GPU:

* fast vs reference path in float32 (UNet forward, VQ encode, VQ decode): max |diff| / scale;
* VQ encode/decode under fp16 and bf16 autocast against float32 (the ``vq_dtype`` option): max and
  mean |diff| on the [-1, 1] image, PSNR, and codebook indices that changed in the decoder's search;
* the whole v3 chain (one 64x64 LR and a 256x256 LR) with ``dtype``/``vq_dtype`` combinations against
  the float32 chain fed the same noise, and its wall time (median of 5 after 2 warm-ups).

Usage: ``python benchmarks/resshift_cuda_precision.py [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from cpu_speed import build_networks  # benchmarks/ is this script's folder, first on sys.path

from resshift.methods.resshift_method import ResShiftSR, schedule_for
from resshift.models.fast import fast_kernels


def _diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.float(), b.float()
    err = (a - b).abs()
    mse = err.square().mean().item()
    return {
        "max_abs": err.max().item(),
        "mean_abs": err.mean().item(),
        "max_rel_to_scale": (err.max() / b.abs().max()).item(),
        "psnr_db_on_[-1,1]": 10 * math.log10(4.0 / mse) if mse > 0 else float("inf"),
    }


def _timed(fn, runs: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    dev = torch.device("cuda")
    unet, vq = build_networks()
    unet, vq = unet.to(dev), vq.to(dev)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(1, 3, 64, 64, generator=g).to(dev)
    lq = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1).to(dev)
    img = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic")
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}

    with torch.inference_mode():
        outs = {}
        for fast in (False, True):
            with fast_kernels(fast):
                z = vq.encode(img)
                outs[fast] = (unet(x, torch.tensor([2], device=dev), lq=lq), z, vq.decode(z))
        report["fast_vs_reference_fp32"] = {
            name: _diff(outs[True][i], outs[False][i]) for i, name in enumerate(("unet", "vq_encode", "vq_decode"))
        }
        z32 = outs[True][1]
        idx32 = vq.quantize(z32).indices
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            with torch.autocast("cuda", dtype=dtype):
                z_half = vq.encode(img).float()
                dec_half = vq.decode(z32).float()
            idx_half = vq.quantize(z_half).indices
            report[f"vq_{name}_vs_fp32"] = {
                "encode": _diff(z_half, z32),
                "decode_same_latent": _diff(dec_half, outs[True][2]),
                "indices_changed_by_half_encode": int((idx_half != idx32).sum()),
                "indices_total": idx32.numel(),
            }

    report["chain_v3"] = {}
    for side in (64, 256):
        lr = (torch.rand(1, 3, side, side, generator=g) * 2 - 1).to(dev)
        ref = None
        combos = (("fp32", "fp32"), ("fp32", "fp16"), ("fp32", "bf16"), ("fp16", "fp16"), ("bf16", "bf16"))
        for dtype, vq_dtype in combos:
            for fast in (True, False) if dtype == "fp32" and vq_dtype == "fp32" else (True,):
                method = ResShiftSR(unet, vq, schedule_for("v3"), device=dev, dtype=dtype, vq_dtype=vq_dtype,
                                    fast=fast, chop_size=max(side, 64))

                def run(method=method, lr=lr):
                    gen = torch.Generator(device=dev).manual_seed(1)
                    with torch.inference_mode():
                        return method.sample_patches(lr, {"generators": [gen]})

                out = run()
                key = f"lr{side}_dtype_{dtype}_vq_{vq_dtype}_{'fast' if fast else 'reference'}"
                if ref is None:
                    ref = out
                entry = {"median_s": _timed(run), **_diff(out, ref)}
                report["chain_v3"][key] = entry
                print(key, json.dumps(entry), flush=True)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
