"""The diffusion baselines end to end on real val-sr LR images with small random weights.

SR3-style (our checkpoint format), DDNM / DDRM (a tiny ADM prior saved as an OpenAI-style ``.pt``
state_dict, and a tiny prior of ours) and LDM-SR (a tiny random diffusers pipeline saved to disk and
loaded offline). Checked: shapes, ranges, declared NFE = network calls, reproducibility per image,
consistency with the operator, and the errors for missing weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resshift.diffusion.gaussian import linear_betas, sampling_levels
from resshift.io import read_image
from resshift.methods import build_method
from resshift.models.adm_unet import ADMUNet
from resshift.models.sr3_unet import SR3UNet
from resshift.weights.formats import load_gaussian_checkpoint as load_checkpoint
from resshift.weights.formats import save_gaussian_checkpoint as save_checkpoint

TINY_ADM = {
    "model_channels": 32,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attention_ds": [2],
    "num_head_channels": 32,
}
TINY_SR3 = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_ds": (2,),
    "num_head_channels": 32,
}
SCHEDULE = {"kind": "linear", "steps": 1000}


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (the zero-initialised output layers would make eps = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.ndim > 1 else 0.02))
    return model


@pytest.fixture(scope="module")
def lr_batch(shared_datasets: Path) -> torch.Tensor:
    """Two 8x8 crops of val-sr LR images (real content, small enough for CPU tests)."""
    lq = shared_datasets / "resshift-testdata" / "Val_SR" / "lq"
    if not lq.is_dir():
        pytest.skip(f"{lq} not in the data mirror")
    paths = sorted(lq.iterdir())[:2]
    return torch.stack([read_image(p)[:, 20:28, 24:32] for p in paths])


def _gens(n: int, base: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(1000 + base + i) for i in range(n)]


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# ------------------------------------------------------------------------------------------------ SR3


@pytest.fixture(scope="module")
def sr3_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = _randomize(SR3UNet(in_channels=6, **TINY_SR3))
    return save_checkpoint(
        tmp_path_factory.mktemp("sr3") / "sr3.safetensors",
        model,
        SCHEDULE,
        "bicubic-concat",
        extra={"note": "random test weights"},
    )


def test_sr3_checkpoint_round_trip(sr3_checkpoint: Path, tmp_path: Path) -> None:
    model, config = load_checkpoint(sr3_checkpoint)
    assert config["conditioning"] == "bicubic-concat" and config["schedule"] == SCHEDULE
    assert config["note"] == "random test weights"
    again = save_checkpoint(tmp_path / "again.safetensors", model, SCHEDULE, "bicubic-concat")
    model2, _ = load_checkpoint(again)
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_checkpoint(bad)
    with pytest.raises(ValueError, match="input channels"):
        save_checkpoint(tmp_path / "x.safetensors", model, SCHEDULE, "none")


@pytest.mark.parametrize(("sampler", "steps", "eta"), [("ddim", 3, 0.0), ("ddpm", 3, 0.0), ("ddim", 2, 1.0)])
def test_sr3_end_to_end(
    sr3_checkpoint: Path, lr_batch: torch.Tensor, sampler: str, steps: int, eta: float
) -> None:
    method = build_method(
        "sr3",
        device="cpu",
        dtype="fp32",
        checkpoint=str(sr3_checkpoint),
        steps=steps,
        sampler=sampler,
        eta=eta,
    )
    assert method.nfe == steps and method.assumes_operator is None
    calls = _count_calls(method.model)
    out = method.upscale(lr_batch, _gens(2))
    assert calls[0] == steps  # one batched network call per step
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # Per-image noise: image 1 alone gives the same result as in the batch.
    alone = method.upscale(lr_batch[1:], _gens(1, base=1))
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=0)
    assert method.describe()["checkpoint_sha256"]


def test_sr3_tiles_large_inputs(sr3_checkpoint: Path, lr_batch: torch.Tensor) -> None:
    method = build_method("sr3", checkpoint=str(sr3_checkpoint), steps=1, chop_size=4, chop_stride=3)
    calls = _count_calls(method.model)
    out = method.upscale(lr_batch[:1], _gens(1))
    assert out.shape == (1, 3, 32, 32)
    assert calls[0] == 9  # 3 x 3 tiles (starts 0, 3, 4 per axis), one step each


def test_sr3_missing_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no public SR3 weights"):
        build_method("sr3", checkpoint=str(tmp_path / "nope.safetensors"))


# ---------------------------------------------------------------------------------------- DDNM / DDRM


@pytest.fixture(scope="module")
def adm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ADM (learned sigma: 6 output channels) saved like OpenAI's ``.pt`` files."""
    model = _randomize(ADMUNet(in_channels=3, out_channels=6, **TINY_ADM), seed=1)
    path = tmp_path_factory.mktemp("adm") / "tiny_adm.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("algorithm", "operator"),
    [("ddnm", "avgpool"), ("ddnm", "bicubic"), ("ddrm", "bicubic"), ("ddrm", "avgpool")],
)
def test_guided_end_to_end_with_adm_prior(
    adm_checkpoint: Path, lr_batch: torch.Tensor, algorithm: str, operator: str
) -> None:
    method = build_method(
        algorithm,
        checkpoint=str(adm_checkpoint),
        prior="adm",
        prior_config=TINY_ADM,
        steps=3,
        operator=operator,
    )
    assert method.nfe == 3 and method.assumes_operator == operator and method.name == algorithm
    calls = _count_calls(method.prior.model)
    out = method.upscale(lr_batch, _gens(2))
    assert calls[0] == 3
    assert out.shape == (2, 3, 32, 32) and 0.0 <= out.min() and out.max() <= 1.0
    again = method.upscale(lr_batch, _gens(2))
    torch.testing.assert_close(out, again, atol=0, rtol=0)
    if algorithm == "ddnm":
        # Noiseless DDNM is consistent with the LR (before the final clamp to [0, 1]).
        with torch.inference_mode():
            raw = method._sample(lr_batch, _gens(2))
        torch.testing.assert_close(method.operator(raw), lr_batch, atol=1e-5, rtol=0)
    info = method.describe()
    assert info["assumes_operator"] == operator and info["prior"] == "adm"


