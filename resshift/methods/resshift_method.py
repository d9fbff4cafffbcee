"""ResShift x4 super-resolution as an :class:`SRMethod`: UNet + VQ autoencoder + ResShift chain.

Per image (or per tile): reflect-pad the LR (in ``[-1, 1]``) bottom/right to multiples of 64,
PyTorch bicubic x4 (no clamp), VQ encode (no quantization) -> z_y, prior x_T = z_y + kappa sqrt(eta_T)
eps, T reverse steps, VQ decode (quantizing), crop, clamp to ``[-1, 1]``. Images with a side larger
than ``chop_size`` LR pixels are tiled (:mod:`resshift.methods.tiling`) and the tiles averaged.

Noise. In normal use each image's generator (from :func:`resshift.seeding.image_generator`) seeds
one generator per tile (via :func:`resshift.seeding.derive_seed` of a base drawn from it and the tile
index), so an image's output depends only on (run seed, image name, tile index): not on batch
composition, image order or ``tile_batch``. :func:`official_stream` instead consumes one generator
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
from resshift.methods.registry import register_method
from resshift.methods.tiling import Tile, TileBlender, plan_tiles, reflect_pad_to_multiple
from resshift.seeding import derive_seed

# (tile index, images in the batch) -> keyword arguments for ``sample``: {"noise": [T+1 tensors]} or
# {"generators": [one per image]}. Called once per tile, in processing order.
TileNoise = Callable[[int, int, tuple[int, ...]], dict[str, Any]]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VERSIONS = ("v1", "v2", "v3", "bicsr")
# Samplers over the same networks: the full ResShift chain, or SinSR's single step from the prior.
SAMPLERS = {"chain": sample, "one-step": sample_one_step}


def check_precision(device: str | torch.device, dtype: str) -> torch.device:
    """Validate a (device, dtype) choice: fp16/bf16 mean CUDA autocast; CPU runs fp32."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = torch.device(device)
    if dtype != "fp32" and device.type != "cuda":
        raise ValueError(f"dtype {dtype} needs a CUDA device (autocast); on {device.type} use fp32")
    return device


def schedule_for(version: str) -> ResShiftSchedule:
    """The diffusion schedule of a released version (settings from :mod:`resshift.models.configs`)."""
    from resshift.models.configs import released_config

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


def per_tile_generators(generators: Sequence[torch.Generator]) -> TileNoise:
    """Noise from one generator per image: tile k of image b gets its own generator.

    Each image's generator is consumed once (one 62-bit base seed); the tile generator is seeded
    with ``derive_seed(base, "tile", k)`` on the image generator's device.
    """
    bases = [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item()) for g in generators]
    devices = [g.device for g in generators]

    def provide(k: int, batch: int, shape: tuple[int, ...]) -> dict[str, Any]:
        if batch != len(bases):
            raise ValueError(f"{len(bases)} generators given for a batch of {batch} images")
        gens = []
        for base, dev in zip(bases, devices, strict=True):
            g = torch.Generator(device=dev)
            g.manual_seed(derive_seed(base, "tile", k))
            gens.append(g)
        return {"generators": gens}

    return provide


def official_stream(generator: torch.Generator, steps: int) -> TileNoise:
    """Noise consumed from one generator in the official order (the official global RNG stream).

    For each tile, in processing order, ``steps + 1`` draws shaped like the whole batch's latent:
    the prior, then one per step (the last one multiplied by 0 in the chain).
    """

    def provide(k: int, batch: int, shape: tuple[int, ...]) -> dict[str, Any]:
        dev = generator.device
        return {"noise": [torch.randn(shape, generator=generator, device=dev) for _ in range(steps + 1)]}

    return provide


