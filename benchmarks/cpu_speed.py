"""CPU speed benchmark of the ResShift networks and chains: reference path vs fast path.

``python benchmarks/cpu_speed.py`` (from the project root, the package installed) builds the released
architectures with random weights (full size) and times, in one process and interleaved (reference,
fast, reference, fast, ...):

* one UNet forward on a 64x64 latent, VQ encode at 256x256, VQ decode 64x64 -> 256x256 (with the
  codebook search, as the sampler calls it);
* the whole v3 (4-step) and v1 (15-step) chain for one 64x64 LR: bicubic x4, encode, T UNet steps,
  decode, clamp (``ResShiftSR.sample_patches``).

The protocol is that of the official timings (2 threads, float32, ``torch.inference_mode``, batch 1,
median of N after one warm-up); times taken on other machines are not printed: the comparison with
the official code runs side by side in ``../shared/anchors/speed_vs_official.py``. It also counts
FLOPs (``torch.utils.flop_counter``; the fast path does fewer: its upsampling convolutions use the
sub-pixel form, and its Winograd convolutions count their 36 matrix products and tile transforms),
prints achieved GFLOP/s, the equivalence of the two paths' outputs and the load
average before and after each component (figures are comparable only within one run). Then the
whole v3 chain is broken down into its network calls (time, GFLOP, GFLOP/s each) next to this
machine's fp32 GEMM and 3x3-convolution throughput measured in the same run, and each 3x3
convolution shape of that chain is timed on the direct kernel and as Winograd F(4x4, 3x3) (the basis
of the fast path's shape rule, ``resshift.models.winograd``). ``--memory`` also
measures the peak RSS of decoding a 256x256 latent (1024x1024 output) and ``--run-memory WxH`` that
of a whole evaluation run on one WxH LR image, each in a fresh subprocess. ``--layer-split`` times, inside
whole v3 chains on both paths, the 3x3 layers the shape rule gives to Winograd and everything else, and
prints Amdahl's bound: the speed-up those layers would need for the chain to run 2x the reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy
import torch

from resshift.models.fast import fast_kernels

# name -> (runs, warm-up runs) as in the official timing protocol
PROTOCOL = {
    "unet_forward_b1_64x64": (10, 1),
    "vq_encode_256x256": (5, 1),
    "vq_decode_64x64_to_256x256": (5, 1),
    "sampler_v3_4steps_64_to_256": (3, 1),
    "sampler_v1_15steps_64_to_256": (3, 1),
}

TINY_UNET = {
    "image_size": 64, "in_channels": 3, "model_channels": 32, "out_channels": 3,
    "attention_resolutions": [64, 32, 16, 8], "channel_mult": [1, 2, 2, 4], "num_res_blocks": [1, 1, 1, 1],
    "num_head_channels": 32, "use_scale_shift_norm": True, "swin_depth": 2, "swin_embed_dim": 64,
    "window_size": 8, "mlp_ratio": 4, "cond_lq": True, "lq_size": 64,
}
TINY_VQ = {
    "embed_dim": 3, "n_embed": 64,
    "ddconfig": {"double_z": False, "z_channels": 3, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 32, "ch_mult": [1, 2, 4], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
}


def load_average() -> float:
    """The 1-minute load average (NaN where unavailable)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def build_networks(tiny: bool = False, unet: bool = True) -> tuple[torch.nn.Module | None, torch.nn.Module]:
    """UNet (unless ``unet=False``) and VQ-f4 with random weights: default init (seed 0) plus
    0.05 * randn on every tensor."""
    from resshift.models import UNetModelSwin, VQModelTorch
    from resshift.models.configs import AUTOENCODER_PARAMS, UNET_PARAMS

    torch.manual_seed(0)
    unet_net = UNetModelSwin(**(TINY_UNET if tiny else UNET_PARAMS)).eval() if unet else None
    vq = VQModelTorch(**(TINY_VQ if tiny else AUTOENCODER_PARAMS)).eval()
    with torch.no_grad():
        for seed, net in ((2001, unet_net), (2002, vq)):
            if net is None:
                continue
            gen = torch.Generator().manual_seed(seed)
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return unet_net, vq


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """2 x multiply-adds of convolutions and matrix products, as the official count; the CPU flash
    attention kernel (unknown to ``FlopCounterMode``) is counted like the other SDPA kernels."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def time_interleaved(
    fns: dict[str, Callable[[], object]], runs: int, warmup: int
) -> dict[str, list[float]]:
    """Wall-clock seconds of each callable, run alternately ``runs`` times after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _components(unet, vq, steps_v1: int = 15):
    from resshift.methods.resshift_method import ResShiftSR, schedule_for

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 64, 64, generator=gen)
    lq = torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1
    t = torch.tensor([2])
    img = torch.rand(1, 3, 256, 256, generator=gen) * 2 - 1
    latent = torch.randn(1, 3, 64, 64, generator=gen)

    def chain(version: str):
        def run(fast: bool):
            method = ResShiftSR(unet, vq, schedule_for(version), fast=fast)
            noise = {"generators": [torch.Generator().manual_seed(1)]}
            return method.sample_patches(lq, noise)
        return run

    def with_kernels(fn):
        def run(fast: bool):
            with fast_kernels(fast):
                return fn()
        return run

    return {
        "unet_forward_b1_64x64": with_kernels(lambda: unet(x, t, lq=lq)),
        "vq_encode_256x256": with_kernels(lambda: vq.encode(img)),
        "vq_decode_64x64_to_256x256": with_kernels(lambda: vq.decode(latent)),
        "sampler_v3_4steps_64_to_256": chain("v3"),
        "sampler_v1_15steps_64_to_256": chain("v1"),
    }