def test_guided_with_our_prior(tmp_path: Path, lr_batch: torch.Tensor) -> None:
    prior = _randomize(SR3UNet(in_channels=3, **TINY_SR3), seed=2)
    ckpt = save_checkpoint(tmp_path / "prior.safetensors", prior, SCHEDULE, "none")
    method = build_method("ddnm", prior="ours", checkpoint=str(ckpt), steps=2, operator="avgpool")
    out = method.upscale(lr_batch, _gens(2))
    assert out.shape == (2, 3, 32, 32) and 0.0 <= out.min() and out.max() <= 1.0
    with torch.inference_mode():
        raw = method._sample(lr_batch, _gens(2))
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(raw, 4), lr_batch, atol=1e-5, rtol=0)
    sr3 = save_checkpoint(
        tmp_path / "cond.safetensors",
        _randomize(SR3UNet(in_channels=6, **TINY_SR3)),
        SCHEDULE,
        "bicubic-concat",
    )
    with pytest.raises(ValueError, match="unconditional"):
        build_method("ddrm", prior="ours", checkpoint=str(sr3))


def test_guided_errors(tmp_path: Path, adm_checkpoint: Path) -> None:
    with pytest.raises(FileNotFoundError, match="256x256_diffusion_uncond.pt"):
        build_method("ddnm", checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="tiny_adm.pt"):
        build_method("ddrm", checkpoint=str(adm_checkpoint), prior_config={**TINY_ADM, "model_channels": 64})
    with pytest.raises(ValueError, match="operator"):
        build_method("ddrm", checkpoint=str(adm_checkpoint), prior_config=TINY_ADM, operator="gaussian")