def _merge_noise(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if all("generators" in p for p in parts):
        return {"generators": [g for p in parts for g in p["generators"]]}
    if all("noise" in p for p in parts):
        draws = len(parts[0]["noise"])
        return {"noise": [torch.cat([p["noise"][j] for p in parts]) for j in range(draws)]}
    raise ValueError("a noise provider must return either 'noise' or 'generators' for every tile")


class ResShiftSR(SRMethod):
    """ResShift x4 SR with optional tiling, batched tiles, precision and device options.

    Args:
        unet: the denoiser network, called ``unet(x_scaled, t, lq=lq)`` (``UNetModelSwin``).
        autoencoder: the VQ autoencoder with ``encode`` (no quantization) and ``decode`` (quantizing).
        schedule: the diffusion schedule of this version.
        name: registry name, e.g. ``"resshift-v3"``.
        chop_size: tile side in LR pixels; images with a side larger than this are tiled.
        chop_stride: tile stride in LR pixels (default: ``chop_size``, i.e. no overlap).
        tile_batch: tiles run through the networks at once (the official code runs one at a time);
            per-tile outputs do not depend on it.
        device: where the networks run.
        dtype: ``"fp32"``, or ``"fp16"``/``"bf16"`` autocast on CUDA (the official code uses fp16 autocast).
        vq_dtype: precision of the VQ autoencoder alone (default: ``dtype``); ``"fp16"``/``"bf16"``
            autocast on CUDA (the official sampler runs its VQ in half precision). The codebook search
            always runs in float32.
        fast: use the fast kernels of :mod:`resshift.models.fast` (default); ``False`` runs the
            plain reference path (same outputs to float32 round-off, slower).
        padding_offset: LR padding multiple (64, the official ``padding_offset``).
        inference_mode: run under ``torch.inference_mode``.
        sampler: ``"chain"`` (T reverse steps, NFE = T) or ``"one-step"`` (SinSR: x̂₀ of one network
            call at t = T-1 from the prior sample, NFE = 1; :func:`resshift.diffusion.resshift_chain.sample_one_step`).
    """

    scale = 4
    stochastic = True
    latent_channels = 3  # embed_dim of the VQ-f4 autoencoder

    def __init__(
        self,
        unet: torch.nn.Module | Callable[..., torch.Tensor],
        autoencoder: Any,
        schedule: ResShiftSchedule,
        *,
        name: str = "resshift",
        chop_size: int = 512,
        chop_stride: int | None = None,
        tile_batch: int = 1,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        vq_dtype: str | None = None,
        fast: bool = True,
        padding_offset: int = 64,
        inference_mode: bool = True,
        assumes_operator: str | None = None,
        provenance: dict[str, object] | None = None,
        sampler: str = "chain",
    ) -> None:
        self.device = check_precision(device, dtype)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.sampler = sampler
        check_precision(device, vq_dtype or dtype)
        if tile_batch < 1:
            raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
        self.name = name
        self.unet = unet
        self.autoencoder = autoencoder
        for module in (unet, autoencoder):
            if isinstance(module, torch.nn.Module):
                module.to(self.device).eval()
        self.schedule = schedule
        self.nfe = schedule.steps if sampler == "chain" else 1
        self.chop_size = int(chop_size)
        self.chop_stride = int(chop_stride) if chop_stride else self.chop_size
        if self.chop_stride > self.chop_size:
            raise ValueError(f"chop stride {self.chop_stride} is larger than the chop size {self.chop_size}")
        self.preferred_tile = self.chop_size
        self.tile_batch = int(tile_batch)
        self.dtype = dtype
        self.vq_dtype = vq_dtype or dtype
        self.fast = bool(fast)
        self.padding_offset = int(padding_offset)
        self.inference_mode = bool(inference_mode)
        self.assumes_operator = assumes_operator
        self.provenance = dict(provenance or {})

    # ----------------------------------------------------------------------------------------------
    def _autocast(self, dtype: str | None = None) -> contextlib.AbstractContextManager:
        dtype = dtype or self.dtype
        if dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[dtype])

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
        return plan_tiles(height, width, self.chop_size, self.chop_stride)

    def run(self, y: torch.Tensor, tile_noise: TileNoise) -> torch.Tensor:
        """Super-resolve ``(B, 3, H, W)`` LR in ``[-1, 1]``; returns ``(B, 3, 4H, 4W)`` in ``[-1, 1]``.

        ``tile_noise(k, B, latent_shape)`` supplies each tile's noise, called in processing order.
        """
        with self._grad_context():
            y = y.to(self.device, torch.float32)
            batch, _, height, width = y.shape
            tiles = self.tiles_for(height, width)
            blender = None
            if len(tiles) > 1:
                blender = TileBlender(batch, 3, height, width, self.scale, self.device)
            result = None
            for start in range(0, len(tiles), self.tile_batch):
                group = tiles[start : start + self.tile_batch]
                patches = torch.cat([y[:, :, t.h0 : t.h1, t.w0 : t.w1] for t in group])
                ph, pw = patches.shape[-2:]
                pad = self.padding_offset
                latent_shape = (batch, self.latent_channels, -(-ph // pad) * pad, -(-pw // pad) * pad)
                noise = _merge_noise([tile_noise(t.index, batch, latent_shape) for t in group])
                out = self.sample_patches(patches, noise)
                if blender is None:
                    result = out
                else:
                    for j, t in enumerate(group):
                        blender.add(t, out[j * batch : (j + 1) * batch])
            return blender.result() if blender is not None else result

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
                "tile_batch": self.tile_batch,
                "dtype": self.dtype,
                "vq_dtype": self.vq_dtype,
                "fast_kernels": self.fast,
                "device": str(self.device),
                "padding_offset": self.padding_offset,
            }
        )
        info.update(self.provenance)
        return info


