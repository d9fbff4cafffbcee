"""The fast inference path against the reference path (random small networks, no shared files).

What must be bit-identical is tested with ``torch.equal`` (in-place variants of the same arithmetic,
the window gather, the codebook search); what reorders floating-point work (sub-pixel upsampling
convolutions, flash attention, fused q/k/v) is compared at float32 round-off, 1e-5 of the scale,
the golden tolerance.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from bench_script import cpu_speed

from resshift.methods.resshift_method import ResShiftSR, schedule_for
from resshift.models import fast
from resshift.models.fast import Conv2d, fast_kernels, group_norm_silu, nearest_upsample_conv
from resshift.models.layers import attention
from resshift.models.swin import SwinTransformerBlock
from resshift.models.vq_f4 import AttnBlock, VectorQuantizer

REL = 1e-5


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = REL) -> None:
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel:g} x scale {scale:.3g}"


@pytest.fixture(scope="module")
def tiny_nets():
    return cpu_speed().build_networks(tiny=True)


def test_conv_residual_and_activation_are_the_reference_arithmetic():
    torch.manual_seed(0)
    conv = Conv2d(16, 16, 3, padding=1)
    x, r = torch.randn(2, 16, 40, 40), torch.randn(2, 16, 40, 40)
    with torch.inference_mode():
        with fast_kernels(False):
            ref_res, ref_gelu, ref_silu = conv(x, residual=r), conv(x, activation="gelu"), conv(x, activation="silu")
        assert torch.equal(conv(x, residual=r), ref_res)
        assert torch.equal(conv(x, activation="gelu"), ref_gelu)
        assert torch.equal(conv(x, activation="silu"), ref_silu)
    assert torch.equal(ref_res, r + F.conv2d(x, conv.weight, conv.bias, padding=1))
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        conv(x, activation="relu")


def test_group_norm_silu_in_place_is_identical():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(4, 16)
    x = torch.randn(2, 16, 8, 8) * 3 + 1
    with torch.inference_mode():
        fast_out = group_norm_silu(norm, x)
        with fast_kernels(False):
            ref = group_norm_silu(norm, x)
    assert torch.equal(fast_out, ref)
    assert torch.equal(ref, F.silu(norm(x)))


def test_fast_kernels_context_is_scoped():
    assert fast.fast_enabled()
    with fast_kernels(False):
        assert not fast.fast_enabled()
        with fast_kernels(True):
            assert fast.fast_enabled()
        assert not fast.fast_enabled()
    assert fast.fast_enabled()


@pytest.mark.parametrize("shift", [0, 4])
def test_window_order_is_roll_plus_partition(shift):
    block = SwinTransformerBlock(32, (16, 24), num_heads=1, window_size=8, shift_size=shift)
    h, w, ws = 16, 24, 8
    x = torch.arange(2 * 32 * h * w, dtype=torch.float32).view(2, 32, h, w)
    rolled = torch.roll(x, shifts=(-shift, -shift), dims=(2, 3))
    expected = rolled.view(2, 32, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(2, h * w, 32)
    order, inverse = block.window_order(h, w, x.device)
    tokens = x.reshape(2, 32, h * w).transpose(1, 2)
    assert torch.equal(tokens.index_select(1, order), expected)
    assert torch.equal(expected.index_select(1, inverse), tokens)


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 16, 24), (2, 16, 24), (3, 24, 16)])
def test_swin_block_fast_path_matches_reference(batch, height, width):
    """Shifted block with the (quirky) mask: one SDPA call per run of window rows, per sample if needed."""
    torch.manual_seed(1)
    block = SwinTransformerBlock(64, (64, 64), num_heads=2, window_size=8, shift_size=4, mlp_ratio=4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(batch, 64, height, width)
    with torch.inference_mode():
        out = block(x)
        with fast_kernels(False):
            ref = block(x)
    assert_rel_close(out, ref)
    assert out.is_contiguous()


def test_nearest_upsample_conv_equals_upsample_then_conv():
    torch.manual_seed(2)
    owner = torch.nn.Module()
    conv = torch.nn.Conv2d(24, 16, 3, padding=1)
    x = torch.randn(2, 24, 9, 13)
    with torch.inference_mode():
        out = nearest_upsample_conv(owner, conv, x)
        direct = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        exact = F.conv2d(F.interpolate(x.double(), scale_factor=2, mode="nearest"), conv.weight.double(),
                         conv.bias.double(), padding=1)
    assert out.shape == (2, 16, 18, 26)
    assert_rel_close(out, direct)
    # summing kernel taps before multiplying is at least as accurate as the direct form
    assert (out.double() - exact).abs().max() <= 2 * (direct.double() - exact).abs().max()
    # the combined kernels follow in-place weight updates
    with torch.no_grad():
        conv.weight.mul_(-2)
    with torch.inference_mode():
        assert_rel_close(nearest_upsample_conv(owner, conv, x), conv(F.interpolate(x, scale_factor=2)))


def test_codebook_search_fast_path_gives_identical_indices():
    torch.manual_seed(3)
    quantizer = VectorQuantizer(512, 3)
    z = torch.randn(5000, 3)
    with torch.inference_mode():
        fast_idx = quantizer.nearest(z)
        with fast_kernels(False):
            ref_idx = quantizer.nearest(z)
    assert torch.equal(fast_idx, ref_idx)


def test_vq_attention_fast_path_follows_weight_updates():
    torch.manual_seed(4)
    block = AttnBlock(64).eval()
    x = torch.randn(2, 64, 12, 10)
    for _ in range(2):
        with torch.inference_mode():
            out = block(x)
            with fast_kernels(False):
                ref = block(x)
        assert_rel_close(out, ref)
        with torch.no_grad():
            block.k.weight.mul_(3)  # the fused q/k/v matrix must be rebuilt


def test_attention_query_blocks_bound_the_score_matrix(monkeypatch):
    """O(N) memory by construction: no SDPA call sees more than ``max_scores`` query-key pairs."""
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, **kwargs):
        calls.append(q.shape[-2] * k.shape[-2])
        return sdpa(q, k, v, **kwargs)

    torch.manual_seed(5)
    q, k, v = (torch.randn(1, 1, 1000, 8) for _ in range(3))
    whole = attention(q, k, v, scale=0.3)
    monkeypatch.setattr("resshift.models.layers.F.scaled_dot_product_attention", recording)
    split = attention(q, k, v, scale=0.3, max_scores=1000 * 64)
    assert len(calls) == 16 and max(calls) <= 1000 * 64
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)


def test_networks_fast_path_matches_reference_and_stays_contiguous(tiny_nets):
    """Whole tiny UNet and VQ on both paths; every module output is in the standard layout (the CPU
    channels-last GroupNorm is inexact, so channels-last must not creep in)."""
    unet, vq = tiny_nets
    torch.manual_seed(6)
    x, lq, img = torch.randn(2, 3, 64, 128), torch.rand(2, 3, 64, 128) * 2 - 1, torch.rand(1, 3, 64, 96) * 2 - 1
    t = torch.tensor([3, 0])
    layouts = []
    hooks = [m.register_forward_hook(lambda m, a, o: layouts.append(o.is_contiguous()))
             for net in (unet, vq) for m in net.modules() if not isinstance(m, VectorQuantizer)]
    try:
        with torch.inference_mode():
            outs = [unet(x, t, lq=lq), vq.encode(img), vq.decode(x[:, :, :16, :24])]
    finally:
        for h in hooks:
            h.remove()
    assert layouts and all(layouts)
    with torch.inference_mode(), fast_kernels(False):
        refs = [unet(x, t, lq=lq), vq.encode(img), vq.decode(x[:, :, :16, :24])]
    for out, ref in zip(outs, refs, strict=True):
        assert_rel_close(out, ref)


def test_fast_path_supports_autograd(tiny_nets):
    """With autograd recording (the perceptual training loss decodes with gradients) nothing is done
    in place and the gradients equal the reference path's."""
    _, vq = tiny_nets
    torch.manual_seed(7)
    z = torch.randn(1, 3, 8, 8)
    grads = []
    for enabled in (True, False):
        zz = z.clone().requires_grad_(True)
        with fast_kernels(enabled):
            vq.decode(zz, force_not_quantize=True).square().mean().backward()
        grads.append(zz.grad)
    assert_rel_close(grads[0], grads[1], rel=1e-4)


