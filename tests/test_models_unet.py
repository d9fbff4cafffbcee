"""UNetModelSwin against the golden outputs of the official code (small and feature-extractor configs).

Every test runs on the fast kernels, on the plain reference path, and on the fast kernels with every
3x3 convolution as Winograd F(4x4, 3x3) (``kernel_path``).
"""

from __future__ import annotations

import pytest
import torch
from golden_compare import (
    assert_scaled_close,
    golden_index,
    kernel_path,  # noqa: F401 (fixture)
    load_golden,
)

from resshift.models import UNetModelSwin
from resshift.models.layers import timestep_embedding
from resshift.models.swin import SwinTransformerBlock, shifted_window_mask

CASES = ["t_0_0", "t_3_3", "t_14_14", "t_1_9", "t_0_14", "t_2_0"]


def _build(golden, weights: str) -> tuple[UNetModelSwin, dict[str, torch.Tensor]]:
    kwargs = golden_index(golden)["weights"][weights]["constructor_kwargs"]
    torch.manual_seed(0)
    model = UNetModelSwin(**kwargs).eval()
    return model, load_golden(golden, weights)

pytestmark = pytest.mark.usefixtures("kernel_path")


@pytest.fixture(scope="module")
def unet_small(golden):
    model, state = _build(golden, "weights_unet_small.safetensors")
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def unet_golden(golden):
    return load_golden(golden, "golden_unet_small.safetensors")


def test_constructed_buffers_equal_official(golden):
    model, state = _build(golden, "weights_unet_small.safetensors")
    own = model.state_dict()
    buffers = [k for k in state if k.endswith(("attn_mask", "relative_position_index"))]
    assert len(buffers) == 24
    for key in buffers:
        assert torch.equal(own[key], state[key]), key
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_official(unet_small, unet_golden, case):
    g = unet_golden
    with torch.inference_mode():
        out = unet_small(g["x"], g[f"{case}/timesteps"], lq=g["lq"])
    assert_scaled_close(out, g[f"{case}/out"], case)


@pytest.mark.parametrize("case", ["dyn_64x128", "dyn_128x64"])
def test_forward_other_sizes(unet_small, unet_golden, case):
    """Non-square inputs: the shifted-window mask is recomputed for the actual size (spec 3.1)."""
    g = unet_golden
    with torch.inference_mode():
        out = unet_small(g[f"{case}/x"], g[f"{case}/timesteps"], lq=g[f"{case}/lq"])
    assert_scaled_close(out, g[f"{case}/out"], case)


def test_intermediates_match_official(golden, unet_small):
    g = load_golden(golden, "golden_unet_small_intermediates.safetensors")
    captured: dict[str, torch.Tensor] = {}
    modules = dict(unet_small.named_modules())
    hooks = [modules["input_blocks.0"].register_forward_pre_hook(
        lambda m, args: captured.__setitem__("input_blocks.0.input(cat[x,lq])", args[0])
    )]
    for name in g:
        target = name.removesuffix("(resblock)")
        if target in modules and target:
            hooks.append(modules[target].register_forward_hook(
                lambda m, args, out, name=name: captured.__setitem__(name, out)
            ))
    try:
        with torch.inference_mode():
            out = unet_small(g["x"], g["timesteps"], lq=g["lq"])
    finally:
        for h in hooks:
            h.remove()
    captured["timestep_embedding(t,model_channels)"] = timestep_embedding(g["timesteps"], 32)
    captured["final_out"] = out
    expected = [k for k in g if k not in ("x", "lq", "timesteps")]
    assert sorted(captured) == sorted(expected)
    for name in expected:
        assert_scaled_close(captured[name], g[name], name)
    emb = "timestep_embedding(t,model_channels)"
    assert torch.equal(captured[emb], g[emb])  # bit-identical