def measured_ceilings(runs: int = 5) -> dict[str, dict]:
    """This machine's fp32 throughput on the decoder's dominant shapes, timed now (median of
    ``runs`` after one warm-up): a GEMM of its 3x3 convolution's im2col shape (65536 x 1152 by
    1152 x 128) and that 3x3 convolution itself (128 -> 128 channels on a 256x256 map)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(65536, 1152, generator=gen), torch.randn(1152, 128, generator=gen)
    x, w = torch.randn(1, 128, 256, 256, generator=gen), torch.randn(128, 128, 3, 3, generator=gen)
    cases = {
        "gemm_65536x1152x128": (lambda: torch.mm(a, b), 2 * 65536 * 1152 * 128),
        "conv3x3_128ch_256x256": (lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 65536 * 1152 * 128),
    }
    out = {}
    with torch.inference_mode():
        for name, (fn, flops) in cases.items():
            med = statistics.median(time_interleaved({name: fn}, runs, 1)[name])
            out[name] = {"median_s": med, "gflop": flops / 1e9, "gflop_per_s": flops / med / 1e9}
    return out


def chain_breakdown(unet, vq, rounds: int = 3, version: str = "v3") -> dict:
    """Where the time of the whole chain goes: each network call of the fast chain for one 64x64 LR
    (encode incl. the bicubic x4, every UNet step, decode incl. the codebook search) timed inside
    ``rounds`` whole chains (median per call), plus the rest (sampler arithmetic, noise), with the
    FLOPs of each call and its GFLOP/s."""
    from resshift.methods.resshift_method import ResShiftSR, schedule_for

    method = ResShiftSR(unet, vq, schedule_for(version), fast=True)
    lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    calls: list[tuple[str, float, int]] = []
    counting = [False]

    def wrap(kind: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            start = time.perf_counter()
            flops = 0
            if counting[0]:
                flops = count_flops(lambda: fn(*args, **kwargs))
            out = fn(*args, **kwargs)
            calls.append((kind, time.perf_counter() - start, flops))
            return out
        return call

    for kind in ("encode", "denoise", "decode"):
        setattr(method, kind, wrap(kind, getattr(method, kind)))

    def chain() -> list[tuple[str, float, int]]:
        calls.clear()
        start = time.perf_counter()
        with torch.inference_mode():
            method.sample_patches(lq, {"generators": [torch.Generator().manual_seed(1)]})
        total = time.perf_counter() - start
        steps = iter(range(1, 1000))
        named = [("encode (bicubic x4 + VQ encoder)" if k == "encode" else "decode (codebook + VQ decoder)"
                  if k == "decode" else f"UNet step {next(steps)}", t, f) for k, t, f in calls]
        return named + [("rest (sampler, noise, padding)", total - sum(t for _, t, _ in named), 0),
                        ("whole chain", total, sum(f for _, _, f in named))]

    counting[0] = True
    flops = {name: f for name, _, f in chain()}  # also the warm-up
    counting[0] = False
    runs = [chain() for _ in range(rounds)]
    rows = {}
    for i, (name, _, _) in enumerate(runs[0]):
        med = statistics.median(r[i][1] for r in runs)
        rows[name] = {"median_s": med, "gflop": flops[name] / 1e9,
                      "gflop_per_s": flops[name] / med / 1e9 if flops[name] else None}
    return rows


def conv3x3_shapes(unet, vq, version: str = "v3") -> dict[tuple[str, int, int, int, int], int]:
    """(kind, C_in, C_out, H, W) -> calls of every 3x3, stride-1, padding-1 convolution in one fast
    chain for a 64x64 LR, recorded with forward pre-hooks: kind ``conv`` for plain ones, ``upsample``
    for those the fast path runs on the small map as sub-pixel phases (H, W: the map before the 2x
    nearest upsampling)."""
    from resshift.methods.resshift_method import ResShiftSR, schedule_for
    from resshift.models.fast import upsample_conv_fusable

    seen: dict[tuple[str, int, int, int, int], int] = {}

    def hook(kind: str):
        def record(module, args):
            conv = module.conv if kind == "upsample" else module
            x = args[0]
            key = (kind, conv.in_channels, conv.out_channels, x.shape[-2], x.shape[-1])
            seen[key] = seen.get(key, 0) + 1
        return record

    handles = []
    for net in (unet, vq):
        for m in net.modules():
            conv = getattr(m, "conv", None)
            if type(m).__name__ == "Upsample" and isinstance(conv, torch.nn.Conv2d) and upsample_conv_fusable(conv):
                handles.append(m.register_forward_pre_hook(hook("upsample")))
            elif isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) \
                    and m.padding == (1, 1):
                handles.append(m.register_forward_pre_hook(hook("conv")))
    try:
        method = ResShiftSR(unet, vq, schedule_for(version), fast=True)
        lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.inference_mode():
            method.sample_patches(lq, {"generators": [torch.Generator().manual_seed(1)]})
    finally:
        for h in handles:
            h.remove()
    return seen


def winograd_table(shapes: dict[tuple[str, int, int, int, int], int], rounds: int = 5) -> list[dict]:
    """Each 3x3 convolution shape timed both ways, interleaved (the direct kernel, or for upsampling
    layers the direct sub-pixel form, against Winograd F(4x4, 3x3); median of ``rounds``), with each
    one's round-off against a float64 convolution (max abs error / max |reference|) and whether the
    shape rule of the fast path selects Winograd."""
    from unittest import mock

    import torch.nn.functional as F

    from resshift.models import winograd_native
    from resshift.models.fast import Conv2d, nearest_upsample_conv
    from resshift.models.winograd import winograd_eligible, winograd_policy

    def with_policy(policy: str, fn: Callable, fused: bool = True) -> Callable:
        def run():
            with winograd_policy(policy), mock.patch.object(
                    winograd_native, "fused_available", winograd_native.fused_available if fused else lambda: False):
                return fn()
        return run

    rows = []
    gen = torch.Generator().manual_seed(0)
    for (kind, c_in, c_out, height, width), calls in sorted(shapes.items(), key=lambda kv: -kv[0][3] * kv[0][4]):
        conv = Conv2d(c_in, c_out, 3, padding=1).eval()
        with torch.no_grad():
            conv.weight.copy_(torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5)
            conv.bias.copy_(torch.randn(c_out, generator=gen))
        x = torch.randn(1, c_in, height, width, generator=gen)
        owner = torch.nn.Module()
        call = functools.partial(nearest_upsample_conv, owner, conv, x) if kind == "upsample" \
            else functools.partial(conv, x)
        with torch.inference_mode():
            full = F.interpolate(x.double(), scale_factor=2, mode="nearest") if kind == "upsample" else x.double()
            ref = F.conv2d(full, conv.weight.double(), conv.bias.double(), padding=1)
            scale = ref.abs().max().item()
            paths = {"direct": with_policy("never", call), "winograd": with_policy("always", call)}
            fused = winograd_native.fused_applies(-(-height // 4) * -(-width // 4))
            if fused:  # the same maps through the band loop (transforms around torch.bmm), for comparison
                paths["band loop"] = with_policy("always", call, fused=False)
            err = {k: (f().double() - ref).abs().max().item() / scale for k, f in paths.items()}
            times = {k: statistics.median(v) for k, v in time_interleaved(paths, rounds, 1).items()}
        rows.append({"kind": kind, "c_in": c_in, "c_out": c_out, "height": height, "width": width,
                     "calls_per_chain": calls, "direct_s": times["direct"], "winograd_s": times["winograd"],
                     "band_loop_s": times.get("band loop"), "fused": fused,
                     "speedup": times["direct"] / times["winograd"], "error_direct": err["direct"],
                     "error_winograd": err["winograd"],
                     "selected": winograd_eligible(conv, x, upsample=kind == "upsample")})
    return rows


def layer_split(unet, vq, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Amdahl's split of the v3 chain (64x64 LR): the time of the 3x3 layers the shape rule gives to
    Winograd (plain 3x3 convolutions, and nearest-x2 upsampling layers as a whole: the upsampling and its
    convolution) and of everything else, on the reference path and on the fast path, timed with forward hooks
    inside whole chains, alternately, median per part over ``rounds`` chains each after one warm-up.
    Returns ``{"reference"|"fast": {"selected 3x3 layers"|"everything else"|"whole chain": seconds}}`` and
    ``"selected_calls"``: ``{"reference"|"fast": calls of the selected layers in one chain}``."""
    from resshift.methods.resshift_method import ResShiftSR, schedule_for
    from resshift.models.fast import upsample_conv_fusable
    from resshift.models.winograd import winograd_eligible

    lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    selected, calls = [0.0], [0]
    started: dict[int, float] = {}

    def pre(module, args):
        conv = getattr(module, "conv", module)
        if winograd_eligible(conv, args[0], upsample=conv is not module):
            started[id(module)] = time.perf_counter()

    def post(module, args, output):
        start = started.pop(id(module), None)
        if start is not None:
            selected[0] += time.perf_counter() - start
            calls[0] += 1

    handles = []
    for net in (unet, vq):
        upsampling = [m for m in net.modules() if type(m).__name__ == "Upsample"
                      and isinstance(getattr(m, "conv", None), torch.nn.Conv2d) and upsample_conv_fusable(m.conv)]
        inner = {id(m.conv) for m in upsampling}  # timed as part of their upsampling layer
        plain = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and id(m) not in inner
                 and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)]
        for m in upsampling + plain:
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]

    def chain(fast: bool) -> Callable[[], dict[str, float]]:
        method = ResShiftSR(unet, vq, schedule_for("v3"), fast=fast)

        def run() -> dict[str, float]:
            selected[0], calls[0] = 0.0, 0
            start = time.perf_counter()
            with torch.inference_mode():
                method.sample_patches(lq, {"generators": [torch.Generator().manual_seed(1)]})
            total = time.perf_counter() - start
            return {"selected 3x3 layers": selected[0], "everything else": total - selected[0], "whole chain": total}
        return run

    runs: dict[str, list[dict[str, float]]] = {"reference": [], "fast": []}
    selected_calls = {}
    try:
        paths = {"reference": chain(False), "fast": chain(True)}
        for name, fn in paths.items():
            fn()
            selected_calls[name] = calls[0]
        for _ in range(rounds):
            for name, fn in paths.items():
                runs[name].append(fn())
    finally:
        for h in handles:
            h.remove()
    split: dict = {name: {part: statistics.median(r[part] for r in rs) for part in rs[0]} for name, rs in runs.items()}
    split["selected_calls"] = selected_calls
    return split


