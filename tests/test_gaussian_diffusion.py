"""Gaussian diffusion: schedules, respacing, DDPM / DDIM samplers (k-diffusion-style functions)."""

from __future__ import annotations

import math

import pytest
import torch

from resshift.diffusion.gaussian import (
    alphas_cumprod,
    batch_randn,
    cosine_betas,
    discrete_time_eps,
    linear_betas,
    predict_x0,
    respaced_timesteps,
    sample_ddim,
    sample_ddpm,
    sampling_levels,
)


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


class CountingEps:
    """A fixed smooth eps model that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 0.3 * torch.tanh(x) + 0.1 * ab.float().reshape(-1, 1, 1, 1)


def test_linear_betas_match_adm_values() -> None:
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    # Scaled for other lengths so that the total noise is comparable (ADM's rule 1000 / T).
    assert linear_betas(2000)[-1].item() == pytest.approx(0.01)
    ab = alphas_cumprod(betas)
    assert ab[0].item() == pytest.approx(1 - 1e-4)
    assert 0 < ab[-1].item() < 1e-4


def test_cosine_betas_follow_the_closed_form() -> None:
    betas = cosine_betas(1000)
    ab = alphas_cumprod(betas)

    def f(t: float) -> float:
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    assert ab[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)
    assert betas.max().item() <= 0.999


def test_respacing_conventions() -> None:
    assert respaced_timesteps(1000, 4, "uniform") == [0, 333, 666, 999]
    assert respaced_timesteps(1000, 20, "stride")[:3] == [0, 50, 100]
    assert respaced_timesteps(1000, 15, "stride") == [i * 66 for i in range(15)]
    assert len(respaced_timesteps(1000, 1000, "uniform")) == 1000
    with pytest.raises(ValueError, match="steps must be"):
        respaced_timesteps(1000, 0)
    levels = sampling_levels(linear_betas(1000), 4, "uniform")
    assert torch.all(levels[1:] > levels[:-1])  # noisiest first
    assert levels[-1].item() == pytest.approx(1 - 1e-4)


@pytest.mark.parametrize("steps", [1, 15, 50])
def test_nfe_equals_steps_and_ddim_eta0_is_deterministic(steps: int) -> None:
    levels = sampling_levels(linear_betas(1000), steps)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model = CountingEps()
    a = sample_ddim(model, x.clone(), levels, eta=0.0)
    assert model.calls == steps
    b = sample_ddim(CountingEps(), x.clone(), levels, eta=0.0)
    assert torch.equal(a, b)
    model = CountingEps()
    sample_ddpm(model, x.clone(), levels, _gens(1, 2))
    assert model.calls == steps


def test_ddpm_one_step_matches_hand_computation() -> None:
    ab, ab_next = 0.5, 0.8
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    eps = CountingEps()(x, torch.tensor([ab]))
    x0 = ((x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)).clamp(-1, 1)
    beta = 1 - ab / ab_next
    mean = (math.sqrt(ab_next) * beta / (1 - ab)) * x0 + (math.sqrt(1 - beta) * (1 - ab_next) / (1 - ab)) * x
    std = math.sqrt(beta * (1 - ab_next) / (1 - ab))
    z = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    seen = []
    sample_ddpm(CountingEps(), x, [ab, ab_next], _gens(9), callback=lambda i, xi, x0i: seen.append(xi))
    torch.testing.assert_close(seen[0], mean + std * z, rtol=0, atol=1e-6)


def test_ddim_eta1_step_has_ddpm_variance_and_last_step_returns_x0() -> None:
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    model = CountingEps()
    out = sample_ddim(model, x, [0.7], eta=0.0, clip_x0=False)
    expected = predict_x0(x, CountingEps()(x, torch.tensor([0.7])), 0.7)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="generator"):
        sample_ddim(model, x, [0.3, 0.7], eta=1.0)


def test_samples_do_not_depend_on_batch_composition() -> None:
    levels = sampling_levels(linear_betas(1000), 5)
    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    x1 = batch_randn((1, 3, 8, 8), [gen(11)], "cpu")
    x2 = batch_randn((2, 3, 8, 8), [gen(11), gen(12)], "cpu")
    torch.testing.assert_close(x1[0], x2[0])
    a = sample_ddpm(CountingEps(), x1, levels, [gen(5)])
    b = sample_ddpm(CountingEps(), x2, levels, [gen(5), gen(6)])
    torch.testing.assert_close(a[0], b[0])
    with pytest.raises(ValueError, match="generators"):
        batch_randn((2, 3, 4, 4), [gen(1)], "cpu")


def test_discrete_time_wrapper_maps_levels_to_training_steps() -> None:
    ab_table = alphas_cumprod(linear_betas(1000))
    seen = []

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.clone())
        return torch.zeros(x.shape[0], 6, *x.shape[2:])

    eps_fn = discrete_time_eps(net, ab_table)
    out = eps_fn(torch.zeros(3, 3, 2, 2), ab_table[torch.tensor([0, 250, 999])])
    assert out.shape == (3, 3, 2, 2)  # learned-sigma channels dropped
    torch.testing.assert_close(seen[0], torch.tensor([0.0, 250.0, 999.0]), atol=1e-4, rtol=0)
    mid = torch.sqrt(ab_table[10] * ab_table[11]).reshape(1)  # halfway in log(alpha_bar)
    eps_fn(torch.zeros(1, 3, 2, 2), mid)
    assert seen[1].item() == pytest.approx(10.5, abs=1e-4)


def test_invalid_levels_are_rejected() -> None:
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="increase"):
        sample_ddim(CountingEps(), x, [0.8, 0.5])
    with pytest.raises(ValueError, match="at least one"):
        sample_ddim(CountingEps(), x, [])


@pytest.mark.parametrize("ab", [1e-4, 0.3, 0.999])
def test_velocity_target_and_implied_noise_round_trip(ab: float) -> None:
    from resshift.diffusion.gaussian import eps_from_prediction, prediction_target

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.randn(2, 3, 8, 8, generator=g)
    abv = torch.full((2, 1, 1, 1), ab, dtype=torch.float64)
    x_t = abv.sqrt() * x0 + (1 - abv).sqrt() * eps
    v = prediction_target(x0, eps, abv, "v")
    torch.testing.assert_close(v, abv.sqrt() * eps - (1 - abv).sqrt() * x0)
    assert torch.equal(prediction_target(x0, eps, abv, "eps"), eps)
    implied = eps_from_prediction(v.float(), x_t.float(), torch.full((2,), ab, dtype=torch.float64), "v")
    torch.testing.assert_close(implied, eps.float(), atol=2e-6, rtol=0)
    # x0 recovered from the implied noise (what the samplers do)
    torch.testing.assert_close(predict_x0(x_t.float(), implied, ab), x0.float(), atol=2e-6 / ab**0.5, rtol=0)
