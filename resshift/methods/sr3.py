"""SR3-style baseline: our own conditional DDPM (bicubic LR concatenated with the noisy HR image).

There are no official SR3 weights; the model is trained by this suite (checkpoint format:
:func:`resshift.models.sr3_unet.save_checkpoint`). Because the network is conditioned on the
continuous noise level, one checkpoint samples with any number of steps: the training schedule is
respaced to ``steps`` levels and sampled with ancestral DDPM or DDIM (``eta``). NFE = ``steps``.
The network predicts the noise or the velocity ``v`` (the checkpoint's ``prediction``); the
samplers see the noise either way (:func:`resshift.diffusion.gaussian.eps_from_prediction`).
"""

from __future__ import annotations

from collections.abc import Sequence
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
from resshift.methods.patchwise import PatchwiseSRMethod, autocast, check_precision
from resshift.methods.registry import register_method
from resshift.models.sr3_unet import SR3UNet, load_checkpoint
from resshift.paths import cache_dir
from resshift.provenance import file_sha256

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

    def __init__(
        self,
        model: SR3UNet,
        config: dict[str, Any],
        steps: int = 50,
        sampler: str = "ddim",
        eta: float = 0.0,
        spacing: str = "uniform",
        clip_x0: bool = True,
        chop_size: int | None = None,
        chop_stride: int | None = None,
        tile_batch: int = 1,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        checkpoint: str | None = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
        if config.get("conditioning") != "bicubic-concat" or model.in_channels != 6:
            raise ValueError(
                f"{checkpoint or 'model'}: the SR3-style method needs a 'bicubic-concat' model with "
                f"6 input channels (got {config.get('conditioning')!r}, {model.in_channels})"
            )
        self.device = torch.device(device)
        self.dtype = check_precision(dtype, self.device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.prediction = str(config.get("prediction", "eps"))
        sched = dict(config["schedule"])
        self.betas = make_betas(sched.pop("kind"), int(sched.pop("steps")), **sched)
        self.levels = sampling_levels(self.betas, int(steps), spacing)
        self.steps, self.sampler, self.eta = int(steps), sampler, float(eta)
        self.spacing, self.clip_x0 = spacing, bool(clip_x0)
        self.nfe = self.steps
        self.chop_size, self.chop_stride = chop_size, chop_stride
        self.tile_batch = int(tile_batch)
        self.preferred_tile = chop_size
        self.checkpoint = checkpoint
        self._sha256 = file_sha256(checkpoint) if checkpoint else None

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
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
            "spacing": self.spacing,
            "clip_x0": self.clip_x0,
            "dtype": self.dtype,
            "chop_size": self.chop_size,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self._sha256,
            "train_schedule": self.config.get("schedule"),
            "prediction": self.prediction,
        }


@register_method("sr3")
def _build(
    checkpoint: str | None = None,
    steps: int = 50,
    sampler: str = "ddim",
    eta: float = 0.0,
    spacing: str = "uniform",
    clip_x0: bool = True,
    chop_size: int | None = None,
    chop_stride: int | None = None,
    tile_batch: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
) -> SR3StyleSR:
    path = Path(checkpoint).expanduser() if checkpoint else default_checkpoint()
    if not path.is_file():
        raise FileNotFoundError(
            f"SR3-style checkpoint not found: {path}. There are no public SR3 weights: train one with this "
            f"suite (README, 'SR3-style baseline') and pass method.params.checkpoint=PATH, or place it at "
            f"{default_checkpoint()}."
        )
    model, config = load_checkpoint(path)
    return SR3StyleSR(
        model,
        config,
        steps=steps,
        sampler=sampler,
        eta=eta,
        spacing=spacing,
        clip_x0=clip_x0,
        chop_size=chop_size,
        chop_stride=chop_stride,
        tile_batch=tile_batch,
        device=device,
        dtype=dtype,
        checkpoint=str(path),
    )