def print_layer_split(split: dict[str, dict[str, float]]) -> None:
    ref, fast = split["reference"], split["fast"]
    calls = split["selected_calls"]["fast"]
    print(f"\nthe v3 chain split (Amdahl): the 3x3 layers the shape rule gives to Winograd ({calls} calls a chain; "
          "upsampling layers whole) and everything else, reference vs fast path, medians")
    print(f"{'part':24s} {'reference':>10s} {'fast':>8s} {'speed-up':>9s} {'share of ref':>13s}")
    for part in ref:
        print(f"{part:24s} {ref[part]:9.2f}s {fast[part]:7.2f}s {ref[part] / fast[part]:8.2f}x "
              f"{ref[part] / ref['whole chain']:12.0%}")
    need = ref["whole chain"] / 2 - fast["everything else"]
    sel = ref["selected 3x3 layers"]
    print(f"for 2x the reference with the rest as it is, the selected layers would need {need:.2f} s "
          f"({sel / need:.2f}x their reference time)" if need > 0 else
          "2x the reference is out of reach even with the selected layers at no cost")
    bound = ref["whole chain"] / fast["everything else"]
    print(f"with the selected layers at no cost, the chain would be {bound:.2f}x")


def rule_variants(unet, vq, rounds: int = 3) -> dict[str, list[float]]:
    """The fast v3 chain (64x64 LR) with each shape rule (the AVX2 and the AVX-512 one, whatever this CPU
    is) and each form of the tile transforms (compiled one-pass C, PyTorch matrix products), timed
    interleaved after one warm-up each: wall seconds per round."""
    from unittest import mock

    from resshift.methods.resshift_method import ResShiftSR, schedule_for
    from resshift.models import winograd, winograd_native

    method = ResShiftSR(unet, vq, schedule_for("v3"), fast=True)
    lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def variant(rule: str, form: str) -> Callable:
        def run():
            with mock.patch.object(winograd, "cpu_capability", lambda: rule), \
                    mock.patch.object(winograd_native, "available", winograd_native.available if form != "PyTorch"
                                      else (lambda: False)), \
                    mock.patch.object(winograd_native, "fused_available", winograd_native.fused_available
                                      if form == "fused" else (lambda: False)), torch.inference_mode():
                return method.sample_patches(lq, {"generators": [torch.Generator().manual_seed(1)]})
        return run

    forms = (["fused"] if winograd_native.fused_available() else []) + (
        ["compiled"] if winograd_native.available() else []) + ["PyTorch"]
    names = {"fused": "fused blocks + compiled transforms", "compiled": "compiled transforms, band loop",
             "PyTorch": "PyTorch transforms, band loop"}
    paths = {f"{rule} rule, {names[f]}": variant(rule, f) for rule in winograd.RULES for f in forms}
    return time_interleaved(paths, rounds, 1)


