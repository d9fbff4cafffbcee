"""ADM UNet: the official 256x256 layout, legacy QKV attention order, checkpoint loading errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resshift.models.adm_unet import ADM_256_UNCOND, ADMUNet, AttentionBlock
from resshift.models.sr3_unet import SR3UNet
from resshift.weights.formats import load_adm_checkpoint


def test_adm_256_uncond_state_dict_layout() -> None:
    """Keys and shapes of OpenAI's 256x256 unconditional model (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = ADMUNet(**ADM_256_UNCOND)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 566
    assert sum(math.prod(s) for s in shapes.values()) == 552_814_086
    expected = {
        "time_embed.0.weight": (1024, 256),
        "input_blocks.0.0.weight": (256, 3, 3, 3),
        "input_blocks.3.0.in_layers.2.weight": (
            256,
            256,
            3,
            3,
        ),  # down-sampling ResBlock (no params of its own)
        "input_blocks.7.0.skip_connection.weight": (512, 256, 1, 1),  # first 512-channel level
        "input_blocks.10.1.qkv.weight": (3 * 512, 512, 1),  # first attention at 32x32 (ds 8)
        "middle_block.1.proj_out.weight": (1024, 1024, 1),
        "output_blocks.2.1.qkv.weight": (3 * 1024, 1024, 1),
        "output_blocks.2.2.emb_layers.1.weight": (2048, 1024),  # the up-sampling ResBlock of a level
        "out.2.weight": (6, 256, 3, 3),  # learned sigma: eps and variance
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert model.size_multiple == 32


def _legacy_attention_reference(block: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """Straight transcription of the legacy rule: per head, rows [q; k; v] of the qkv output."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, -1)
    qkv = block.qkv(block.norm(flat))
    heads = block.num_heads
    d = c // heads
    outs = []
    for i in range(heads):
        chunk = qkv[:, i * 3 * d : (i + 1) * 3 * d]
        q, k, v = chunk[:, :d], chunk[:, d : 2 * d], chunk[:, 2 * d :]
        weight = torch.softmax(torch.einsum("bcs,bct->bst", q, k) / math.sqrt(d), dim=-1)
        outs.append(torch.einsum("bst,bct->bcs", weight, v))
    return (flat + block.proj_out(torch.cat(outs, dim=1))).reshape(b, c, h, w)


def test_attention_uses_the_legacy_qkv_order() -> None:
    torch.manual_seed(0)
    block = AttentionBlock(64, num_head_channels=16)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 64, 5, 6)
    torch.testing.assert_close(block(x), _legacy_attention_reference(block, x), atol=1e-5, rtol=1e-5)


def test_forward_shapes_and_size_check() -> None:
    model = ADMUNet(
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_ds=(2,),
        num_head_channels=32,
        out_channels=6,
    )
    out = model(torch.randn(1, 3, 8, 12), torch.tensor([3.0]))
    assert out.shape == (1, 6, 8, 12)
    with pytest.raises(ValueError, match="multiple of 2"):
        model(torch.randn(1, 3, 7, 8), torch.tensor([3.0]))


def test_sr3_unet_is_conditioned_on_the_continuous_level() -> None:
    torch.manual_seed(0)
    model = SR3UNet(
        in_channels=6,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_ds=(),
        num_head_channels=32,
    )
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 6, 8, 8)
    a, b = model(x, torch.tensor([0.30])), model(x, torch.tensor([0.31]))
    assert a.shape == (1, 3, 8, 8) and not torch.allclose(a, b)
    # The level enters as level_scale * gamma: identical to the backbone called with that "timestep".
    torch.testing.assert_close(a, ADMUNet.forward(model, x, torch.tensor([300.0])), atol=1e-5, rtol=1e-5)


def test_load_adm_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = {
        "model_channels": 32,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_ds": (2,),
        "num_head_channels": 32,
    }
    model = ADMUNet(in_channels=3, out_channels=6, **cfg)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    loaded = load_adm_checkpoint(str(tmp_path / "m.pt"), {**ADM_256_UNCOND, **cfg})
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_adm_checkpoint(str(tmp_path / "nothing.pt"))
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("out.")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt.*missing"):
        load_adm_checkpoint(str(tmp_path / "partial.pt"), {**ADM_256_UNCOND, **cfg})
