"""The ResShift noise schedule and every coefficient derived from it (one home for the formula).

Paper notation, with 1-based t and eta_0 := 0; code indices are i = t - 1 in ``0 .. T-1``:

* sqrt(eta_1) = min(min_noise_level / kappa, min_noise_level)   (min_noise_level is kappa*sqrt(eta_1))
* sqrt(eta_T) = etas_end
* sqrt(eta_t) = sqrt(eta_1) * b ** (((t-1)/(T-1)) ** p * (T-1)),  b = (etas_end / sqrt(eta_1)) ** (1/(T-1))
* alpha_t = eta_t - eta_{t-1}
* posterior q(x_{t-1} | x_t, x_0):  mean = (eta_{t-1}/eta_t) x_t + (alpha_t/eta_t) x_0,
  variance = kappa^2 eta_{t-1} alpha_t / eta_t (index 0 "clipped" to the index-1 value for the log)
* network input divisor sqrt(kappa^2 eta_t + 1) (latent-space input normalisation)

All arrays are computed once in float64 (as the official code does with NumPy); the float32
per-step coefficients used by the sampler are cast from float64 *after* indexing and after any
float64 products (e.g. kappa*sqrt_eta), which is how the official code arrives at its float32 values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


def exponential_sqrt_etas(
    steps: int,
    min_noise_level: float,
    etas_end: float = 0.99,
    kappa: float = 1.0,
    power: float = 0.3,
    legacy_cap: bool = False,
) -> np.ndarray:
    """sqrt(eta_t) for t = 1..T of the "exponential" schedule, float64, shape ``(steps,)``.

    Args:
        steps: T, the number of diffusion steps (>= 2).
        min_noise_level: kappa * sqrt(eta_1), the noise std at the first step (the config value).
        etas_end: sqrt(eta_T).
        kappa: the variance multiplier kappa.
        power: p, the curvature of log sqrt(eta) along t.
        legacy_cap: also cap sqrt(eta_1) at sqrt(0.001) as the NeurIPS-era code (master, v2.0) did;
            this changes nothing for the released kappa=2 configs.
    """
    if steps < 2:
        raise ValueError(f"the exponential schedule needs steps >= 2, got {steps}")
    if not (min_noise_level > 0 and kappa > 0 and etas_end > 0):
        raise ValueError("min_noise_level, kappa and etas_end must be positive")
    start = min(min_noise_level / kappa, min_noise_level)
    if legacy_cap:
        start = min(start, math.sqrt(0.001))
    growth = math.exp(1.0 / (steps - 1) * math.log(etas_end / start))
    exponent = np.linspace(0.0, 1.0, steps, endpoint=True) ** power
    exponent *= steps - 1
    return np.power(np.full(steps, growth), exponent) * start


def _f32(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(torch.float32)


@dataclass(frozen=True)
class ResShiftSchedule:
    """A ResShift diffusion schedule: float64 arrays plus the float32 per-step coefficients.

    Build it with :meth:`from_config`. Arrays are indexed by the code index ``i = t - 1``.
    """

    steps: int
    kappa: float
    min_noise_level: float
    etas_end: float
    power: float
    legacy_cap: bool = False
    # float64 arrays (NumPy), as the official GaussianDiffusion stores them
    sqrt_etas: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    etas: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    etas_prev: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    alpha: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_variance: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_variance_clipped: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_log_variance_clipped: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_mean_coef1: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_mean_coef2: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    weight_loss_mse: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]
    # float32 run-time coefficients (torch, CPU), one value per code index
    etas_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    kappa_sqrt_etas_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    coef1_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    coef2_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_variance_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    posterior_log_variance_clipped_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    noise_std_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]
    input_std_f32: torch.Tensor = field(repr=False, default=None)  # type: ignore[assignment]

    @classmethod
    def from_config(
        cls,
        steps: int,
        kappa: float = 2.0,
        min_noise_level: float = 0.2,
        etas_end: float = 0.99,
        power: float = 0.3,
        legacy_cap: bool = False,
    ) -> ResShiftSchedule:
        """Compute every array once from the config values (``diffusion.params`` of the official yaml)."""
        kappa = float(kappa)
        sqrt_etas = exponential_sqrt_etas(steps, min_noise_level, etas_end, kappa, power, legacy_cap)
        etas = sqrt_etas**2
        etas_prev = np.append(0.0, etas[:-1])
        alpha = etas - etas_prev
        post_var = kappa**2 * etas_prev / etas * alpha
        post_var_clipped = np.append(post_var[1], post_var[1:])
        post_logvar_clipped = np.log(post_var_clipped)
        coef1 = etas_prev / etas
        coef2 = alpha / etas
        weight_mse = 0.5 / post_var_clipped * (alpha / etas) ** 2
        logvar_f32 = _f32(post_logvar_clipped)
        etas_f32 = _f32(etas)
        return cls(
            steps=int(steps),
            kappa=kappa,
            min_noise_level=float(min_noise_level),
            etas_end=float(etas_end),
            power=float(power),
            legacy_cap=bool(legacy_cap),
            sqrt_etas=sqrt_etas,
            etas=etas,
            etas_prev=etas_prev,
            alpha=alpha,
            posterior_variance=post_var,
            posterior_variance_clipped=post_var_clipped,
            posterior_log_variance_clipped=post_logvar_clipped,
            posterior_mean_coef1=coef1,
            posterior_mean_coef2=coef2,
            weight_loss_mse=weight_mse,
            etas_f32=etas_f32,
            kappa_sqrt_etas_f32=_f32(kappa * sqrt_etas),
            coef1_f32=_f32(coef1),
            coef2_f32=_f32(coef2),
            posterior_variance_f32=_f32(post_var),
            posterior_log_variance_clipped_f32=logvar_f32,
            noise_std_f32=torch.exp(0.5 * logvar_f32),
            input_std_f32=torch.sqrt(etas_f32 * kappa**2 + 1),
        )

    @property
    def prior_std_f32(self) -> torch.Tensor:
        """kappa * sqrt(eta_T) as the float32 scalar tensor the prior uses."""
        return self.kappa_sqrt_etas_f32[self.steps - 1]

    def describe(self) -> dict[str, object]:
        """The defining config values (for provenance records)."""
        return {
            "schedule": "exponential",
            "steps": self.steps,
            "kappa": self.kappa,
            "min_noise_level": self.min_noise_level,
            "etas_end": self.etas_end,
            "power": self.power,
            "legacy_cap": self.legacy_cap,
        }
