"""Chain operations and the sampler loop against the official recordings (no networks needed).

The sampler tests replay each recorded chain with an *oracle* denoiser that returns the official
prediction for that step: they check the prior, the input scaling, the posterior mean, the noise
convention and the loop order to a few float32 ulps (what the official code itself reproduces across
CPUs; see ``golden_compare.py``). The same chains with the real networks are in
``test_resshift_golden.py``.
"""

from __future__ import annotations

import pytest
import torch
from golden_compare import assert_within_scale_ulps

from resshift.diffusion import (
    ResShiftSchedule,
    p_mean_variance,
    prior_sample,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
    sample,
    scale_input,
    training_loss,
)

PARAMS = {
    "v1": dict(steps=15, kappa=2.0, min_noise_level=0.04),
    "v3": dict(steps=4, kappa=2.0, min_noise_level=0.2),
    "bicsr": dict(steps=4, kappa=2.0, min_noise_level=0.2),
}


def _load(golden, name):
    from safetensors.torch import load_file

    return load_file(str(golden / name))


# The official code's float32 coefficients are reproducible across CPUs to 1 ulp (tests/golden_compare.py),
# i.e. up to 2^-23 relative. An operation of the chain uses one or two of them on operands no larger than
# the result's scale, plus one or two roundings: 3 ulps at the result's scale for a single coefficient
# (x_t / input_std: measured 2 on v1), 4 allowing a second term. A recorded chain feeds each step's error
# into the next, contracted by coef2 < 1: 8 ulps bound whole chains.
OPS_ULPS = 4
CHAIN_ULPS = 8


@pytest.mark.parametrize("cfg", ["v1", "v3", "bicsr"])
def test_ops_match_official_to_ulps(golden, cfg):
    g = _load(golden, "golden_diffusion_ops.safetensors")
    s = ResShiftSchedule.from_config(**PARAMS[cfg])
    x0, y, noise, x_free, t = g["x_start"], g["y"], g["noise"], g["x_t_free"], g[f"{cfg}/t"]
    got = {"q_sample": q_sample(x0, y, t, noise, s), "prior_sample": prior_sample(y, noise, s)}
    got["q_mean"], got["q_variance"], got["q_log_variance"] = q_mean_variance(x0, y, t, s)
    for tag, x_t in (("q_sample", got["q_sample"]), ("free", x_free)):
        mean, var, logvar = q_posterior_mean_variance(x0, x_t, t, s)
        got[f"posterior_mean[x_t={tag}]"] = mean
        got[f"posterior_variance[x_t={tag}]"] = var
        got[f"posterior_log_variance_clipped[x_t={tag}]"] = logvar
        got[f"scale_input[{tag}]"] = scale_input(x_t, t, s)
    for name, value in got.items():
        assert_within_scale_ulps(value, g[f"{cfg}/{name}"], OPS_ULPS, f"{cfg}/{name}")


def _oracle(recorded: dict[int, torch.Tensor], seen: list):
    def denoiser(x_scaled, t, lq):
        seen.append((int(t[0]), x_scaled.clone(), lq))
        return recorded[int(t[0])]

    return denoiser


CHAINS = [
    ("golden_sampler_v3_s4_b2.safetensors", "v3"),
    ("golden_sampler_v1_s15_b1.safetensors", "v1"),
    ("golden_sampler_v3_s4_pad48x80_b1.safetensors", "v3"),
]


def recorded_chain(g, steps):
    """(noise list, {t: pred}, [(t, x_t, sample)]) from a golden sampler file."""
    noise = [g["noise/00_prior"]]
    preds, samples = {}, []
    for k, t in enumerate(range(steps - 1, -1, -1)):
        noise.append(g[f"noise/{k + 1:02d}_step_t{t:02d}"])
        preds[t] = g[f"step{k:02d}_t{t:02d}/pred_xstart"]
        samples.append((t, g[f"step{k:02d}_t{t:02d}/sample"]))
    return noise, preds, samples


@pytest.mark.parametrize("fname,cfg", CHAINS)
def test_sampler_loop_matches_official_with_oracle(golden, fname, cfg):
    g = _load(golden, fname)
    s = ResShiftSchedule.from_config(**PARAMS[cfg])
    noise, preds, samples = recorded_chain(g, s.steps)
    seen: list = []
    lq = torch.zeros(1)
    res = sample(_oracle(preds, seen), g["z_y"], lq, s, noise=noise, record=True)
    assert_within_scale_ulps(res.prior, g["z_T_prior_sample"], OPS_ULPS, "prior")
    assert [r.t for r in res.steps] == list(range(s.steps - 1, -1, -1))
    x_t = res.prior
    for rec, (t, ref_sample), (seen_t, seen_in, seen_lq) in zip(res.steps, samples, seen, strict=True):
        assert seen_t == t and seen_lq is lq
        # our own loop: the network sees exactly x_t / input_std (one division), step after step
        assert torch.equal(seen_in, x_t / s.input_std_f32[t])
        assert torch.equal(rec.x_t, x_t)
        assert_within_scale_ulps(rec.sample, ref_sample, CHAIN_ULPS, f"sample t={t}")
        if f"step{s.steps - 1 - t:02d}_t{t:02d}/mean" in g:
            assert_within_scale_ulps(rec.mean, g[f"step{s.steps - 1 - t:02d}_t{t:02d}/mean"], CHAIN_ULPS, f"mean t={t}")
        x_t = rec.sample
    assert torch.equal(res.latent, preds[0])  # the last step returns the x0 prediction itself