def test_feature_extractor_branch(golden):
    """lq_size > image_size: the strided conv stack in front of the UNet (weights_unet_fe_tiny)."""
    model, state = _build(golden, "weights_unet_fe_tiny.safetensors")
    model.load_state_dict(state, strict=True)
    g = load_golden(golden, "golden_unet_fe_tiny.safetensors")
    with torch.inference_mode():
        features = model.feature_extractor(g["lq"])
        out = model(g["x"], g["timesteps"], lq=g["lq"])
    assert features.shape == (1, 64, 64, 64)
    assert_scaled_close(features[:, :, :8, :8], g["feature_extractor_out[:, :, :8, :8]"], "features")
    assert_scaled_close(out, g["out"], "out")


def test_official_mask_counts(golden):
    """Masked entries of the quirky mask for the sizes the recording checked."""
    import json

    checks = json.loads((golden / "checks.json").read_text())["shifted_window_mask"]
    for row in checks:
        mask = shifted_window_mask(row["H"], row["W"], 8, 4)
        assert int((mask != 0).sum()) == row["masked_entries_official"], row


def test_mask_closed_form():
    """Only the bottom row of windows is masked, splitting tokens by column < 4 (spec 3.1)."""
    mask = shifted_window_mask(16, 24, 8, 4)  # 2 x 3 windows
    assert mask.shape == (6, 64, 64)
    assert not mask[:3].any()
    col = torch.arange(64) % 8
    split = (col[:, None] < 4) != (col[None, :] < 4)
    expected = torch.where(split, -100.0, 0.0)
    for w in range(3, 6):
        assert torch.equal(mask[w], expected)
    assert not shifted_window_mask(16, 16, 8, 0).any()


def test_cached_biases_follow_parameter_updates(golden, unet_small, unet_golden):
    """The cached position bias must be refreshed when the table changes in place."""
    g = unet_golden
    model, _ = _build(golden, "weights_unet_small.safetensors")
    model.load_state_dict(unet_small.state_dict())
    with torch.inference_mode():
        before = model(g["x"], g["t_3_3/timesteps"], lq=g["lq"])
    block = model.input_blocks[1][1].blocks[1]
    assert isinstance(block, SwinTransformerBlock) and block._bias_cache
    with torch.no_grad():
        block.attn.relative_position_bias_table.add_(0.5)
    fresh, _ = _build(golden, "weights_unet_small.safetensors")
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        after, expected = (m(g["x"], g["t_3_3/timesteps"], lq=g["lq"]) for m in (model, fresh))
    assert not torch.allclose(before, after)
    assert torch.equal(after, expected)


def test_bad_inputs_have_clear_errors(unet_small):
    x = torch.zeros(1, 3, 48, 80)
    with pytest.raises(ValueError, match="48x80 is not a multiple of 64"):
        unet_small(x, torch.tensor([0]), lq=torch.zeros(1, 3, 48, 80))
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="pass lq="):
        unet_small(x, torch.tensor([0]))
    with pytest.raises(ValueError, match="lq has size"):
        unet_small(x, torch.tensor([0]), lq=torch.zeros(1, 3, 32, 32))


def test_gradients_flow(golden):
    """Training mode: the bias cache is bypassed and gradients reach the position-bias tables."""
    model, state = _build(golden, "weights_unet_small.safetensors")
    model.load_state_dict(state)
    x, lq = torch.randn(1, 3, 64, 64), torch.rand(1, 3, 64, 64) * 2 - 1
    model(x, torch.tensor([1]), lq=lq).square().mean().backward()
    table = model.input_blocks[1][1].blocks[1].attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_low_precision_weights_run(golden, unet_golden):
    """A bfloat16 copy of the network runs end to end (the torso follows the weights' dtype)."""
    model, state = _build(golden, "weights_unet_small.safetensors")
    model.load_state_dict(state)
    model = model.to(torch.bfloat16)
    g = unet_golden
    with torch.inference_mode():
        out = model(g["x"].bfloat16(), g["t_3_3/timesteps"], lq=g["lq"].bfloat16())
    assert out.dtype == torch.bfloat16
    ref = g["t_3_3/out"]
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()  # bf16 keeps ~3 significant digits