def test_guided_steps_follow_the_ddrm_ddnm_stride() -> None:
    levels = sampling_levels(linear_betas(1000), 20, "stride")
    assert len(levels) == 20


# ------------------------------------------------------------------------------------------------ LDM


@pytest.fixture(scope="module")
def tiny_ldm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=6,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    vq = diffusers.VQModel(
        in_channels=3,
        out_channels=3,
        latent_channels=3,
        num_vq_embeddings=64,
        vq_embed_dim=3,
        block_out_channels=(16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
    )
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.0015,
        beta_end=0.0155,
        clip_sample=False,
    )
    pipe = diffusers.LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=sched)
    path = tmp_path_factory.mktemp("ldm") / "tiny-ldm-sr"
    pipe.save_pretrained(path)
    return path


def test_ldm_sr_end_to_end_offline(tiny_ldm_dir: Path, lr_batch: torch.Tensor) -> None:
    method = build_method("ldm-sr", model=str(tiny_ldm_dir), steps=3, eta=1.0)
    assert method.nfe == 3
    calls = _count_calls(method.unet)
    out = method.upscale(lr_batch, _gens(2))
    assert calls[0] == 3
    assert out.shape == (2, 3, 32, 32) and 0.0 <= out.min() and out.max() <= 1.0
    alone = method.upscale(lr_batch[1:], _gens(1, base=1))
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=0)


def test_ldm_sr_eta0_matches_the_diffusers_pipeline(tiny_ldm_dir: Path, lr_batch: torch.Tensor) -> None:
    """With eta = 0 our loop is the pipeline's own: same initial latent -> same image."""
    from diffusers import LDMSuperResolutionPipeline

    from resshift.seeding import per_tile_generators

    method = build_method("ldm-sr", model=str(tiny_ldm_dir), steps=3, eta=0.0)
    ours = method.upscale(lr_batch[:1], _gens(1))
    pipe = LDMSuperResolutionPipeline.from_pretrained(tiny_ldm_dir, local_files_only=True)
    gen = per_tile_generators(_gens(1))(0, 1, ())["generators"]  # the tile generator our method used
    ref = pipe(lr_batch[:1] * 2 - 1, num_inference_steps=3, eta=0.0, generator=gen, output_type="pt").images
    torch.testing.assert_close(ours, ref.float(), atol=1e-5, rtol=0)


