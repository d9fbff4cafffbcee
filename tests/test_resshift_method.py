"""ResShiftSR wiring with tiny stand-in networks: tiling, batched tiles, noise streams, reproducibility.

Numerical equivalence with the official code (real network classes) is in test_resshift_golden.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resshift.diffusion.schedule import ResShiftSchedule
from resshift.methods.resshift_method import ResShiftSR, official_stream
from resshift.methods.tiling import (
    TileBlender,
    default_stride,
    plan_tiles,
    reflect_pad_to_multiple,
    tile_starts,
)
from resshift.seeding import image_generator, per_tile_generators


class TinyAutoencoder(torch.nn.Module):
    """encode: 4x4 average pool + 1x1 conv; decode: nearest of 16 codes, then x4 nearest + 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.enc = torch.nn.Conv2d(3, 3, 1)
        self.dec = torch.nn.Conv2d(3, 3, 1)
        self.codebook = torch.nn.Parameter(torch.randn(16, 3, generator=g))

    def encode(self, x):
        return self.enc(F.avg_pool2d(x, 4))

    def decode(self, z):
        flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
        idx = torch.cdist(flat, self.codebook).argmin(dim=1)
        zq = self.codebook[idx].reshape(z.shape[0], z.shape[2], z.shape[3], 3).permute(0, 3, 1, 2)
        return self.dec(F.interpolate(zq, scale_factor=4, mode="nearest"))


class TinyUNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 3, 3, padding=1)
        self.temb = torch.nn.Embedding(16, 3)

    def forward(self, x, t, lq=None):
        return self.conv(torch.cat([x, lq], dim=1)) + self.temb(t)[:, :, None, None]


def make_method(**kw) -> ResShiftSR:
    torch.manual_seed(0)
    schedule = ResShiftSchedule.from_config(steps=4, kappa=2.0, min_noise_level=0.2)
    kw.setdefault("chop_size", 64)
    return ResShiftSR(TinyUNet(), TinyAutoencoder(), schedule, name="resshift-test", **kw)


def test_tile_placement_matches_official_cases():
    # golden tiling case A (112x80, chop 64, stride 48) and B (80x144, chop 64, stride 32)
    assert tile_starts(112, 64, 48) == [0, 48] and tile_starts(80, 64, 48) == [0, 16]
    assert tile_starts(80, 64, 32) == [0, 16] and tile_starts(144, 64, 32) == [0, 32, 64, 80]
    assert tile_starts(64, 64, 48) == [0] and tile_starts(1000, 512, 448) == [0, 448, 488]
    tiles = plan_tiles(112, 80, 64, 48)
    assert [(t.h0, t.h1, t.w0, t.w1) for t in tiles] == [
        (0, 64, 0, 64),
        (0, 64, 16, 80),
        (48, 112, 0, 64),
        (48, 112, 16, 80),
    ]
    assert [(t.h0, t.h1, t.w0, t.w1) for t in plan_tiles(64, 64, 64, 48)] == [(0, 64, 0, 64)]
    assert [(t.w0, t.w1) for t in plan_tiles(100, 40, 64, 48)] == [
        (0, 40),
        (0, 40),
    ]  # narrow side: one column
    assert default_stride(512) == 448 and default_stride(64) == 48
    with pytest.raises(ValueError, match="no default chop stride"):
        default_stride(100)
    with pytest.raises(ValueError, match="larger than the chop size"):
        tile_starts(200, 64, 65)


def test_reflect_padding():
    x = torch.randn(1, 3, 48, 80)
    assert torch.equal(reflect_pad_to_multiple(x, 64), F.pad(x, (0, 48, 0, 16), mode="reflect"))
    aligned = torch.randn(1, 3, 64, 128)
    assert reflect_pad_to_multiple(aligned, 64) is aligned
    small = reflect_pad_to_multiple(torch.randn(1, 3, 5, 1), 64)  # beyond one reflection: repeated
    assert small.shape == (1, 3, 64, 64)
    tiny = torch.randn(1, 1, 3, 3)
    assert torch.equal(reflect_pad_to_multiple(tiny, 8)[..., :3, :3], tiny)


