"""Per-image radial power spectra of a run: the vector part of the frequency analysis.

Metric rows hold scalars; the spectra are curves, so they are written beside the rows:

- ``records/spectra-<rank>-of-<world>.npz`` (one per shard, rewritten whole after each metrics
  phase): ``names`` (N,), ``band_edges`` (n_bands + 1,) in units of Nyquist, and ``(N, n_bands)``
  radial luma power spectra ``power_sr``, ``power_gt`` (NaN rows where the set has no HR image) and
  ``power_lrup`` (the LR input bicubic-upsampled, the reference of sets without HR).
- ``spectra.json`` (run level, written by rank 0): band centres, the mean SR/GT and SR/LR-up ratio
  curves (``null`` for bands no image has: images under 64 pixels), the number of images behind each.

A run's mean ratio curve is the geometric mean over images of the per-image band ratios (powers
floored at the 8-bit quantisation level, see :mod:`resshift.metrics.spectral`), so each image counts
the same whatever its contrast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.atomic import atomic_path
from resshift.metrics.spectral import (
    N_BANDS,
    QUANTIZATION_POWER,
    SPECTRAL_VERSION,
    band_edges,
    radial_power_spectrum,
)

log = logging.getLogger(__name__)

SPECTRA_SUMMARY = "spectra.json"
REFERENCES = ("gt", "lrup")
REFERENCE_LABELS = {"gt": "GT", "lrup": "bicubic-upsampled LR input (no GT)"}


def spectral_metric_names() -> list[str]:
    """Registered metric names computed by :mod:`resshift.metrics.spectral` (implementation kind Spectral)."""
    from resshift.metrics.registry import KIND_SPECTRAL, METRICS

    return [n for n, s in METRICS.items() if s.kind == KIND_SPECTRAL]


def wants_spectra(metric_names: Iterable[str]) -> bool:
    """True when a run asks for any spectral metric (then its spectra are recorded too)."""
    return bool(set(metric_names) & set(spectral_metric_names()))


@dataclass
class RunSpectra:
    """The per-image radial spectra of one run (all shards merged)."""

    names: list[str]
    band_edges: np.ndarray
    power_sr: np.ndarray
    power_gt: np.ndarray
    power_lrup: np.ndarray

    @property
    def band_centres(self) -> np.ndarray:
        return 0.5 * (self.band_edges[:-1] + self.band_edges[1:])

    def reference_power(self, reference: str) -> np.ndarray:
        if reference not in REFERENCES:
            raise ValueError(f"unknown spectrum reference {reference!r}; known: {', '.join(REFERENCES)}")
        return self.power_gt if reference == "gt" else self.power_lrup

    def n_images(self, reference: str) -> int:
        """Images with a spectrum for ``reference`` (GT is absent on LR-only sets)."""
        ref = self.reference_power(reference)
        return int(np.isfinite(ref).any(axis=1).sum()) if ref.size else 0

    def log2_ratios(self, reference: str) -> np.ndarray:
        """Per-image ``log2(P_sr / P_ref)`` per band, ``(N, n_bands)``; NaN where undefined."""
        ref = self.reference_power(reference)
        with np.errstate(invalid="ignore"):
            return np.log2(np.maximum(self.power_sr, QUANTIZATION_POWER) / np.maximum(ref, QUANTIZATION_POWER))

    def mean_ratio(self, reference: str) -> np.ndarray:
        """Geometric mean over images of the band ratios SR / reference, ``(n_bands,)``."""
        logs = self.log2_ratios(reference)
        out = np.full(logs.shape[1], np.nan)
        valid = np.isfinite(logs)
        counts = valid.sum(axis=0)
        sums = np.where(valid, logs, 0.0).sum(axis=0)
        np.divide(sums, counts, out=out, where=counts > 0)
        return np.exp2(out)

    def preferred_reference(self) -> str:
        """``"gt"`` when any image has GT, else ``"lrup"``."""
        return "gt" if self.n_images("gt") else "lrup"


def _shard_file(records_dir: Path, rank: int, world_size: int) -> Path:
    return records_dir / f"spectra-{rank}-of-{world_size}.npz"


def compute_image_spectra(sr: torch.Tensor, hr: torch.Tensor | None, lr: torch.Tensor,
                          n_bands: int = N_BANDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radial spectra of one image's SR, GT (NaN when ``hr`` is None) and bicubic-upsampled LR.

    ``sr``, ``hr``: ``(3, H, W)``; ``lr``: ``(3, h, w)``, all in ``[0, 1]`` on one device.
    """
    p_sr = radial_power_spectrum(sr[None], n_bands)[0]
    if hr is None:
        p_gt = torch.full_like(p_sr, float("nan"))
    else:
        if hr.shape != sr.shape:
            raise ValueError(f"SR and HR shapes differ: {tuple(sr.shape)} vs {tuple(hr.shape)}")
        p_gt = radial_power_spectrum(hr[None], n_bands)[0]
    p_lrup = radial_power_spectrum(lr[None], n_bands, upsample_to=(int(sr.shape[-2]), int(sr.shape[-1])))[0]
    return p_sr.cpu().numpy(), p_gt.cpu().numpy(), p_lrup.cpu().numpy()


