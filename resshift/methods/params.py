"""Each method's parameters, declared once: one frozen dataclass per method.

A method's dataclass holds every tunable with its one default (the documented protocol value, the
same as the method's ``eval/method/*.yaml``). The registry validates a configuration against it
(:meth:`MethodParams.from_config`: an unknown key is an error naming the method and the key), the
method's constructor keeps the resolved instance as ``self.params``, and ``describe()`` reports every
resolved field (defaults included), so a run can be fingerprinted from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

P = TypeVar("P", bound="MethodParams")


class UnknownParameterError(ValueError):
    """A configuration names a parameter the method does not have."""


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a parameter value (devices, dtypes and paths as text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class MethodParams:
    """Parameters every method takes: where it runs and in which precision.

    Attributes:
        device: torch device the networks run on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: ``"fp32"``, or ``"fp16"``/``"bf16"`` autocast (CUDA only).
    """

    device: str = "cpu"
    dtype: str = "fp32"

    @classmethod
    def from_config(cls: type[P], method: str, config: Mapping[str, Any]) -> P:
        """Validate ``config`` (keys = field names) and fill the defaults.

        Raises:
            UnknownParameterError: a key is not a field; the message names ``method``, the key(s)
                and the known parameters.
        """
        known = [f.name for f in fields(cls)]
        unknown = [k for k in config if k not in known]
        if unknown:
            raise UnknownParameterError(
                f"method {method!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}"
            )
        return cls(**config)

    def describe(self) -> dict[str, Any]:
        """Every field with its resolved value (JSON-friendly)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def resolve_params(cls: type[P], method: str, params: MethodParams | None, config: Mapping[str, Any]) -> P:
    """``params`` (an instance of ``cls`` or a subclass), else ``cls`` filled from the keyword ``config``.

    Raises ``ValueError`` when both are given, ``TypeError`` for params of another method and
    :class:`UnknownParameterError` for unknown keys.
    """
    if params is None:
        return cls.from_config(method, config)
    if config:
        raise ValueError(f"{method}: pass either params or keyword parameters, not both")
    if not isinstance(params, cls):
        raise TypeError(f"{method}: params must be {cls.__name__}, got {type(params).__name__}")
    return params


@dataclass(frozen=True)
class TiledParams(MethodParams):
    """Methods that may run tile by tile (:mod:`resshift.methods.tiling`).

    Attributes:
        chop_size: tile side in LR pixels; an image with a side larger than this is tiled
            (``None``: whole images).
        chop_stride: tile stride in LR pixels (``None``: ``chop_size``, i.e. no overlap).
        tile_batch: tiles run through the network at once; outputs do not depend on it.
    """

    chop_size: int | None = None
    chop_stride: int | None = None
    tile_batch: int = 1


@dataclass(frozen=True)
class BicubicParams(MethodParams):
    """``bicubic``: the upscaling factor."""

    scale: int = 4


@dataclass(frozen=True)
class ResShiftSamplerParams(TiledParams):
    """The ResShift sampler (:class:`~resshift.methods.resshift_method.ResShiftSR`) on any networks.

    Attributes:
        vq_dtype: precision of the VQ autoencoder alone (``None``: ``dtype``).
        fast: the fast kernels of :mod:`resshift.models.fast` (same outputs to float32 round-off).
        inference_mode: run under ``torch.inference_mode``.
    """

    chop_size: int | None = 512
    vq_dtype: str | None = None
    fast: bool = True
    inference_mode: bool = True


@dataclass(frozen=True)
class ResShiftParams(ResShiftSamplerParams):
    """``resshift-v1/v2/v3/bicsr``: the released models, with the official tiling of the README
    command (512-pixel LR tiles, stride 448; :data:`resshift.methods.tiling.OFFICIAL_DEFAULT_STRIDES`).

    Attributes:
        weights_dir: a folder searched for the checkpoints before the cache.
        checkpoint: another weights-table row of the version's UNet architecture (``None``: the
            version's own release; SinSR's files are such rows).
        unet_path / autoencoder_path: explicit checkpoint files (``None``: the released ones).
        download: whether a missing released checkpoint may be downloaded.
    """

    chop_stride: int | None = 448
    tile_batch: int = 4
    checkpoint: str | None = None
    weights_dir: str | None = None
    unet_path: str | None = None
    autoencoder_path: str | None = None
    download: bool = True


@dataclass(frozen=True)
class SinSRParams(ResShiftParams):
    """``sinsr``: SinSR's one-step UNet (``checkpoint``: ``"sinsr-v1"`` or ``"sinsr-v2"``) on ResShift
    v1's architecture, schedule and VQ-f4, with the official tiling (as ``eval/method/sinsr.yaml``)."""

    checkpoint: str | None = "sinsr-v1"


