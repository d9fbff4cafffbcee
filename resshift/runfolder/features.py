"""The feature files of a run folder: per-image Inception features of the SR and HR images, the input of
the set-level metrics (FID, KID). Metric rows hold scalars; a set-level value needs every image's
feature vector, so the vectors are written beside the rows, one file per shard.

``records/features-<rank>-of-<world>.npz`` (rewritten whole, atomically, while the shard's images are
processed and at the end of its session) holds:

- ``names`` (N,): the images with features; ``sr``, ``hr`` (N, D) float32: their SR and HR features;
- ``version``: the feature convention (:data:`resshift.metrics.set_level.FEATURES_VERSION`) and
  ``weights_sha256``: the SHA-256 of the network file that made them; features of another convention or
  file are never mixed with the current ones (they are recomputed);
- ``failed_names``, ``failed_reasons`` (K,): images of the shard that have no features, and why (no HR
  image, unreadable file, ...).

Rank 0 merges the files of all shards (the gathering of a sharded run's features) before it computes a
set-level value. This module only reads and writes the files; the statistics are
:mod:`resshift.metrics.set_level`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resshift.runfolder.arrays import read_arrays, write_arrays


@dataclass
class RunFeatures:
    """Per-image features of one shard file, or of a whole run once merged (names sorted)."""

    names: list[str]
    sr: np.ndarray
    hr: np.ndarray
    version: str
    weights_sha256: str
    failed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if self.sr.ndim != 2 or self.sr.shape != self.hr.shape or self.sr.shape[0] != n:
            raise ValueError(f"features of {n} images with SR shape {self.sr.shape} and HR shape {self.hr.shape}")
        if len(set(self.names)) != n:
            raise ValueError("an image appears twice in a feature set")

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The SR and HR features of ``names``, in that order (``KeyError`` for a name without features)."""
        index = {n: i for i, n in enumerate(self.names)}
        idx = [index[n] for n in names]
        return self.sr[idx], self.hr[idx]


def empty_features(version: str, weights_sha256: str, dim: int) -> RunFeatures:
    return RunFeatures([], np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32), version, weights_sha256)


def write_features(path: Path, features: RunFeatures) -> Path:
    """Write one shard's feature file atomically (a reader sees the old file or the new one)."""
    failed = sorted(features.failed.items())
    return write_arrays(path, names=np.array(list(features.names), dtype=str), sr=features.sr.astype(np.float32),
                        hr=features.hr.astype(np.float32), version=np.array(features.version),
                        weights_sha256=np.array(features.weights_sha256),
                        failed_names=np.array([n for n, _ in failed], dtype=str),
                        failed_reasons=np.array([r for _, r in failed], dtype=str))


def read_features_file(path: Path) -> RunFeatures:
    """One feature file; one that cannot be read or is inconsistent raises ``ValueError`` naming it."""
    data = read_arrays(path, "feature file", ("names", "sr", "hr", "version", "weights_sha256", "failed_names",
                                              "failed_reasons"))
    try:
        names = [str(n) for n in data["names"].tolist()]
        failed = dict(zip((str(n) for n in data["failed_names"].tolist()),
                          (str(r) for r in data["failed_reasons"].tolist()), strict=True))
        return RunFeatures(names, data["sr"].astype(np.float32, copy=False), data["hr"].astype(np.float32, copy=False),
                           str(data["version"]), str(data["weights_sha256"]), failed)
    except ValueError as err:
        raise ValueError(f"{path}: cannot read the feature file ({type(err).__name__}: {err})") from err


def merge_features(files: Sequence[Path], version: str, weights_sha256: str) -> RunFeatures:
    """The features of every shard file made with ``version`` and ``weights_sha256`` (later files win per
    image; files of another convention or network file are left out).

    A failure recorded in one file does not hide features another file holds for the same image.
    """
    sr: dict[str, np.ndarray] = {}
    hr: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    dim: int | None = None
    for path in files:
        part = read_features_file(path)
        if part.version != version or part.weights_sha256 != weights_sha256:
            continue
        if len(part) and dim is not None and part.sr.shape[1] != dim:
            raise ValueError(f"{path}: features of width {part.sr.shape[1]}, other shards have {dim}")
        if len(part):
            dim = part.sr.shape[1]
        for i, name in enumerate(part.names):
            sr[name], hr[name] = part.sr[i], part.hr[i]
        failed.update(part.failed)
    names = sorted(sr)
    width = dim if dim is not None else 0
    return RunFeatures(names, np.stack([sr[n] for n in names]) if names else np.zeros((0, width), np.float32),
                       np.stack([hr[n] for n in names]) if names else np.zeros((0, width), np.float32),
                       version, weights_sha256, {n: r for n, r in failed.items() if n not in sr})


def missing_reasons(names: Sequence[str], features: RunFeatures) -> dict[str, int]:
    """``{reason: count}`` of the ``names`` without features (the recorded failure, else "no features
    recorded")."""
    counts: dict[str, int] = {}
    have = set(features.names)
    for name in names:
        if name in have:
            continue
        reason = features.failed.get(name) or "no features recorded"
        counts[reason] = counts.get(reason, 0) + 1
    return counts