def record_spectra(spec: Any, dataset: Any, n_bands: int = N_BANDS) -> Path | None:
    """Write this shard's spectra file for every SR image with an ``ok`` row (all of them again).

    ``spec`` is the run's :class:`~resshift.runner.run.RunSpec`, ``dataset`` this shard's data set.
    An image that cannot be read is logged and left out (its metric row already records the error).
    Returns the file written, or None when there was no image.
    """
    from resshift.io import read_image
    from resshift.runner.run import all_rows

    shard = set(dataset.names())
    names = [r["name"] for r in all_rows(spec.records_dir, "sr") if r.get("status") == "ok" and r["name"] in shard]
    if not names:
        return None
    device = torch.device(spec.device)
    kept, rows = [], []
    with torch.inference_mode():
        for name in names:
            try:
                sample = dataset.read(name)
                sr = read_image(spec.sr_dir / f"{name}.png").to(device)
                hr = None if sample.hr is None else sample.hr.to(device)
                rows.append(compute_image_spectra(sr, hr, sample.lr.to(device), n_bands))
                kept.append(name)
            except Exception as err:  # noqa: BLE001 - one bad image must not cost the others
                log.warning("spectrum of %s skipped: %s: %s", name, type(err).__name__, err)
    if not kept:
        return None
    path = _shard_file(spec.records_dir, spec.rank, spec.world_size)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, names=np.array(kept), band_edges=band_edges(n_bands).numpy(),
                 version=np.array(SPECTRAL_VERSION),
                 power_sr=np.stack([r[0] for r in rows]), power_gt=np.stack([r[1] for r in rows]),
                 power_lrup=np.stack([r[2] for r in rows]))
    return path


def load_run_spectra(run_dir: str | Path) -> RunSpectra | None:
    """The merged spectra of a run folder (last shard file wins per image), or None when absent.

    Shard files written with a different band layout than the first one raise ``ValueError``.
    """
    files = sorted((Path(run_dir) / "records").glob("spectra-*-of-*.npz"))
    if not files:
        return None
    edges: np.ndarray | None = None
    merged: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            if edges is None:
                edges = data["band_edges"]
            elif data["band_edges"].shape != edges.shape or not np.allclose(data["band_edges"], edges):
                raise ValueError(f"{path}: band layout differs from {files[0].name}")
            for i, name in enumerate(data["names"].tolist()):
                merged[name] = (data["power_sr"][i], data["power_gt"][i], data["power_lrup"][i])
    assert edges is not None
    names = sorted(merged)
    n = len(edges) - 1

    def stack(k: int) -> np.ndarray:
        return np.stack([merged[x][k] for x in names]) if names else np.zeros((0, n))

    return RunSpectra(names=names, band_edges=edges, power_sr=stack(0), power_gt=stack(1), power_lrup=stack(2))


def write_spectra_summary(run_dir: str | Path) -> Path | None:
    """Write ``spectra.json`` (mean ratio curves per reference) from the run's spectra files."""
    from resshift.runner.store import write_json

    spectra = load_run_spectra(run_dir)
    if spectra is None:
        return None
    curves: dict[str, Any] = {}
    for ref in REFERENCES:
        n = spectra.n_images(ref)
        if n:
            curves[ref] = {"reference": REFERENCE_LABELS[ref], "n_images": n,
                           "mean_ratio": [float(v) if np.isfinite(v) else None for v in spectra.mean_ratio(ref)]}
    summary = {
        "version": SPECTRAL_VERSION,
        "frequency_unit": "fraction of Nyquist (radial)",
        "band_edges": [float(v) for v in spectra.band_edges],
        "band_centres": [float(v) for v in spectra.band_centres],
        "mean_ratio_definition": "geometric mean over images of radial luma power SR / reference per band",
        "curves": curves,
    }
    path = Path(run_dir) / SPECTRA_SUMMARY
    write_json(path, summary)
    return path
