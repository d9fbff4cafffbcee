"""SinSR on our ResShift networks: one step from the prior, checked against the official chain's first step.

With the golden small weights and the official v1 recording (``golden_sampler_v1_s15_b1``), SinSR's
single network call at t = T-1 from the recorded prior draw must give the official first step's x0
prediction (tolerance as for single operations in ``test_resshift_golden``) and the same value as the
first step of our own chain; decoding it must equal decoding that x0 through the public path.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_pipeline_cli import SMALL_VQ
from test_weights import TINY_UNET

from resshift import weights as W
from resshift.diffusion.resshift_chain import p_mean_variance, prior_sample, sample_one_step
from resshift.methods import build_method
from resshift.methods.resshift_method import ResShiftSR, build_sinsr, schedule_for
from resshift.methods.tiling import reflect_pad_to_multiple
from resshift.models import UNetModelSwin, VQModelTorch


@pytest.mark.slow
def test_one_step_equals_first_step_of_the_chain(golden, small_nets):
    from safetensors.torch import load_file

    g = load_file(str(golden / "golden_sampler_v1_s15_b1.safetensors"))
    unet, vq = small_nets
    sinsr = ResShiftSR(unet, vq, schedule_for("v1"), name="sinsr", sampler="one-step")
    chain = ResShiftSR(unet, vq, schedule_for("v1"), name="resshift-v1")
    assert (sinsr.nfe, chain.nfe) == (1, 15)
    sched = sinsr.schedule
    with torch.inference_mode():
        y_pad = reflect_pad_to_multiple(g["y0"], 64)
        z_y = sinsr.encode(y_pad)
        noise = [g["noise/00_prior"]] + [g[f"noise/{k + 1:02d}_step_t{14 - k:02d}"] for k in range(15)]  # T+1
        one = sample_one_step(sinsr.denoise, z_y, y_pad, sched, noise=noise[0], record=True)
        # the first step of our chain: prior draw, then the reverse step at code index T-1 = 14
        x_T = prior_sample(z_y, noise[0], sched)
        first = p_mean_variance(chain.denoise, x_T, 14, y_pad, sched)["pred_xstart"]
        assert torch.equal(one.prior, x_T) and one.steps[0].t == 14
        assert (one.latent - first).abs().max().item() <= 1e-6
        # ... and the official code's first prediction, to single-operation tolerance
        ref = g["step00_t14/pred_xstart"]
        assert (one.latent - ref).abs().max().item() <= max(2e-5 * max(1.0, ref.abs().max().item()), 1e-5)
        # a full noise list is accepted (only the prior draw is used)
        assert torch.equal(sample_one_step(sinsr.denoise, z_y, y_pad, sched, noise=noise).latent, one.latent)
        # the public path: pad, encode, one step, decode, crop, clamp
        image = sinsr.run(g["y0"], lambda k, b, shape: {"noise": noise})
        expected = sinsr.decode(first)[..., :256, :256].clamp(-1, 1)
    assert image.shape == (1, 3, 256, 256)
    assert (image - expected).abs().max().item() <= 1e-4


def test_one_step_per_image_generators_consume_one_draw():
    torch.manual_seed(0)
    unet, vq = UNetModelSwin(**TINY_UNET).eval(), VQModelTorch(**SMALL_VQ).eval()
    # random small networks whose latent multiple is 16: LR padded to 16 only (fast, same code path)
    sinsr = ResShiftSR(unet, vq, schedule_for("v1"), name="sinsr", sampler="one-step", padding_offset=16)
    chain = ResShiftSR(unet, vq, schedule_for("v1"), name="resshift-v1", padding_offset=16)
    lr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    with torch.inference_mode():
        both = sinsr.upscale(lr, gens)
        alone = sinsr.upscale(lr[1:], [torch.Generator().manual_seed(2)])
        # with the same prior draw, SinSR's x̂₀ is the first x0 prediction of the chain
        y = lr * 2 - 1
        z_y = sinsr.encode(y)
        eps = torch.randn(z_y.shape, generator=torch.Generator().manual_seed(4))
        one = sample_one_step(sinsr.denoise, z_y, y, sinsr.schedule, noise=eps).latent
        first = p_mean_variance(chain.denoise, prior_sample(z_y, eps, chain.schedule), 14, y, chain.schedule)
    assert (one - first["pred_xstart"]).abs().max().item() <= 1e-6
    assert both.shape == (2, 3, 64, 64) and 0 <= both.min() and both.max() <= 1
    assert (both[1:] - alone).abs().max().item() <= 1e-5  # batch composition does not matter
    assert sinsr.describe()["sampler"] == "one-step" and sinsr.describe()["nfe"] == 1
    with pytest.raises(ValueError, match="unknown sampler"):
        ResShiftSR(unet, vq, schedule_for("v1"), sampler="ddim")


def test_registry_entries_and_errors(tmp_path):
    for key in ("sinsr-v1", "sinsr-v2"):
        entry = W.get_entry(key)
        assert entry.kind == "unet" and entry.config == "v1"
        assert entry.url == f"https://github.com/wyf0912/SinSR/releases/download/v1.0/SinSR_{key[-2:]}.pth"
        assert entry.licence.startswith("CC BY-NC-SA 4.0")
        assert entry.sha256 == ""  # not pinned: the released file could not be fetched here
    with pytest.raises(KeyError, match="unknown SinSR checkpoint"):
        build_sinsr("sinsr-v9")
    with pytest.raises(W.CheckpointNotFoundError, match="SinSR_v1.pth"):
        build_method("sinsr", weights_dir=str(tmp_path), download=False)


@pytest.mark.slow
def test_full_size_random_weights_in_the_official_layout_load_strictly(golden, tmp_path):
    """Random full-size weights with the official v1 key layout (manifest), saved as SinSR_v1.pth."""
    manifest = json.loads((golden / "manifest_v1.json").read_text())
    gen = torch.Generator().manual_seed(0)
    state = {}
    for row in manifest["state_dict"]:
        shape = tuple(row["shape"])
        if row["key"].endswith(".relative_position_index"):
            continue  # derived buffer, rebuilt from the architecture
        numel = math.prod(shape)
        state[row["key"]] = (torch.randn(numel, generator=gen) * 0.02).reshape(shape)
    path = tmp_path / "SinSR_v1.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    unet = W.load_unet("sinsr-v1", path)
    loaded = unet.state_dict()
    for key in ("input_blocks.0.0.weight", "out.2.weight"):
        assert torch.equal(loaded[key], state[key])
    assert loaded["input_blocks.0.0.weight"].shape[1] == 6  # latent + LR: SinSR.yaml's in_channels 6
    state.pop("out.2.bias")
    torch.save(state, path)
    with pytest.raises(W.CheckpointMismatchError, match="out.2.bias"):
        W.load_unet("sinsr-v1", path)
