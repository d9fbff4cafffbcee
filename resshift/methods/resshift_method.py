"""ResShift x4 super-resolution as an :class:`SRMethod`: UNet + VQ autoencoder + ResShift chain.

Per image (or per tile): reflect-pad the LR (in ``[-1, 1]``) bottom/right to multiples of 64,
PyTorch bicubic x4 (no clamp), VQ encode (no quantization) -> z_y, prior x_T = z_y + kappa sqrt(eta_T)
eps, T reverse steps, VQ decode (quantizing), crop, clamp to ``[-1, 1]``. Images with a side larger
than ``chop_size`` LR pixels are tiled (:mod:`resshift.methods.tiling`) and the tiles averaged.

Noise. In normal use each image's generator (from :func:`resshift.seeding.image_generator`) seeds
one generator per tile (:func:`resshift.seeding.per_tile_generators`), so an image's output
depends only on (run seed, image name, tile index): not on batch composition, image order or
``tile_batch``. :func:`official_stream` instead consumes one generator
the way the official code consumes its global RNG (T+1 draws per tile, prior first), and
:meth:`ResShiftSR.run` accepts any per-tile noise provider (e.g. recorded noise).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from resshift.diffusion.resshift_chain import sample, sample_one_step
from resshift.diffusion.schedule import ResShiftSchedule
from resshift.methods.base import SRMethod
from resshift.methods.params import ResShiftParams, ResShiftSamplerParams, SinSRParams, resolve_params
from resshift.methods.precision import autocast, check_precision
from resshift.methods.registry import register_method
from resshift.methods.tiling import Tile, TileNoise, reflect_pad_to_multiple, run_tiles, tile_plan
from resshift.models.configs import RELEASED_VERSIONS, released_config
from resshift.models.winograd import describe as winograd_describe
from resshift.seeding import per_tile_generators

# Samplers over the same networks: the full ResShift chain, or SinSR's single step from the prior.
SAMPLERS = {"chain": sample, "one-step": sample_one_step}


def schedule_for(version: str) -> ResShiftSchedule:
    """The diffusion schedule of a released version (settings from :mod:`resshift.models.configs`)."""
    cfg = released_config(version).diffusion
    if cfg.schedule_name != "exponential":
        raise ValueError(f"version {version!r}: schedule {cfg.schedule_name!r} is not implemented")
    return ResShiftSchedule.from_config(
        steps=cfg.steps,
        kappa=cfg.kappa,
        min_noise_level=cfg.min_noise_level,
        etas_end=cfg.etas_end,
        power=cfg.power,
    )


def official_stream(generator: torch.Generator, steps: int) -> TileNoise:
    """Noise consumed from one generator in the official order (the official global RNG stream).

    For each tile, in processing order, ``steps + 1`` draws shaped like the whole batch's latent:
    the prior, then one per step (the last one multiplied by 0 in the chain).
    """

    def provide(k: int, batch: int, shape: tuple[int, ...]) -> dict[str, Any]:
        dev = generator.device
        return {"noise": [torch.randn(shape, generator=generator, device=dev) for _ in range(steps + 1)]}

    return provide


class ResShiftSR(SRMethod):
    """ResShift x4 SR with optional tiling, batched tiles, precision and device options.

    Args:
        unet: the denoiser network, called ``unet(x_scaled, t, lq=lq)`` (``UNetModelSwin``).
        autoencoder: the VQ autoencoder with ``encode`` (no quantization) and ``decode`` (quantizing).
        schedule: the diffusion schedule of this version.
        name: registry name, e.g. ``"resshift-v3"``.
        padding_offset: LR padding multiple (64, the official ``padding_offset``).
        assumes_operator: the degradation the model was trained for, if known.
        provenance: extra facts for :meth:`describe` (checkpoint files and hashes).
        sampler: ``"chain"`` (T reverse steps, NFE = T) or ``"one-step"`` (SinSR: x̂₀ of one network
            call at t = T-1 from the prior sample, NFE = 1; :func:`resshift.diffusion.resshift_chain.sample_one_step`).
        params / **config: :class:`~resshift.methods.params.ResShiftSamplerParams` (or a subclass):
            ``chop_size`` (tile side in LR pixels; images with a larger side are tiled), ``chop_stride``
            (``None``: ``chop_size``, no overlap), ``tile_batch`` (tiles run at once; outputs do not
            depend on it), ``device``, ``dtype`` (``"fp16"``/``"bf16"``: CUDA autocast, as the official
            code), ``vq_dtype`` (the VQ autoencoder alone; the codebook search stays float32), ``fast``
            (:mod:`resshift.models.fast` kernels), ``inference_mode``.
    """

    scale = 4
    stochastic = True
    latent_channels = 3  # embed_dim of the VQ-f4 autoencoder
    Params = ResShiftSamplerParams

    def __init__(
        self,
        unet: torch.nn.Module | Callable[..., torch.Tensor],
        autoencoder: Any,
        schedule: ResShiftSchedule,
        *,
        name: str = "resshift",
        padding_offset: int = 64,
        assumes_operator: str | None = None,
        provenance: dict[str, object] | None = None,
        sampler: str = "chain",
        params: ResShiftSamplerParams | None = None,
        **config: Any,
    ) -> None:
        self.name = name
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.sampler = sampler
        p = self.params = self.resolve_params(params, config)
        self.device, _ = check_precision(p.device, p.dtype)
        check_precision(p.device, p.vq_dtype or p.dtype)
        if p.tile_batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {p.tile_batch}")
        self.unet = unet
        self.autoencoder = autoencoder
        for module in (unet, autoencoder):
            if isinstance(module, torch.nn.Module):
                module.to(self.device).eval()
        self.schedule = schedule
        self.nfe = schedule.steps if sampler == "chain" else 1
        self.chop_size = int(p.chop_size) if p.chop_size else None  # None: whole images
        self.chop_stride = int(p.chop_stride) if p.chop_stride else self.chop_size
        if self.chop_size is not None and self.chop_stride is not None and self.chop_stride > self.chop_size:
            raise ValueError(f"chop stride {self.chop_stride} is larger than the chop size {self.chop_size}")
        self.preferred_tile = self.chop_size
        self.tile_batch = int(p.tile_batch)
        self.dtype = p.dtype
        self.vq_dtype = p.vq_dtype or p.dtype
        self.fast = bool(p.fast)
        self.padding_offset = int(padding_offset)
        self.inference_mode = bool(p.inference_mode)
        self.assumes_operator = assumes_operator
        self.provenance = dict(provenance or {})

    # ----------------------------------------------------------------------------------------------
    def _autocast(self, dtype: str | None = None) -> contextlib.AbstractContextManager:
        return autocast(dtype or self.dtype, self.device)

    def _kernels(self) -> contextlib.AbstractContextManager:
        from resshift.models.fast import fast_kernels

        return fast_kernels(self.fast)

    def _grad_context(self) -> contextlib.AbstractContextManager:
        return torch.inference_mode() if self.inference_mode else contextlib.nullcontext()

    def denoise(self, x_scaled: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """The denoiser callable handed to the sampler (network under the chosen autocast)."""
        with self._kernels(), self._autocast():
            return self.unet(x_scaled, t, lq=lq).float()

    def encode(self, y_padded: torch.Tensor) -> torch.Tensor:
        """z_y = E(bicubic x4 of the padded LR), no quantization."""
        y_up = F.interpolate(y_padded, scale_factor=self.scale, mode="bicubic")
        with self._kernels(), self._autocast(self.vq_dtype):
            return self.autoencoder.encode(y_up).float()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Image in ``[-1, 1]`` (unclamped) from a latent; quantizes first."""
        with self._kernels(), self._autocast(self.vq_dtype):
            return self.autoencoder.decode(latent).float()

    def sample_patches(self, y: torch.Tensor, noise: dict[str, Any]) -> torch.Tensor:
        """The complete single-image path on a batch of same-size LR patches in ``[-1, 1]``.

        Returns ``(B, 3, 4h, 4w)`` clamped to ``[-1, 1]``.
        """
        height, width = y.shape[-2:]
        y_pad = reflect_pad_to_multiple(y, self.padding_offset)
        z_y = self.encode(y_pad)
        latent = SAMPLERS[self.sampler](self.denoise, z_y, y_pad, self.schedule, **noise).latent
        out = self.decode(latent)
        return out[:, :, : height * self.scale, : width * self.scale].clamp_(-1.0, 1.0)

    def tiles_for(self, height: int, width: int) -> list[Tile]:
        """The tiles (in processing order) an LR image of this size is cut into."""
        return tile_plan(height, width, self.chop_size, self.chop_stride)

    def run(self, y: torch.Tensor, tile_noise: TileNoise) -> torch.Tensor:
        """Super-resolve ``(B, 3, H, W)`` LR in ``[-1, 1]``; returns ``(B, 3, 4H, 4W)`` in ``[-1, 1]``.

        The tile loop is :func:`resshift.methods.tiling.run_tiles`; ``tile_noise(k, B, latent_shape)``
        supplies each tile's noise, called in processing order.
        """
        pad = self.padding_offset

        def latent_shape(batch: int, height: int, width: int) -> tuple[int, ...]:
            return (batch, self.latent_channels, -(-height // pad) * pad, -(-width // pad) * pad)

        with self._grad_context():
            return run_tiles(y.to(self.device, torch.float32), self.sample_patches, tile_noise, scale=self.scale,
                             chop_size=self.chop_size, chop_stride=self.chop_stride, tile_batch=self.tile_batch,
                             noise_shape=latent_shape)

    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """``(B, 3, h, w)`` in ``[0, 1]`` -> ``(B, 3, 4h, 4w)`` in ``[0, 1]``; one generator per image."""
        if generators is None:
            raise ValueError(f"{self.name} is stochastic: pass one torch.Generator per image")
        if len(generators) != lr.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {lr.shape[0]} images")
        y = (lr.to(self.device, torch.float32) - 0.5) / 0.5
        out = self.run(y, per_tile_generators(generators))
        return (out * 0.5 + 0.5).clamp_(0.0, 1.0)

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            {
                "schedule": self.schedule.describe(),
                "sampler": self.sampler,
                "chop_size": self.chop_size,
                "chop_stride": self.chop_stride,
                "vq_dtype": self.vq_dtype,
                "fast_kernels": self.fast,
                # the fast path's 3x3 convolutions (resshift.models.winograd): part of what a run computed
                "conv3x3": winograd_describe(self.device) if self.fast else "direct",
                "device": str(self.device),
                "padding_offset": self.padding_offset,
            }
        )
        info.update(self.provenance)
        return info


def build_resshift(
    version: str,
    params: ResShiftParams | None = None,
    *,
    unet: torch.nn.Module | None = None,
    autoencoder: torch.nn.Module | None = None,
    sampler: str = "chain",
    name: str | None = None,
    **config: Any,
) -> ResShiftSR:
    """A :class:`ResShiftSR` for a released version (``v1``, ``v2``, ``v3``, ``bicsr``).

    ``params`` / ``config``: :class:`~resshift.methods.params.ResShiftParams`. Networks given as
    modules are used as they are (e.g. small test models); otherwise the released checkpoints are
    loaded with :mod:`resshift.weights` (``weights_dir`` is searched first, then the cache;
    ``download=False`` never downloads); ``params.checkpoint`` names another table row of the same
    architecture for the UNet (e.g. ``"sinsr-v1"``). The diffusion schedule is the version's.
    ``sampler`` chooses the chain or SinSR's one step, ``name`` the method's name.
    """
    if version not in RELEASED_VERSIONS:
        raise KeyError(f"unknown ResShift version {version!r}; known: {', '.join(RELEASED_VERSIONS)}")
    name = name or f"resshift-{version}"
    params = resolve_params(ResShiftParams, name, params, config)
    check_precision(params.device, params.dtype)
    check_precision(params.device, params.vq_dtype or params.dtype)
    provenance: dict[str, object] = {"version": version}
    checkpoint = params.checkpoint or version
    if checkpoint != version:
        provenance["checkpoint"] = checkpoint
    if unet is None or autoencoder is None:
        from resshift import weights
        from resshift.provenance import file_sha256

        where = {"offline_dir": params.weights_dir, "download": params.download}
        if unet is None:
            entry = weights.get_entry(checkpoint)
            if entry.kind != "unet" or entry.config != version:
                raise ValueError(f"checkpoint {checkpoint!r} is not a UNet of the {version} architecture")
            unet_path = params.unet_path or weights.resolve_checkpoint(entry, **where)
            unet = weights.load_unet(checkpoint, unet_path, device=params.device, **where)
            provenance["unet_checkpoint"] = str(unet_path)
            provenance["checkpoint_sha256"] = file_sha256(unet_path)
        if autoencoder is None:
            autoencoder_path = params.autoencoder_path or weights.resolve_checkpoint("vqgan", **where)
            autoencoder = weights.load_autoencoder(autoencoder_path, device=params.device, **where)
            provenance["autoencoder_checkpoint"] = str(autoencoder_path)
            provenance["autoencoder_sha256"] = file_sha256(autoencoder_path)
    return ResShiftSR(
        unet,
        autoencoder,
        schedule_for(version),
        name=name,
        assumes_operator="bicubic" if version == "bicsr" else None,
        provenance=provenance,
        sampler=sampler,
        params=params,
    )


SINSR_CHECKPOINTS = ("sinsr-v1", "sinsr-v2")


def build_sinsr(checkpoint: str | None = None, params: SinSRParams | None = None, **config: Any) -> ResShiftSR:
    """SinSR (Wang et al., CVPR 2024): the distilled UNet on ResShift v1's architecture and schedule,
    one network call at t = T-1 from the prior sample, x̂₀ decoded by the ResShift VQ-f4.

    ``checkpoint``: ``"sinsr-v1"`` (the README's choice for ImageNet-Test and RealSet65) or
    ``"sinsr-v2"`` (RealSR). ``params`` / ``config``: :class:`~resshift.methods.params.SinSRParams`.
    """
    if checkpoint is not None:
        config["checkpoint"] = checkpoint
    params = resolve_params(SinSRParams, "sinsr", params, config)
    if params.checkpoint not in SINSR_CHECKPOINTS:
        raise KeyError(f"unknown SinSR checkpoint {params.checkpoint!r}; known: {', '.join(SINSR_CHECKPOINTS)}")
    return build_resshift("v1", params, sampler="one-step", name="sinsr")


@register_method("sinsr", SinSRParams)
def _build_sinsr(params: SinSRParams) -> ResShiftSR:
    return build_sinsr(params=params)


def _register(version: str) -> None:
    @register_method(f"resshift-{version}", ResShiftParams)
    def _factory(params: ResShiftParams) -> ResShiftSR:
        return build_resshift(version, params)


for _version in RELEASED_VERSIONS:
    _register(_version)