def print_rule_variants(times: dict[str, list[float]]) -> None:
    from resshift.models import winograd, winograd_native

    print(f"\nthe fast v3 chain by shape rule and tile transforms (this CPU: {winograd.cpu_capability()}; "
          f"compiled transforms: {winograd_native.status()}), interleaved")
    for name, values in times.items():
        print(f"{name:52s} median {statistics.median(values):6.2f}s  rounds "
              + " ".join(f"{v:.2f}" for v in values))


def print_winograd_table(rows: list[dict]) -> None:
    print("\n3x3 convolutions of the v3 chain (up: nearest x2 + conv, on the small map): direct kernel vs "
          "Winograd F(4x4, 3x3), interleaved medians; round-off = max error / scale against float64")
    print("(winograd: fused blocks where the map has enough tiles, marked *, else the band loop; 'band loop':")
    print(" the same maps through the band loop, transforms around torch.bmm, for comparison)")
    print(f"{'C_in->C_out @ HxW':26s} {'calls':>5s} {'direct':>9s} {'winograd':>10s} {'band loop':>9s} "
          f"{'speed-up':>8s} {'err direct':>10s} {'err wino':>9s} {'rule':>5s}")
    saved = 0.0
    for r in rows:
        shape = f"{'up ' if r['kind'] == 'upsample' else ''}{r['c_in']}->{r['c_out']} @ {r['height']}x{r['width']}"
        band = f"{r['band_loop_s'] * 1e3:7.1f}ms" if r.get("band_loop_s") else f"{'-':>9s}"
        print(f"{shape:26s} {r['calls_per_chain']:5d} {r['direct_s'] * 1e3:7.1f}ms {r['winograd_s'] * 1e3:7.1f}ms"
              f"{'*' if r.get('fused') else ' '} {band} "
              f"{r['speedup']:7.2f}x {r['error_direct']:10.1e} {r['error_winograd']:9.1e} "
              f"{'yes' if r['selected'] else 'no':>5s}")
        if r["selected"]:
            saved += r["calls_per_chain"] * (r["direct_s"] - r["winograd_s"])
    print(f"time saved per chain by the shape rule (sum over the selected shapes): {saved:.2f} s")


