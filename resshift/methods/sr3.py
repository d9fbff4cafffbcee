"""SR3-style baseline: our own conditional DDPM (bicubic LR concatenated with the noisy HR image).

There are no official SR3 weights; the model is trained by this suite (checkpoint format:
:func:`resshift.weights.formats.save_gaussian_checkpoint`). Because the network is conditioned on the
continuous noise level, one checkpoint samples with any number of steps: the training schedule is
respaced to ``steps`` levels and sampled with ancestral DDPM or DDIM (``eta``). NFE = ``steps``.
The network predicts the noise or the velocity ``v`` (the checkpoint's ``prediction``); the
samplers see the noise either way (:func:`resshift.diffusion.gaussian.eps_from_prediction`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resshift.diffusion.gaussian import (
    batch_randn,
    eps_from_prediction,
    make_betas,
    sample_ddim,
    sample_ddpm,
    sampling_levels,
)
from resshift.methods.params import SR3Params
from resshift.methods.patchwise import PatchwiseSRMethod
from resshift.methods.precision import autocast, check_precision
from resshift.methods.registry import register_method
from resshift.models.sr3_unet import SR3UNet
from resshift.paths import cache_dir
from resshift.provenance import file_sha256
from resshift.weights.formats import load_gaussian_checkpoint

SAMPLERS = ("ddpm", "ddim")


def default_checkpoint() -> Path:
    """Where the SR3-style checkpoint is looked for when none is given."""
    return cache_dir() / "weights" / "sr3_x4.safetensors"


class SR3StyleSR(PatchwiseSRMethod):
    """Conditional Gaussian diffusion SR with an :class:`SR3UNet` (6 input channels)."""

    name = "sr3"
    scale = 4
    assumes_operator = None
    stochastic = True

    Params = SR3Params

    def __init__(self, model: SR3UNet, config: dict[str, Any], *, params: SR3Params | None = None,
                 **kwargs: Any) -> None:
        p = self.params = self.resolve_params(params, kwargs)
        if p.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {p.sampler!r} (known: {', '.join(SAMPLERS)})")
        if config.get("conditioning") != "bicubic-concat" or model.in_channels != 6:
            raise ValueError(
                f"{p.checkpoint or 'model'}: the SR3-style method needs a 'bicubic-concat' model with "
                f"6 input channels (got {config.get('conditioning')!r}, {model.in_channels})"
            )
        if p.tile_batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {p.tile_batch}")
        self.device, self.dtype = check_precision(p.device, p.dtype)
        self.model = model.to(self.device).eval()
        self.config = config
        self.prediction = str(config.get("prediction", "eps"))
        sched = dict(config["schedule"])
        self.betas = make_betas(sched.pop("kind"), int(sched.pop("steps")), **sched)
        self.levels = sampling_levels(self.betas, int(p.steps), p.spacing)
        self.steps, self.sampler, self.eta = int(p.steps), p.sampler, float(p.eta)
        self.spacing, self.clip_x0 = p.spacing, bool(p.clip_x0)
        self.nfe = self.steps
        self.chop_size, self.chop_stride = p.chop_size, p.chop_stride
        self.tile_batch = int(p.tile_batch)
        self.preferred_tile = p.chop_size
        self.checkpoint = p.checkpoint
        self._sha256 = file_sha256(p.checkpoint) if p.checkpoint else None

    def eps(self, x: torch.Tensor, ab: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The noise the network predicts at level ``ab`` (``[B]``) given the upsampled LR ``cond``."""
        with autocast(self.dtype, self.device):
            out = self.model(torch.cat([x, cond], dim=1), ab.sqrt().float())
        return eps_from_prediction(out.float(), x, ab, self.prediction)

    def _sample(self, lr: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        cond = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False) * 2 - 1
        x = batch_randn(cond.shape, generators, self.device)

        def eps_fn(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
            return self.eps(x, ab, cond)

        if self.sampler == "ddpm":
            x = sample_ddpm(eps_fn, x, self.levels, generators, clip_x0=self.clip_x0)
        else:
            x = sample_ddim(eps_fn, x, self.levels, generators, eta=self.eta, clip_x0=self.clip_x0)
        return (x + 1) / 2

    def lr_pad_multiple(self) -> int:
        return max(1, self.model.size_multiple // self.scale)

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "family": "sr3-style conditional DDPM (LR concatenated)",
            "checkpoint_sha256": self._sha256,
            "train_schedule": self.config.get("schedule"),
            "prediction": self.prediction,
        }


@register_method("sr3", SR3Params)
def _build(params: SR3Params) -> SR3StyleSR:
    path = Path(params.checkpoint).expanduser() if params.checkpoint else default_checkpoint()
    if not path.is_file():
        raise FileNotFoundError(
            f"SR3-style checkpoint not found: {path}. There are no public SR3 weights: train one with this "
            f"suite (README, 'SR3-style baseline') and pass method.params.checkpoint=PATH, or place it at "
            f"{default_checkpoint()}."
        )
    model, config = load_gaussian_checkpoint(path)
    return SR3StyleSR(model, config, params=replace(params, checkpoint=str(path)))
