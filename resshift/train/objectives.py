"""Training objectives: what a model is, what its loss on a batch is, and how its weights are shipped.

An objective has ``kind``, ``build_model() -> nn.Module``, ``loss(model, hr, lr, generator) ->
(per-sample loss [B], logs)`` with ``hr``/``lr`` in ``[0, 1]``, and ``export(model, path, extra,
dtype)`` writing the checkpoint the matching SR method loads. ``model`` in ``loss`` may be wrapped
(DDP); everything random comes from ``generator`` (CPU).

* :class:`ResShiftObjective` - x0-prediction MSE of the ResShift chain
  (:func:`resshift.diffusion.resshift_chain.training_loss`), with an optional LPIPS term on the
  decoded prediction. Latent space with a (frozen) VQ autoencoder, where the denoiser is a
  ``UNetModelSwin``; or pixel space (identity autoencoder), where it is a
  :class:`~resshift.methods.pixel_resshift.PixelResShiftNet`.
* :class:`GaussianObjective` - variance-preserving diffusion over *continuous* noise levels (SR3 /
  WaveGrad): a step ``t`` is drawn uniformly, then ``alpha_bar`` uniformly between the training
  schedule's ``alpha_bar[t]`` and ``alpha_bar[t-1]`` (1 before the first step); the network sees
  ``gamma = sqrt(alpha_bar)`` and predicts the noise (``eps``) or the velocity
  ``v = sqrt(ab) eps - sqrt(1-ab) x0`` (``prediction``). Conditional (SR3-style: bicubic x4 LR
  concatenated) or unconditional (a prior for DDNM/DDRM).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resshift.diffusion.gaussian import alphas_cumprod, check_prediction, make_betas, prediction_target
from resshift.diffusion.resshift_chain import training_loss
from resshift.diffusion.schedule import ResShiftSchedule
from resshift.models import pixel_resshift
from resshift.models.sr3_unet import SR3UNet
from resshift.weights.formats import save_gaussian_checkpoint, save_latent_checkpoint, save_pixel_checkpoint

SCALE = 4


def _to_signed(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _copy_as(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    out = copy.deepcopy(_unwrap(model)).cpu()
    return out.to(dtype) if dtype is not None else out


class ResShiftObjective:
    """ResShift x0-prediction: ``mse(z0, f(x_t / sqrt(kappa^2 eta_t + 1), t, lq))`` (+ LPIPS).

    Args:
        schedule: the ResShift schedule (its ``steps`` is the model's native NFE).
        model: constructor arguments of the denoiser (``SR3UNet`` in pixel space, ``UNetModelSwin``
            in latent space).
        autoencoder: ``None`` for pixel space, else a VQ autoencoder (``encode`` not quantising,
            ``decode`` quantising with a straight-through gradient); it is frozen.
        lpips_weight: weight of the LPIPS-VGG term on the decoded, clamped prediction (0 = off).
        perceptual: the perceptual loss to use instead of building ``lpips.LPIPS(net="vgg")``.
        residual: pixel space only: x0 = bicubic_x4(lq) + network output
            (:class:`~resshift.methods.pixel_resshift.PixelResShiftNet`).
    """

    def __init__(self, schedule: ResShiftSchedule, model: dict[str, Any], autoencoder: nn.Module | None = None,
                 lpips_weight: float = 0.0,
                 perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 residual: bool = False) -> None:
        self.schedule = schedule
        self.residual = bool(residual)
        self.model_config = dict(model)
        self.autoencoder = autoencoder
        if autoencoder is not None:
            autoencoder.eval().requires_grad_(False)
        self.kind = "resshift-latent" if autoencoder is not None else "resshift-pixel"
        self.lpips_weight = float(lpips_weight)
        self.perceptual = perceptual
        if self.lpips_weight > 0 and self.perceptual is None:
            import lpips

            self.perceptual = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def build_model(self) -> nn.Module:
        if self.autoencoder is None:
            cfg = {"in_channels": 6, "out_channels": 3, "level_scale": 1.0, **self.model_config}
            return pixel_resshift.PixelResShiftNet(SR3UNet(**cfg), residual=self.residual)
        from resshift.models.swin_unet import UNetModelSwin

        return UNetModelSwin(**self.model_config)

    def to(self, device: torch.device) -> ResShiftObjective:
        for m in (self.autoencoder, self.perceptual):
            if isinstance(m, nn.Module):
                m.to(device)
        return self

    def encode_pair(self, hr: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z0, z_y, lq)``: targets and conditioning in the chain's space."""
        x, lq = _to_signed(hr), _to_signed(lr)
        y_up = pixel_resshift.upsample_lq(lq)
        if self.autoencoder is None:
            return x, y_up, lq
        with torch.no_grad():
            return self.autoencoder.encode(x).float(), self.autoencoder.encode(y_up).float(), lq

    def loss(self, model: nn.Module, hr: torch.Tensor, lr: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        z0, z_y, lq = self.encode_pair(hr, lr)
        if self.autoencoder is None:
            def denoiser(x, t, c):
                return model(x, t, c)
            decode = None
        else:
            def denoiser(x, t, c):
                return model(x, t, lq=c)
            decode = self.autoencoder.decode
        use_lpips = self.lpips_weight > 0
        out = training_loss(
            denoiser, z0, z_y, lq, self.schedule, generator=generator,
            decode=(decode or (lambda z: z)) if use_lpips else None,
            target_image=_to_signed(hr) if use_lpips else None,
            perceptual=self.perceptual if use_lpips else None,
            perceptual_weight=self.lpips_weight,
        )
        logs = {"mse": float(out["mse"].detach().mean())}
        if "lpips" in out:
            logs["lpips"] = float(out["lpips"].detach().mean())
        return out["loss"], logs

    def export(self, model: nn.Module, path: str | Path, extra: dict[str, Any],
               dtype: torch.dtype | None = None) -> Path:
        net = _unwrap(model)
        if self.autoencoder is None:
            return save_pixel_checkpoint(path, net.net, self.schedule, extra=extra, dtype=dtype,
                                         residual=self.residual)
        return save_latent_checkpoint(path, net, self.model_config, self.schedule, extra=extra, dtype=dtype)


class GaussianObjective:
    """Continuous-level noise or velocity prediction (SR3-style when ``conditional``, else a prior).

    The loss is the MSE to the target of ``prediction``
    (:func:`resshift.diffusion.gaussian.prediction_target`); for ``v`` it equals the x0 error weighted
    by ``1 / (1 - ab)``, so unlike ``eps`` it does not vanish at the noisiest levels, where a noise
    predictor's error is amplified ``sqrt((1-ab)/ab)``-fold into its x0 estimate.

    Args:
        model: :class:`SR3UNet` arguments (``in_channels`` is set from ``conditional``).
        schedule: training betas ``{"kind": "linear" | "cosine", "steps": T, ...}``
            (:func:`resshift.diffusion.gaussian.make_betas`).
        conditional: concatenate ``2 * bicubic_x4(lr) - 1`` (PyTorch bicubic, as
            :class:`resshift.methods.sr3.SR3StyleSR` does at sampling).
        prediction: ``"eps"`` or ``"v"``; stored in the exported checkpoint.
    """

    def __init__(self, model: dict[str, Any], schedule: dict[str, Any], conditional: bool = True,
                 prediction: str = "eps") -> None:
        self.model_config = dict(model)
        self.prediction = check_prediction(prediction, "GaussianObjective")
        self.schedule = dict(schedule)
        sched = dict(schedule)
        self.betas = make_betas(sched.pop("kind"), int(sched.pop("steps")), **sched)
        ab = alphas_cumprod(self.betas)
        self.ab_high = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])  # alpha_bar before step t
        self.ab_low = ab
        self.conditional = bool(conditional)
        self.kind = "sr3" if conditional else "prior"

    def build_model(self) -> nn.Module:
        return SR3UNet(**{**self.model_config, "in_channels": 6 if self.conditional else 3, "out_channels": 3})

    def to(self, device: torch.device) -> GaussianObjective:
        return self

    def draw_levels(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``alpha_bar`` per sample (float64): uniform step, then uniform between its two levels."""
        t = torch.randint(len(self.betas), (batch,), generator=generator)
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        return self.ab_low[t] + u * (self.ab_high[t] - self.ab_low[t])

    def loss(self, model: nn.Module, hr: torch.Tensor, lr: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = _to_signed(hr)
        ab = self.draw_levels(x0.shape[0], generator)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        abv = ab.to(x0.device).reshape(-1, 1, 1, 1)
        x_t = (abv.sqrt() * x0.double() + (1 - abv).sqrt() * noise.double()).float()
        if self.conditional:
            cond = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False) * 2 - 1
            x_t = torch.cat([x_t, cond], dim=1)
        pred = model(x_t, ab.sqrt().float().to(x0.device))
        target = prediction_target(x0.double(), noise.double(), abv, self.prediction).float()
        mse = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3))
        return mse, {"mse": float(mse.detach().mean())}

    def export(self, model: nn.Module, path: str | Path, extra: dict[str, Any],
               dtype: torch.dtype | None = None) -> Path:
        net = _copy_as(model, dtype)
        conditioning = "bicubic-concat" if self.conditional else "none"
        return save_gaussian_checkpoint(path, net, self.schedule, conditioning, extra=extra,
                                        prediction=self.prediction)
