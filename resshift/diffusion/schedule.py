"""The ResShift noise schedule and every coefficient derived from it (one home for the formula).

Paper notation, with 1-based t and eta_0 := 0; code indices are i = t - 1 in ``0 .. T-1``:

* sqrt(eta_1) = min(min_noise_level / kappa, min_noise_level)   (min_noise_level is kappa*sqrt(eta_1))
* sqrt(eta_T) = etas_end
* sqrt(eta_t) = sqrt(eta_1) * b ** (((t-1)/(T-1)) ** p * (T-1)),  b = (etas_end / sqrt(eta_1)) ** (1/(T-1))
* alpha_t = eta_t - eta_{t-1}
* posterior q(x_{t-1} | x_t, x_0):  mean = (eta_{t-1}/eta_t) x_t + (alpha_t/eta_t) x_0,
  variance = kappa^2 eta_{t-1} alpha_t / eta_t (index 0 "clipped" to the index-1 value for the log)
* network input divisor sqrt(kappa^2 eta_t + 1) (latent-space input normalisation)

Source: Yue et al., ResShift (NeurIPS 2023), Eq. 3 and 10; official ``GaussianDiffusion`` and
``get_named_eta_schedule("exponential")`` in ``models/gaussian_diffusion.py`` (commit 3ce1d81).

**Exactness.** The arrays follow the official code's float64 operation order step by step (the same
products, quotients and differences, in the same order), so every basic operation rounds as it does
there. Its transcendental calls (``math.exp``/``math.log`` and NumPy's ``power``/``log``) are the only
operations whose last bit depends on the machine: NumPy's vectorised ``power``/``log`` take another
code path on AVX-512 CPUs and differ by an ulp from the AVX2 path. Here each of them is evaluated in
60-digit decimal arithmetic and rounded once to the nearest float (:func:`_exp`, :func:`_log`,
:func:`_pow`), so the schedule is the same on every machine, and equal to the official recording wherever
the recording machine's libm rounded correctly (it did for v1, v3 and bicsr). The float32 run-time
coefficients are cast from float64 after indexing and after any float64 products (e.g.
kappa*sqrt_eta), as the official code does; the noise standard deviation exp(logvar/2), which the
official code computes in float32 at run time, and the input divisor sqrt(kappa^2 eta_t + 1) are the
correctly rounded float32 values (the official code's float32 ``torch.exp``/``torch.sqrt`` are within
an ulp of them and vary with the CPU's vector width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Context, Decimal

import numpy as np
import torch

_DECIMAL = Context(prec=60)


def _exp(x: float) -> float:
    """exp(x) rounded once to the nearest float64 (machine-independent)."""
    return float(_DECIMAL.exp(Decimal(x)))


def _log(x: float) -> float:
    """log(x) for x > 0 rounded once to the nearest float64 (machine-independent)."""
    return float(_DECIMAL.ln(Decimal(x)))


def _pow(x: float, y: float) -> float:
    """x ** y for x >= 0 rounded once to the nearest float64 (machine-independent)."""
    if x == 0.0:
        return 0.0 if y > 0 else 1.0
    return float(_DECIMAL.exp(_DECIMAL.multiply(_DECIMAL.ln(Decimal(x)), Decimal(y))))


def _nearest_f32(value: Decimal) -> np.float32:
    """The float32 nearest to an exact decimal value (one rounding; ties cannot occur for exp)."""
    guess = np.float32(float(value))
    candidates = (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf)))
    return min(candidates, key=lambda c: abs(Decimal(float(c)) - value))


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

    Raises:
        ValueError: ``steps < 2`` or a non-positive level, kappa or end value.
    """
    if steps < 2:
        raise ValueError(f"the exponential schedule needs steps >= 2, got {steps}")
    if not (min_noise_level > 0 and kappa > 0 and etas_end > 0):
        raise ValueError("min_noise_level, kappa and etas_end must be positive")
    start = min(min_noise_level / kappa, min_noise_level)
    if legacy_cap:
        start = min(start, math.sqrt(0.001))
    growth = _exp(1.0 / (steps - 1) * _log(etas_end / start))
    exponent = np.array([_pow(float(v), power) for v in np.linspace(0.0, 1.0, steps, endpoint=True)])
    exponent *= steps - 1
    return np.array([_pow(growth, float(e)) for e in exponent]) * start