def test_method_fast_flag_and_vq_precision(tiny_nets):
    unet, vq = tiny_nets
    lr = torch.rand(1, 3, 20, 28) * 2 - 1
    outs = []
    for enabled in (True, False):
        method = ResShiftSR(unet, vq, schedule_for("v3"), fast=enabled)
        noise = {"generators": [torch.Generator().manual_seed(8)]}
        outs.append(method.sample_patches(lr, noise))
        assert method.describe()["fast_kernels"] is enabled
    assert_rel_close(outs[0], outs[1], rel=1e-4)  # a free-running 4-step chain (golden bound: 2e-3)
    with pytest.raises(ValueError, match="dtype fp16 needs a CUDA device"):
        ResShiftSR(unet, vq, schedule_for("v3"), vq_dtype="fp16")
    assert ResShiftSR(unet, vq, schedule_for("v3")).describe()["vq_dtype"] == "fp32"


def test_benchmark_script_runs_and_reports(tmp_path):
    """The benchmark entry point on tiny networks (nothing timed is asserted)."""
    out = tmp_path / "bench.json"
    assert cpu_speed().main(["--tiny", "--only", "unet_forward_b1_64x64", "--runs-scale", "0.1", "--no-breakdown",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    entry = report["components"]["unet_forward_b1_64x64"]
    assert entry["runs"] == 1 and set(entry["median_s"]) == {"reference", "fast"}
    assert entry["flops"]["fast"] < entry["flops"]["reference"]  # sub-pixel upsampling convolutions
    assert entry["max_abs_diff_relative_to_scale"] < REL
    assert report["threads"] == 2


@pytest.mark.slow
def test_chain_breakdown_parts_add_up_to_the_chain():
    """The v3 breakdown on tiny networks: encode, 4 UNet steps, decode and the rest; with one round
    the parts add up to the whole chain, in time and in FLOPs; the ceilings are measured."""
    bench = cpu_speed()
    chain_breakdown, count_flops, measured_ceilings = bench.chain_breakdown, bench.count_flops, bench.measured_ceilings

    unet, vq = cpu_speed().build_networks(tiny=True)
    parts = chain_breakdown(unet, vq, rounds=1)
    assert list(parts) == ["encode (bicubic x4 + VQ encoder)", *(f"UNet step {i}" for i in range(1, 5)),
                           "decode (codebook + VQ decoder)", "rest (sampler, noise, padding)", "whole chain"]
    whole = parts.pop("whole chain")
    assert sum(p["median_s"] for p in parts.values()) == pytest.approx(whole["median_s"], rel=1e-9)
    assert sum(p["gflop"] for p in parts.values()) == pytest.approx(whole["gflop"], rel=1e-9)
    lq = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode():
        one_step = count_flops(lambda: unet(torch.zeros(1, 3, 64, 64), torch.tensor([1]), lq=lq))
    assert parts["UNet step 3"]["gflop"] == pytest.approx(one_step / 1e9)
    ceilings = measured_ceilings(runs=1)
    assert set(ceilings) == {"gemm_65536x1152x128", "conv3x3_128ch_256x256"}
    assert all(c["gflop_per_s"] > 0 and c["gflop"] == pytest.approx(19.327352832) for c in ceilings.values())


def test_layer_split_parts_add_up_and_hooks_are_removed():
    """The Amdahl split of the v3 chain on tiny networks: both paths time the same selected layers (as many calls
    as the shape rule selects among the chain's 3x3 layers), the two parts of one round add up to the chain, and
    no hook stays on the networks."""
    bench = cpu_speed()
    unet, vq = bench.build_networks(tiny=True)
    from resshift.models import winograd

    shapes = bench.conv3x3_shapes(unet, vq)
    expected = sum(calls for (kind, c_in, c_out, h, w), calls in shapes.items()
                   if winograd.winograd_eligible(torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.zeros(1, c_in, h, w),
                                                 upsample=kind == "upsample"))
    split = bench.layer_split(unet, vq, rounds=1)
    assert expected > 0 and split["selected_calls"] == {"reference": expected, "fast": expected}
    for path in ("reference", "fast"):
        parts = split[path]
        assert parts["selected 3x3 layers"] > 0 and parts["everything else"] > 0
        assert parts["selected 3x3 layers"] + parts["everything else"] == pytest.approx(parts["whole chain"], rel=1e-12)
    assert not any(m._forward_hooks or m._forward_pre_hooks for net in (unet, vq) for m in net.modules())


@pytest.mark.slow
def test_decode_of_a_256x256_latent_fits_in_8_gib():
    """Full-size VQ decode to a 1024x1024 image in a fresh process; peak RSS reported and bounded."""
    result = cpu_speed().decode_peak_rss(256)  # runs in a subprocess of its own
    print(result)
    assert result["output_shape"] == "(1, 3, 1024, 1024)"
    assert result["peak_rss_MiB"] < 8 * 1024
