"""VQModelTorch against the golden outputs of the official code (small config).

Every test runs on the fast kernels, on the plain reference path, and on the fast kernels with every
3x3 convolution as Winograd F(4x4, 3x3) (``kernel_path``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from golden_compare import (
    assert_scaled_close,
    golden_index,
    kernel_path,  # noqa: F401 (fixture)
    load_golden,
)

from resshift.models import VQModelTorch

# A flipped code index is accepted only where the official best and second-best squared distances
# differ by less than this (float32 round-off of |z|^2 + |e|^2 - 2 z.e for |z| of a few units).
FLIP_GAP = 1e-5

pytestmark = pytest.mark.usefixtures("kernel_path")


@pytest.fixture(scope="module")
def vq(golden):
    kwargs = golden_index(golden)["weights"]["weights_vq_small.safetensors"]["constructor_kwargs"]
    model = VQModelTorch(**kwargs).eval()
    model.load_state_dict(load_golden(golden, "weights_vq_small.safetensors"), strict=True)
    return model


@pytest.fixture(scope="module")
def g(golden):
    return load_golden(golden, "golden_vq_small.safetensors")


def _check_indices(indices: torch.Tensor, expected: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """Indices must agree except where the recorded distance gap is below round-off."""
    flips = indices.flatten() != expected
    assert (gap[flips] < FLIP_GAP).all(), f"flips at gaps {gap[flips].tolist()}"
    return flips


def test_encode_is_not_quantized(vq, g):
    with torch.inference_mode():
        h = vq.encode(g["img"])
    assert_scaled_close(h, g["encode(img)"], "encode")
    codebook = vq.quantize.embedding.weight
    assert not torch.isin(h.flatten(), codebook.flatten()).all()


def test_quantize(vq, g):
    with torch.inference_mode():
        q = vq.quantize(g["encode(img)"])
        looked_up = vq.quantize.lookup(q.indices)
    assert q.indices.shape == (2, 16, 16) and q.indices.dtype == torch.int64
    flips = _check_indices(q.indices, g["quantize(h).indices"], g["quantize(h).index_gap"])
    same = ~flips.view(2, 1, 16, 16).expand_as(q.z_q)
    assert_scaled_close(q.z_q[same], g["quantize(h).z_q"][same], "z_q")
    assert_scaled_close(looked_up, g["codebook_lookup(indices)"], "lookup")


def test_quantize_random_latent(vq, g):
    with torch.inference_mode():
        q = vq.quantize(g["z_rand"])
    gap = torch.full((512,), float("inf"))  # no gaps recorded for z_rand: no flip allowed
    _check_indices(q.indices, g["quantize(z_rand).indices"], gap)


@pytest.mark.parametrize(
    ("latent", "expected", "force"),
    [
        ("encode(img)", "decode(h)", False),
        ("encode(img)", "decode(h,force_not_quantize=True)", True),
        ("z_rand", "decode(z_rand)", False),
        ("rt/encode_first_stage(y,up_sample=True)", "rt/decode_first_stage(z_y)", False),
    ],
)
def test_decode(vq, g, latent, expected, force):
    with torch.inference_mode():
        out = vq.decode(g[latent], force_not_quantize=force)
    assert_scaled_close(out, g[expected], expected)


def test_decode_code_equals_decode(vq, g):
    with torch.inference_mode():
        q = vq.quantize(g["encode(img)"])
        out = vq.decode_code(q.indices)
    assert_scaled_close(out, g["decode(h)"], "decode_code")


def test_encode_first_stage_path(vq, g):
    """z_y = E(bicubic x4 of the LR), as the sampler computes it (no clamp after the upsampling)."""
    up = F.interpolate(g["rt/y_lr"], scale_factor=4, mode="bicubic")
    assert torch.equal(up, g["rt/y_up_bicubic"])
    with torch.inference_mode():
        z = vq.encode(up)
    assert_scaled_close(z, g["rt/encode_first_stage(y,up_sample=True)"], "z_y")


def test_intermediates_match_official(golden, vq):
    g = load_golden(golden, "golden_vq_small_intermediates.safetensors")
    modules = dict(vq.named_modules())
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name in g:
        target = name.removesuffix(".z_q")
        if target in modules:
            hooks.append(modules[target].register_forward_hook(
                lambda m, args, out, name=name: captured.__setitem__(
                    name, out.z_q if name.endswith(".z_q") else out
                )
            ))
    try:
        with torch.inference_mode():
            captured["encode_out"] = vq.encode(g["img"])
            captured["decode_out"] = vq.decode(captured["encode_out"])
    finally:
        for h in hooks:
            h.remove()
    expected = [k for k in g if k != "img"]
    assert sorted(captured) == sorted(expected)
    for name in expected:
        assert_scaled_close(captured[name], g[name], name)


def test_attention_split_over_query_blocks_is_exact():
    """The query-block split (used for huge latents) gives the same rows as one SDPA call."""
    from resshift.models.layers import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 1, 300, 16) for _ in range(3))
    whole = attention(q, k, v, scale=0.25)
    split = attention(q, k, v, scale=0.25, max_scores=300 * 7)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)


def test_bad_config_keys_are_rejected():
    ddconfig = {"z_channels": 3, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropuot": 0.0}
    with pytest.raises(TypeError, match="dropuot"):
        VQModelTorch(ddconfig, n_embed=16, embed_dim=3)


def test_quantizer_ignores_autocast(vq, g):
    """The nearest-code search stays in float32 under autocast, so the indices do not change."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        q = vq.quantize(g["encode(img)"])
    assert torch.equal(q.indices.flatten(), g["quantize(h).indices"])
