"""The run folder: every file one evaluation run writes, named in one place, and the summary schema.

The runner writes a run folder only through :class:`RunFolder`; the reports read it only through it,
so they import neither the runner nor the data sets. This package sits low in the import layers
(base modules, ``io``, ``atomic``; see ``pyproject.toml``). Layout of ``<run>/``:

- ``identity.json``: the run's identity and its fingerprint (:mod:`resshift.runner.identity`);
  ``.run.lock`` (``.run.lock-<r>-of-<w>``): the lock of the process (shard) working in the folder.
- ``run-<r>-of-<w>.json``: manifest of shard ``r`` of ``w`` (resolved config, fingerprint,
  ``method.describe()``, data set, provenance); written once, never rewritten.
- ``records/sr-<r>-of-<w>.jsonl``, ``records/metrics-<r>-of-<w>.jsonl``: per-image rows, appended as
  produced (the resume state; :mod:`resshift.runfolder.store`); ``records/sessions-<r>-of-<w>.jsonl``:
  one row per session (start, provenance, counts).
- ``records/spectra-<r>-of-<w>.npz``, ``spectra.json``: per-image radial spectra and the run's mean
  ratio curves (:mod:`resshift.runfolder.spectra`).
- ``records/features-<r>-of-<w>.npz``: per-image Inception features of the SR and HR images, from which
  the set-level metrics (FID, KID) are computed once per run (:mod:`resshift.runfolder.features`).
- ``sr/<name>.png``: the super-resolved images (``<name>`` may hold ``/``: ``Canon/001``).
- ``visual/<name>/``: what the report's comparison view needs of the inputs: LR and GT crops of one
  box, a thumbnail, the box (:mod:`resshift.runfolder.visual`).
- ``per_image.csv``: one row per image (status, latency, every metric, provenance).
- ``summary.json``, ``summary.md``: the run's summary (keys: :data:`SUMMARY_FIELDS`) and its Markdown.
- ``skipped.json``: instead of the above, why the run could not start (data set unavailable).

Finished work is never rewritten: rows are appended, an SR image or visual record is written once per
image, a manifest once per shard. ``per_image.csv``, ``summary.*`` and the spectra files are merges of
the rows and are written again by each session; a feature file keeps the features of earlier sessions
and gains those of the images that lacked them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from resshift.atomic import write_text
from resshift.io import is_hidden
from resshift.runfolder.features import RunFeatures, merge_features, read_features_file, write_features
from resshift.runfolder.spectra import RunSpectra, read_spectra, write_spectra
from resshift.runfolder.store import RowStore, write_json
from resshift.runfolder.visual import VisualCrops, VisualRecord, read_visual, write_visual

#: Version of the ``summary.json`` schema (key ``summary_schema``). Folders written before the key
#: existed have the keys of version 1 and are read as version 1. Version 2 added ``set_metrics``; a
#: version-1 summary is read with ``set_metrics`` empty.
SUMMARY_SCHEMA_VERSION = 2

#: Every key of ``summary.json`` and what it holds (the README's table lists the same keys).
SUMMARY_FIELDS: dict[str, str] = {
    "summary_schema": f"schema version ({SUMMARY_SCHEMA_VERSION})",
    "method": "registered method name",
    "dataset": "data set name",
    "setting": "how the run is known: `label` (report name), `reference` (published row), `steps`, "
               "`chop_size`, `chop_stride` where set",
    "n_images": "images with an SR row",
    "n_ok": "images super-resolved",
    "n_failed": "images that failed (reading, SR, non-finite output, or the metrics phase)",
    "failed": "`{name: reason}` of the failed images",
    "images_digest": "16 hex digits of SHA-256 over the sorted names of the ok images",
    "metrics": "per metric: `mean`, `std`, `n` (images with a value), `n_missing`, `missing` "
               "(`{reason: count}`), `lower_better`, `better`",
    "set_metrics": "per set-level metric (`fid`, `kid`; schema 2): `value` (one for the run: the SR set against "
                   "the HR set), `n_images` (images in each set), `reliable` (`n_images` >= `warn_below_images`), "
                   "`warn_below_images` (1000), `warning` (text, or null when reliable), `missing` (`{reason: "
                   "count}` of the scored images without features), `version`, `features` (feature convention), "
                   "`weights_sha256` (the Inception file), `lower_better`, `better`, `options`",
    "metric_gaps": "`{metric: {reason: count}}` for every metric with fewer values than `n_ok` (for a set-level "
                   "metric: the images without features, or why it has no value)",
    "unavailable": "`{metric: reason}` for metrics that could not run here (weights, packages)",
    "fingerprint": "SHA-256 of the run identity (`identity.json`)",
    "protocol_id": "the data card's protocol id",
    "protocol_subset_of": "the card's `subset_of` (`protocol_id` of the larger set this one is part of, `note`), "
                          "or null",
    "card_sha256": "SHA-256 of the data card",
    "nfe": "network evaluations per image",
    "method_info": "`method.describe()`: every resolved parameter, checkpoint SHA-256, notes",
    "timing": "latency statistics over the timed images (`median_s`, `p90_s`, ...) and their conditions, "
              "or `measured: false` with the reason",
    "counts": "images done, skipped (finished before) and failed by the last session, per phase (`sr`, `metrics`, "
              "and `features` in runs with set-level metrics)",
    "provenance": "package versions, git commit, device, platform of the last session",
}
#: Keys a reader cannot do without; the others are read with defaults (absent, empty).
SUMMARY_REQUIRED = ("method", "dataset", "metrics")

SUMMARY_JSON, SUMMARY_MD, PER_IMAGE_CSV = "summary.json", "summary.md", "per_image.csv"
SPECTRA_JSON, SKIPPED_JSON, IDENTITY_JSON, LOCK_FILE = "spectra.json", "skipped.json", "identity.json", ".run.lock"
RECORD_KINDS = ("sr", "metrics", "sessions")


class RunFolder:
    """One run folder: the path of each of its files, and reading and writing them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------------------------ names
    @property
    def identity_file(self) -> Path:
        return self.path / IDENTITY_JSON

    def lock_file(self, rank: int | None = None, world_size: int | None = None) -> Path:
        """The folder lock, or with ``rank``/``world_size`` the lock of one shard."""
        return self.path / (LOCK_FILE if rank is None else f"{LOCK_FILE}-{rank}-of-{world_size}")

    def manifest_file(self, rank: int, world_size: int) -> Path:
        return self.path / f"run-{rank}-of-{world_size}.json"

    @property
    def records_dir(self) -> Path:
        return self.path / "records"

    def records_file(self, kind: str, rank: int, world_size: int) -> Path:
        """``records/<kind>-<rank>-of-<world>.jsonl`` for a kind in :data:`RECORD_KINDS`."""
        if kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {kind!r}; known: {', '.join(RECORD_KINDS)}")
        return self.records_dir / f"{kind}-{rank}-of-{world_size}.jsonl"

    def spectra_file(self, rank: int, world_size: int) -> Path:
        return self.records_dir / f"spectra-{rank}-of-{world_size}.npz"

    def features_file(self, rank: int, world_size: int) -> Path:
        return self.records_dir / f"features-{rank}-of-{world_size}.npz"

    @property
    def sr_dir(self) -> Path:
        return self.path / "sr"

    def sr_image(self, name: str) -> Path:
        return self.sr_dir / f"{name}.png"

    def visual_dir(self, name: str) -> Path:
        return self.path / "visual" / name

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY_JSON

    @property
    def summary_md_file(self) -> Path:
        return self.path / SUMMARY_MD

    @property
    def per_image_file(self) -> Path:
        return self.path / PER_IMAGE_CSV

    @property
    def spectra_summary_file(self) -> Path:
        return self.path / SPECTRA_JSON

    @property
    def skipped_file(self) -> Path:
        return self.path / SKIPPED_JSON

    # ------------------------------------------------------------------------------------ rows
    def row_store(self, kind: str, rank: int, world_size: int) -> RowStore:
        """The append-only store of one shard's rows of ``kind`` (sessions are keyed by ``started``)."""
        key = "started" if kind == "sessions" else "name"
        return RowStore(self.records_file(kind, rank, world_size), key_field=key)

    def has_rows(self) -> bool:
        """True when any row file exists (the folder holds results)."""
        return any(self.records_dir.glob("*.jsonl"))

    def rows(self, kind: str) -> list[dict[str, Any]]:
        """Rows of ``kind`` (``sr`` or ``metrics``) of every shard file, sorted by name: per image the row written
        last (``written_ns``), whichever file holds it (a resume with another number of processes writes its rows
        into other files than the session before). Rows without a time (written before rows carried one) count as
        older than any stamped row, and among themselves in file-name and line order."""
        if kind not in ("sr", "metrics"):
            raise ValueError(f"rows are merged by image for 'sr' and 'metrics', not {kind!r}")
        merged: dict[str, tuple[int, dict[str, Any]]] = {}
        for path in sorted(self.records_dir.glob(f"{kind}-*.jsonl")):
            for row in RowStore(path, writer=False).rows():
                written = row.get("written_ns", -1)
                if row["name"] not in merged or written >= merged[row["name"]][0]:
                    merged[row["name"]] = (written, row)
        return [merged[k][1] for k in sorted(merged)]

    def done(self, kind: str) -> set[str]:
        """Names whose latest row of ``kind`` (:meth:`rows`) has status ok."""
        return {r["name"] for r in self.rows(kind) if r.get("status", "ok") == "ok"}

    # ------------------------------------------------------------------------------------ identity, manifests
    def identity(self) -> dict[str, Any] | None:
        """The run's identity as ``identity.json`` stores it (without its fingerprint), or None for a folder
        that has none (written before run identities existed). One that cannot be read raises
        ``ValueError`` naming the file."""
        if not self.identity_file.is_file():
            return None
        identity = _read_json(self.identity_file, "run identity").get("identity")
        if not isinstance(identity, dict):
            raise ValueError(f"{self.identity_file}: cannot read run identity (no 'identity' object)")
        return identity

    def write_manifest(self, rank: int, world_size: int, manifest: Mapping[str, Any]) -> bool:
        """Write shard ``rank``'s manifest unless it exists (it records the settings of the first session
        and is never rewritten). Returns True when written."""
        path = self.manifest_file(rank, world_size)
        if path.is_file():
            return False
        write_json(path, manifest)
        return True

    def manifests(self) -> list[dict[str, Any]]:
        """The shards' manifests, by file name; one that cannot be read raises ``ValueError`` naming it."""
        return [_read_json(p, "run manifest") for p in sorted(self.path.glob("run-*-of-*.json"))]

    # ------------------------------------------------------------------------------------ SR images
    def sr_names(self) -> list[str]:
        """Names of the SR images in ``sr/`` (keys with ``/`` for sub-folders), sorted; hidden files left out."""
        if not self.sr_dir.is_dir():
            return []
        return sorted(p.relative_to(self.sr_dir).with_suffix("").as_posix() for p in self.sr_dir.rglob("*.png")
                      if p.is_file() and not is_hidden(p, self.sr_dir))

    # ------------------------------------------------------------------------------------ visual records
    def write_visual(self, name: str, crops: VisualCrops) -> Path | None:
        """Write the visual record of image ``name`` unless it has one; returns its ``box.json`` or None."""
        folder = self.visual_dir(name)
        if read_visual(folder) is not None:
            return None
        return write_visual(folder, crops)

    def visual(self, name: str) -> VisualRecord | None:
        """The visual record of image ``name``, or None (a folder written before the SR phase saved them)."""
        return read_visual(self.visual_dir(name))

    # ------------------------------------------------------------------------------------ spectra
    def write_spectra(self, rank: int, world_size: int, names: list[str], band_edges: Any, version: str,
                      rows: list[Any]) -> Path:
        return write_spectra(self.spectra_file(rank, world_size), names, band_edges, version, rows)

    def spectra(self) -> RunSpectra | None:
        """The merged per-image spectra of every shard, or None when the run recorded none."""
        return read_spectra(sorted(self.records_dir.glob("spectra-*-of-*.npz")))

    def write_spectra_summary(self, summary: Mapping[str, Any]) -> Path:
        return write_json(self.spectra_summary_file, summary)

    # ------------------------------------------------------------------------------------ features
    def write_features(self, rank: int, world_size: int, features: RunFeatures) -> Path:
        """Write shard ``rank``'s feature file (the whole file, atomically)."""
        return write_features(self.features_file(rank, world_size), features)

    def shard_features(self, rank: int, world_size: int) -> RunFeatures | None:
        """Shard ``rank``'s feature file as written, or None when it has none."""
        path = self.features_file(rank, world_size)
        return read_features_file(path) if path.is_file() else None

    def features(self, version: str, weights_sha256: str) -> RunFeatures:
        """The features of every shard made with ``version`` and ``weights_sha256``, merged by image (the
        gathering step of a sharded run; see :func:`resshift.runfolder.features.merge_features`)."""
        return merge_features(sorted(self.records_dir.glob("features-*-of-*.npz")), version, weights_sha256)

    # ------------------------------------------------------------------------------------ summary
    def write_summary(self, summary: Mapping[str, Any], markdown: str, per_image: Any) -> dict[str, Any]:
        """Write ``per_image.csv`` (a pandas frame), ``summary.json`` (strict JSON, every key of
        :data:`SUMMARY_FIELDS`, ``summary_schema`` added) and ``summary.md``. Returns the summary written.

        Raises ``ValueError`` naming the file when a key is missing or not in the schema.
        """
        out = {"summary_schema": SUMMARY_SCHEMA_VERSION, **summary}
        unknown = sorted(set(out) - set(SUMMARY_FIELDS))
        missing = sorted(set(SUMMARY_FIELDS) - set(out))
        if unknown or missing:
            raise ValueError(f"{self.summary_file}: summary does not follow its schema (undocumented keys: "
                             f"{', '.join(unknown) or 'none'}; missing keys: {', '.join(missing) or 'none'})")
        write_text(self.per_image_file, per_image.to_csv(index=False))  # atomic, as the summaries
        write_json(self.summary_file, out)
        write_text(self.summary_md_file, markdown)
        return out

    def has_summary(self) -> bool:
        return self.summary_file.is_file()

    def summary(self) -> dict[str, Any]:
        """``summary.json``, checked: readable, the keys of :data:`SUMMARY_REQUIRED`, a schema version this
        code reads (1 or 2; a version-1 summary gets an empty ``set_metrics``). Raises ``ValueError`` naming
        the file and the problem."""
        data = _read_json(self.summary_file, "run summary")
        missing = [k for k in SUMMARY_REQUIRED if k not in data]
        if missing:
            raise ValueError(f"{self.summary_file}: not a run summary (no {', '.join(missing)})")
        version = data.get("summary_schema", 1)
        if not isinstance(version, int) or version > SUMMARY_SCHEMA_VERSION:
            raise ValueError(f"{self.summary_file}: summary schema {version!r} is not one this code reads "
                             f"(up to {SUMMARY_SCHEMA_VERSION}); update resshift-bench")
        data["set_metrics"] = data.get("set_metrics") or {}  # absent before version 2
        if not isinstance(data["set_metrics"], dict):
            raise ValueError(f"{self.summary_file}: set_metrics is not an object")
        return data

    def per_image(self, columns: Iterable[str] | None = None) -> Any:
        """``per_image.csv`` as a pandas frame (only ``columns``, those of them it has, when given), or None
        when the run has none."""
        import pandas as pd

        if not self.per_image_file.is_file():
            return None
        wanted = None if columns is None else set(columns)
        try:
            return pd.read_csv(self.per_image_file, usecols=None if wanted is None else lambda c: c in wanted)
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.per_image_file}: cannot read the per-image table ({err})") from err

    # ------------------------------------------------------------------------------------ skipped
    def write_skipped(self, record: Mapping[str, Any]) -> Path:
        """Record why the run could not start (method, label, dataset, reason)."""
        return write_json(self.skipped_file, dict(record))

    def clear_skipped(self) -> None:
        """Forget an earlier skip (the data set is there now)."""
        self.skipped_file.unlink(missing_ok=True)

    def skipped(self) -> dict[str, Any] | None:
        """The skip record, unless the folder holds a finished run (then the skip is history)."""
        if not self.skipped_file.is_file() or self.has_summary():
            return None
        return _read_json(self.skipped_file, "skip record")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read {what} ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: cannot read {what} (a JSON object expected, found {type(data).__name__})")
    return data


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders (holding a summary) at or below each path, resolved, sorted, without duplicates.

    Raises ``FileNotFoundError`` for a path that is neither a run folder nor a folder.
    """
    found: set[Path] = set()
    for p in map(Path, paths):
        if RunFolder(p).has_summary():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(s.parent.resolve() for s in p.glob(f"**/{SUMMARY_JSON}"))
        else:
            raise FileNotFoundError(f"{p}: not a run folder (no {SUMMARY_JSON}) and not a folder")
    return sorted(found)


def find_incomplete(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Run folders at or below each path whose summary does not show all their rows: rows but no summary (a first
    session that did not finish, or is still running), or per-image rows written after the summary (a later
    session stopped before its summary). ``[{"path": Path, "reason": str}]``, sorted by path."""
    found: dict[Path, dict[str, Any]] = {}
    for p in map(Path, paths):
        if not p.is_dir():
            continue
        records = [p / "records"] if (p / "records").is_dir() else sorted(r for r in p.glob("**/records") if r.is_dir())
        for rec in records:
            folder = RunFolder(rec.parent)
            row_files = [f for kind in ("sr", "metrics") for f in rec.glob(f"{kind}-*-of-*.jsonl")]
            if not row_files:
                continue
            images = len(folder.rows("sr"))
            if not folder.has_summary():
                reason = f"rows of {images} image(s) but no {SUMMARY_JSON} (a session that did not finish)"
            elif max(f.stat().st_mtime_ns for f in row_files) > folder.summary_file.stat().st_mtime_ns:
                reason = (f"rows written after its {SUMMARY_JSON} (a session stopped before its summary): the "
                          "tables show the summary of the session before")
            else:
                continue
            found[rec.parent.resolve()] = {"path": rec.parent.resolve(), "reason": reason}
    return [found[k] for k in sorted(found)]


def find_skipped(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The skip records (runs whose data set was unavailable) at or below each path, except in folders
    that hold a finished run."""
    out = []
    for p in map(Path, paths):
        files = [p / SKIPPED_JSON] if (p / SKIPPED_JSON).is_file() else sorted(p.glob(f"**/{SKIPPED_JSON}"))
        out += [s for s in (RunFolder(f.parent).skipped() for f in files) if s is not None]
    return out


__all__ = ["RowStore", "RunFeatures", "RunFolder", "RunSpectra", "SUMMARY_FIELDS", "SUMMARY_REQUIRED",
           "SUMMARY_SCHEMA_VERSION", "VisualCrops", "VisualRecord", "find_incomplete", "find_run_dirs", "find_skipped",
           "write_json"]
