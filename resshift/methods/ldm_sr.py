"""LDM-SR baseline (the papers' "LDM-15/30" rows): diffusers' ``LDMSuperResolutionPipeline``.

Model: ``CompVis/ldm-super-resolution-4x-openimages`` (VQ-f4 latent; the LR image in ``[-1, 1]`` is
concatenated with the latent, which has the LR's size; DDIM sampling; the VQ decoder gives 4x).
Loaded from the Hugging Face cache or a local directory (``save_pretrained`` layout).

The pipeline's modules (``unet``, ``vqvae``, ``scheduler``) are used as loaded; the short sampling
loop is ours for one reason: the pipeline draws DDIM's ``eta > 0`` noise from the global RNG, while
every method here draws from one generator per image (noise passed as ``variance_noise``). With
``eta = 0`` the loop is the pipeline's own. NFE = ``steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resshift.diffusion.gaussian import batch_randn
from resshift.methods.params import LDMParams
from resshift.methods.patchwise import PatchwiseSRMethod
from resshift.methods.precision import autocast, check_precision
from resshift.methods.registry import register_method

DEFAULT_MODEL = LDMParams.model


def load_pipeline(
    model: str = DEFAULT_MODEL,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> Any:
    """``LDMSuperResolutionPipeline.from_pretrained`` with an error that says how to get the weights.

    ``model`` is a Hub id (looked up in the Hugging Face cache, downloaded if allowed) or a local
    directory. ``local_files_only=None`` means: offline for local directories and when
    ``HF_HUB_OFFLINE`` is set, else allowed to download.
    """
    try:
        from diffusers import LDMSuperResolutionPipeline
    except ImportError as err:  # pragma: no cover - diffusers is a dependency
        raise ImportError("the ldm-sr method needs diffusers (pip install 'diffusers>=0.30')") from err
    local = Path(model).expanduser()
    is_dir = local.is_dir()
    if local_files_only is None:
        import os

        local_files_only = is_dir or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
    try:
        return LDMSuperResolutionPipeline.from_pretrained(
            str(local) if is_dir else model,
            local_files_only=local_files_only,
            revision=revision,
            cache_dir=cache_dir,
        )
    except (OSError, ValueError) as err:
        where = "local directory" if is_dir else "Hugging Face Hub id"
        raise FileNotFoundError(
            f"LDM-SR weights not found for {model!r} ({where}, local_files_only={local_files_only}): {err}\n"
            f"Fetch them once with `huggingface-cli download {DEFAULT_MODEL}` (they go to the Hugging Face "
            f"cache, $HF_HOME), or pass method.params.model=/path/to/saved/pipeline."
        ) from err


class LDMSR(PatchwiseSRMethod):
    """x4 SR with a latent-diffusion pipeline (``unet`` input = latent + LR, DDIM, VQ decode)."""

    name = "ldm-sr"
    scale = 4
    assumes_operator = None
    stochastic = True

    Params = LDMParams

    def __init__(self, pipeline: Any, *, params: LDMParams | None = None, **config: Any) -> None:
        from diffusers import DDIMScheduler

        p = self.params = self.resolve_params(params, config)
        self.device, self.dtype = check_precision(p.device, p.dtype)
        self.unet = pipeline.unet.to(self.device).eval()
        self.vqvae = pipeline.vqvae.to(self.device).eval()
        # DDIM as configured in the checkpoint (the released scheduler is DDIM already).
        self.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        self.steps, self.eta = int(p.steps), float(p.eta)
        self.nfe = self.steps
        self.model = p.model
        self.chop_size, self.chop_stride = p.chop_size, p.chop_stride
        self.tile_batch = int(p.tile_batch)
        self.preferred_tile = p.chop_size
        self._multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)

    def _sample(self, lr: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        cond = lr * 2 - 1
        shape = (lr.shape[0], self.unet.config.in_channels - cond.shape[1], lr.shape[2], lr.shape[3])
        latents = batch_randn(shape, generators, self.device) * self.scheduler.init_noise_sigma
        self.scheduler.set_timesteps(self.steps, device=self.device)
        with autocast(self.dtype, self.device):
            for t in self.scheduler.timesteps:
                inp = self.scheduler.scale_model_input(torch.cat([latents, cond], dim=1), t)
                eps = self.unet(inp, t).sample.float()
                noise = batch_randn(latents.shape, generators, self.device) if self.eta > 0 else None
                latents = self.scheduler.step(eps, t, latents, eta=self.eta, variance_noise=noise).prev_sample
            image = self.vqvae.decode(latents).sample.float()
        return (image.clamp(-1.0, 1.0) + 1) / 2

    def lr_pad_multiple(self) -> int:
        return self._multiple

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "family": "latent diffusion (VQ-f4 latent, LR concatenated)",
            **({"model_note": "the public CompVis checkpoint; the LDM rows of the ResShift/SinSR papers "
                              "may come from another model"} if self.model == DEFAULT_MODEL else {}),
            "sampler": "ddim",
        }


@register_method("ldm-sr", LDMParams)
def _build(params: LDMParams) -> LDMSR:
    pipe = load_pipeline(params.model, local_files_only=params.local_files_only, revision=params.revision,
                         cache_dir=params.cache_dir)
    return LDMSR(pipe, params=params)
