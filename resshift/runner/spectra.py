"""Per-image radial power spectra of a run: the vector part of the frequency analysis.

The runner computes them here after the metrics phase and writes them through the run folder
(:mod:`resshift.runfolder.spectra` describes the files): one ``records/spectra-<rank>-of-<world>.npz``
per shard, and ``spectra.json`` at run level (rank 0) with the band centres, the mean SR/GT and
SR/LR-up ratio curves (``null`` for bands no image has: images under 64 pixels) and the number of
images behind each. A run's mean ratio curve is :func:`resshift.metrics.spectral.mean_band_ratio`:
the geometric mean over images of the per-image band ratios, so each image counts the same whatever
its contrast.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.metrics.spectral import (
    N_BANDS,
    SPECTRAL_VERSION,
    band_edges,
    mean_band_ratio,
    radial_power_spectrum,
)
from resshift.runfolder import RunFolder
from resshift.runfolder.spectra import REFERENCE_LABELS, REFERENCES

log = logging.getLogger(__name__)


def spectral_metric_names() -> list[str]:
    """Registered metric names computed by :mod:`resshift.metrics.spectral` (implementation kind Spectral)."""
    from resshift.metrics.registry import KIND_SPECTRAL, METRICS

    return [n for n, s in METRICS.items() if s.kind == KIND_SPECTRAL]


def wants_spectra(metric_names: Iterable[str]) -> bool:
    """True when a run asks for any spectral metric (then its spectra are recorded too)."""
    return bool(set(metric_names) & set(spectral_metric_names()))


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

    folder = RunFolder(spec.run_dir)
    shard = set(dataset.names())
    names = [r["name"] for r in folder.rows("sr") if r.get("status") == "ok" and r["name"] in shard]
    if not names:
        return None
    device = torch.device(spec.device)
    kept, rows = [], []
    with torch.inference_mode():
        for name in names:
            try:
                sample = dataset.read(name)
                sr = read_image(folder.sr_image(name)).to(device)
                hr = None if sample.hr is None else sample.hr.to(device)
                rows.append(compute_image_spectra(sr, hr, sample.lr.to(device), n_bands))
                kept.append(name)
            except Exception as err:  # noqa: BLE001 - one bad image must not cost the others
                log.warning("spectrum of %s skipped: %s: %s", name, type(err).__name__, err)
    if not kept:
        return None
    return folder.write_spectra(spec.rank, spec.world_size, kept, band_edges(n_bands).numpy(), SPECTRAL_VERSION,
                                rows)


def write_spectra_summary(run_dir: str | Path) -> Path | None:
    """Write ``spectra.json`` (mean ratio curves per reference) from the run's spectra files."""
    folder = RunFolder(run_dir)
    spectra = folder.spectra()
    if spectra is None:
        return None
    curves: dict[str, Any] = {}
    for ref in REFERENCES:
        n = spectra.n_images(ref)
        if n:
            curves[ref] = {"reference": REFERENCE_LABELS[ref], "n_images": n,
                           "mean_ratio": [float(v) if np.isfinite(v) else None for v in
                                          mean_band_ratio(spectra.power_sr, spectra.reference_power(ref))]}
    summary = {
        "version": SPECTRAL_VERSION,
        "frequency_unit": "fraction of Nyquist (radial)",
        "band_edges": [float(v) for v in spectra.band_edges],
        "band_centres": [float(v) for v in spectra.band_centres],
        "mean_ratio_definition": "geometric mean over images of radial luma power SR / reference per band",
        "curves": curves,
    }
    return folder.write_spectra_summary(summary)
