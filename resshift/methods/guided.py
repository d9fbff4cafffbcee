"""Guided-prior baselines: DDNM and DDRM steering an unconditional prior with a *known* operator.

The prior is either OpenAI's ADM (``256x256_diffusion_uncond.pt``: ImageNet 256x256, learned sigma,
linear 1000-step betas; only its noise prediction is used) or one of our unconditional
:class:`~resshift.models.sr3_unet.SR3UNet` priors (``conditioning: none``; a ``v``-predicting
prior is converted to its noise prediction). The operator is
``"bicubic"`` (MATLAB imresize x1/4) or ``"avgpool"`` (4x4 block mean): both methods assume the LR
image was made by exactly that operator (plus optional Gaussian noise ``sigma_y``). On data with
another degradation (e.g. Real-ESRGAN-degraded ImageNet-Test) the operator is mis-specified by
design and the result measures robustness, not the method at its best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from resshift.diffusion.gaussian import (
    EpsFn,
    alphas_cumprod,
    batch_randn,
    discrete_time_eps,
    eps_from_prediction,
    linear_betas,
    make_betas,
    sampling_levels,
)
from resshift.diffusion.guidance import OPERATORS, SeparableOperator, sample_ddnm, sample_ddrm
from resshift.methods.params import DDNMParams, DDRMParams, GuidedParams
from resshift.methods.patchwise import PatchwiseSRMethod
from resshift.methods.precision import autocast, check_precision
from resshift.methods.registry import register_method
from resshift.provenance import file_sha256

ADM_KEY = "adm-256-uncond"  #: the ADM prior's row in :data:`resshift.weights.FILES`
PRIORS = ("adm", "ours")
ALGORITHMS: dict[str, type[GuidedParams]] = {"ddnm": DDNMParams, "ddrm": DDRMParams}


def default_adm_checkpoint() -> Path:
    """Where the ADM prior is looked for when no checkpoint is given: the first copy in the weights
    folders (:func:`resshift.weights.find_local`), else its place in the download cache."""
    from resshift import weights

    return weights.find_local(ADM_KEY) or weights.weights_cache_dir() / weights.get_entry(ADM_KEY).relpath


class Prior:
    """An unconditional noise predictor ``eps_fn(x in [-1,1], ab)`` with its training betas."""

    def __init__(
        self, model: torch.nn.Module, betas: torch.Tensor, kind: str, checkpoint: str | None,
        prediction: str = "eps",
    ) -> None:
        self.model = model.eval()
        self.prediction = prediction
        self.betas = betas
        self.kind = kind
        self.checkpoint = checkpoint
        self.sha256 = file_sha256(checkpoint) if checkpoint else None
        self.size_multiple = int(getattr(model, "size_multiple", 1))

    def eps_fn(self, precision: str, device: torch.device) -> EpsFn:
        if self.kind == "adm":
            inner = discrete_time_eps(self.model, alphas_cumprod(self.betas))
        else:

            def inner(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
                out = self.model(x, ab.sqrt().float()).float()
                return eps_from_prediction(out, x, ab, self.prediction)

        def eps(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
            with autocast(precision, device):
                return inner(x, ab).float()

        return eps


def load_prior(kind: str, checkpoint: str | None, config: dict[str, Any] | None = None) -> Prior:
    """Load the ADM prior (``kind="adm"``; ``config`` overrides :data:`ADM_256_UNCOND`) or ours."""
    if kind == "adm":
        from resshift import weights
        from resshift.models.adm_unet import ADM_256_UNCOND
        from resshift.weights.formats import load_adm_checkpoint

        path = Path(checkpoint).expanduser() if checkpoint else default_adm_checkpoint()
        if not path.is_file():
            raise FileNotFoundError(
                f"ADM prior not found: {path}. Fetch OpenAI's unconditional 256x256 ImageNet model with\n"
                f"  resshift weights fetch {ADM_KEY}   (downloads {weights.get_entry(ADM_KEY).url})\n"
                f"or pass method.params.checkpoint=PATH."
            )
        model = load_adm_checkpoint(str(path), {**ADM_256_UNCOND, **(config or {})})
        return Prior(model, linear_betas(1000), "adm", str(path))
    if kind == "ours":
        from resshift.weights.formats import load_gaussian_checkpoint

        if not checkpoint:
            raise FileNotFoundError(
                "prior 'ours' needs method.params.checkpoint=PATH (an unconditional "
                "SR3UNet checkpoint with conditioning 'none')"
            )
        model, cfg = load_gaussian_checkpoint(checkpoint)
        if cfg.get("conditioning") != "none":
            raise ValueError(
                f"{checkpoint}: a guided prior must be unconditional (conditioning 'none'), "
                f"got {cfg.get('conditioning')!r}"
            )
        sched = dict(cfg["schedule"])
        return Prior(
            model, make_betas(sched.pop("kind"), int(sched.pop("steps")), **sched), "ours", checkpoint,
            prediction=cfg["prediction"],
        )
    raise ValueError(f"unknown prior kind {kind!r} (known: {', '.join(PRIORS)})")


class GuidedPriorSR(PatchwiseSRMethod):
    """DDNM or DDRM x4 SR on an unconditional prior, with a known operator."""

    scale = 4
    stochastic = True

    def __init__(self, algorithm: str, prior: Prior, *, params: GuidedParams | None = None, **config: Any) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown guided algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
        self.name = algorithm
        self.algorithm = algorithm
        self.Params = ALGORITHMS[algorithm]
        p = self.params = self.resolve_params(params, config)
        if p.operator not in OPERATORS:
            raise ValueError(f"unknown degradation operator {p.operator!r} (known: {', '.join(OPERATORS)})")
        if p.tile_batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {p.tile_batch}")
        self.device, self.dtype = check_precision(p.device, p.dtype)
        self.prior = prior
        prior.model.to(self.device)
        self.operator = SeparableOperator(p.operator, self.scale)
        self.assumes_operator = p.operator
        self.steps, self.spacing = int(p.steps), p.spacing
        self.levels = sampling_levels(prior.betas, self.steps, p.spacing)
        self.nfe = self.steps
        self.eta, self.eta_b, self.sigma_y = float(p.eta), float(getattr(p, "eta_b", 1.0)), float(p.sigma_y)
        self.chop_size, self.chop_stride = p.chop_size, p.chop_stride
        self.tile_batch = int(p.tile_batch)
        self.preferred_tile = p.chop_size
        self._eps = prior.eps_fn(self.dtype, self.device)

    def _sample(self, lr: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        y = lr * 2 - 1
        shape = (lr.shape[0], lr.shape[1], lr.shape[2] * self.scale, lr.shape[3] * self.scale)
        x = batch_randn(shape, generators, self.device)
        sigma = 2.0 * self.sigma_y  # [0, 1] units -> [-1, 1]
        if self.algorithm == "ddnm":
            out = sample_ddnm(
                self._eps, x, y, self.operator, self.levels, generators, eta=self.eta, sigma_y=sigma
            )
        else:
            out = sample_ddrm(
                self._eps,
                x,
                y,
                self.operator,
                self.levels,
                generators,
                eta=self.eta,
                eta_b=self.eta_b,
                sigma_y=sigma,
            )
        return (out + 1) / 2

    def lr_pad_multiple(self) -> int:
        return max(1, -(-self.prior.size_multiple // self.scale))

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "family": "guided prior (unconditional prior, LR steers the reverse path)",
            "algorithm": self.algorithm,
            "prediction": self.prior.prediction,
            "checkpoint": self.prior.checkpoint,
            "checkpoint_sha256": self.prior.sha256,
        }


def _factory(algorithm: str) -> Callable[[GuidedParams], GuidedPriorSR]:
    def build(params: GuidedParams) -> GuidedPriorSR:
        prior_config = dict(params.prior_config) if params.prior_config else None
        return GuidedPriorSR(algorithm, load_prior(params.prior, params.checkpoint, prior_config), params=params)

    return build


for _algorithm, _params in ALGORITHMS.items():
    register_method(_algorithm, _params)(_factory(_algorithm))