def test_generators_make_each_element_independent_of_the_batch():
    s = ResShiftSchedule.from_config(**PARAMS["v3"])

    def denoiser(x, t, lq):
        return 0.5 * x + 0.1 * lq + t.float().reshape(-1, 1, 1, 1) * 0.01

    z = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gens = lambda seeds: [torch.Generator().manual_seed(k) for k in seeds]  # noqa: E731
    full = sample(denoiser, z, z, s, generators=gens([10, 11, 12])).latent
    single = sample(denoiser, z[1:2], z[1:2], s, generators=gens([11])).latent
    swapped = sample(denoiser, z[[2, 1]], z[[2, 1]], s, generators=gens([12, 11])).latent
    torch.testing.assert_close(full[1:2], single, rtol=0, atol=1e-6)
    torch.testing.assert_close(full[1:2], swapped[1:2], rtol=0, atol=1e-6)
    other = sample(denoiser, z[1:2], z[1:2], s, generators=gens([99])).latent
    assert (other - single).abs().max() > 1e-2


def test_generator_stream_equals_explicit_noise():
    s = ResShiftSchedule.from_config(**PARAMS["v3"])
    z = torch.randn(1, 3, 8, 8)
    denoiser = lambda x, t, lq: -x  # noqa: E731
    g = torch.Generator().manual_seed(5)
    noise = [torch.randn(1, 3, 8, 8, generator=g) for _ in range(s.steps + 1)]
    a = sample(denoiser, z, z, s, noise=noise).latent
    b = sample(denoiser, z, z, s, generators=[torch.Generator().manual_seed(5)]).latent
    assert torch.equal(a, b)


def test_sample_rejects_bad_noise():
    s = ResShiftSchedule.from_config(**PARAMS["v3"])
    z = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="exactly one"):
        sample(lambda x, t, lq: x, z, z, s)
    with pytest.raises(ValueError, match="expected 5 noise tensors"):
        sample(lambda x, t, lq: x, z, z, s, noise=[z] * 3)
    with pytest.raises(ValueError, match="expected 2 generators"):
        sample(lambda x, t, lq: x, z, z, s, generators=[torch.Generator()])


def test_p_mean_variance_last_step_is_prediction():
    s = ResShiftSchedule.from_config(**PARAMS["v1"])
    x = torch.randn(2, 3, 4, 4)
    pred = torch.randn(2, 3, 4, 4)
    out = p_mean_variance(lambda xs, t, lq: pred, x, 0, None, s)
    assert torch.equal(out["mean"], pred)


def test_training_loss_mse_and_perceptual_fallback():
    s = ResShiftSchedule.from_config(**PARAMS["v3"])
    gen = torch.Generator().manual_seed(0)
    z0, zy = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    noise = torch.randn(2, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 3])
    pred = torch.randn(2, 3, 8, 8, generator=gen)
    seen = {}

    def denoiser(x, tt, lq):
        seen["x"], seen["t"] = x, tt
        return pred

    out = training_loss(denoiser, z0, zy, zy, s, t=t, noise=noise)
    x_t = q_sample(z0, zy, t, noise, s)
    assert torch.equal(seen["x"], scale_input(x_t, t, s))
    torch.testing.assert_close(out["loss"], ((z0 - pred) ** 2).mean(dim=(1, 2, 3)))
    hr = torch.zeros(2, 3, 32, 32)
    decode = lambda z: torch.nn.functional.interpolate(z, scale_factor=4) * 5  # noqa: E731
    perc = lambda a, b: (a - b).abs().mean(dim=(1, 2, 3))  # noqa: E731
    out = training_loss(
        denoiser, z0, zy, zy, s, t=t, noise=noise, decode=decode, target_image=hr, perceptual=perc
    )
    expect_lp = decode(pred).clamp(-1, 1).abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(out["lpips"], expect_lp)
    torch.testing.assert_close(out["loss"], out["mse"] + expect_lp)
    nan_perc = lambda a, b: torch.tensor([0.1, float("nan")])  # noqa: E731
    out = training_loss(
        denoiser, z0, zy, zy, s, t=t, noise=noise, decode=decode, target_image=hr, perceptual=nan_perc
    )
    assert torch.equal(out["loss"], out["mse"])
