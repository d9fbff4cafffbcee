"""The small models trained on CPU by this suite and shipped inside the package.

``resshift/assets/small_models/`` holds, per model, ``<name>.safetensors`` (fp16 weights with their
config as metadata) and ``<name>.json`` (training record: config, data split and its SHA-256, steps,
wall time, final loss, retrain command), plus ``split.json`` (the train / held-out split of the
ImageNet sample images). Registered methods, each taking the parameters of the method it wraps:

* ``small-resshift``: pixel-space ResShift (:mod:`resshift.methods.resshift_pixel`), native steps;
* ``small-sr3``: SR3-style conditional DDPM/DDIM (:mod:`resshift.methods.sr3`), any NFE;
* ``small-ddnm`` / ``small-ddrm``: guided prior (:mod:`resshift.methods.guided`) on ``small-prior``.

All of them run, by default, tile by tile at the size the models were trained on (16x16 LR / 64x64
HR, :data:`TRAIN_TILE_LR`), with overlapping tiles (stride :data:`TRAIN_TILE_STRIDE`) averaged, as
the official ResShift protocol runs its ImageNet model at its 64x64-LR training size. Whole 64x64-LR
images are out of distribution for these networks (their global attention then spans 16 times the
tokens it was trained on): on 4 embedded images small ResShift gave 21.2 dB Y-PSNR whole and
28.2 dB tiled, with the low-frequency error (psnr-low) 23.6 dB whole against 30.4 dB tiled.
``chop_size`` / ``chop_stride`` override this (``null`` = whole images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resshift.methods.base import SRMethod
from resshift.methods.registry import build_method, register_method

SMALL_MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "small_models"
NAMES = ("small-resshift", "small-sr3", "small-prior")
TRAIN_TILE_LR = 16  #: LR side of the training patches (64x64 HR / 4)
TRAIN_TILE_STRIDE = 12  #: tile stride: 4 LR pixels of overlap
TILE_BATCH = 32  #: tiles per network call (a 64x64 LR image has 25); the result does not depend on it


def small_model_path(name: str) -> Path:
    """The shipped weights of ``name``; a clear error when they are missing."""
    if name not in NAMES:
        raise KeyError(f"unknown small model {name!r} (known: {', '.join(NAMES)})")
    path = SMALL_MODELS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"shipped small model missing: {path} (retrain it with the command in "
                                f"{path.with_suffix('.json').name}, or `nox -s train`)")
    return path


def small_model_record(name: str) -> dict[str, Any]:
    """The training record (``<name>.json``) of a shipped model."""
    path = small_model_path(name).with_suffix(".json")
    return json.loads(path.read_text(encoding="utf-8"))


def _renamed(method: SRMethod, name: str, model: str) -> SRMethod:
    method.name = name
    describe = method.describe

    def describe_small() -> dict[str, object]:
        info = describe()
        rec = small_model_record(model)
        info.update(name=name, small_model=model, small_model_steps=rec.get("steps"),
                    small_model_sha256=rec.get("weights_sha256"))
        return info

    method.describe = describe_small  # type: ignore[method-assign]
    return method


def _tiled(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the training-size tiling unless the caller chose ``chop_size``, and
    :data:`TILE_BATCH` tiles per network call unless the caller chose ``tile_batch``."""
    params = {"tile_batch": TILE_BATCH, **params}
    if "chop_size" not in params:
        params = {**params, "chop_size": TRAIN_TILE_LR, "chop_stride": params.get("chop_stride", TRAIN_TILE_STRIDE)}
    return params


@register_method("small-resshift")
def _small_resshift(checkpoint: str | None = None, **params: Any) -> SRMethod:
    path = checkpoint or str(small_model_path("small-resshift"))
    method = build_method("resshift-pixel", checkpoint=path, **_tiled(params))
    return _renamed(method, "small-resshift", "small-resshift")


@register_method("small-sr3")
def _small_sr3(checkpoint: str | None = None, **params: Any) -> SRMethod:
    path = checkpoint or str(small_model_path("small-sr3"))
    return _renamed(build_method("sr3", checkpoint=path, **_tiled(params)), "small-sr3", "small-sr3")


def _guided(algorithm: str):
    def build(checkpoint: str | None = None, **params: Any) -> SRMethod:
        path = checkpoint or str(small_model_path("small-prior"))
        params.pop("prior", None)
        method = build_method(algorithm, prior="ours", checkpoint=path, **_tiled(params))
        return _renamed(method, f"small-{algorithm}", "small-prior")

    return build


register_method("small-ddnm")(_guided("ddnm"))
register_method("small-ddrm")(_guided("ddrm"))
