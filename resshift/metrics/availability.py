"""Can a metric be built here? Decided from files and imports only, never by trying a download."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from resshift.metrics.registry import BACKEND_PYIQA, METRICS, MetricSpec, get_spec
from resshift.weights.metric_files import FetchResult, fetch_metric_files, metric_weights_dir, weight_problem

# Python packages each pyiqa metric imports beyond pyiqa itself (import name, distribution name).
_EXTRA_IMPORTS: dict[str, tuple[tuple[str, str], ...]] = {
    "clipiqa": (("clip", "openai-clip"),),
    "liqe": (("clip", "openai-clip"),),
    "maniqa": (("timm", "timm"),),
    "maniqa-pipal": (("timm", "timm"),),
    "topiq_nr": (("timm", "timm"),),
}


def unavailable_reason(spec: MetricSpec, directory: str | Path | None = None) -> str | None:
    """Why ``spec`` cannot be computed on this machine, or ``None`` when it can.

    Checks the backend package, extra imports and every weight file (presence, and the full SHA-256
    where one is published) in ``directory`` (default: the metric weight directory).
    """
    if spec.backend != BACKEND_PYIQA:
        return None
    if importlib.util.find_spec("pyiqa") is None:
        return "pyiqa is not installed (pip install 'pyiqa>=0.1.16,<0.2')"
    for module, dist in _EXTRA_IMPORTS.get(spec.pyiqa_name or "", ()):
        if importlib.util.find_spec(module) is None:
            return f"python package {dist} (import {module}) is not installed"
    if spec.pyiqa_name in ("clipiqa", "liqe"):
        from resshift.metrics.pyiqa_backend import import_clip_support

        try:
            import_clip_support()
        except ImportError as exc:
            return f"pyiqa's CLIP support does not import: {exc}"
    root = Path(directory) if directory is not None else metric_weights_dir()
    for key in spec.weights:
        problem = weight_problem(key, root)
        if problem is not None:
            return problem
    return None


def weights_for_metrics(names: Iterable[str] | None = None) -> list[str]:
    """Weight keys needed by the metric ``names`` (all registry metrics when ``None``), in order."""
    specs = METRICS.values() if names is None else [get_spec(n) for n in names]
    keys: list[str] = []
    for spec in specs:
        keys += [key for key in spec.weights if key not in keys]
    return keys


def fetch_metric_weights(directory: str | Path | None = None, names: Iterable[str] | None = None) -> list[FetchResult]:
    """Download every weight file the metrics ``names`` (default: all) need into ``directory``
    (default: the metric weight directory); see :func:`resshift.weights.metric_files.fetch_metric_files`."""
    return fetch_metric_files(weights_for_metrics(names), directory)