def print_breakdown(rows: dict, ceilings: dict) -> None:
    conv = ceilings["conv3x3_128ch_256x256"]["gflop_per_s"]
    gemm = ceilings["gemm_65536x1152x128"]["gflop_per_s"]
    print(f"\nbreakdown of the whole v3 chain (fast path, 64x64 LR), medians; ceilings measured now: "
          f"fp32 GEMM 65536x1152x128 {gemm:.0f} GFLOP/s, 3x3 conv 128ch 256x256 {conv:.0f} GFLOP/s")
    print(f"{'part':34s} {'time':>8s} {'share':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'of conv':>8s} {'of GEMM':>8s}")
    total = rows["whole chain"]["median_s"]
    for name, r in rows.items():
        rate = r["gflop_per_s"]
        tail = f"{rate:8.0f} {rate / conv:7.0%} {rate / gemm:7.0%}" if rate else f"{'-':>8s} {'-':>8s} {'-':>8s}"
        print(f"{name:34s} {r['median_s']:7.2f}s {r['median_s'] / total:6.0%} {r['gflop']:7.1f} {tail}")


def run_benchmark(
    names: list[str], runs_scale: float = 1.0, tiny: bool = False
) -> dict:
    """Time every component on both paths; returns a JSON-ready report (also printed as it goes)."""
    unet, vq = build_networks(tiny)
    components = _components(unet, vq)
    report: dict = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "nproc": os.cpu_count(),
        "mode": "torch.inference_mode(), float32, CPU, batch 1",
        "weights": "random: torch.manual_seed(0) default init + 0.05*randn (seeds 2001, 2002)",
        "tiny": tiny,
        "components": {},
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'tiny' if tiny else 'full-size'} networks")
    header = f"{'component':32s} {'reference':>10s} {'fast':>8s} {'speed-up':>9s} " \
             f"{'GFLOP ref/fast':>16s} {'GFLOP/s fast':>12s} {'rel. diff':>9s} {'load':>11s}"
    print(header)
    for name in names:
        fn = components[name]
        runs, warmup = PROTOCOL[name]
        runs = max(1, round(runs * runs_scale))
        load_before = load_average()
        with torch.inference_mode():
            paths = {"reference": functools.partial(fn, False), "fast": functools.partial(fn, True)}
            out_ref, out_fast = paths["reference"](), paths["fast"]()
            flops = {k: count_flops(path) for k, path in paths.items()}
            times = time_interleaved(paths, runs, warmup)
        load_after = load_average()
        med = {k: statistics.median(v) for k, v in times.items()}
        entry = {
            "runs": runs,
            "warmup": warmup,
            "median_s": med,
            "all_s": times,
            "flops": flops,
            "gflop_per_s_at_median": {k: flops[k] / med[k] / 1e9 for k in med},
            "speedup_fast_vs_reference": med["reference"] / med["fast"],
            "max_abs_diff_relative_to_scale": _relative_difference(out_fast.float(), out_ref.float()),
            "load_average_1min": [load_before, load_after],
        }
        report["components"][name] = entry
        print(
            f"{name:32s} {med['reference']:9.2f}s {med['fast']:7.2f}s {entry['speedup_fast_vs_reference']:8.2f}x "
            f"{flops['reference'] / 1e9:7.1f}/{flops['fast'] / 1e9:<8.1f} "
            f"{entry['gflop_per_s_at_median']['fast']:12.1f} {entry['max_abs_diff_relative_to_scale']:9.1e} "
            f"{load_before:5.1f}->{load_after:<5.1f}",
            flush=True,
        )
    return report