def test_ldm_sr_missing_weights_error(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        build_method(
            "ldm-sr",
            model="CompVis/ldm-super-resolution-4x-openimages",
            local_files_only=True,
            cache_dir=str(tmp_path),
        )


# ---------------------------------------------------------------------------------------- Hydra configs


@pytest.mark.parametrize("name", ["sr3", "ldm-sr", "ddnm", "ddrm"])
def test_hydra_method_configs_build(
    name: str, sr3_checkpoint: Path, adm_checkpoint: Path, tiny_ldm_dir: Path, lr_batch: torch.Tensor
) -> None:
    """Each ``eval/method/*.yaml`` composes, and its params are exactly what the factory accepts."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from resshift.paths import PROJECT_ROOT

    tiny = (
        "+method.params.prior_config={"
        + ",".join(
            f"{k}:{list(v) if isinstance(v, list) else v}".replace(" ", "") for k, v in TINY_ADM.items()
        )
        + "}"
    )
    overrides = {
        "sr3": [f"method.params.checkpoint={sr3_checkpoint}", "method.params.steps=2"],
        "ldm-sr": [f"method.params.model={tiny_ldm_dir}", "method.params.steps=2"],
        "ddnm": [f"method.params.checkpoint={adm_checkpoint}", "method.params.steps=2", tiny],
        "ddrm": [f"method.params.checkpoint={adm_checkpoint}", "method.params.steps=2", tiny],
    }[name]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"method={name}", *overrides])
    method_cfg = OmegaConf.to_container(cfg.method, resolve=True)
    assert method_cfg["name"] == name and method_cfg["label"].endswith("-2")
    method = build_method(method_cfg["name"], device="cpu", dtype="fp32", **method_cfg["params"])
    assert method.nfe == 2
    assert method.upscale(lr_batch[:1], _gens(1)).shape == (1, 3, 32, 32)


class _AsVelocity(torch.nn.Module):
    """A noise predictor re-expressed as a velocity predictor: ``v = (eps - sqrt(1-ab) x_t) / sqrt(ab)``."""

    def __init__(self, eps_model: SR3UNet) -> None:
        super().__init__()
        self.inner = eps_model
        self.in_channels, self.size_multiple = eps_model.in_channels, eps_model.size_multiple

    def forward(self, inp: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        eps = self.inner(inp, gamma).double()
        g = gamma.double().reshape(-1, 1, 1, 1)
        return ((eps - (1 - g**2).sqrt() * inp[:, :3].double()) / g).float()


def test_v_prediction_models_sample_as_their_noise_equivalents(sr3_checkpoint: Path, lr_batch: torch.Tensor) -> None:
    from resshift.methods.guided import Prior
    from resshift.methods.sr3 import SR3StyleSR

    model, config = load_checkpoint(sr3_checkpoint)
    assert config["prediction"] == "eps"  # files without the field are noise predictors
    ref = SR3StyleSR(model, config, steps=4).upscale(lr_batch, _gens(2))
    as_v = SR3StyleSR(_AsVelocity(model), {**config, "prediction": "v"}, steps=4)
    assert as_v.describe()["prediction"] == "v"
    torch.testing.assert_close(as_v.upscale(lr_batch, _gens(2)), ref, atol=2e-5, rtol=0)
    prior = _randomize(SR3UNet(in_channels=3, **TINY_SR3), seed=2)
    x, ab = torch.randn(2, 3, 16, 16), torch.tensor([1e-4, 0.6], dtype=torch.float64)
    eps = Prior(prior, linear_betas(1000), "ours", None).eps_fn("fp32", torch.device("cpu"))(x, ab)
    via_v = Prior(_AsVelocity(prior), linear_betas(1000), "ours", None, prediction="v")
    torch.testing.assert_close(via_v.eps_fn("fp32", torch.device("cpu"))(x, ab), eps, atol=1e-5, rtol=0)


def test_unknown_prediction_is_refused_naming_the_file(tmp_path: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    model = SR3UNet(in_channels=6, **TINY_SR3)
    with pytest.raises(ValueError, match="unknown prediction 'x0'"):
        save_checkpoint(tmp_path / "x.safetensors", model, SCHEDULE, "bicubic-concat", prediction="x0")
    good = save_checkpoint(tmp_path / "good.safetensors", model, SCHEDULE, "bicubic-concat", prediction="v")
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as fh:
        meta = fh.metadata()
    cfg = json.loads(meta["config"])
    save_file(load_file(str(good)), str(tmp_path / "odd.safetensors"),
              metadata={**meta, "config": json.dumps({**cfg, "prediction": "x0"})})
    with pytest.raises(ValueError, match=r"odd\.safetensors: unknown prediction 'x0'"):
        load_checkpoint(tmp_path / "odd.safetensors")


def test_batched_tiles_give_the_same_result_in_fewer_calls(sr3_checkpoint: Path, lr_batch: torch.Tensor) -> None:
    one = build_method("sr3", checkpoint=str(sr3_checkpoint), steps=2, chop_size=4, chop_stride=3)
    four = build_method("sr3", checkpoint=str(sr3_checkpoint), steps=2, chop_size=4, chop_stride=3, tile_batch=4)
    calls = _count_calls(four.model)
    out = four.upscale(lr_batch, _gens(2))
    assert calls[0] == 3 * 2  # 9 tiles in groups of 4, 4, 1; two steps each
    torch.testing.assert_close(out, one.upscale(lr_batch, _gens(2)), atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="tile_batch"):
        build_method("sr3", checkpoint=str(sr3_checkpoint), chop_size=4, tile_batch=0).upscale(lr_batch, _gens(2))
