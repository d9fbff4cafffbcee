"""Files shipped inside the package: the small models trained on CPU by this suite.

``resshift/assets/small_models/`` holds, per model, ``<name>.safetensors`` (fp16 weights with their
config as metadata; SHA-256 pinned in :data:`~resshift.weights.table.SHIPPED`) and ``<name>.json``
(training record: config, data split and its SHA-256, steps, wall time, final loss, retrain command),
plus ``split.json`` (the train / held-out split of the ImageNet sample images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resshift.weights.table import SHIPPED

SMALL_MODELS_DIR = Path(__file__).resolve().parent.parent / "assets" / "small_models"


def small_model_path(name: str) -> Path:
    """The shipped weights of ``name``; a clear error when they are missing."""
    if name not in SHIPPED:
        raise KeyError(f"unknown small model {name!r} (known: {', '.join(SHIPPED)})")
    path = SMALL_MODELS_DIR / SHIPPED[name].relpath
    if not path.is_file():
        raise FileNotFoundError(f"shipped small model missing: {path} (retrain it with the command in "
                                f"{path.with_suffix('.json').name}, or `nox -s train`)")
    return path


def small_model_record(name: str) -> dict[str, Any]:
    """The training record (``<name>.json``) of a shipped model."""
    path = small_model_path(name).with_suffix(".json")
    return json.loads(path.read_text(encoding="utf-8"))