_MEMORY_CHILD = """
import resource, sys, torch
sys.path.insert(0, {bench_dir!r})
from cpu_speed import build_networks
from resshift.models.fast import fast_kernels
torch.set_num_threads({threads})
_, vq = build_networks(tiny={tiny}, unet=False)
z = torch.randn(1, 3, {side}, {side})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with torch.inference_mode(), fast_kernels({fast}):
    out = vq.decode(z)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT", base, peak, tuple(out.shape))
"""


def decode_peak_rss(side: int = 256, fast: bool = True, tiny: bool = False, threads: int = 2) -> dict:
    """Peak RSS (MiB) of decoding a ``side x side`` latent in a fresh Python process (random weights)."""
    code = _MEMORY_CHILD.format(side=side, fast=fast, tiny=tiny, threads=threads,
                                bench_dir=str(Path(__file__).resolve().parent))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"decode subprocess failed:\n{proc.stderr[-2000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    _, base, peak, *shape = line.split(maxsplit=3)
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "latent": [side, side],
        "output_shape": shape[0],
        "peak_rss_MiB": int(peak) / scale,
        "rss_before_decode_MiB": int(base) / scale,
        "seconds": time.perf_counter() - start,
        "fast": fast,
    }


_RUN_CHILD = """
import resource, runpy, sys, threading, time
sys.argv = {argv!r}
try:
    runpy.run_module("resshift.runner.app", run_name="__main__")
except SystemExit as stop:
    if stop.code not in (None, 0):
        raise
print("RESULT", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def synthetic_lr(width: int, height: int, seed: int = 0) -> numpy.ndarray:
    """An HWC uint8 LR test image: a smooth random field (1/16 resolution, bilinear) plus noise."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 16), max(2, width // 16), generator=gen)
    img = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    img.add_(0.05 * torch.randn(img.shape, generator=gen)).clamp_(0, 1)
    return numpy.ascontiguousarray((img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def run_peak_rss(width: int, height: int, threads: int = 2, metrics: list[str] | None = None) -> dict:
    """Peak RSS (MiB) of one whole evaluation run in a fresh process on one synthetic ``width x height``
    LR image: ``python -m resshift.runner.app method=bicubic dataset=folder`` with the default metrics
    (``eval/config.yaml``; those whose weights are absent are recorded unavailable, not run), SR phase,
    metric phase, spectra and report. Returns the peak, the seconds and the metric values recorded."""
    import tempfile

    from resshift.io import write_png

    with tempfile.TemporaryDirectory(prefix="resshift-runmem-") as tmp:
        folder = Path(tmp) / "lr"
        write_png(folder / "synthetic.png", synthetic_lr(width, height))
        argv = ["resshift.runner.app", "method=bicubic", "dataset=folder", f"dataset.params.root={folder}",
                f"run.root={tmp}/runs", f"hardware.threads={threads}", "hydra.job.chdir=false"]
        if metrics is not None:
            argv.append(f"metrics=[{','.join(metrics)}]")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _RUN_CHILD.format(argv=argv)], capture_output=True,
                              text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"run subprocess failed:\n{proc.stderr[-3000:]}")
        peak = int(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")).split()[1])
        summaries = list(Path(tmp, "runs").rglob("summary.json"))
        summary = json.loads(summaries[0].read_text()) if summaries else {}
    scale = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "lr_size": [width, height],
        "sr_size": [4 * width, 4 * height],
        "peak_rss_MiB": peak / scale,
        "seconds": seconds,
        "metrics": {k: v.get("mean") for k, v in summary.get("metrics", {}).items()},
        "unavailable": summary.get("unavailable", {}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/cpu_speed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2, as the official timing protocol)")
    p.add_argument("--only", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL), help="components to time")
    p.add_argument("--runs-scale", type=float, default=1.0, help="multiply the number of timed runs")
    p.add_argument("--tiny", action="store_true", help="small networks (a smoke test of the script)")
    p.add_argument("--memory", action="store_true", help="also measure the peak RSS of a 256x256-latent decode")
    p.add_argument("--memory-side", type=int, default=256, help="latent side for --memory (default: 256)")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip the per-component breakdown of the v3 chain, the measured ceilings and the "
                        "direct-vs-Winograd table of its 3x3 convolutions")
    p.add_argument("--run-memory", metavar="WxH", default=None,
                   help="also measure the peak RSS of a whole run (bicubic, default metrics) on one WxH LR image, "
                        "e.g. 4000x3000 (16000x12000 output)")
    p.add_argument("--rule-variants", action="store_true",
                   help="also time the fast v3 chain with each CPU family's shape rule and each form of the tile "
                        "transforms, interleaved")
    p.add_argument("--layer-split", action="store_true",
                   help="also split the v3 chain into the 3x3 layers the shape rule gives to Winograd and the rest, "
                        "on both paths (where the remaining time is, Amdahl's bound for the speed-up)")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    report = run_benchmark(args.only, args.runs_scale, args.tiny)
    if not args.no_breakdown:
        unet, vq = build_networks(args.tiny)
        report["ceilings"] = measured_ceilings(runs=max(1, round(5 * args.runs_scale)))
        report["v3_breakdown"] = chain_breakdown(unet, vq, rounds=max(1, round(3 * args.runs_scale)))
        print_breakdown(report["v3_breakdown"], report["ceilings"])
        report["winograd"] = winograd_table(conv3x3_shapes(unet, vq), rounds=max(1, round(5 * args.runs_scale)))
        print_winograd_table(report["winograd"])
    if args.layer_split:
        unet, vq = build_networks(args.tiny)
        report["layer_split"] = layer_split(unet, vq, rounds=max(1, round(3 * args.runs_scale)))
        print_layer_split(report["layer_split"])
    if args.rule_variants:
        unet, vq = build_networks(args.tiny)
        report["rule_variants"] = rule_variants(unet, vq, rounds=max(1, round(3 * args.runs_scale)))
        print_rule_variants(report["rule_variants"])
    if args.memory:
        mem = decode_peak_rss(args.memory_side, fast=True, tiny=args.tiny, threads=args.threads)
        report["decode_peak_rss"] = mem
        print(
            f"peak RSS decoding a {args.memory_side}x{args.memory_side} latent to {mem['output_shape']}: "
            f"{mem['peak_rss_MiB']:.0f} MiB (before the decode: {mem['rss_before_decode_MiB']:.0f} MiB, "
            f"{mem['seconds']:.0f} s)"
        )
    if args.run_memory:
        width, height = (int(v) for v in args.run_memory.lower().split("x"))
        mem = run_peak_rss(width, height, threads=args.threads)
        report["run_peak_rss"] = mem
        print(
            f"peak RSS of a whole run (bicubic, default metrics) on one {width}x{height} LR image "
            f"({4 * width}x{4 * height} SR): {mem['peak_rss_MiB']:.0f} MiB ({mem['seconds']:.0f} s); "
            f"metrics {mem['metrics']}; unavailable: {sorted(mem['unavailable'])}"
        )
    report["max_rss_this_process_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
