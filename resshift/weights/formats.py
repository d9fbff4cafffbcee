"""Checkpoint formats: reading any state dict safely, normalising it, fitting it to a network strictly,
and the suite's own safetensors formats.

Foreign files are read with ``torch.load(weights_only=True)`` (``.pth``/``.pt``/``.ckpt``/``.bin``) or
safetensors; ``state_dict``/``params_ema``-style wrappers and ``module.`` / ``_orig_mod.`` prefixes
(DDP, ``torch.compile``) are removed. Loading into a network is strict: missing, unexpected or
mis-shaped keys raise :class:`CheckpointMismatchError` naming the file and the keys. The Swin
``attn_mask`` / ``relative_position_index`` buffers are derived from the architecture and may be
absent from a file.

Our own formats are single ``.safetensors`` files whose metadata holds ``format`` and ``config``
(JSON: ``model`` = :class:`~resshift.models.sr3_unet.SR3UNet` arguments plus the sampling facts):

* :data:`GAUSSIAN_FORMAT` (SR3-style models and unconditional priors): ``schedule`` = the training
  betas (:func:`resshift.diffusion.gaussian.make_betas` arguments), ``conditioning``, ``prediction``;
* :data:`PIXEL_RESSHIFT_FORMAT` (pixel-space ResShift): ``schedule`` = :meth:`ResShiftSchedule.describe`,
  ``space``, ``residual``;
* :data:`LATENT_RESSHIFT_FORMAT` (a Swin-UNet trained in the VQ-f4 latent): ``model`` = the training
  config's network section, ``schedule`` = :meth:`ResShiftSchedule.describe`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resshift.diffusion.gaussian import check_prediction
from resshift.diffusion.schedule import ResShiftSchedule
from resshift.download import WeightsError
from resshift.models.sr3_unet import CONDITIONINGS, SR3UNet

_WRAPPER_KEYS = ("state_dict", "params_ema", "params", "model", "ema")
_PREFIXES = ("module.", "_orig_mod.")
_DERIVED_BUFFERS = (".attn_mask", ".relative_position_index")

GAUSSIAN_FORMAT = "resshift-bench/gaussian-unet/1"
PIXEL_RESSHIFT_FORMAT = "resshift-bench/resshift-pixel/1"
LATENT_RESSHIFT_FORMAT = "resshift-bench/resshift-latent/1"


class CheckpointNotFoundError(WeightsError, FileNotFoundError):
    """A checkpoint is not available locally and may not be downloaded."""


class CheckpointFormatError(WeightsError, ValueError):
    """A file is not a readable state dict (or not in the expected format)."""


class CheckpointMismatchError(WeightsError, ValueError):
    """A state dict does not fit the network (missing / unexpected / mis-shaped keys)."""


# ------------------------------------------------------------------------------------ state dicts


def _strip_prefixes(key: str) -> str:
    key = key.replace("._orig_mod.", ".")
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def normalize_state_dict(obj: object, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Unwrap ``state_dict``/``params_ema``-style containers and strip ``module.``/``_orig_mod.``."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise CheckpointFormatError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
            raise CheckpointFormatError(
                f"{source}: not a state dict (non-tensor entries {bad}; no wrapper among {_WRAPPER_KEYS})"
            )
        obj = obj[wrapper]
    else:
        raise CheckpointFormatError(f"{source}: wrappers nested too deeply")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        clean = _strip_prefixes(str(key))
        if clean in out:
            raise CheckpointFormatError(f"{source}: keys collide after removing prefixes: {clean!r}")
        out[clean] = value
    return out


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True`` or safetensors) and normalise its keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except Exception as exc:
            raise CheckpointFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointFormatError(
                f"{path}: refused by torch.load(weights_only=True): it contains objects other than "
                f"tensors and plain containers ({first}). Re-save it as a plain state dict."
            ) from exc
        except Exception as exc:
            raise CheckpointFormatError(f"{path}: cannot be read as a PyTorch checkpoint ({exc})") from exc
    return normalize_state_dict(obj, str(path))


def _fit_problems(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable problems of fitting ``state`` to keys/shapes ``expected``."""
    missing = [k for k in expected if k not in state and not k.endswith(_DERIVED_BUFFERS)]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
        for k in state
        if k in expected and not k.endswith(".attn_mask") and tuple(state[k].shape) != tuple(expected[k])
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mis_shaped)):
        if items:
            more = f" ... (+{len(items) - 10} more)" if len(items) > 10 else ""
            problems.append(f"{label} ({len(items)}): {', '.join(items[:10])}{more}")
    return problems


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` fits ``model`` exactly (works on meta)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problems = _fit_problems(expected, state)
    if problems:
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems)
        )


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Strictly load ``state`` into ``model``; derived Swin buffers keep the model's own values."""
    check_state_dict(model, state, source)
    own = model.state_dict()
    for key, value in state.items():
        if key.endswith(".relative_position_index") and not torch.equal(value.cpu(), own[key].cpu()):
            raise CheckpointMismatchError(f"{source}: {key} differs from the architecture's index")
    payload = {k: v for k, v in state.items() if not k.endswith(_DERIVED_BUFFERS)}
    result = model.load_state_dict(payload, strict=False)
    leftover = [k for k in result.missing_keys if not k.endswith(_DERIVED_BUFFERS)]
    if leftover or result.unexpected_keys:  # pragma: no cover - guarded by check_state_dict
        raise CheckpointMismatchError(f"{source}: {leftover} missing, {result.unexpected_keys} unexpected")
    return model


# ---------------------------------------------------------------------------------- ADM (OpenAI)


def load_adm_checkpoint(path: str | Path, config: dict[str, Any] | None = None, **kw: Any) -> nn.Module:
    """An :class:`~resshift.models.adm_unet.ADMUNet` (default config ``ADM_256_UNCOND``) with the
    weights of ``path`` loaded strictly, in eval mode.

    Raises ``FileNotFoundError`` naming a missing file and :class:`CheckpointMismatchError` (a
    ``ValueError``) naming the file and the missing / unexpected / mis-shaped keys.
    """
    from resshift.models.adm_unet import ADM_256_UNCOND, ADMUNet

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"ADM checkpoint not found: {path}")
    model = ADMUNet(**{**(config or ADM_256_UNCOND), **kw})
    return load_into(model, load_state_dict(path), str(path)).eval()


# ------------------------------------------------------------------------- our safetensors formats


def _save(path: str | Path, net: nn.Module, fmt: str, config: dict[str, Any], dtype: torch.dtype | None) -> Path:
    from safetensors.torch import save_file

    from resshift.atomic import atomic_path

    state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in net.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": fmt, "config": json.dumps(config)})
    return path


def read_unet_file(path: str | Path, expected_format: str) -> tuple[SR3UNet, dict[str, Any]]:
    """An :class:`SR3UNet` (float32, eval mode) and the JSON ``config`` of a safetensors file whose
    metadata ``format`` is ``expected_format``. Errors (``ValueError`` / ``FileNotFoundError``) name the file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad file
        raise CheckpointFormatError(f"{path} is not a safetensors file: {err}") from err
    if meta.get("format") != expected_format:
        raise CheckpointFormatError(f"{path} is not a {expected_format} checkpoint (format {meta.get('format')!r})")
    config = json.loads(meta["config"])
    model = SR3UNet(**config["model"])
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointMismatchError(f"{path}: weights do not match the stored model config: {err}") from err
    return model.eval(), config


def save_gaussian_checkpoint(
    path: str | Path,
    model: SR3UNet,
    schedule: dict[str, Any],
    conditioning: str,
    extra: dict[str, Any] | None = None,
    prediction: str = "eps",
) -> Path:
    """Write an SR3-style model or prior in :data:`GAUSSIAN_FORMAT` (atomically).

    ``config`` keys: ``model`` (the :class:`SR3UNet` arguments), ``schedule`` (``{"kind": "linear" |
    "cosine", "steps": T, ...}``, see :func:`resshift.diffusion.gaussian.make_betas`), ``conditioning``
    (``"bicubic-concat"``: channels 4-6 are ``2*bicubic_x4(lr)-1``; ``"none"``: unconditional prior),
    ``prediction`` (``"eps"`` or ``"v"``) and any ``extra`` (training facts).
    """
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {conditioning!r} (known: {', '.join(CONDITIONINGS)})")
    check_prediction(prediction, str(path))
    expected_in = 6 if conditioning == "bicubic-concat" else 3
    if model.in_channels != expected_in:
        raise ValueError(
            f"conditioning {conditioning!r} needs {expected_in} input channels, model has {model.in_channels}"
        )
    config = {"model": model.config, "schedule": dict(schedule), "conditioning": conditioning,
              "prediction": prediction, **(extra or {})}
    return _save(path, model, GAUSSIAN_FORMAT, config, None)


def load_gaussian_checkpoint(path: str | Path) -> tuple[SR3UNet, dict[str, Any]]:
    """Read a :data:`GAUSSIAN_FORMAT` file: ``(model in eval mode, config)``; files without
    ``prediction`` are noise predictors (``"eps"``). Errors name the file."""
    model, config = read_unet_file(path, GAUSSIAN_FORMAT)
    config["prediction"] = check_prediction(str(config.get("prediction", "eps")), str(path))
    return model, config


def schedule_from_description(desc: dict[str, Any]) -> ResShiftSchedule:
    """Rebuild a :class:`ResShiftSchedule` from :meth:`ResShiftSchedule.describe` output."""
    if desc.get("schedule", "exponential") != "exponential":
        raise ValueError(f"unknown ResShift schedule {desc.get('schedule')!r}")
    return ResShiftSchedule.from_config(
        steps=int(desc["steps"]),
        kappa=float(desc["kappa"]),
        min_noise_level=float(desc["min_noise_level"]),
        etas_end=float(desc["etas_end"]),
        power=float(desc["power"]),
        legacy_cap=bool(desc.get("legacy_cap", False)),
    )


def save_pixel_checkpoint(path: str | Path, net: SR3UNet, schedule: ResShiftSchedule,
                          extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None,
                          residual: bool = False) -> Path:
    """Write a pixel-space ResShift denoiser ``net`` (optionally cast to ``dtype``, e.g. fp16) with its
    schedule, in :data:`PIXEL_RESSHIFT_FORMAT` (atomically)."""
    config = {"model": net.config, "schedule": schedule.describe(), "space": "pixel", "residual": bool(residual),
              **(extra or {})}
    return _save(path, net, PIXEL_RESSHIFT_FORMAT, config, dtype)


def load_pixel_checkpoint(path: str | Path) -> tuple[SR3UNet, ResShiftSchedule, dict[str, Any]]:
    """Read a :data:`PIXEL_RESSHIFT_FORMAT` file: ``(net in float32, eval mode; schedule; config)``."""
    net, config = read_unet_file(path, PIXEL_RESSHIFT_FORMAT)
    return net, schedule_from_description(config["schedule"]), config


def save_latent_checkpoint(path: str | Path, net: nn.Module, model_config: dict[str, Any],
                           schedule: ResShiftSchedule, extra: dict[str, Any] | None = None,
                           dtype: torch.dtype | None = None) -> Path:
    """Write a latent-space ResShift denoiser in :data:`LATENT_RESSHIFT_FORMAT` (atomically)."""
    config = {"model": model_config, "schedule": schedule.describe(), **(extra or {})}
    return _save(path, net, LATENT_RESSHIFT_FORMAT, config, dtype)
