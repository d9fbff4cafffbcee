"""Gaussian (variance-preserving) diffusion: beta schedules, respacing, DDPM and DDIM samplers.

Conventions. A noise level is ``alpha_bar`` (signal fraction): ``x_t = sqrt(ab) x_0 + sqrt(1-ab) eps``.
Samplers are short functions over ``(eps_fn, x, levels)`` in the spirit of k-diffusion:

* ``eps_fn(x, ab) -> eps``: the network wrapped to predict the noise; ``ab`` has shape ``[B]``.
  Continuous-level networks (SR3-style) take ``ab`` directly; discrete-step networks (ADM) are
  wrapped with :func:`discrete_time_eps`, which maps ``ab`` to the (fractional) training step.
* ``levels``: the ``alpha_bar`` of each sampling step, increasing (noisiest first). The chain ends
  at ``ab = 1`` (the clean image), so ``len(levels)`` is the number of network calls (NFE).

All randomness comes from one ``torch.Generator`` per image (:func:`batch_randn`), so a sample does
not depend on the batch it runs in. Coefficients are computed in float64 and applied in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


def linear_betas(steps: int, beta_start: float | None = None, beta_end: float | None = None) -> torch.Tensor:
    """Linear betas (float64). Defaults are DDPM/ADM's ``1e-4 .. 2e-2`` scaled by ``1000 / steps``."""
    scale = 1000.0 / steps
    start = scale * 1e-4 if beta_start is None else beta_start
    end = scale * 2e-2 if beta_end is None else beta_end
    return torch.linspace(start, end, steps, dtype=torch.float64)


def cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ``ab(t) = cos^2(((t/T + s) / (1 + s)) pi/2)``, betas clipped."""

    def f(t: float) -> float:
        return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=torch.float64)


def make_betas(kind: str, steps: int, **kw: float) -> torch.Tensor:
    """``kind`` in ``{"linear", "cosine"}``; keyword arguments go to the schedule function."""
    if kind == "linear":
        return linear_betas(steps, **kw)
    if kind == "cosine":
        return cosine_betas(steps, **kw)
    raise ValueError(f"unknown beta schedule {kind!r} (known: linear, cosine)")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` in float64."""
    return torch.cumprod(1.0 - betas.double(), dim=0)


def respaced_timesteps(num_train_steps: int, steps: int, spacing: str = "uniform") -> list[int]:
    """Which training steps a ``steps``-step sampler visits, in increasing order.

    * ``"uniform"``: ``round(linspace(0, T-1, steps))`` -- always includes the noisiest step ``T-1``
      (guided-diffusion's plain respacing).
    * ``"stride"``: ``0, k, 2k, ...`` with ``k = T // steps``, the first ``steps`` of them (the
      DDIM / DDRM / DDNM convention; the noisiest visited step is ``(steps-1) k``).
    """
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in [1, {num_train_steps}], got {steps}")
    if spacing == "uniform":
        if steps == 1:
            return [num_train_steps - 1]
        return sorted({round(i * (num_train_steps - 1) / (steps - 1)) for i in range(steps)})
    if spacing == "stride":
        k = num_train_steps // steps
        return [i * k for i in range(steps)]
    raise ValueError(f"unknown spacing {spacing!r} (known: uniform, stride)")


def sampling_levels(betas: torch.Tensor, steps: int, spacing: str = "uniform") -> torch.Tensor:
    """The ``alpha_bar`` of each of ``steps`` sampling steps, noisiest first (float64, shape ``[steps]``)."""
    ab = alphas_cumprod(betas)
    idx = respaced_timesteps(len(betas), steps, spacing)
    return ab[torch.tensor(idx[::-1])]


