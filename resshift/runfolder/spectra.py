"""The spectra files of a run folder: per-image radial power spectra, the vector part of the frequency
analysis (metric rows hold scalars; the spectra are curves, so they are written beside the rows).

- ``records/spectra-<rank>-of-<world>.npz`` (one per shard, rewritten whole after each metrics phase):
  ``names`` (N,), ``band_edges`` (n_bands + 1,) in units of Nyquist, ``version``, and ``(N, n_bands)``
  radial luma power spectra ``power_sr``, ``power_gt`` (NaN rows where the set has no HR image) and
  ``power_lrup`` (the LR input bicubic-upsampled, the reference of sets without HR).
- ``spectra.json`` (run level, written by rank 0): band centres, the mean SR/GT and SR/LR-up ratio
  curves, the number of images behind each (written by :mod:`resshift.runner.spectra`).

This module only reads and writes the per-image file and says what its references are; the ratio
statistics are computed in :mod:`resshift.metrics.spectral`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resshift.runfolder.arrays import read_arrays, write_arrays

REFERENCES = ("gt", "lrup")
REFERENCE_LABELS = {"gt": "GT", "lrup": "bicubic-upsampled LR input (no GT)"}


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
        """``power_gt`` or ``power_lrup``; another name raises ``ValueError``."""
        if reference not in REFERENCES:
            raise ValueError(f"unknown spectrum reference {reference!r}; known: {', '.join(REFERENCES)}")
        return self.power_gt if reference == "gt" else self.power_lrup

    def n_images(self, reference: str) -> int:
        """Images with a spectrum for ``reference`` (GT is absent on LR-only sets)."""
        ref = self.reference_power(reference)
        return int(np.isfinite(ref).any(axis=1).sum()) if ref.size else 0

    def preferred_reference(self) -> str:
        """``"gt"`` when any image has GT, else ``"lrup"``."""
        return "gt" if self.n_images("gt") else "lrup"


def write_spectra(path: Path, names: Sequence[str], band_edges: np.ndarray, version: str,
                  rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Path:
    """Write one shard's spectra file atomically: ``rows[i]`` is ``(power_sr, power_gt, power_lrup)`` of
    ``names[i]``."""
    if len(names) != len(rows) or not rows:
        raise ValueError(f"{path}: {len(names)} names for {len(rows)} spectra (need the same, at least one)")
    return write_arrays(path, names=np.array(list(names)), band_edges=np.asarray(band_edges),
                        version=np.array(version), power_sr=np.stack([r[0] for r in rows]),
                        power_gt=np.stack([r[1] for r in rows]), power_lrup=np.stack([r[2] for r in rows]))


def _load_shard(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    data = read_arrays(path, "spectra file", ("band_edges", "names", "power_sr", "power_gt", "power_lrup"))
    return (data["band_edges"], [str(n) for n in data["names"].tolist()], data["power_sr"], data["power_gt"],
            data["power_lrup"])


def read_spectra(files: Sequence[Path]) -> RunSpectra | None:
    """The merged spectra of a run's shard files (the last file wins per image), or None without files.

    A file that cannot be read, or whose band layout differs from the first one's, raises ``ValueError``
    naming it.
    """
    if not files:
        return None
    edges: np.ndarray | None = None
    merged: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for path in files:
        file_edges, names, sr, gt, lrup = _load_shard(path)
        if edges is None:
            edges = file_edges
        elif file_edges.shape != edges.shape or not np.allclose(file_edges, edges):
            raise ValueError(f"{path}: band layout differs from {files[0].name}")
        for i, name in enumerate(names):
            merged[name] = (sr[i], gt[i], lrup[i])
    assert edges is not None
    names = sorted(merged)
    n = len(edges) - 1

    def stack(k: int) -> np.ndarray:
        return np.stack([merged[x][k] for x in names]) if names else np.zeros((0, n))

    return RunSpectra(names=names, band_edges=edges, power_sr=stack(0), power_gt=stack(1), power_lrup=stack(2))
