"""The ResShift Markov chain: forward marginal, posterior, prior, input scaling, sampler and loss.

Samplers know nothing of files or networks: a *denoiser* is any callable
``denoiser(x_scaled, t, lq) -> x0_prediction`` where ``x_scaled = x_t / sqrt(kappa^2 eta_t + 1)``,
``t`` is the integer code index ``(B,)`` in ``0..T-1`` and ``lq`` the conditioning LR image.

Float32 arithmetic follows the official code operation by operation (coefficients cast to float32
after indexing, same order of additions), so fed the same noise it reproduces the official chain to
float32 round-off.

Noise: either explicit tensors (``noise[0]`` the prior draw, ``noise[k]`` the draw of the k-th
step, i.e. code index ``T-k``; ``T+1`` tensors in all, the last one multiplied by 0 as in the
official code), or one ``torch.Generator`` per batch element, each consumed in that same order
(``T+1`` draws of one sample's latent shape). With per-element generators an element's result does
not depend on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from resshift.diffusion.schedule import ResShiftSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _coef(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample float32 coefficient ``values[t]`` shaped ``(B, 1, 1, 1)`` for broadcasting."""
    out = values.to(like.device)[t.to(like.device)].to(torch.float32)
    return out.reshape(out.shape + (1,) * (like.ndim - 1))


