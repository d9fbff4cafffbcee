"""Winograd F(4x4, 3x3) convolution of the fast path (``resshift.models.winograd``).

Round-off bound: max |winograd - conv2d in float64| <= 8e-6 of the output's scale (max |reference|).
Measured at the v3 chain's shapes that use it: 2.1e-6 to 4.0e-6, the same size as oneDNN's direct
float32 kernel at those shapes (1.7e-6 to 5.5e-6) measured the same way (``benchmarks/cpu_speed.py``);
the bound leaves room for other CPUs' BLAS.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from resshift.models import winograd as W
from resshift.models import winograd_native as N
from resshift.models.fast import Conv2d, fast_kernels

BOUND = 8e-6


@pytest.fixture(params=["fused", "compiled", "torch"])
def transforms(request, monkeypatch):
    """Run a test with the fused blocks (every map, blocks of 5 tiles so that they cross tile rows; the
    test must have run them), with the compiled one-pass tile transforms around ``torch.bmm`` (the band
    loop), and with the PyTorch ones."""
    calls = []
    if request.param == "fused":
        if not N.fused_available():
            pytest.skip(f"fused Winograd blocks not available here: {N.status()}")
        monkeypatch.setattr(N, "FUSED_MIN_TILES", 1)
        monkeypatch.setattr(N, "FUSED_BLOCK", 5)
        real_conv = N.conv
        monkeypatch.setattr(N, "conv", lambda *a, **k: calls.append(1) or real_conv(*a, **k))
    elif request.param == "compiled":
        if not N.available():
            pytest.skip(f"compiled Winograd transforms not available here: {N.status()}")
        monkeypatch.setattr(N, "fused_available", lambda: False)
    else:
        monkeypatch.setattr(N, "available", lambda: False)
    yield request.param
    assert calls or request.param != "fused", "the fused blocks never ran in this test"


def _scaled_error(actual: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> float:
    ref = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)
    return ((actual.double() - ref).abs().max() / ref.abs().max()).item()


def test_f23_matrices_are_the_published_ones():
    """On points (0, 1, -1) the construction gives Lavin & Gray's F(2, 3) matrices (their eq. 7)."""
    a_t, g, b_t = W.toom_cook_matrices(2, 3, (0, 1, -1))
    h = Fraction(1, 2)
    assert a_t == [[1, 1, 1, 0], [0, 1, -1, 1]]
    assert g == [[-1, 0, 0], [h, h, h], [h, -h, h], [0, 0, 1]]
    assert b_t == [[-1, 0, 1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    # the sign of row 0 sits in G instead of Bᵀ (Lavin & Gray have +1 in both): same product


def test_f43_identity_is_exact_and_bad_points_are_refused():
    a_t, g, b_t = W.toom_cook_matrices()
    assert (len(a_t), len(a_t[0]), len(g), len(g[0]), len(b_t)) == (4, 6, 6, 3, 6)
    for i in range(4):
        for k in range(3):
            for t in range(6):
                assert sum(a_t[i][j] * g[j][k] * b_t[j][t] for j in range(6)) == (t == i + k)
    with pytest.raises(ValueError, match="distinct"):
        W.toom_cook_matrices(4, 3, (0, 1, 1, 2, -2))
    with pytest.raises(ValueError, match="needs 5"):
        W.toom_cook_matrices(4, 3, (0, 1, -1))


@pytest.mark.parametrize(
    "c_in, c_out, height, width, batch, bias",
    [(128, 128, 32, 32, 1, True), (160, 96, 21, 30, 2, True), (64, 192, 5, 7, 1, False), (3, 8, 1, 1, 1, True)],
)
def test_winograd_equals_float64_convolution(c_in, c_out, height, width, batch, bias, transforms):
    gen = torch.Generator().manual_seed(c_in + height)
    x = torch.randn(batch, c_in, height, width, generator=gen)
    w = torch.randn(c_out, c_in, 3, 3, generator=gen) / (9 * c_in) ** 0.5
    b = torch.randn(c_out, generator=gen) if bias else None
    y = W.winograd_conv3x3(x, W.transform_weight(w), b)
    assert y.shape == (batch, c_out, height, width) and y.is_contiguous() and y.dtype == torch.float32
    assert _scaled_error(y, x, w, b) <= BOUND


def test_images_do_not_depend_on_their_batch_or_band(monkeypatch, transforms):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 128, 24, 40, generator=gen)
    w = torch.randn(128, 128, 3, 3, generator=gen) / 34
    u = W.transform_weight(w)
    whole = W.winograd_conv3x3(x, u)
    for i in range(3):  # the same computation per image: identical bits
        assert torch.equal(W.winograd_conv3x3(x[i : i + 1], u), whole[i : i + 1])
    one_row = 36 * 128 * 10 * 4
    monkeypatch.setattr(W, "BAND_BYTES", one_row * 2)  # bands of 2 tile rows instead of all 6
    monkeypatch.setattr(W, "NATIVE_BAND_BYTES", one_row * 2)
    assert W.band_rows(128, 128, 6, 10) == 2
    banded = W.winograd_conv3x3(x, u)
    assert (banded - whole).abs().max() <= 1e-6 * whole.abs().max()
    assert _scaled_error(banded, x, w, None) <= BOUND


def test_band_rows_are_even_and_bounded(monkeypatch):
    per_row = 36 * 512 * 16 * 4
    monkeypatch.setattr(W, "BAND_BYTES", per_row * 14)
    assert W.band_rows(512, 512, 16, 16) == 8  # two bands of 8, not 14 + 2
    assert W.band_rows(512, 512, 14, 16) == 14
    monkeypatch.setattr(W, "BAND_BYTES", 1)
    assert W.band_rows(512, 512, 16, 16) == 1


@pytest.mark.parametrize("capability", ["AVX2", "AVX512", "DEFAULT"])
def test_shape_rule_and_policies(monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    avx512 = capability == "AVX512"  # other families without a measured rule take the AVX2 one
    assert W.cpu_capability() == ("AVX512" if avx512 else "AVX2")
    assert (f"{W.cpu_capability()} rule") in W.describe("cpu")
    big, small_map, few = Conv2d(512, 512, 3, padding=1), torch.zeros(1, 512, 8, 8), Conv2d(64, 64, 3, padding=1)
    assert W.winograd_eligible(big, torch.zeros(1, 512, 64, 64))
    assert W.winograd_eligible(big, torch.zeros(1, 512, 32, 32))
    assert W.winograd_eligible(big, torch.zeros(1, 512, 16, 16))
    assert not W.winograd_eligible(big, torch.zeros(1, 512, 16, 16), upsample=True)  # phases: >= 32x32
    assert W.winograd_eligible(big, torch.zeros(1, 512, 32, 32), upsample=True) is not avx512  # AVX-512: 64x64
    assert W.winograd_eligible(big, torch.zeros(1, 512, 64, 64), upsample=True)
    assert not W.winograd_eligible(big, small_map)  # 8x8: too few tiles
    assert not W.winograd_eligible(few, torch.zeros(1, 64, 64, 64))  # < 128 channels
    rgb_in = Conv2d(3, 128, 3, padding=1)  # few channels: only on maps of >= 256x256, as fused blocks
    assert W.winograd_eligible(rgb_in, torch.zeros(1, 3, 256, 256)) is N.fused_available()
    assert not W.winograd_eligible(rgb_in, torch.zeros(1, 3, 255, 256))
    assert not W.winograd_eligible(few, torch.zeros(1, 64, 256, 256), upsample=True)
    with monkeypatch.context() as m:
        m.setattr(N, "fused_available", lambda: False)
        assert not W.winograd_eligible(rgb_in, torch.zeros(1, 3, 256, 256))
        assert "any channels" not in W.describe("cpu")
    assert not W.winograd_eligible(big, torch.zeros(1, 512, 64, 64, dtype=torch.float64))
    strided = Conv2d(512, 512, 3, stride=2, padding=1)
    one = Conv2d(512, 512, 1)
    with W.winograd_policy("always"):
        assert W.winograd_eligible(big, small_map) and W.winograd_eligible(few, torch.zeros(1, 64, 4, 4))
        assert not W.winograd_eligible(strided, torch.zeros(1, 512, 64, 64))
        assert not W.winograd_eligible(one, torch.zeros(1, 512, 64, 64))
    with W.winograd_policy("never"):
        assert not W.winograd_eligible(big, torch.zeros(1, 512, 64, 64))
    with pytest.raises(ValueError, match="unknown Winograd policy 'fastest'"):
        with W.winograd_policy("fastest"):
            pass
    with pytest.raises(ValueError, match="3, 3"):
        W.transform_weight(torch.zeros(4, 4, 2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        W.winograd_conv3x3(torch.zeros(1, 8, 4, 4), W.transform_weight(torch.zeros(4, 6, 3, 3)))


def test_fast_conv_uses_winograd_and_follows_weight_changes(monkeypatch):
    import resshift.models.fast as fast_module

    torch.manual_seed(0)
    conv = Conv2d(128, 128, 3, padding=1).eval()
    x = torch.randn(1, 128, 32, 32)  # selected by the rule of every CPU family
    calls = []

    def spy(*args, **kw):
        calls.append(1)
        return W.winograd_conv3x3(*args, **kw)

    monkeypatch.setattr(fast_module, "winograd_conv3x3", spy)
    with torch.inference_mode():
        y = conv(x)
        assert len(calls) == 1
        assert _scaled_error(y, x, conv.weight, conv.bias) <= BOUND
        with fast_kernels(False):
            conv(x)
        assert len(calls) == 1  # the reference path stays on the direct kernel
    with torch.no_grad():
        conv.weight.mul_(2)  # the cached transformed kernels are rebuilt
    with torch.inference_mode():
        y2 = conv(x)
    assert len(calls) == 2
    assert _scaled_error(y2, x, conv.weight, conv.bias) <= BOUND
    # with autograd recording: the direct kernel, and gradients reach the weights
    conv(x.clone().requires_grad_()).sum().backward()
    assert len(calls) == 2 and conv.weight.grad is not None


def test_upsampling_convolution_by_winograd_phases(monkeypatch, transforms):
    """``conv(nearest_upsample_2x(x))`` on the fast path: the four sub-pixel phase kernels in 3x3
    windows, one Winograd convolution writing the phases interleaved; against float64 on the
    upsampled map, and equal (within the bound) to the direct sub-pixel form."""
    import resshift.models.fast as fast_module
    from resshift.models.fast import nearest_upsample_conv

    calls = []

    def spy(*args, **kw):
        calls.append(kw.get("phases"))
        return W.winograd_conv3x3(*args, **kw)

    monkeypatch.setattr(fast_module, "winograd_conv3x3", spy)
    torch.manual_seed(3)
    conv = Conv2d(128, 128, 3, padding=1).eval()
    owner = torch.nn.Module()
    for shape in [(1, 128, 32, 36), (2, 128, 33, 35)]:
        x = torch.randn(*shape)
        up = F.interpolate(x.double(), scale_factor=2, mode="nearest")
        with torch.inference_mode():
            with W.winograd_policy("always"):  # the shape rule's size for upsampling depends on the CPU family
                wino = nearest_upsample_conv(owner, conv, x)
            with W.winograd_policy("never"):
                direct = nearest_upsample_conv(owner, conv, x)
        ref = F.conv2d(up, conv.weight.double(), conv.bias.double(), padding=1)
        assert calls == [True]  # the Winograd path ran once (the direct form not at all)
        calls.clear()
        assert wino.shape == direct.shape == ref.shape
        scale = ref.abs().max()
        assert ((wino.double() - ref).abs().max() / scale).item() <= BOUND
        assert ((direct.double() - ref).abs().max() / scale).item() <= BOUND
    with pytest.raises(ValueError, match="4 phase blocks"):
        W.winograd_conv3x3(torch.zeros(1, 8, 4, 4), W.transform_weight(torch.zeros(6, 8, 3, 3)), phases=True)


def test_phase_output_takes_each_phase_bias():
    """``phases=True`` with a different bias per phase block: each output pixel gets its phase's."""
    c_map = 3
    bias = torch.arange(4 * c_map, dtype=torch.float32)
    y = W.winograd_conv3x3(torch.zeros(1, 8, 5, 7), W.transform_weight(torch.zeros(4 * c_map, 8, 3, 3)), bias,
                           phases=True)
    assert y.shape == (1, c_map, 10, 14)
    for a in range(2):
        for b in range(2):
            expected = bias[(2 * a + b) * c_map : (2 * a + b + 1) * c_map].view(c_map, 1, 1).expand(c_map, 5, 7)
            assert torch.equal(y[0, :, a::2, b::2], expected)


def test_describe_autocast_and_autograd_after_inference():
    assert W.describe("cuda") == "direct"
    assert W.describe("cpu").startswith("winograd F(4x4, 3x3) on points (0, 1, -1, 1/2, -2, inf) where >= 128")
    with W.winograd_policy("never"):
        assert W.describe("cpu") == "direct"
    conv, x = Conv2d(128, 128, 3, padding=1), torch.zeros(1, 128, 16, 16)
    with torch.autocast("cpu", torch.bfloat16):
        assert not W.winograd_eligible(conv, x)  # the products would run in bf16
    with torch.inference_mode():  # the cached transform matrices are built here first ...
        W.winograd_conv3x3(torch.zeros(1, 4, 4, 4), W.transform_weight(torch.zeros(4, 4, 3, 3)))
    x = torch.randn(1, 4, 6, 6, requires_grad=True)  # ... and still serve a call recording autograd
    W.winograd_conv3x3(x, W.transform_weight(torch.randn(4, 4, 3, 3))).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_cached_kernels_follow_replaced_weights_and_clear():
    from resshift.models.fast import clear_derived

    torch.manual_seed(5)
    conv = Conv2d(128, 128, 3, padding=1).eval()
    x = torch.randn(1, 128, 16, 16)
    for _ in range(5):  # a new Parameter each time, possibly at a reused address
        conv.weight = torch.nn.Parameter(torch.randn(128, 128, 3, 3) / 34)
        with torch.inference_mode():
            assert _scaled_error(conv(x), x, conv.weight, conv.bias) <= BOUND
    conv.weight.data.mul_(2)  # invisible to the version counter: documented, cleared by hand
    clear_derived(conv)
    with torch.inference_mode():
        assert _scaled_error(conv(x), x, conv.weight, conv.bias) <= BOUND


def test_compiled_transforms_match_the_pytorch_ones_and_float64(monkeypatch):
    """The one-pass C transforms and the matrix-product ones compute the same algebra: both within the
    float64 bound, and within float32 round-off of each other, for plain and upsampling (phase) layers."""
    if not N.available():
        pytest.skip(f"compiled Winograd transforms not available here: {N.status()}")
    from resshift.models.fast import _phase_winograd

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 24, 13, 18, generator=gen)
    w = torch.randn(40, 24, 3, 3, generator=gen) / (9 * 24) ** 0.5
    b = torch.randn(40, generator=gen)
    for phases in (False, True):
        u, bias = _phase_winograd(w, b) if phases else (W.transform_weight(w), b)
        compiled = W.winograd_conv3x3(x, u, bias, phases=phases)
        with monkeypatch.context() as m:
            m.setattr(N, "available", lambda: False)
            matrix = W.winograd_conv3x3(x, u, bias, phases=phases)
        ref = F.conv2d(F.interpolate(x.double(), scale_factor=2) if phases else x.double(), w.double(), b.double(),
                       padding=1)
        assert compiled.shape == matrix.shape == ref.shape
        scale = ref.abs().max()
        assert (compiled.double() - ref).abs().max() / scale <= BOUND
        assert (compiled - matrix).abs().max() / scale <= 2 * BOUND


def test_fused_blocks_match_the_band_loop_float64_and_any_thread_split(monkeypatch):
    """At the default block size and threshold (a 64x68 map: 272 tiles, the last block short), plain and
    phase layers: the fused blocks within the float64 bound and within round-off of the band loop; the
    blocks, hence the bits, do not depend on how they are split over threads."""
    if not N.fused_available():
        pytest.skip(f"fused Winograd blocks not available here: {N.status()}")
    from resshift.models.fast import _phase_winograd

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 16, 64, 68, generator=gen)
    assert 16 * 17 >= N.FUSED_MIN_TILES and (16 * 17) % N.FUSED_BLOCK
    w = torch.randn(24, 16, 3, 3, generator=gen) / 12
    b = torch.randn(24, generator=gen)
    calls = []
    real_conv = N.conv
    monkeypatch.setattr(N, "conv", lambda *a, **k: calls.append(1) or real_conv(*a, **k))
    assert N.fused_block(N.WIDE_INPUT - 1) == N.FUSED_BLOCK and N.fused_block(N.WIDE_INPUT) == 2 * N.FUSED_BLOCK
    for phases, wide in ((False, False), (True, False), (False, True)):
        u, bias = _phase_winograd(w, b) if phases else (W.transform_weight(w), b)
        if wide:  # this input counts as wide: blocks of 128 tiles (272 = 128 + 128 + 16)
            monkeypatch.setattr(N, "WIDE_INPUT", 16)
        fused = W.winograd_conv3x3(x, u, bias, phases=phases)
        assert calls == [1]
        calls.clear()
        with monkeypatch.context() as m:
            m.setattr(N, "fused_available", lambda: False)
            banded = W.winograd_conv3x3(x, u, bias, phases=phases)
            m.setattr(N, "threads", lambda: 3)  # three threads: uneven runs of blocks
            m.setattr(N, "fused_available", lambda: True)
            split = W.winograd_conv3x3(x, u, bias, phases=phases)
        assert calls == [1] and torch.equal(split, fused)
        calls.clear()
        ref = F.conv2d(F.interpolate(x.double(), scale_factor=2) if phases else x.double(), w.double(), b.double(),
                       padding=1)
        scale = ref.abs().max()
        assert fused.shape == banded.shape == ref.shape
        assert (fused.double() - ref).abs().max() / scale <= BOUND
        assert (fused - banded).abs().max() / scale <= 2 * BOUND
    small = torch.randn(1, 16, 60, 60, generator=gen)  # 225 tiles: the band loop
    W.winograd_conv3x3(small, W.transform_weight(w), b)
    assert calls == []
    monkeypatch.setattr(N, "WIDE_INPUT", 256)  # as shipped again
    monkeypatch.setattr(N, "threads", lambda: 9)  # more threads than the 5 blocks: still fused, same bits
    assert N.fused_applies(272) and not N.fused_applies(N.FUSED_MIN_TILES - 1)
    assert torch.equal(W.winograd_conv3x3(x, W.transform_weight(w), b), W.winograd_conv3x3(
        x, W.transform_weight(w), b)) and calls == [1, 1]


def test_fused_conv_checks_its_arguments_and_falls_back_without_mkl(monkeypatch):
    if not N.fused_available():
        pytest.skip(f"fused Winograd blocks not available here: {N.status()}")
    u = W.transform_weight(torch.randn(8, 4, 3, 3))
    with pytest.raises(ValueError, match="do not fit"):
        N.conv(torch.zeros(4, 10, 10), u, None, torch.empty(8, 10, 10))  # whole tiles: 12 x 12
    with pytest.raises(ValueError, match="must be a contiguous float32"):
        N.conv(torch.zeros(4, 12, 12, dtype=torch.float64), u, None, torch.empty(8, 12, 12))
    with pytest.raises(ValueError, match="must be a contiguous float32"):
        N.conv(torch.zeros(4, 12, 12).transpose(1, 2), u, None, torch.empty(8, 12, 12))
    with pytest.raises(ValueError, match="bias of 3 values .* for 8 channels"):
        N.conv(torch.zeros(4, 12, 12), u, torch.zeros(3), torch.empty(8, 12, 12))
    with pytest.raises(ValueError, match="needs 8 contiguous float32 CPU values"):
        N.conv(torch.zeros(4, 12, 12), u, torch.zeros(8, device="meta"), torch.empty(8, 12, 12))
    with pytest.raises(ValueError, match=r"weights \(36,\) \(36, K, C\) .* must be non-empty 3-D tensors"):
        N.conv(torch.zeros(4, 12, 12), torch.zeros(36), None, torch.empty(8, 12, 12))
    with pytest.raises(ValueError, match="must be non-empty 3-D tensors"):  # no input channel: no BLAS call
        N.conv(torch.zeros(0, 12, 12), torch.zeros(36, 8, 0), None, torch.empty(8, 12, 12))
    with pytest.raises(MemoryError, match="out of memory"):
        N._check(3)  # the OR of two threads' codes
    with pytest.raises(RuntimeError, match="column stride"):
        N._check(2)
    ours, theirs = N._openmp_runtimes()  # the compiled passes share PyTorch's OpenMP runtime (GCC builds)
    assert ours is not None and ours == theirs and N._openmp_note() == ""
    monkeypatch.setattr(N, "_openmp_runtimes", lambda: ("/x/libomp.so", "/y/libgomp.so.1"))
    assert "OpenMP runtime libomp.so is not PyTorch's (libgomp.so.1)" in N.status()
    monkeypatch.undo()
    monkeypatch.setattr(N, "_blas", lambda: (None, None, "no BLAS sgemm_ exported by libtorch_cpu.so"))
    assert not N.fused_available()
    assert N.status().endswith("; fused blocks off (no BLAS sgemm_ exported by libtorch_cpu.so)")
    assert "fused blocks off" in W.describe("cpu")
    with pytest.raises(RuntimeError, match="fused Winograd convolution unavailable here"):
        N.conv(torch.zeros(4, 12, 12), u, None, torch.empty(8, 12, 12))
    x = torch.randn(1, 4, 70, 70)
    w = torch.randn(8, 4, 3, 3) / 6
    assert _scaled_error(W.winograd_conv3x3(x, W.transform_weight(w)), x, w, None) <= BOUND  # the band loop


def test_compiled_transforms_check_their_arguments():
    if not N.available():
        pytest.skip(f"compiled Winograd transforms not available here: {N.status()}")
    padded = torch.zeros(4, 10, 10)
    with pytest.raises(ValueError, match="do not fit"):
        N.input_transform(padded, 0, 3, 2, torch.empty(36, 4, 6))  # 3 tile rows need 14 padded rows
    with pytest.raises(ValueError, match="do not fit"):
        N.output_transform(torch.zeros(36, 4, 4), 0, 2, 2, None, torch.empty(4, 4, 8))
    with pytest.raises(ValueError, match=r"output transform: bias of 3 values \(torch.float32, cpu\) for 4 channels"):
        N.output_transform(torch.zeros(36, 4, 4), 0, 2, 2, torch.zeros(3), torch.empty(4, 8, 8))
    with pytest.raises(ArithmeticError, match="not exact"):
        N._term(Fraction(1, 3), "x")


def test_compiled_transforms_fall_back_with_the_reason(monkeypatch, tmp_path):
    """No compiler, or the environment switch: the PyTorch transforms run, and describe() says why."""
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path))
    try:
        N._library.cache_clear()
        monkeypatch.setattr(N, "_compiler", lambda: None)
        assert not N.available()
        assert N.status() == "PyTorch matrix products (no C compiler found ($CC, cc, gcc, clang))"
        assert "tile transforms: PyTorch matrix products" in W.describe("cpu")
        x = torch.randn(1, 8, 9, 9)
        w = torch.randn(8, 8, 3, 3) / 9
        assert _scaled_error(W.winograd_conv3x3(x, W.transform_weight(w)), x, w, None) <= BOUND
        N._library.cache_clear()
        monkeypatch.setenv(N.ENV, "torch")
        assert N.status() == f"PyTorch matrix products ({N.ENV}=torch)"
        assert not list(tmp_path.iterdir())  # nothing was built
    finally:
        N._library.cache_clear()