def build_resshift(
    version: str,
    *,
    unet: torch.nn.Module | None = None,
    autoencoder: torch.nn.Module | None = None,
    weights_dir: str | None = None,
    unet_path: str | None = None,
    autoencoder_path: str | None = None,
    download: bool = True,
    chop_size: int = 512,
    chop_stride: int | None = None,
    tile_batch: int = 1,
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    vq_dtype: str | None = None,
    fast: bool = True,
    inference_mode: bool = True,
    checkpoint: str | None = None,
    sampler: str = "chain",
    name: str | None = None,
) -> ResShiftSR:
    """A :class:`ResShiftSR` for a released version (``v1``, ``v2``, ``v3``, ``bicsr``).

    Networks given as modules are used as they are (e.g. small test models); otherwise the released
    checkpoints are loaded with :mod:`resshift.weights` (``weights_dir`` is searched first, then the
    cache; ``download=False`` never downloads). The diffusion schedule is the version's.
    ``checkpoint`` names another registry entry of the same architecture for the UNet (e.g.
    ``"sinsr-v1"``), ``sampler`` chooses the chain or SinSR's one step, ``name`` the method's name.
    """
    if version not in VERSIONS:
        raise KeyError(f"unknown ResShift version {version!r}; known: {', '.join(VERSIONS)}")
    check_precision(device, dtype)
    check_precision(device, vq_dtype or dtype)
    provenance: dict[str, object] = {"version": version}
    checkpoint = checkpoint or version
    if checkpoint != version:
        provenance["checkpoint"] = checkpoint
    if unet is None or autoencoder is None:
        from resshift import weights
        from resshift.provenance import file_sha256

        if unet is None:
            entry = weights.get_entry(checkpoint)
            if entry.kind != "unet" or entry.config != version:
                raise ValueError(f"checkpoint {checkpoint!r} is not a UNet of the {version} architecture")
            unet_path = unet_path or weights.resolve_checkpoint(entry, offline_dir=weights_dir, download=download)
            unet = weights.load_unet(checkpoint, unet_path, device=device, offline_dir=weights_dir,
                                     download=download)
            provenance["unet_checkpoint"] = str(unet_path)
            provenance["checkpoint_sha256"] = file_sha256(unet_path)
        if autoencoder is None:
            autoencoder_path = autoencoder_path or weights.resolve_checkpoint(
                "vqgan", offline_dir=weights_dir, download=download
            )
            autoencoder = weights.load_autoencoder(
                autoencoder_path, device=device, offline_dir=weights_dir, download=download
            )
            provenance["autoencoder_checkpoint"] = str(autoencoder_path)
            provenance["autoencoder_sha256"] = file_sha256(autoencoder_path)
    return ResShiftSR(
        unet,
        autoencoder,
        schedule_for(version),
        name=name or f"resshift-{version}",
        chop_size=chop_size,
        chop_stride=chop_stride,
        tile_batch=tile_batch,
        device=device,
        dtype=dtype,
        vq_dtype=vq_dtype,
        fast=fast,
        inference_mode=inference_mode,
        assumes_operator="bicubic" if version == "bicsr" else None,
        provenance=provenance,
        sampler=sampler,
    )


SINSR_CHECKPOINTS = ("sinsr-v1", "sinsr-v2")


def build_sinsr(checkpoint: str = "sinsr-v1", **config: Any) -> ResShiftSR:
    """SinSR (Wang et al., CVPR 2024): the distilled UNet on ResShift v1's architecture and schedule,
    one network call at t = T-1 from the prior sample, x̂₀ decoded by the ResShift VQ-f4.

    ``checkpoint``: ``"sinsr-v1"`` (the README's choice for ImageNet-Test and RealSet65) or
    ``"sinsr-v2"`` (RealSR). Other keywords as :func:`build_resshift`.
    """
    if checkpoint not in SINSR_CHECKPOINTS:
        raise KeyError(f"unknown SinSR checkpoint {checkpoint!r}; known: {', '.join(SINSR_CHECKPOINTS)}")
    return build_resshift("v1", checkpoint=checkpoint, sampler="one-step", name="sinsr", **config)


register_method("sinsr")(build_sinsr)


def _register(version: str) -> None:
    @register_method(f"resshift-{version}")
    def _factory(**config: Any) -> ResShiftSR:
        return build_resshift(version, **config)


for _version in VERSIONS:
    _register(_version)