def _as_index(t: torch.Tensor | int, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(t, int):
        return torch.full((batch,), t, dtype=torch.long, device=device)
    return t.to(device=device, dtype=torch.long)


def q_sample(
    x_start: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor,
    schedule: ResShiftSchedule,
) -> torch.Tensor:
    """Forward marginal draw x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) noise."""
    t = _as_index(t, x_start.shape[0], x_start.device)
    eta = _coef(schedule.etas_f32, t, x_start)
    std = _coef(schedule.kappa_sqrt_etas_f32, t, x_start)
    return eta * (y - x_start) + x_start + std * noise


def q_mean_variance(
    x_start: torch.Tensor, y: torch.Tensor, t: torch.Tensor | int, schedule: ResShiftSchedule
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and log-variance of q(x_t | x0, y) (variance broadcast to the input's shape)."""
    t = _as_index(t, x_start.shape[0], x_start.device)
    eta = _coef(schedule.etas_f32, t, x_start)
    mean = eta * (y - x_start) + x_start
    variance = (eta * schedule.kappa**2).expand_as(x_start)
    return mean, variance, variance.log()


def q_posterior_mean_variance(
    x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, schedule: ResShiftSchedule
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0) (y enters only via x_t)."""
    t = _as_index(t, x_t.shape[0], x_t.device)
    mean = _coef(schedule.coef1_f32, t, x_t) * x_t + _coef(schedule.coef2_f32, t, x_t) * x_start
    variance = _coef(schedule.posterior_variance_f32, t, x_t).expand_as(x_t)
    log_variance = _coef(schedule.posterior_log_variance_clipped_f32, t, x_t).expand_as(x_t)
    return mean, variance, log_variance


def prior_sample(y: torch.Tensor, noise: torch.Tensor, schedule: ResShiftSchedule) -> torch.Tensor:
    """x_T = y + kappa sqrt(eta_T) noise."""
    return y + schedule.prior_std_f32.to(y.device) * noise


def scale_input(x_t: torch.Tensor, t: torch.Tensor | int, schedule: ResShiftSchedule) -> torch.Tensor:
    """Network input x_t / sqrt(kappa^2 eta_t + 1) (latent-space input normalisation)."""
    t = _as_index(t, x_t.shape[0], x_t.device)
    return x_t / _coef(schedule.input_std_f32, t, x_t)


def predict_xstart(
    denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor | int, lq: torch.Tensor, schedule: ResShiftSchedule
) -> torch.Tensor:
    """The denoiser's x0 prediction at x_t (no clamping: the chain runs in latent space)."""
    t = _as_index(t, x_t.shape[0], x_t.device)
    return denoiser(scale_input(x_t, t, schedule), t, lq).to(torch.float32)


def p_mean_variance(
    denoiser: Denoiser, x_t: torch.Tensor, t: torch.Tensor | int, lq: torch.Tensor, schedule: ResShiftSchedule
) -> dict[str, torch.Tensor]:
    """Reverse-step distribution: x0 prediction, then the posterior with x0 replaced by it.

    Returns ``pred_xstart``, ``mean``, ``variance``, ``log_variance``.
    """
    t = _as_index(t, x_t.shape[0], x_t.device)
    pred = predict_xstart(denoiser, x_t, t, lq, schedule)
    mean, variance, log_variance = q_posterior_mean_variance(pred, x_t, t, schedule)
    return {"pred_xstart": pred, "mean": mean, "variance": variance, "log_variance": log_variance}


def p_sample_step(mean: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor, schedule: ResShiftSchedule):
    """x_{t-1} = mean + std_t * noise, with the noise multiplied by 0 at code index 0."""
    t = _as_index(t, mean.shape[0], mean.device)
    nonzero = (t != 0).to(torch.float32).reshape((-1,) + (1,) * (mean.ndim - 1))
    return mean + nonzero * _coef(schedule.noise_std_f32, t, mean) * noise


@dataclass
class StepRecord:
    """One reverse step: code index ``t``, its input ``x_t``, and what the step produced."""

    t: int
    x_t: torch.Tensor
    pred_xstart: torch.Tensor
    mean: torch.Tensor
    sample: torch.Tensor
    noise: torch.Tensor


@dataclass
class SampleResult:
    """Final latent (x0 estimate before quantization) and, when asked for, every step."""

    latent: torch.Tensor
    prior: torch.Tensor
    steps: list[StepRecord] = field(default_factory=list)


class ChainNoise:
    """Where a chain's noise comes from: explicit tensors or one generator per batch element.

    Draw ``k`` (``0`` = prior, ``k`` = step k, code index ``T-k``) is fetched with :meth:`draw`.
    """

    def __init__(
        self,
        shape: Sequence[int],
        steps: int,
        device: torch.device,
        noise: Sequence[torch.Tensor] | torch.Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> None:
        if (noise is None) == (generators is None):
            raise ValueError(
                "give exactly one of `noise` (T+1 tensors) or `generators` (one per batch element)"
            )
        self.shape = tuple(shape)
        self.device = device
        if noise is not None:
            if len(noise) != steps + 1:
                raise ValueError(
                    f"expected {steps + 1} noise tensors (prior + {steps} steps), got {len(noise)}"
                )
            for k, n in enumerate(noise):
                if tuple(n.shape) != self.shape:
                    raise ValueError(f"noise[{k}] has shape {tuple(n.shape)}, expected {self.shape}")
        elif len(generators) != self.shape[0]:  # type: ignore[arg-type]
            raise ValueError(
                f"expected {self.shape[0]} generators (one per batch element), got {len(generators)}"
            )
        self.noise = noise
        self.generators = generators

    def draw(self, k: int) -> torch.Tensor:
        if self.noise is not None:
            return self.noise[k].to(device=self.device, dtype=torch.float32)
        per = [
            torch.randn(self.shape[1:], generator=g, device=g.device, dtype=torch.float32)
            for g in self.generators  # type: ignore[union-attr]
        ]
        return torch.stack(per).to(self.device)


def sample(
    denoiser: Denoiser,
    y0_latent: torch.Tensor,
    lq: torch.Tensor,
    schedule: ResShiftSchedule,
    *,
    noise: Sequence[torch.Tensor] | torch.Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
    record: bool = False,
) -> SampleResult:
    """Run the full reverse chain from x_T = y0 + kappa sqrt(eta_T) eps down to code index 0.

    Args:
        denoiser: ``denoiser(x_scaled, t, lq) -> x0`` (see the module docstring).
        y0_latent: the chain's endpoint z_y, ``(B, C, H, W)`` float32.
        lq: conditioning passed to the denoiser unchanged (the padded LR image in ``[-1, 1]``).
        schedule: the :class:`ResShiftSchedule`.
        noise: ``T+1`` tensors shaped like ``y0_latent`` (prior first), or a tensor ``(T+1, B, ...)``.
        generators: alternatively, one ``torch.Generator`` per batch element.
        record: keep every step's ``x_t``, prediction, mean, sample and noise.

    Returns:
        :class:`SampleResult`; ``latent`` is the last step's output (= its x0 prediction).
    """
    z_y = y0_latent.to(torch.float32)
    source = ChainNoise(z_y.shape, schedule.steps, z_y.device, noise=noise, generators=generators)
    x = prior_sample(z_y, source.draw(0), schedule)
    result = SampleResult(latent=x, prior=x)
    for k, i in enumerate(range(schedule.steps - 1, -1, -1), start=1):
        t = torch.full((z_y.shape[0],), i, dtype=torch.long, device=z_y.device)
        out = p_mean_variance(denoiser, x, t, lq, schedule)
        eps = source.draw(k)  # drawn after the model call, as in the official loop
        x_next = p_sample_step(out["mean"], t, eps, schedule)
        if record:
            result.steps.append(StepRecord(i, x, out["pred_xstart"], out["mean"], x_next, eps))
        x = x_next
    result.latent = x
    return result


def sample_one_step(
    denoiser: Denoiser,
    y0_latent: torch.Tensor,
    lq: torch.Tensor,
    schedule: ResShiftSchedule,
    *,
    noise: Sequence[torch.Tensor] | torch.Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
    record: bool = False,
) -> SampleResult:
    """One network call from the prior: x_T = y0 + kappa sqrt(eta_T) eps, x̂₀ = f(x_T / sqrt(kappa² eta_T + 1), T-1).

    This is SinSR's sampler (Wang et al., CVPR 2024; ``one_step=True`` in its ``p_sample_loop``: the
    first reverse step of the ResShift chain, whose x0 prediction is returned as the sample). It is
    exactly the first step of :func:`sample` with the same prior noise, stopped after the network call.

    Args:
        noise: the prior draw: one tensor shaped like ``y0_latent``, or a sequence whose first tensor
            is it (the rest is ignored, so the noise of a full chain can be passed unchanged).
        generators: alternatively one ``torch.Generator`` per batch element, each consumed once.

    Returns:
        :class:`SampleResult` with ``latent`` = x̂₀ (float32, shaped like ``y0_latent``); ``steps``
        holds the single step when ``record``.
    """
    z_y = y0_latent.to(torch.float32)
    if noise is not None:
        first = noise if isinstance(noise, torch.Tensor) and noise.shape == z_y.shape else noise[0]
        source = ChainNoise(z_y.shape, 0, z_y.device, noise=[first])
    else:
        source = ChainNoise(z_y.shape, 0, z_y.device, generators=generators)
    x_T = prior_sample(z_y, source.draw(0), schedule)
    t = torch.full((z_y.shape[0],), schedule.steps - 1, dtype=torch.long, device=z_y.device)
    pred = predict_xstart(denoiser, x_T, t, lq, schedule)
    result = SampleResult(latent=pred, prior=x_T)
    if record:
        result.steps.append(StepRecord(schedule.steps - 1, x_T, pred, pred, pred, torch.zeros_like(pred)))
    return result


def training_loss(
    denoiser: Denoiser,
    z0: torch.Tensor,
    z_y: torch.Tensor,
    lq: torch.Tensor,
    schedule: ResShiftSchedule,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
    target_image: torch.Tensor | None = None,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    perceptual_weight: float = 1.0,
    mse_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The ResShift training objective for one batch (per-sample values; average them to optimise).

    ``mse`` is the mean over (C, H, W) of (z0 - f(x_t))^2 with t uniform in ``0..T-1`` and
    x_t = q_sample(z0, z_y, t, eps). With ``perceptual`` (e.g. ``lpips.LPIPS(net='vgg')``), the
    prediction is decoded by ``decode`` (the VQ decoder, quantizing with a straight-through
    gradient), clamped to ``[-1, 1]`` and compared with ``target_image`` (``[-1, 1]``); then
    ``loss = mse_weight * mse + perceptual_weight * lpips``, falling back to ``mse`` alone for the
    whole batch if the perceptual term has a NaN (the journal/v3 and bicsr configs; v1/v2 use mse only).

    Returns a dict with ``loss``, ``mse``, ``t``, ``pred_xstart`` and, if used, ``lpips``.
    """
    batch = z0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.steps, (batch,), generator=generator, device="cpu").to(z0.device)
    if noise is None:
        noise = torch.randn(z0.shape, generator=generator, device="cpu").to(z0.device)
    x_t = q_sample(z0, z_y, t, noise, schedule)
    pred = predict_xstart(denoiser, x_t, t, lq, schedule)
    mse = ((z0 - pred) ** 2).mean(dim=tuple(range(1, z0.ndim)))
    out = {"mse": mse, "t": t, "pred_xstart": pred}
    if perceptual is None:
        out["loss"] = mse
        return out
    if decode is None or target_image is None:
        raise ValueError("the perceptual term needs `decode` and `target_image`")
    image = decode(pred).clamp(-1.0, 1.0)
    lp = perceptual(image, target_image).reshape(batch)
    out["lpips"] = lp
    if torch.isnan(lp).any():
        out["loss"] = mse
    else:
        out["loss"] = mse * mse_weight + lp * perceptual_weight
    return out