def _input_std_f32(etas_f32: torch.Tensor, kappa: float) -> torch.Tensor:
    """sqrt(kappa^2 eta_t + 1) in float32, as the official ``_scale_input`` forms it from the float32 etas.

    The product and the sum are float32 operations as there (exactly rounded everywhere). The square
    root is taken in float64 and rounded to float32, which is the correctly rounded float32 root;
    ``torch.sqrt`` on float32 CPU tensors is not always (it gives 1.4429141 for sqrt(2.082001), whose
    nearest float32 is 1.442914), and its vectorised code differs between CPUs.
    """
    radicand = etas_f32.numpy() * np.float32(kappa**2) + np.float32(1.0)
    return torch.from_numpy(np.sqrt(radicand.astype(np.float64)).astype(np.float32))


def _f32(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values)).to(torch.float32)


@dataclass(frozen=True)
class ResShiftSchedule:
    """A ResShift diffusion schedule: its config values, then every derived array (computed on creation).

    Arrays are indexed by the code index ``i = t - 1``: float64 NumPy arrays as the official
    ``GaussianDiffusion`` stores them, and float32 CPU tensors for the per-step coefficients the
    sampler uses. ``ResShiftSchedule(steps=4)`` and :meth:`from_config` are the same.
    """

    steps: int
    kappa: float = 2.0
    min_noise_level: float = 0.2
    etas_end: float = 0.99
    power: float = 0.3
    legacy_cap: bool = False
    # float64 arrays (NumPy)
    sqrt_etas: np.ndarray = field(init=False, repr=False, compare=False)
    etas: np.ndarray = field(init=False, repr=False, compare=False)
    etas_prev: np.ndarray = field(init=False, repr=False, compare=False)
    alpha: np.ndarray = field(init=False, repr=False, compare=False)
    posterior_variance: np.ndarray = field(init=False, repr=False, compare=False)
    posterior_variance_clipped: np.ndarray = field(init=False, repr=False, compare=False)
    posterior_log_variance_clipped: np.ndarray = field(init=False, repr=False, compare=False)
    posterior_mean_coef1: np.ndarray = field(init=False, repr=False, compare=False)
    posterior_mean_coef2: np.ndarray = field(init=False, repr=False, compare=False)
    weight_loss_mse: np.ndarray = field(init=False, repr=False, compare=False)
    # float32 run-time coefficients (torch, CPU)
    etas_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    kappa_sqrt_etas_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    coef1_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    coef2_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    posterior_variance_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    posterior_log_variance_clipped_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    noise_std_f32: torch.Tensor = field(init=False, repr=False, compare=False)
    input_std_f32: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name, cast in (("steps", int), ("kappa", float), ("min_noise_level", float), ("etas_end", float),
                           ("power", float), ("legacy_cap", bool)):
            set_(self, name, cast(getattr(self, name)))
        kappa = self.kappa
        sqrt_etas = exponential_sqrt_etas(self.steps, self.min_noise_level, self.etas_end, kappa, self.power,
                                          self.legacy_cap)
        etas = sqrt_etas**2
        etas_prev = np.append(0.0, etas[:-1])
        alpha = etas - etas_prev
        post_var = kappa**2 * etas_prev / etas * alpha
        post_var_clipped = np.append(post_var[1], post_var[1:])
        post_logvar_clipped = np.array([_log(float(v)) for v in post_var_clipped])
        logvar_f32 = _f32(post_logvar_clipped)
        etas_f32 = _f32(etas)
        noise_std = [_nearest_f32(_DECIMAL.exp(Decimal(0.5 * float(v)))) for v in logvar_f32.numpy()]
        arrays = {
            "sqrt_etas": sqrt_etas,
            "etas": etas,
            "etas_prev": etas_prev,
            "alpha": alpha,
            "posterior_variance": post_var,
            "posterior_variance_clipped": post_var_clipped,
            "posterior_log_variance_clipped": post_logvar_clipped,
            "posterior_mean_coef1": etas_prev / etas,
            "posterior_mean_coef2": alpha / etas,
            "weight_loss_mse": 0.5 / post_var_clipped * (alpha / etas) ** 2,
            "etas_f32": etas_f32,
            "kappa_sqrt_etas_f32": _f32(kappa * sqrt_etas),
            "coef1_f32": _f32(etas_prev / etas),
            "coef2_f32": _f32(alpha / etas),
            "posterior_variance_f32": _f32(post_var),
            "posterior_log_variance_clipped_f32": logvar_f32,
            "noise_std_f32": torch.from_numpy(np.array(noise_std, dtype=np.float32)),
            "input_std_f32": _input_std_f32(etas_f32, kappa),
        }
        for name, value in arrays.items():
            set_(self, name, value)

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
        """The schedule of ``diffusion.params`` of an official yaml (``steps``, ``kappa``, ``min_noise_level``,
        ``etas_end``, ``power``; ``legacy_cap`` for the NeurIPS-era code)."""
        return cls(steps, kappa, min_noise_level, etas_end, power, legacy_cap)

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
