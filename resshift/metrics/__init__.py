"""Metrics: the registry of names, the paper's Y-channel PSNR/SSIM, learned metrics through pyiqa, and the
set-level FID/KID.

Public API used by the runner::

    available, unavailable = build_metrics(["psnr", "ssim", "lpips", "fid"], device="cuda")
    scores = available["psnr"].compute(sr, hr)     # (B,) float32; sr, hr: (B, 3, H, W) in [0, 1]
    unavailable  # {"lpips": "weights file ... not found in ... (fetch with ...)"}
    fid = available["fid"]                         # a SetMetric (spec.set_level): no per-image value
    feats = fid.features(sr)                       # (B, 2048) Inception features, stored per image
    value = fid.compute(sr_features, hr_features)  # one value for the whole set
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from resshift.metrics.availability import fetch_metric_weights, unavailable_reason
from resshift.metrics.base import Metric, MetricInputError, PaperYMetric
from resshift.metrics.registry import (
    BACKEND_PYIQA,
    KIND_SPECTRAL,
    METRICS,
    PAPER_METRICS,
    MetricSpec,
    get_spec,
    metric_names,
)
from resshift.metrics.set_level import SetMetric
from resshift.weights.metric_files import metric_weights_dir

__all__ = [
    "METRICS",
    "PAPER_METRICS",
    "Metric",
    "MetricInputError",
    "MetricSpec",
    "SetMetric",
    "build_metric",
    "build_metrics",
    "fetch_metric_weights",
    "get_spec",
    "metric_names",
    "metric_weights_dir",
]


def build_metric(
    name: str, device: str | torch.device = "cpu", weights_dir: str | Path | None = None
) -> Metric | SetMetric:
    """Build one metric; raises ``RuntimeError`` with the reason when it is unavailable here."""
    spec = get_spec(name)
    root = Path(weights_dir) if weights_dir is not None else metric_weights_dir()
    reason = unavailable_reason(spec, root)
    if reason is not None:
        raise RuntimeError(f"metric {name!r} unavailable: {reason}")
    return _construct(spec, device, root, {})


def _construct(spec: MetricSpec, device: str | torch.device, root: Path,
               shared: dict[tuple[str, str], object]) -> Metric | SetMetric:
    """The metric object for ``spec``, chosen by its level, backend and implementation kind. Set-level
    metrics needing the same weights share one feature extractor through ``shared``."""
    if spec.set_level:
        from resshift.metrics.set_level import InceptionFeatures
        from resshift.weights.metric_files import weight_path

        key = (spec.weights[0], str(torch.device(device)))
        if key not in shared:
            shared[key] = InceptionFeatures(weight_path(spec.weights[0], root), device)
        return SetMetric(spec, shared[key])  # type: ignore[arg-type]
    if spec.backend == BACKEND_PYIQA:
        from resshift.metrics.pyiqa_backend import PyiqaMetric

        return PyiqaMetric(spec, device, root)
    if spec.kind == KIND_SPECTRAL:
        from resshift.metrics.spectral import SpectralMetric

        return SpectralMetric(spec, device)
    return PaperYMetric(spec, device)


def build_metrics(
    names: Iterable[str], device: str | torch.device = "cpu", weights_dir: str | Path | None = None
) -> tuple[dict[str, Metric | SetMetric], dict[str, str]]:
    """Build every metric in ``names`` that can run here.

    Returns ``(available, unavailable)``: built metrics by name (a :class:`SetMetric` for the set-level
    ones, ``spec.set_level``), and for the others the reason (missing weights file and how to fetch it,
    missing package, or the construction error). Unknown names raise ``KeyError`` at once: a typo is a
    configuration error, not an unavailable metric.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        get_spec(name)
    root = Path(weights_dir) if weights_dir is not None else metric_weights_dir()
    available: dict[str, Metric | SetMetric] = {}
    unavailable: dict[str, str] = {}
    shared: dict[tuple[str, str], object] = {}
    for name in names:
        spec = get_spec(name)
        reason = unavailable_reason(spec, root)
        if reason is not None:
            unavailable[name] = reason
            continue
        try:
            available[name] = _construct(spec, device, root, shared)
        except Exception as exc:  # noqa: BLE001 - recorded, the other metrics go on
            unavailable[name] = f"{type(exc).__name__}: {exc}"
    return available, unavailable