def test_compiled_transforms_fall_back_when_the_cache_cannot_be_written(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RESSHIFT_CACHE", str(blocker / "cache"))  # below a file: mkdir fails
    try:
        N._library.cache_clear()
        if N._compiler() is None:
            pytest.skip("no C compiler here")
        assert not N.available()
        assert N.status().startswith("PyTorch matrix products (cannot build in ")
    finally:
        N._library.cache_clear()


def test_compiled_transforms_work_in_a_forked_child(monkeypatch):
    """A child forked after the compiled passes ran on several OpenMP threads must not wait on the parent's
    (absent) threads: it runs them on one. (The child touches no other PyTorch threading: PyTorch's own
    OpenMP operations are not usable in a child forked after they ran in parallel, a limit of libgomp.)"""
    import multiprocessing

    if not N.available():
        pytest.skip(f"compiled Winograd transforms not available here: {N.status()}")
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    parent_threads = N.threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the parent: two OpenMP threads
    assert N.threads() == 2
    parent = _child_transform()  # runs the parallel regions
    with multiprocessing.get_context("fork").Pool(1) as pool:
        child = pool.apply_async(_child_transform).get(timeout=60)
        assert pool.apply_async(N.threads).get(timeout=60) == 1
    assert child == parent and N.threads() == 2 and parent_threads >= 1


def _child_transform() -> list[float]:
    padded = torch.arange(64 * 14 * 14, dtype=torch.float32).reshape(64, 14, 14) / 1000
    planes = N.input_transform(padded, 0, 3, 3, torch.empty(36, 64, 9)).flatten().tolist()
    if not N.fused_available():
        return planes
    x, u = fork_inputs()
    out = torch.empty(8, 36, 36)  # the fused blocks too (81 tiles: two blocks, two threads in the parent)
    N.conv(x, u, None, out)
    return planes + out.flatten().tolist()


@functools.cache  # made in the parent (the first call), before the fork: the child runs no PyTorch operation
def fork_inputs() -> tuple[torch.Tensor, torch.Tensor]:  # that could go parallel (einsum, large elementwise)
    x = torch.arange(64 * 36 * 36, dtype=torch.float32).reshape(64, 36, 36) / 1e5
    return x, W.transform_weight(torch.arange(8 * 64 * 9, dtype=torch.float32).reshape(8, 64, 3, 3) / 5000)