def discrete_time_eps(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_alphas_cumprod: torch.Tensor,
    eps_channels: int = 3,
) -> EpsFn:
    """Wrap a network trained on integer steps ``t`` into an ``eps_fn(x, ab)``.

    ``ab`` is mapped to ``t`` by linear interpolation of ``log(ab)`` over the training schedule, which
    is exact at the schedule's own levels. Only the first ``eps_channels`` output channels are used
    (ADM with learned sigma outputs 6: noise prediction, then variance).
    """
    log_ab = train_alphas_cumprod.double().log()

    def eps_fn(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        t = _interp_timestep(ab.double().log().cpu(), log_ab).to(device=x.device, dtype=torch.float32)
        return model(x, t)[:, :eps_channels].float()

    return eps_fn


def _interp_timestep(log_ab: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Fractional index ``t`` with ``table[t] = log_ab`` (``table`` strictly decreasing)."""
    neg = -table  # increasing
    q = (-log_ab).clamp(neg[0], neg[-1])
    hi = torch.searchsorted(neg, q).clamp(1, len(neg) - 1)
    lo = hi - 1
    frac = (q - neg[lo]) / (neg[hi] - neg[lo])
    return lo.double() + frac


# --------------------------------------------------------------------------------------------------
# What the network predicts
# --------------------------------------------------------------------------------------------------

PREDICTIONS = ("eps", "v")
"""Network parameterisations: the noise ``eps`` (DDPM, SR3, ADM) or the velocity
``v = sqrt(ab) eps - sqrt(1-ab) x0`` (Salimans & Ho 2022; the Stable Diffusion x4 upscaler)."""


def check_prediction(prediction: str, where: str = "model") -> str:
    """``prediction`` if it is one of :data:`PREDICTIONS`, else a ``ValueError`` naming ``where``."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"{where}: unknown prediction {prediction!r} (known: {', '.join(PREDICTIONS)})")
    return prediction


def prediction_target(x0: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor, prediction: str) -> torch.Tensor:
    """The training target of a ``prediction``-parameterised network for ``x_t = sqrt(ab) x0 + sqrt(1-ab) noise``.

    ``ab`` broadcasts against ``x0`` (e.g. ``[B, 1, 1, 1]``)."""
    if check_prediction(prediction) == "eps":
        return noise
    return ab.sqrt() * noise - (1 - ab).sqrt() * x0


def eps_from_prediction(out: torch.Tensor, x: torch.Tensor, ab: torch.Tensor, prediction: str) -> torch.Tensor:
    """The noise implied by a network output ``out`` at ``x_t = x``, level ``ab`` (``[B]``).

    For ``v``: ``eps = sqrt(ab) v + sqrt(1-ab) x_t``, which stays well conditioned at ``ab -> 0``
    (pure noise), where an undertrained ``eps`` network's error is amplified into ``x0``."""
    if check_prediction(prediction) == "eps":
        return out
    abv = ab.to(device=x.device, dtype=torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
    return (abv.sqrt() * out.double() + (1 - abv).sqrt() * x.double()).to(out.dtype)


# --------------------------------------------------------------------------------------------------
# Noise and the x0 prediction
# --------------------------------------------------------------------------------------------------


def batch_randn(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ``[B, *shape[1:]]``, image ``b`` drawn from ``generators[b]``."""
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators given for a batch of {shape[0]} images")
    return torch.stack(
        [
            torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=dtype).to(device)
            for g in generators
        ]
    )


def predict_x0(x: torch.Tensor, eps: torch.Tensor, ab: float) -> torch.Tensor:
    """``x0 = (x - sqrt(1-ab) eps) / sqrt(ab)``."""
    return (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)


def _levels(levels: torch.Tensor | Sequence[float]) -> list[float]:
    out = [float(v) for v in (levels.tolist() if isinstance(levels, torch.Tensor) else levels)]
    if not out:
        raise ValueError("at least one sampling level is needed")
    if any(b <= a for a, b in zip(out, out[1:], strict=False)) or not 0.0 < out[0] or out[-1] >= 1.0:
        raise ValueError("sampling levels (alpha_bar) must increase strictly within (0, 1)")
    return out


def _call(eps_fn: EpsFn, x: torch.Tensor, ab: float) -> torch.Tensor:
    return eps_fn(x, torch.full((x.shape[0],), ab, dtype=torch.float64, device=x.device)).float()


# --------------------------------------------------------------------------------------------------
# Samplers (one network call per level)
# --------------------------------------------------------------------------------------------------


def sample_ddpm(
    eps_fn: EpsFn,
    x: torch.Tensor,
    levels: torch.Tensor | Sequence[float],
    generators: Sequence[torch.Generator],
    clip_x0: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Ancestral DDPM sampling over the given levels (respaced: ``beta_eff = 1 - ab/ab_next``).

    Each step samples the posterior ``q(x_next | x, x0_hat)`` with its variance
    ``beta_eff (1 - ab_next) / (1 - ab)``; the last step (to ``ab = 1``) returns its mean, ``x0_hat``.
    """
    lv = _levels(levels)
    for i, ab in enumerate(lv):
        ab_next = lv[i + 1] if i + 1 < len(lv) else 1.0
        eps = _call(eps_fn, x, ab)
        x0 = predict_x0(x, eps, ab)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        beta = 1.0 - ab / ab_next
        c_x0 = math.sqrt(ab_next) * beta / (1.0 - ab)
        c_xt = math.sqrt(1.0 - beta) * (1.0 - ab_next) / (1.0 - ab)
        mean = c_x0 * x0 + c_xt * x
        if ab_next < 1.0:
            std = math.sqrt(beta * (1.0 - ab_next) / (1.0 - ab))
            x = mean + std * batch_randn(x.shape, generators, x.device, x.dtype)
        else:
            x = mean
        if callback is not None:
            callback(i, x, x0)
    return x


def sample_ddim(
    eps_fn: EpsFn,
    x: torch.Tensor,
    levels: torch.Tensor | Sequence[float],
    generators: Sequence[torch.Generator] | None = None,
    eta: float = 0.0,
    clip_x0: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al.): ``x_next = sqrt(ab') x0 + sqrt(1-ab'-s^2) eps + s z`` with
    ``s = eta sqrt((1-ab')/(1-ab)) sqrt(1-ab/ab')``. ``eta=0`` is deterministic; ``eta=1`` is DDPM's
    posterior variance. With ``clip_x0`` the noise direction is recomputed from the clipped ``x0``.
    """
    if eta > 0 and generators is None:
        raise ValueError("DDIM with eta > 0 needs one generator per image")
    lv = _levels(levels)
    for i, ab in enumerate(lv):
        ab_next = lv[i + 1] if i + 1 < len(lv) else 1.0
        eps = _call(eps_fn, x, ab)
        x0 = predict_x0(x, eps, ab)
        if clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
        s = eta * math.sqrt((1.0 - ab_next) / (1.0 - ab) * (1.0 - ab / ab_next))
        x = math.sqrt(ab_next) * x0 + math.sqrt(max(1.0 - ab_next - s * s, 0.0)) * eps
        if s > 0:
            x = x + s * batch_randn(x.shape, generators, x.device, x.dtype)  # type: ignore[arg-type]
        if callback is not None:
            callback(i, x, x0)
    return x


def q_sample(x0: torch.Tensor, ab: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process ``sqrt(ab) x0 + sqrt(1-ab) noise`` with per-image ``ab`` of shape ``[B]``."""
    ab = ab.to(x0.device, torch.float64).reshape(-1, *([1] * (x0.ndim - 1)))
    return (ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()).to(x0.dtype)
