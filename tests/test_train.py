"""Trainer: split, data stream, objectives, schedule, EMA, resume, export -> method, DDP with gloo."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resshift.data.degradations.matlab_resize import bicubic_downscale_8bit
from resshift.data.split import make_split, read_split, write_split
from resshift.diffusion.gaussian import alphas_cumprod, linear_betas
from resshift.diffusion.resshift_chain import training_loss
from resshift.diffusion.schedule import ResShiftSchedule
from resshift.io import write_png
from resshift.methods import build_method
from resshift.models.pixel_resshift import PixelResShiftNet, upsample_lq
from resshift.paths import PROJECT_ROOT
from resshift.train.data import PatchPairs, load_images
from resshift.train.loop import EMA, Trainer, TrainSettings, lr_factor
from resshift.train.objectives import GaussianObjective, ResShiftObjective
from resshift.weights.formats import load_gaussian_checkpoint as sr3_load
from resshift.weights.formats import load_pixel_checkpoint as load_checkpoint

TINY_NET = {"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_ds": [],
            "num_head_channels": 32}
SCHEDULE = ResShiftSchedule.from_config(steps=4, kappa=2.0, min_noise_level=0.2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int = 3, size: int = 40, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, size, size + 8, generator=g) * 255).to(torch.uint8) for _ in range(n)]


# --- split -------------------------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_round_trips(tmp_path):
    names = [f"img_{i:03d}.JPEG" for i in range(50)]
    a = make_split(names, heldout=7, source="x")
    b = make_split(list(reversed(names)), heldout=7, source="x")
    assert a == b
    assert len(a.heldout) == 7 and len(a.train) == 43
    assert not set(a.heldout) & set(a.train) and set(a.heldout) | set(a.train) == set(names)
    # held-out names stay held out when an unrelated name with a larger key is added
    bigger = make_split(names + ["zzz_new.JPEG"], heldout=7, source="x")
    if "zzz_new.JPEG" not in bigger.heldout:
        assert bigger.heldout == a.heldout
    path = write_split(a, tmp_path / "split.json")
    assert read_split(path) == a
    assert a.eval_names(3) == list(a.heldout[:3])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        read_split(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="hold out"):
        make_split(names, heldout=50)


# --- data --------------------------------------------------------------------------------------------
def test_patch_stream_is_a_function_of_seed_rank_and_step():
    data = PatchPairs(_images(size=72), patch=64, degradation="realesrgan", seed=3)
    hr, lr = data.batch(4, step=5, rank=1)
    hr2, lr2 = data.batch(4, step=5, rank=1)
    assert hr.shape == (4, 3, 64, 64) and lr.shape == (4, 3, 16, 16)
    assert torch.equal(hr, hr2) and torch.equal(lr, lr2)
    assert not torch.equal(data.batch(4, step=5, rank=0)[0], hr)
    assert not torch.equal(data.batch(4, step=6, rank=1)[0], hr)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit LR
    bic = PatchPairs(_images(), patch=16, degradation="bicubic", seed=3)
    hr_b, lr_b = bic.batch(2, step=0)
    assert torch.equal(lr_b, bicubic_downscale_8bit(hr_b, 4))
    with pytest.raises(ValueError, match="smaller than the 64px patch"):
        PatchPairs(_images(size=40), patch=64)
    with pytest.raises(ValueError, match="at least 64px"):
        PatchPairs(_images(), patch=16, degradation="realesrgan")


def test_load_images_resizes_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    for i, im in enumerate(_images(2, size=24)):
        write_png(folder / f"a{i}.png", im.float() / 255)
    names, images = load_images(folder, None, short_side=32)
    assert names == ["a0.png", "a1.png"]
    assert images[0].dtype == torch.uint8 and min(images[0].shape[-2:]) == 32
    assert list((tmp_path / "cache" / "train").glob("patches-*.pt"))
    names2, images2 = load_images(folder, ["a1.png"], short_side=32)
    assert names2 == ["a1.png"] and torch.equal(images2[0], images[1])
    with pytest.raises(KeyError, match="not found"):
        load_images(folder, ["nope.png"], short_side=32)


# --- objectives --------------------------------------------------------------------------------------
def test_pixel_resshift_loss_is_the_chain_training_loss():
    obj = ResShiftObjective(SCHEDULE, dict(TINY_NET))
    torch.manual_seed(0)
    model = obj.build_model()
    hr, lr = PatchPairs(_images(), patch=16, degradation="bicubic", seed=1).batch(3, step=0)
    loss, logs = obj.loss(model, hr, lr, torch.Generator().manual_seed(7))
    z0, z_y, lq = obj.encode_pair(hr, lr)
    assert torch.equal(z_y, upsample_lq(lr * 2 - 1)) and torch.equal(z0, hr * 2 - 1)
    ref = training_loss(lambda x, t, c: model(x, t, c), z0, z_y, lq, SCHEDULE,
                        generator=torch.Generator().manual_seed(7))["loss"]
    torch.testing.assert_close(loss, ref, rtol=0, atol=0)
    assert loss.shape == (3,) and logs["mse"] == pytest.approx(float(ref.detach().mean()))


def test_latent_resshift_objective_with_a_tiny_vq_and_perceptual_term():
    from resshift.models.swin_unet import UNetModelSwin  # noqa: F401 - built by the objective
    from resshift.models.vq_f4 import VQModelTorch

    torch.manual_seed(0)
    vq = VQModelTorch({"double_z": False, "z_channels": 3, "resolution": 64, "in_channels": 3, "out_ch": 3,
                       "ch": 32, "ch_mult": [1, 2, 4], "num_res_blocks": 1, "attn_resolutions": [],
                       "dropout": 0.0}, n_embed=16, embed_dim=3)
    unet = {"image_size": 16, "in_channels": 3, "model_channels": 32, "out_channels": 3,
            "attention_resolutions": [], "channel_mult": [1, 1], "num_res_blocks": [1, 1],
            "num_head_channels": 16, "use_scale_shift_norm": True, "swin_embed_dim": 32, "window_size": 8,
            "mlp_ratio": 4, "cond_lq": True, "lq_size": 16}
    calls = []

    def perceptual(a, b):
        calls.append(a.shape)
        return ((a - b) ** 2).mean(dim=(1, 2, 3))

    obj = ResShiftObjective(SCHEDULE, unet, autoencoder=vq, lpips_weight=0.5, perceptual=perceptual)
    model = obj.build_model()
    hr, lr = PatchPairs(_images(size=72), patch=64, degradation="bicubic", seed=1).batch(2, step=0)
    loss, logs = obj.loss(model, hr, lr, torch.Generator().manual_seed(1))
    loss.mean().backward()
    assert calls == [(2, 3, 64, 64)] and "lpips" in logs
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None for p in vq.parameters())  # the autoencoder is frozen


def test_gaussian_levels_lie_between_adjacent_schedule_levels_and_loss_is_eps_mse():
    obj = GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 1000}, conditional=True)
    ab = obj.draw_levels(10_000, torch.Generator().manual_seed(0))
    full = alphas_cumprod(linear_betas(1000))
    assert float(ab.min()) >= float(full[-1]) and float(ab.max()) <= 1.0
    assert 0.2 < float(ab.mean()) < 0.4  # the mean of alpha_bar over the linear schedule is about 0.28
    torch.manual_seed(0)
    model = obj.build_model()
    assert model.in_channels == 6
    hr, lr = PatchPairs(_images(), patch=16, degradation="bicubic", seed=2).batch(2, step=0)
    loss, _ = obj.loss(model, hr, lr, torch.Generator().manual_seed(5))
    # the output layer is zero-initialised, so the prediction is 0 and the loss is mean(eps^2)
    g = torch.Generator().manual_seed(5)
    obj.draw_levels(2, g)
    eps = torch.randn(hr.shape, generator=g)
    torch.testing.assert_close(loss, (eps**2).mean(dim=(1, 2, 3)))
    assert GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 10}, conditional=False
                             ).build_model().in_channels == 3


# --- optimisation pieces -----------------------------------------------------------------------------
def test_lr_warmup_then_cosine_to_min():
    assert lr_factor(0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(110, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 110, 0.1) == pytest.approx(0.1)


def test_ema_warmup_decay_and_integer_buffers():
    model = torch.nn.BatchNorm1d(2)
    ema = EMA(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.num_batches_tracked.fill_(5)
    ema.update(model)  # decay min(0.99, 1/10) = 0.1: 0.1*1 + 0.9*2
    assert ema.shadow["weight"][0].item() == pytest.approx(1.9)
    assert ema.shadow["num_batches_tracked"].item() == 5
    ema.updates = 10_000
    assert ema.current_decay() == 0.99


def _settings(**kw) -> TrainSettings:
    base = {"steps": 4, "batch_size": 2, "lr": 1e-3, "min_lr": 1e-4, "warmup": 1, "log_every": 1,
            "checkpoint_every": 2, "seed": 0, "ema_decay": 0.9}
    return TrainSettings(**{**base, **kw})


def _trainer(out: Path, **kw) -> Trainer:
    obj = ResShiftObjective(SCHEDULE, dict(TINY_NET))
    return Trainer(obj, PatchPairs(_images(), patch=16, degradation="bicubic", seed=0), _settings(**kw), out)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    straight = _trainer(tmp_path / "a")
    straight.fit(log=lambda *_: None)
    first = _trainer(tmp_path / "b")
    first.fit(log=lambda *_: None, until=2)
    second = _trainer(tmp_path / "b")
    assert second.resume() and second.state.step == 2
    second.fit(log=lambda *_: None)
    for (k, v), v2 in zip(straight.model.state_dict().items(), second.model.state_dict().values(), strict=True):
        assert torch.equal(v, v2), k
    for k, v in straight.ema.shadow.items():
        assert torch.equal(v, second.ema.shadow[k]), k
    assert [h["loss"] for h in straight.state.history] == [h["loss"] for h in second.state.history]
    assert second.state.step == 4


def test_grad_accumulation_sums_the_micro_batch_gradients(tmp_path):
    import copy

    from resshift.seeding import derive_seed

    obj = GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 100}, conditional=True)
    data = PatchPairs(_images(), patch=16, degradation="bicubic", seed=0)
    t = Trainer(obj, data, _settings(steps=1, batch_size=2, grad_accum=2, grad_clip=None), tmp_path / "acc")
    with torch.no_grad():  # leave the zero-initialised output layer so that every gradient is non-trivial
        for p in t.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    start = copy.deepcopy(t.model)
    t.train_step()
    for micro in range(2):
        hr, lr = data.batch(2, 0, 0, micro)
        g = torch.Generator().manual_seed(derive_seed(0, "noise", 0, 0, micro))
        loss, _ = obj.loss(start, hr, lr, g)
        (loss.mean() / 2).backward()
    for (name, p1), p2 in zip(t.model.named_parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-5, atol=1e-8, msg=name)


# --- export -> SR method -----------------------------------------------------------------------------
def test_exported_models_load_in_their_sr_methods(tmp_path):
    lr = torch.rand(1, 3, 8, 12)
    gens = [torch.Generator().manual_seed(0)]
    pix = _trainer(tmp_path / "p", steps=1)
    pix.fit(log=lambda *_: None)
    path = pix.objective.export(pix.ema_model(), tmp_path / "pix.safetensors", {"note": "t"}, dtype=torch.float16)
    net, schedule, config = load_checkpoint(path)
    assert config["note"] == "t" and schedule.steps == 4 and config["space"] == "pixel"
    ema = pix.ema_model().net
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, ema.state_dict()[k].half().float())
    method = build_method("resshift-pixel", checkpoint=str(path))
    out = method.upscale(lr, gens)
    assert out.shape == (1, 3, 32, 48) and 0 <= out.min() and out.max() <= 1 and method.nfe == 4
    # the method runs the ResShift chain: its output equals the chain run by hand with the same noise
    for kind, name, extra in (("sr3", "sr3", {"steps": 2}), ("prior", "ddnm", {"steps": 2, "prior": "ours"})):
        obj = GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 100}, conditional=kind == "sr3")
        data = PatchPairs(_images(), patch=16, degradation="bicubic", seed=0)
        t = Trainer(obj, data, _settings(steps=1), tmp_path / kind)
        t.fit(log=lambda *_: None)
        p = obj.export(t.ema_model(), tmp_path / f"{kind}.safetensors", {"training": {"steps": 1}},
                       dtype=torch.float16)
        m = build_method(name, checkpoint=str(p), **extra)
        assert m.upscale(lr, [torch.Generator().manual_seed(0)]).shape == (1, 3, 32, 48)


def test_pixel_method_equals_the_chain_with_identity_autoencoder(tmp_path):
    from resshift.diffusion.resshift_chain import sample
    from resshift.methods.resshift_pixel import build_pixel_resshift
    from resshift.models.sr3_unet import SR3UNet

    torch.manual_seed(0)
    net = SR3UNet(in_channels=6, level_scale=1.0, **TINY_NET)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method = build_pixel_resshift(net, SCHEDULE)
    lr = torch.rand(2, 3, 8, 8)
    noise = [torch.randn(2, 3, 32, 32) for _ in range(SCHEDULE.steps + 1)]
    out = method.run(lr * 2 - 1, lambda k, b, s: {"noise": noise})
    den = PixelResShiftNet(net, clip_x0=True)
    y = lr * 2 - 1
    with torch.no_grad():
        ref = sample(den, upsample_lq(y), y, SCHEDULE, noise=noise).latent.clamp(-1, 1)
    torch.testing.assert_close(out, ref)


def test_residual_denoiser_adds_the_bicubic_upsampling():
    from resshift.models.sr3_unet import SR3UNet

    net = SR3UNet(in_channels=6, level_scale=1.0, **TINY_NET)  # zero-initialised output layer
    lq = torch.rand(2, 3, 4, 4) * 2 - 1
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 3])
    torch.testing.assert_close(PixelResShiftNet(net, residual=True)(x, t, lq), upsample_lq(lq))
    assert torch.equal(PixelResShiftNet(net)(x, t, lq), torch.zeros(2, 3, 16, 16))
    clipped = PixelResShiftNet(net, clip_x0=True, residual=True)(x, t, lq * 3)
    assert float(clipped.abs().max()) <= 1.0


# --- Hydra app and DDP -------------------------------------------------------------------------------
def _tiny_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    for i, im in enumerate(_images(6, size=36, seed=4)):
        write_png(folder / f"im{i}.png", im.float() / 255)
    return folder


def _app_args(tmp_path: Path, folder: Path, out: str) -> list[str]:
    return [
        "model=sr3", f"data.root={folder}", f"data.split={tmp_path / 'split.json'}", "data.heldout=2",
        "data.short_side=32", "data.patch=16", "train.steps=2", "train.batch_size=2", "train.log_every=1",
        "train.threads=1", "data.degradation=bicubic", f"out_dir={tmp_path / out}", "model.net.channel_mult=[1,2]",
        "model.net.attention_ds=[]", "model.net.patch_size=1",
    ]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "RESSHIFT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(PROJECT_ROOT)}


def test_app_trains_exports_and_records(tmp_path):
    folder = _tiny_folder(tmp_path)
    cmd = [sys.executable, "-m", "resshift.train.app", *_app_args(tmp_path, folder, "single")]
    res = subprocess.run(cmd, cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads((tmp_path / "single" / "small-sr3.json").read_text())
    assert rec["steps"] == 2 and rec["world_size"] == 1 and rec["images_seen"] == 4
    assert rec["split"]["train_images"] == 4 and rec["split"]["heldout_images"] == 2
    assert rec["command"].startswith("python -m resshift.train.app model=sr3")
    assert len(rec["loss_history"]) == 2 and math.isfinite(rec["final_loss"])
    split = read_split(tmp_path / "split.json")
    assert not set(split.heldout) & set(split.train)


def test_ddp_two_gloo_processes(tmp_path):
    folder = _tiny_folder(tmp_path)
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
           "-m", "resshift.train.app", *_app_args(tmp_path, folder, "ddp")]
    res = subprocess.run(cmd, cwd=PROJECT_ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rec = json.loads((tmp_path / "ddp" / "small-sr3.json").read_text())
    assert rec["world_size"] == 2 and rec["images_seen"] == 2 * 2 * 2
    # both ranks ended with identical weights (DDP all-reduces the gradients): the checkpoint is rank 0's,
    # and the exported EMA is finite
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "ddp" / "small-sr3.safetensors"))
    assert all(np.isfinite(v.float().numpy()).all() for v in weights.values())


def test_v_prediction_loss_is_the_velocity_mse_and_is_stored_in_the_export(tmp_path):
    obj = GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 1000}, conditional=True, prediction="v")
    torch.manual_seed(0)
    model = obj.build_model()
    hr, lr = PatchPairs(_images(), patch=16, degradation="bicubic", seed=2).batch(2, step=0)
    loss, _ = obj.loss(model, hr, lr, torch.Generator().manual_seed(5))
    # zero-initialised output: the loss is mean(v^2), v = sqrt(ab) eps - sqrt(1 - ab) x0, by hand
    g = torch.Generator().manual_seed(5)
    ab = obj.draw_levels(2, g).reshape(-1, 1, 1, 1)
    eps = torch.randn(hr.shape, generator=g).double()
    v = ab.sqrt() * eps - (1 - ab).sqrt() * (hr.double() * 2 - 1)
    torch.testing.assert_close(loss, (v**2).mean(dim=(1, 2, 3)).float())
    path = obj.export(model, tmp_path / "v.safetensors", {})
    assert sr3_load(path)[1]["prediction"] == "v"
    with pytest.raises(ValueError, match="unknown prediction 'x0'"):
        GaussianObjective(dict(TINY_NET), {"kind": "linear", "steps": 10}, prediction="x0")
