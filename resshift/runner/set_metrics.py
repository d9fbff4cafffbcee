"""Set-level metrics of a run (FID, KID): per-image features first, one value per run after all shards.

1. :func:`record_features` (every shard, after the metrics phase): the Inception features of the SR
   image and the HR image of each image scored ok, kept in the shard's feature file
   (:mod:`resshift.runfolder.features`). Images that have features of the current convention and network
   file in any shard's file are skipped, so a resumed run (with any number of shards) computes only what it
   lacks; the file is rewritten at most every
   :data:`FLUSH_SECONDS` and at the end, so a killed run loses at most that much work.
2. :func:`set_metric_values` (rank 0, after the barrier): the features of every shard merged by image
   name (the gathering step of a sharded run), then each set-level metric computed once over the images
   scored ok: the SR set against the HR set of the same names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from resshift.runfolder import RunFolder
from resshift.runfolder.features import RunFeatures, empty_features, missing_reasons

log = logging.getLogger(__name__)

#: Longest time between two writes of a shard's feature file while it is being filled.
FLUSH_SECONDS = 60.0
NO_HR = "no HR image (a set-level metric compares the SR set with the HR set)"


def _extractor(set_metrics: Mapping[str, Any]) -> Any:
    """The one feature extractor the set-level metrics share (they are built with one)."""
    extractors = {id(m.features): m.features for m in set_metrics.values()}
    if len(extractors) != 1:
        raise RuntimeError(f"set-level metrics {sorted(set_metrics)} do not share one feature extractor")
    return next(iter(extractors.values()))


def record_features(spec: Any, dataset: Any, set_metrics: Mapping[str, Any], batch_size: int = 8,
                    flush_seconds: float = FLUSH_SECONDS) -> dict[str, int]:
    """Fill this shard's feature file for every image of the shard with an ``ok`` SR row.

    ``spec`` is the run's :class:`~resshift.runner.run.RunSpec`, ``dataset`` this shard's data set,
    ``set_metrics`` the built :class:`~resshift.metrics.SetMetric` objects. An image without HR, or whose
    files cannot be read, is recorded with the reason and tried again by the next session. Returns counts
    (``done``, ``skipped``: had features, ``failed``).
    """
    from resshift.io import read_image

    extractor = _extractor(set_metrics)
    folder = RunFolder(spec.run_dir)
    shard = set(dataset.names())
    names = [r["name"] for r in folder.rows("sr") if r.get("status") == "ok" and r["name"] in shard]
    previous = folder.shard_features(spec.rank, spec.world_size)
    current = empty_features(extractor.version, extractor.weights_sha256, extractor.dim)
    key = (current.version, current.weights_sha256)
    if previous is not None and len(previous) and (previous.version, previous.weights_sha256) != key:
        log.info("%s: features of %d images made with another convention or network file are recomputed",
                 spec.run_dir.name, len(previous))
    # features of this convention from every shard file, whatever the world size that wrote it: a run resumed
    # with another number of shards takes over what the old shards computed
    known = folder.features(*key)
    wanted = set(names)
    keep = [n for n in known.names if n in wanted]
    if keep:
        current = RunFeatures(keep, *known.rows(keep), current.version, current.weights_sha256)
    have = set(keep)
    pending = [n for n in names if n not in have]
    counts = {"done": 0, "skipped": len(names) - len(pending), "failed": 0}
    if not pending:
        changed = (previous is None and bool(names)) or previous is not None and (
            (previous.version, previous.weights_sha256) != key or set(previous.names) != have or bool(previous.failed))
        if changed:
            folder.write_features(spec.rank, spec.world_size, current)
        return counts
    from tqdm import tqdm

    progress = tqdm(total=len(pending), desc=f"features {spec.method} on {spec.dataset}", unit="img", leave=False)
    done_names, sr_rows, hr_rows = list(current.names), [current.sr], [current.hr]
    failed: dict[str, str] = {}
    last_write = time.monotonic()

    def snapshot() -> RunFeatures:
        return RunFeatures(list(done_names), np.concatenate(sr_rows), np.concatenate(hr_rows), current.version,
                           current.weights_sha256, dict(failed))

    for start in range(0, len(pending), max(1, batch_size)):
        group = []
        for name in pending[start: start + max(1, batch_size)]:
            try:
                sample = dataset.read(name)
                if sample.hr is None:
                    failed[name] = NO_HR
                    continue
                group.append((name, read_image(folder.sr_image(name)), sample.hr))
            except Exception as err:  # noqa: BLE001 - recorded per image, the others go on
                failed[name] = f"{type(err).__name__}: {err}"
        if group:
            try:
                sr = extractor([g[1] for g in group])
                hr = extractor([g[2] for g in group])
            except Exception as err:  # noqa: BLE001 - recorded per image
                for name, *_ in group:
                    failed[name] = f"{type(err).__name__}: {err}"
            else:
                done_names.extend(g[0] for g in group)
                sr_rows.append(sr)
                hr_rows.append(hr)
                counts["done"] += len(group)
        progress.update(min(len(pending) - start, max(1, batch_size)))
        if time.monotonic() - last_write >= flush_seconds:
            folder.write_features(spec.rank, spec.world_size, snapshot())
            last_write = time.monotonic()
    progress.close()
    counts["failed"] = len(failed)
    for name, reason in failed.items():
        if reason != NO_HR:
            log.warning("%s: no features of %s: %s", spec.run_dir.name, name, reason)
    folder.write_features(spec.rank, spec.world_size, snapshot())
    return counts


def set_metric_values(folder: RunFolder, set_metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute every set-level metric from the features of all shards.

    Returns ``(values, gaps)``: ``values[name]`` is the summary entry (``set_metrics`` of
    :data:`resshift.runfolder.SUMMARY_FIELDS`); ``gaps[name]`` (``{reason: count}``) is set for a metric
    that has no value (no image with features, fewer images than the statistic needs, or its error).
    """
    if not set_metrics:
        return {}, {}
    extractor = _extractor(set_metrics)
    ok = sorted(r["name"] for r in folder.rows("sr") if r.get("status") == "ok")
    merged = folder.features(extractor.version, extractor.weights_sha256)
    have = set(merged.names)
    present = [n for n in ok if n in have]
    missing = missing_reasons(ok, merged)
    sr, hr = merged.rows(present)
    values: dict[str, Any] = {}
    gaps: dict[str, Any] = {}
    for name, metric in set_metrics.items():
        spec = metric.spec
        if len(present) < metric.min_images:
            why = dict(missing)
            if present:
                why[f"{name} needs at least {metric.min_images} images with features, the run has {len(present)}"] = (
                    len(present))
            gaps[name] = why
            continue
        try:
            value = float(metric.compute(sr, hr))
        except Exception as err:  # noqa: BLE001 - this metric has no value; the others go on
            gaps[name] = {f"{type(err).__name__}: {err}": len(present)}
            continue
        if not np.isfinite(value):
            gaps[name] = {f"non-finite value {value}": len(present)}
            continue
        threshold = int(spec.option_dict.get("warn_below_images", 0))
        reliable = len(present) >= threshold
        values[name] = {
            "value": value,
            "n_images": len(present),
            "reliable": reliable,
            "warn_below_images": threshold,
            "warning": None if reliable else reliability_warning(name, len(present), threshold),
            "missing": missing,
            "version": spec.version,
            "features": extractor.version,
            "weights_sha256": extractor.weights_sha256,
            "lower_better": bool(spec.lower_better),
            "better": spec.better,
            "options": {k: v for k, v in spec.option_dict.items() if k != "warn_below_images"},
        }
        if missing:
            gaps[name] = missing
    return values, gaps


def reliability_warning(name: str, n_images: int, threshold: int) -> str:
    """The warning a set-level value computed on fewer than ``threshold`` images carries."""
    return (f"{name} over {n_images} images: below {threshold} images FID and KID are biased and vary strongly with "
            "the sample (StableSR issue #105); compare only runs on the same images")