def test_blender_is_plain_average():
    tiles = plan_tiles(3, 5, 3, 2)
    blender = TileBlender(1, 1, 3, 5, 1, "cpu")
    for t in tiles:
        blender.add(t, torch.full((1, 1, t.h1 - t.h0, t.w1 - t.w0), float(t.index + 1)))
    # columns: tile 0 covers 0-2, tile 1 covers 2-4 -> column 2 averages 1 and 2
    assert blender.result()[0, 0, 0].tolist() == [1.0, 1.0, 1.5, 2.0, 2.0]


def test_batched_tiles_equal_one_at_a_time():
    lr = torch.rand(2, 3, 112, 80, generator=torch.Generator().manual_seed(3))
    y = lr * 2 - 1
    one = make_method(chop_stride=48, tile_batch=1)
    four = make_method(chop_stride=48, tile_batch=3)
    a = one.run(y, official_stream(torch.Generator().manual_seed(7), 4))
    b = four.run(y, official_stream(torch.Generator().manual_seed(7), 4))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    gens = lambda: [image_generator(1, "a.png"), image_generator(1, "b.png")]  # noqa: E731
    c = one.upscale(lr, gens())
    d = four.upscale(lr, gens())
    torch.testing.assert_close(c, d, rtol=0, atol=1e-6)


def test_official_stream_equals_explicit_per_tile_noise():
    method = make_method(chop_stride=48, tile_batch=2)
    y = torch.rand(1, 3, 112, 80) * 2 - 1
    g = torch.Generator().manual_seed(11)
    draws = [torch.randn(1, 3, 64, 64, generator=g) for _ in range(4 * 5)]  # 4 tiles x (T+1)
    recorded = lambda k, b, shape: {"noise": draws[5 * k : 5 * k + 5]}  # noqa: E731
    a = method.run(y, recorded)
    b = method.run(y, official_stream(torch.Generator().manual_seed(11), 4))
    assert torch.equal(a, b)


def test_per_image_output_independent_of_batch_and_order():
    method = make_method(chop_stride=48)
    gen = torch.Generator().manual_seed(5)
    imgs = torch.rand(3, 3, 80, 72, generator=gen)
    names = ["x.png", "y.png", "z.png"]
    batch = method.upscale(imgs, [image_generator(9, n) for n in names])
    alone = method.upscale(imgs[1:2], [image_generator(9, "y.png")])
    reordered = method.upscale(imgs[[2, 1]], [image_generator(9, "z.png"), image_generator(9, "y.png")])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(batch[1:2], reordered[1:2], rtol=0, atol=1e-6)
    other_seed = method.upscale(imgs[1:2], [image_generator(10, "y.png")])
    assert (other_seed - alone).abs().max() > 1e-3
    assert batch.shape == (3, 3, 320, 288) and 0 <= batch.min() and batch.max() <= 1


def test_per_tile_generators_differ_between_tiles():
    p = per_tile_generators([image_generator(0, "a")])
    g0, g1 = p(0, 1, (1, 3, 8, 8))["generators"][0], p(1, 1, (1, 3, 8, 8))["generators"][0]
    assert not torch.equal(torch.randn(4, generator=g0), torch.randn(4, generator=g1))


def test_odd_sizes_and_errors():
    method = make_method(chop_size=64)
    out = method.upscale(torch.rand(1, 3, 17, 30), [image_generator(0, "odd")])
    assert out.shape == (1, 3, 68, 120)
    with pytest.raises(ValueError, match="one torch.Generator per image"):
        method.upscale(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="2 generators for a batch of 1"):
        method.upscale(torch.rand(1, 3, 8, 8), [image_generator(0, "a"), image_generator(0, "b")])
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_method(dtype="fp16")
    with pytest.raises(ValueError, match="unknown dtype"):
        make_method(dtype="fp8")