@dataclass(frozen=True)
class PixelResShiftParams(ResShiftSamplerParams):
    """``resshift-pixel``: a pixel-space ResShift checkpoint (``checkpoint``: its file)."""

    checkpoint: str | None = None


@dataclass(frozen=True)
class SR3Params(TiledParams):
    """``sr3``: SR3-style conditional DDPM / DDIM.

    Attributes:
        checkpoint: the model file (``None``: ``<cache>/weights/sr3_x4.safetensors``).
        steps: sampling steps (= NFE); sampler: ``"ddim"`` or ``"ddpm"``; eta: DDIM's eta;
        spacing: ``"uniform"`` or ``"stride"``; clip_x0: clamp the x0 estimate to ``[-1, 1]``.
    """

    checkpoint: str | None = None
    steps: int = 50
    sampler: str = "ddim"
    eta: float = 0.0
    spacing: str = "uniform"
    clip_x0: bool = True


@dataclass(frozen=True)
class LDMParams(TiledParams):
    """``ldm-sr``: diffusers' LDM super-resolution pipeline (the papers' LDM-15 row by default).

    Attributes:
        model: Hub id or local ``save_pretrained`` folder; steps: DDIM steps (= NFE); eta: DDIM eta;
        local_files_only: ``None`` = offline for local folders or when ``HF_HUB_OFFLINE`` is set;
        revision / cache_dir: passed to ``from_pretrained``.
    """

    model: str = "CompVis/ldm-super-resolution-4x-openimages"
    steps: int = 15
    eta: float = 1.0
    local_files_only: bool | None = None
    revision: str | None = None
    cache_dir: str | None = None


@dataclass(frozen=True)
class GuidedParams(TiledParams):
    """Guided-prior methods on an unconditional prior with a known operator.

    Attributes:
        prior: ``"adm"`` (OpenAI's 256x256 model) or ``"ours"`` (an SR3UNet prior file);
        checkpoint: the prior's file (``None``: the ADM file in the weights folders);
        prior_config: overrides of the ADM constructor arguments; steps: NFE;
        operator: ``"bicubic"`` or ``"avgpool"``; eta: the stochasticity of the step;
        sigma_y: measurement noise std in ``[0, 1]`` units; spacing: ``"stride"`` or ``"uniform"``.
        Tiles of 64 LR pixels (stride 48) are the ADM prior's 256-pixel training size.
    """

    prior: str = "adm"
    checkpoint: str | None = None
    prior_config: dict[str, Any] | None = None
    steps: int = 100
    operator: str = "bicubic"
    eta: float = 0.85
    sigma_y: float = 0.0
    spacing: str = "stride"
    chop_size: int | None = 64
    chop_stride: int | None = 48


@dataclass(frozen=True)
class DDNMParams(GuidedParams):
    """``ddnm``: 100 steps (DDNM's default)."""


@dataclass(frozen=True)
class DDRMParams(GuidedParams):
    """``ddrm``: 20 steps (DDRM's default) and ``eta_b``, the weight of the measurement in the step."""

    steps: int = 20
    eta_b: float = 1.0


@dataclass(frozen=True)
class SpandrelParams(TiledParams):
    """``spandrel`` and its presets (``bsrgan``, ``realesrgan-x4plus`` ...): a GAN / regression network
    whose architecture spandrel detects (:mod:`resshift.methods.spandrel_sr`).

    Attributes:
        checkpoint: a ``spandrel`` row of the weights table (the presets set their own);
        path: a local state dict read instead of the table's file (its architecture must still match);
        weights_dir: a folder searched before the cache; download: whether a missing file may be
        downloaded; sha256: a hash the file must have (``None``: the table's pin).
    """

    checkpoint: str | None = None
    path: str | None = None
    weights_dir: str | None = None
    download: bool = True
    sha256: str | None = None


@dataclass(frozen=True)
class OutputsParams(MethodParams):
    """``outputs``: SR images made elsewhere (:mod:`resshift.methods.outputs`).

    Attributes:
        root: the folder of SR images (required); suffix: appended to every data-set name to form
        the file's name; scale: the SR factor the files must have relative to the LR images;
        nfe: network evaluations per image of the method that made the files, as declared (or
        ``None``); source: free text saying where the files come from (code, commit, checkpoint).
    """

    root: str | None = None
    suffix: str = ""
    scale: int = 4
    nfe: int | None = None
    source: str | None = None
