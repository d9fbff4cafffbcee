"""One evaluation run: one method on one data set with one setting, in resumable phases.

Phases (each reads only what the previous one wrote, so each can be rerun alone):

1. **SR**: stream the data set, batch images of equal size, run ``method.upscale`` under the timing
   harness, write ``sr/<name>.png``, the image's visual record (``visual/<name>/``: LR and GT crops
   and a thumbnail for the report, :mod:`resshift.runfolder.visual`) and one row per image to
   ``records/sr-<rank>-of-<world>.jsonl``.
2. **Metrics**: read the SR PNGs (and the HR images), compute every available metric in batches,
   write one row per image to ``records/metrics-<rank>-of-<world>.jsonl``. Metrics whose weights are
   missing are recorded as unavailable with the reason. Set-level metrics (FID, KID) store each image's
   features instead (``records/features-<rank>-of-<world>.npz``, :mod:`resshift.runner.set_metrics`).
3. **Summary**: merge the rows into ``per_image.csv``, ``summary.json`` and ``summary.md``; the set-level
   values are computed here, once, from the features of every shard.

Every file is named, written and read through :class:`resshift.runfolder.RunFolder`. A rerun of the
same run folder skips images whose rows are finished; a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resshift.data.cards import CardError
from resshift.data.loader import DatasetError
from resshift.data.sources import DatasetNotAvailable
from resshift.io import read_image, write_png
from resshift.runfolder import RunFolder
from resshift.runfolder.visual import VisualCrops, visual_crops
from resshift.runner.identity import RunFolderBusy, RunIdentityError
from resshift.runner.sr_loop import LoadFailure, LRImage, batches, super_resolve

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class RunSpec:
    """Everything a run needs, independent of Hydra (the app converts its config to this)."""

    run_dir: Path
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "embedded"
    dataset_params: dict[str, Any] = field(default_factory=dict)
    metrics: Sequence[str] = ("psnr", "ssim")
    seed: int = 12345
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 1
    warmup: int = 1
    threads: int | None = None
    limit: int | None = None
    select: Sequence[str] | None = None
    setting: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def records_dir(self) -> Path:
        return self.folder.records_dir

    @property
    def sr_dir(self) -> Path:
        return self.folder.sr_dir


def reader_notes(meta: dict[str, Any]) -> list[str]:
    """The reader's notes of a sample (alpha dropped, EXIF rotation applied, grayscale replicated),
    prefixed with the side they concern: ``["lr: alpha channel dropped (fully opaque)"]``."""
    return [f"{side}: {note}" for side in ("lr", "hr") for note in meta.get(f"{side}_notes") or []]


def _inputs(dataset: Any, names: Sequence[str], scale: int,
            visuals: dict[str, VisualCrops]) -> Iterator[LRImage | LoadFailure]:
    """The LR images of ``names`` read one by one; a sample that cannot be read becomes a failure.

    Each sample's visual record (for an SR output ``scale`` times the LR size) goes into ``visuals`` by
    name, so that no HR image is held while the method runs; one that cannot be made is logged.
    """
    for name in names:
        try:
            sample = dataset.read(name)
        except Exception as err:  # noqa: BLE001 - recorded per image, the run goes on
            yield LoadFailure(name, f"{type(err).__name__}: {err}")
            continue
        h, w = sample.lr.shape[-2:]
        try:
            visuals[sample.name] = visual_crops(sample.lr, sample.hr, (scale * h, scale * w))
        except Exception as err:  # noqa: BLE001 - the report shows fewer sources, the run goes on
            log.warning("no visual record of %s: %s: %s", name, type(err).__name__, err)
        yield LRImage(sample.name, sample.lr, reader_notes(sample.meta))


def run_sr_phase(spec: RunSpec, method: Any, dataset: Any, timer: Any) -> dict[str, int]:
    """Super-resolve every pending image of this shard; returns counts (done, skipped, failed).

    Goes through the one SR loop (:func:`resshift.runner.sr_loop.super_resolve`); only finite outputs
    are written and scored, a non-finite one is a failed image with the count of bad values. Each
    written output gets its visual record (unless it has one), when the output has the size
    ``method.scale`` promises.
    """
    folder = spec.folder
    store = folder.row_store("sr", spec.rank, spec.world_size)
    finished = folder.done("sr")
    names = [n for n in dataset.names() if n not in finished]
    counts = {"done": 0, "skipped": len(dataset.names()) - len(names), "failed": 0}  # of this shard's images
    if not names:
        return counts
    from tqdm import tqdm

    measured = getattr(method, "measures_time", True)  # False: outputs made elsewhere, latency n/a
    batch_size = min(spec.batch_size, getattr(method, "max_batch", None) or spec.batch_size)
    conditions = latency_conditions(spec, batch_size)
    progress = tqdm(total=len(names), desc=f"SR {spec.method} on {spec.dataset}", unit="img", leave=False)
    visuals: dict[str, VisualCrops] = {}
    outcomes = super_resolve(_inputs(dataset, names, int(getattr(method, "scale", 4)), visuals), method,
                             seed=spec.seed, batch_size=batch_size, device=spec.device,
                             timer=timer if measured else None, on_batch=progress.update)
    for out in outcomes:
        row: dict[str, Any] = {"name": out.name, "notes": out.notes}
        crops = visuals.pop(out.name, None)
        if out.ok:
            write_png(folder.sr_image(out.name), out.sr)
            if crops is not None and crops.size == tuple(out.sr.shape[-2:]):
                try:
                    folder.write_visual(out.name, crops)
                except Exception as err:  # noqa: BLE001 - the view shows fewer sources; the row is kept
                    log.warning("%s: no visual record of %s: %s: %s", spec.run_dir.name, out.name,
                                type(err).__name__, err)
            elif crops is not None:
                log.warning("%s: no visual record of %s: output %s, expected %s", spec.run_dir.name, out.name,
                            tuple(out.sr.shape[-2:]), crops.size)
            row.update(status="ok", lr_hw=list(out.lr_hw or ()), sr_hw=list(out.sr.shape[-2:]), batch=out.batch,
                       latency_s=out.seconds, batch_seconds=out.batch_seconds, timed=out.timed)
            if measured:
                row["timing_conditions"] = conditions
            facts = method.image_facts(out.name)
            if facts:
                row["facts"] = facts
            row["notes"] = [*(row["notes"] or []), *method.output_notes(out.name)]
            counts["done"] += 1
        else:
            log.error("%s: %s failed: %s", spec.run_dir.name, out.name, out.error)
            row.update(status="failed", phase=out.phase, error=out.error)
            if out.traceback:
                row["traceback"] = out.traceback
            counts["failed"] += 1
        store.append(row)
    progress.close()
    return counts


def _score_one_metric(metric: Any, sr: torch.Tensor, ref: torch.Tensor | None,
                      names: Sequence[str]) -> tuple[dict[str, float], dict[str, str]]:
    """One metric over a batch: ``({name: value}, {name: reason})``. A batch that raises is scored image
    by image, so one bad image (an SSIM window larger than it, say) costs only its own value; a value
    that is not finite is a failure of that image, never a number."""
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    try:
        scores = [float(v) for v in metric.compute(sr, ref).reshape(-1)]
    except Exception as err:  # noqa: BLE001 - isolated below
        if len(names) == 1:
            return {}, {names[0]: f"{type(err).__name__}: {err}"}
        for i, name in enumerate(names):
            one_ref = None if ref is None else ref[i : i + 1]
            v, e = _score_one_metric(metric, sr[i : i + 1], one_ref, [name])
            values.update(v)
            errors.update(e)
        return values, errors
    for name, value in zip(names, scores, strict=True):
        if math.isfinite(value):
            values[name] = value
        else:
            errors[name] = f"non-finite value {value}"
    return values, errors


def run_metrics_phase(spec: RunSpec, dataset: Any, metrics: dict[str, Any],
                      provenance: dict[str, Any] | None = None, batch_size: int = 8) -> dict[str, int]:
    """Compute the available metrics each SR output lacks (all of them after a failed metrics session), in
    batches of equal-size images; each row carries ``provenance``. Returns counts.

    Metrics fail one at a time: an exception (or a non-finite value) in one metric for one image is
    recorded in that image's ``metric_errors`` and the other metrics are still computed. Values a
    previous session computed are kept in the new row (those not recomputed, and those not asked for now).
    """
    folder = spec.folder
    store = folder.row_store("metrics", spec.rank, spec.world_size)
    sr_rows = {r["name"]: r for r in folder.rows("sr") if r.get("status") == "ok"}
    have = {r["name"]: r for r in folder.rows("metrics")}
    shard_names = set(dataset.names())

    def failed_before(name: str) -> bool:
        return have.get(name, {}).get("status", "ok") != "ok"

    def lacks(name: str, metric: str) -> bool:
        """The image has no value of ``metric``, or the last metrics session failed on it (all are redone)."""
        return failed_before(name) or metric not in have.get(name, {}).get("values", {})

    pending = [n for n in sorted(sr_rows)
               if n in shard_names and (failed_before(n) or any(lacks(n, m) for m in metrics))]
    counts = {"done": 0, "skipped": len(shard_names & set(sr_rows)) - len(pending), "failed": 0}
    if not pending or not metrics:
        return counts
    device = torch.device(spec.device)
    from tqdm import tqdm

    def fail(name: str, err: Exception) -> None:
        # the values earlier sessions computed stay in the row (nothing finished is lost); the image counts as
        # failed in the summary until a later session scores it
        store.append({"name": name, "status": "failed", "values": dict(have.get(name, {}).get("values", {})),
                      "error": f"{type(err).__name__}: {err}", "provenance": provenance})
        counts["failed"] += 1

    def loaded(names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        for name in names:
            try:
                sample = dataset.read(name)
                yield name, read_image(folder.sr_image(name)), sample.hr, sample.lr
            except Exception as err:  # noqa: BLE001 - recorded per image
                fail(name, err)

    progress = tqdm(total=len(pending), desc=f"metrics {spec.method} on {spec.dataset}", unit="img", leave=False)

    def score(group: list[tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor]]) -> None:
        names = [g[0] for g in group]
        sr = _stack([g[1] for g in group]).to(device)
        has_hr = group[0][2] is not None
        hr = _stack([g[2] for g in group]).to(device) if has_hr else None
        lr = _stack([g[3] for g in group]).to(device)
        values: dict[str, dict[str, float]] = {n: {} for n in names}
        errors: dict[str, dict[str, str]] = {n: {} for n in names}
        skipped: dict[str, str] = {}
        for mname, metric in metrics.items():
            if metric.spec.mode == "FR" and hr is None:
                skipped[mname] = "no HR image"
                continue
            # only the images that lack this metric (a metric added to a finished run costs only itself)
            todo = [i for i, n in enumerate(names) if lacks(n, mname)]
            if not todo:
                continue
            ref = {"FR": hr, "LR": lr}.get(metric.spec.mode)  # LR mode: reference = upsampled LR input
            if len(todo) < len(names):
                index = torch.tensor(todo, device=sr.device)
                got, bad = _score_one_metric(metric, sr[index], None if ref is None else ref[index],
                                             [names[i] for i in todo])
            else:
                got, bad = _score_one_metric(metric, sr, ref, names)
            for name, value in got.items():
                values[name][mname] = value
            for name, reason in bad.items():
                errors[name][mname] = reason
                log.warning("%s: %s on %s failed: %s", spec.run_dir.name, mname, name, reason)
        for name in names:
            kept = {k: v for k, v in have.get(name, {}).get("values", {}).items() if k not in errors[name]}
            row: dict[str, Any] = {"name": name, "status": "ok", "values": {**kept, **values[name]},
                                   "provenance": provenance}
            if errors[name]:
                row["metric_errors"] = errors[name]
            if skipped:
                row["skipped"] = skipped
            store.append(row)
            counts["done"] += 1
        progress.update(len(names))

    for group in batches(loaded(pending), batch_size, key=_shape_key):
        score(group)
    progress.close()
    return counts


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``, but a batch of one is a view (no second copy of a large image)."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def _shape_key(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """Items batch together when SR and LR sizes match and all or none have an HR image."""
    return tuple(item[1].shape), tuple(item[3].shape), item[2] is not None


def images_digest(names: Sequence[str]) -> str:
    """16 hex digits identifying a set of image names (order-free): two runs scored the same images
    exactly when their digests agree."""
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8")).hexdigest()[:16]


def summarize(spec: RunSpec, metric_specs: dict[str, Any], unavailable: dict[str, str],
              extra: dict[str, Any] | None = None, set_values: dict[str, Any] | None = None,
              set_gaps: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge the row stores into ``per_image.csv``, ``summary.json`` and ``summary.md``.

    The summary's keys are :data:`resshift.runfolder.SUMMARY_FIELDS` (strict JSON, every number finite);
    ``extra`` supplies those this function does not compute (fingerprint, timing, provenance, ...).
    Metrics the rows hold values of beyond ``metric_specs`` (computed by earlier sessions) are summarised too.
    ``set_values`` and ``set_gaps`` are the set-level metrics' entries and the reasons of those without a
    value (:func:`resshift.runner.set_metrics.set_metric_values`); set-level metrics have no column in
    ``per_image.csv``.
    """
    import pandas as pd

    from resshift.metrics import get_spec, metric_names

    folder = spec.folder
    set_specs = {name: s for name, s in metric_specs.items() if getattr(s, "set_level", False)}
    metric_specs = {name: s for name, s in metric_specs.items() if name not in set_specs}
    sr_rows = folder.rows("sr")
    m_rows = {r["name"]: r for r in folder.rows("metrics")}
    # the metrics earlier sessions of the run computed too (adding a metric extends the run: the summary covers
    # every metric the rows hold values of)
    known = set(metric_names())
    for name in sorted({k for r in m_rows.values() for k in r.get("values", {})} - set(metric_specs) - set(set_specs)):
        if name in known:
            metric_specs[name] = get_spec(name)
    table = []
    missing: dict[str, dict[str, int]] = {name: {} for name in metric_specs}
    for r in sr_rows:
        row = {"name": r["name"], "status": r.get("status"), "latency_s": r.get("latency_s"),
               "error": r.get("error", ""), "notes": "; ".join(r.get("notes") or []), **r.get("facts", {})}
        mr = m_rows.get(r["name"])
        if mr:
            row.update(mr.get("values", {}))
            row.update(_flat_provenance(mr.get("provenance")))
            if mr.get("status") != "ok" and r.get("status") == "ok":  # the metrics phase failed on this image
                row["status"] = "failed"
                row["error"] = f"metrics phase: {mr.get('error', '')}"
            if mr.get("metric_errors"):
                row["metric_errors"] = "; ".join(f"{k}: {v}" for k, v in sorted(mr["metric_errors"].items()))
        if row["status"] == "ok":
            for name in metric_specs:
                if name in unavailable or (mr and name in mr.get("values", {})):
                    continue
                reason = ((mr or {}).get("metric_errors") or {}).get(name) or ((mr or {}).get("skipped") or {}).get(
                    name) or ((mr or {}).get("error") or "not computed")
                missing[name][reason] = missing[name].get(reason, 0) + 1
        table.append(row)
    frame = pd.DataFrame(table)
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    metric_summary: dict[str, Any] = {}
    for name, mspec in metric_specs.items():
        if name in unavailable:
            continue
        col = ok[name].dropna() if name in ok else pd.Series(dtype=float)
        if len(col):
            metric_summary[name] = {
                "mean": float(col.mean()),
                "std": float(col.std(ddof=0)),
                "n": int(len(col)),
                "n_missing": int(len(ok) - len(col)),
                "missing": missing[name],
                "lower_better": bool(mspec.lower_better),
                "better": mspec.better,
            }
    failed = frame[frame["status"] != "ok"] if len(frame) else frame
    summary = {
        "method": spec.method,
        "dataset": spec.dataset,
        "setting": spec.setting,
        "n_images": int(len(frame)),
        "n_ok": int(len(ok)),
        "n_failed": int(len(failed)),
        "failed": {str(r["name"]): str(r["error"]) for _, r in failed.iterrows()},
        "images_digest": images_digest([str(n) for n in ok["name"]] if len(ok) else []),
        "metrics": metric_summary,
        "set_metrics": {name: v for name, v in (set_values or {}).items()
                        if name in set_specs and name not in unavailable},
        "metric_gaps": {**{name: reasons for name, reasons in missing.items() if reasons and name not in unavailable},
                        **{name: reasons for name, reasons in (set_gaps or {}).items()
                           if reasons and name in set_specs and name not in unavailable}},
        "unavailable": dict(unavailable),
        **(extra or {}),
    }
    return folder.write_summary(summary, render_summary_md(summary), frame)


def _flat_provenance(prov: dict[str, Any] | None) -> dict[str, Any]:
    """Row provenance as flat CSV columns (package versions as one ``name=version;...`` string)."""
    if not prov:
        return {}
    flat = {k: v for k, v in prov.items() if k not in ("packages", "method")}
    flat["packages"] = ";".join(f"{k}={v}" for k, v in sorted((prov.get("packages") or {}).items()) if v)
    return flat


def render_summary_md(summary: dict[str, Any]) -> str:
    """A short Markdown summary of one run."""
    lines = [f"# {summary['method']} on {summary['dataset']}", ""]
    if summary.get("protocol_id"):
        lines.append(f"Protocol: `{summary['protocol_id']}`  ")
    lines.append(f"Images: {summary['n_ok']} ok, {summary['n_failed']} failed  ")
    if summary.get("fingerprint"):
        lines.append(f"Run identity fingerprint: `{summary['fingerprint'][:16]}` (identity.json; the folder "
                     "name carries the configuration's, computed from the config alone)  ")
    timing = summary.get("timing") or {}
    if timing.get("measured") is False:
        lines.append(f"Timing: n/a ({timing.get('reason', 'not measured')}), NFE {summary.get('nfe') or 'n/a'}  ")
    elif timing:
        lines.append(
            f"Timing ({timing.get('included', 'method.upscale only')}): median "
            f"{timing.get('median_s', float('nan')) * 1e3:.1f} ms/img, p90 "
            f"{timing.get('p90_s', float('nan')) * 1e3:.1f} ms/img, NFE {summary.get('nfe', '?')}, "
            f"device {timing.get('device', '?')}"
        )
    lines += ["", "| metric | mean | std | n | missing |", "|---|---|---|---|---|"]
    for name, m in summary["metrics"].items():
        arrow = "·" if m.get("better") == "none" else ("↓" if m["lower_better"] else "↑")
        why = "; ".join(f"{count}: {reason}" for reason, count in (m.get("missing") or {}).items())
        lines.append(f"| {name} {arrow} | {m['mean']:.4f} | {m['std']:.4f} | {m['n']} | {why} |")
    set_metrics = summary.get("set_metrics") or {}
    for name, reasons in (summary.get("metric_gaps") or {}).items():
        if name not in summary["metrics"] and name not in set_metrics:
            why = "; ".join(f"{count}: {reason}" for reason, count in reasons.items())
            lines.append(f"| {name} | no value | | 0 | {why} |")
    for name, reason in summary.get("unavailable", {}).items():
        lines.append(f"| {name} | unavailable | {reason} | 0 | |")
    if set_metrics:
        lines += ["", "Set-level metrics (one value for the run: the SR set against the HR set of the same images):",
                  "", "| metric | value | images | note |", "|---|---|---|---|"]
        for name, m in set_metrics.items():
            arrow = "↓" if m["lower_better"] else "↑"
            note = "; ".join(x for x in (m.get("warning") or "", "; ".join(
                f"{count}: {reason}" for reason, count in (m.get("missing") or {}).items())) if x)
            lines.append(f"| {name} {arrow} | {m['value']:.6g} | {m['n_images']} | {note} |")
    if summary.get("failed"):
        lines += ["", "Failed images:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(summary["failed"].items())]
    notes = (summary.get("method_info") or {}).get("notes") or []
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def protocol_id(dataset: Any) -> str:
    """The protocol id of a run on ``dataset`` (the whole set, before any selection): the card's, and for a generic
    card (``paired-folder``, ``folder``: no data of its own) followed by ``@`` and 8 hex digits of the digests of
    all its input files, so runs on two users' folders are never tabled, ranked or paired by image name as one
    protocol, while runs on one folder (any ``limit``/``select``) are."""
    card = dataset.card
    if not card.generic:
        return card.protocol_id
    digest = hashlib.sha256(json.dumps(dataset.input_digests(), sort_keys=True).encode("utf-8")).hexdigest()
    return f"{card.protocol_id}@{digest[:8]}"


def run_identity(spec: RunSpec, method: Any, dataset: Any, protocol: str | None = None) -> dict[str, Any]:
    """Everything that determines this run's outputs (see :mod:`resshift.runner.identity`); ``dataset``: the whole
    selection (before sharding), whose input files' digests are part of it; ``protocol``: the run's protocol id
    (default: the card's)."""
    from resshift.runner.identity import config_identity

    ident = config_identity({"name": spec.method, "params": spec.method_params},
                            {"name": spec.dataset, "params": spec.dataset_params}, seed=spec.seed,
                            limit=spec.limit, select=spec.select, device=spec.device, dtype=spec.dtype)
    ident["method"]["resolved"] = method.describe()
    ident["dataset"].update(card_sha256=dataset.card.card_sha256, protocol_id=protocol or dataset.card.protocol_id)
    ident["images"]["inputs"] = dataset.input_digests()
    return ident


def run_code() -> dict[str, Any]:
    """The code that computes a run's numbers: the SHA-256 of the package's Python sources and the versions of the
    packages that change numbers (checked on resume beside the identity, see :func:`resshift.runner.identity.claim`;
    not part of the fingerprint, so that a regression check compares one configuration across code versions)."""
    from resshift.provenance import code_sha256, package_versions

    return {"resshift_sources_sha256": code_sha256(), "packages": package_versions()}


class RunSpecError(ValueError):
    """A run asked for something that cannot be run: the message names the setting and what is wrong."""


#: What :func:`run` raises when a run cannot start (before anything is written to its folder): the entry points
#: print these as ``error: ...`` with exit code 2.
NOT_STARTED = (RunSpecError, CardError, DatasetError, DatasetNotAvailable)
#: Those, and a folder that holds another configuration or code, or is in use.
REFUSALS = (*NOT_STARTED, RunIdentityError, RunFolderBusy)


def discard_unused(run_dir: Path, also: Sequence[str] = ()) -> None:
    """Remove a run folder a refused session made and nothing else uses: every entry in it is a lock file of the
    folder (``.run.lock*``) or named in ``also``. Any other content (rows, identity, outputs) keeps it."""
    import shutil

    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return
    if all(e.name.startswith(".run.lock") or e.name in also for e in entries):
        shutil.rmtree(run_dir, ignore_errors=True)


def check_spec(spec: RunSpec) -> None:
    """Check what a run is asked for before anything is read, built or written: ``limit`` at least 1 (or unset),
    batch size at least 1, warm-up not negative, every metric name registered, a label that is a plain name (it
    becomes part of folder names), a run folder that is not the outputs folder of ``resshift score`` nor inside it
    (the data set's own folders are checked once it is open), a CUDA device only where one is available, and a declared
    NFE (``nfe``, outputs made elsewhere) of at least 0. Raises :class:`RunSpecError`."""
    from resshift.metrics import get_spec

    if spec.limit is not None and (isinstance(spec.limit, bool) or not isinstance(spec.limit, int) or spec.limit < 1):
        raise RunSpecError(f"limit={spec.limit!r}: give a number of images >= 1, or leave it unset for all of them")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int):
        raise RunSpecError(f"seed={spec.seed!r}: a seed is an integer")
    if int(spec.batch_size) < 1:
        raise RunSpecError(f"batch size {spec.batch_size}: give at least 1")
    if int(spec.warmup) < 0:
        raise RunSpecError(f"warm-up {spec.warmup}: give 0 or more batches")
    if str(spec.device).startswith("cuda") and not torch.cuda.is_available():
        raise RunSpecError(f"device {spec.device!r}: no CUDA device is available to this process (torch "
                           f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'})")
    nfe = spec.method_params.get("nfe")
    if nfe is not None and (isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 0):
        raise RunSpecError(f"nfe={nfe!r}: network evaluations per image are a count >= 0")
    unknown = []
    for name in spec.metrics:
        try:
            get_spec(name)
        except KeyError as err:
            unknown.append(str(err.args[0]) if err.args else name)
    if unknown:
        raise RunSpecError("; ".join(unknown))
    label = str(spec.setting.get("label") or spec.method)
    if "/" in label or "\\" in label or label in (".", "..") or label != label.strip() or not label:
        raise RunSpecError(f"label {label!r}: a method label is a plain name (no '/', '\\', '.' or '..'), it "
                           "becomes part of run folder names")
    if spec.method_params.get("root"):  # outputs made elsewhere: their folder
        _check_outside(spec.run_dir, [Path(str(spec.method_params["root"]))], "the outputs folder (method root)")


def _check_outside(run_dir: Path, folders: Sequence[Path], what: str) -> None:
    """RunSpecError when ``run_dir`` is one of ``folders`` or inside one (a run writing among its inputs)."""
    run_dir = run_dir.expanduser().resolve()
    for folder in folders:
        folder = folder.expanduser().resolve()
        if run_dir == folder or folder in run_dir.parents:
            raise RunSpecError(f"run folder {run_dir} is {'the' if run_dir == folder else 'inside the'} folder "
                               f"{folder} of {what}: the run would write among its inputs; choose another output "
                               "folder")


def run(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) one evaluation and return its summary (``{}`` on ranks other than 0).

    Raises:
        RunSpecError: the spec asks for something that cannot be run (:func:`check_spec`), before anything is
            written.
        resshift.runner.identity.RunIdentityError: the folder holds results of another configuration.
        resshift.runner.identity.RunFolderBusy: another process works in the folder.
    """
    from resshift.runner.identity import lock_run_folder

    check_spec(spec)
    created = not spec.run_dir.exists()
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with lock_run_folder(spec.run_dir, spec.rank, spec.world_size):
            return _run_locked(spec)
    except NOT_STARTED:
        if created:  # refused before anything was written: leave no folder behind (only lock files are in it)
            discard_unused(spec.run_dir)
        raise


def _run_locked(spec: RunSpec) -> dict[str, Any]:
    import time

    from resshift.data import open_dataset
    from resshift.methods import build_method
    from resshift.metrics import build_metrics, get_spec
    from resshift.provenance import collect_provenance, row_provenance
    from resshift.runner.identity import claim, image_names
    from resshift.runner.set_metrics import record_features, set_metric_values
    from resshift.runner.spectra import record_spectra, wants_spectra, write_spectra_summary
    from resshift.timing import Timer

    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    dataset = open_dataset(spec.dataset, **spec.dataset_params)
    all_names = dataset.names()
    protocol = protocol_id(dataset)
    if spec.select:
        try:
            dataset = dataset.select(image_names(spec.select))
        except KeyError as err:
            raise RunSpecError(f"select={list(spec.select)}: {err.args[0] if err.args else err}") from None
    if spec.limit:
        dataset = dataset.select(dataset.names()[: int(spec.limit)])
    selection = dataset
    _check_outside(spec.run_dir, sorted({ref.parent for it in selection.items for ref in (it.lr, it.hr)
                                         if isinstance(ref, Path)}), f"data set {spec.dataset!r}'s input files")
    mismatches = selection.manifest_mismatches()
    if mismatches:  # a local copy that differs from the protocol's files is not the protocol's data
        raise RunSpecError(
            f"{len(mismatches)} file(s) of data set {spec.dataset!r} differ from its card's manifest "
            f"({selection.card.path}), so this copy is not the protocol's data (resshift data verify lists all):\n  "
            + "\n  ".join(mismatches[:5]) + ("\n  ..." if len(mismatches) > 5 else "")
            + "\nScore your own images as your own set (resshift score --gt/--lr, dataset=paired-folder).")
    if spec.world_size > 1:
        dataset = dataset.shard(spec.rank, spec.world_size)
    method = build_method(spec.method, device=spec.device, dtype=spec.dtype, **spec.method_params)
    method.expect_images(all_names, dataset.names())
    fingerprint = claim(spec.run_dir, run_identity(spec, method, selection, protocol), run_code())
    provenance = collect_provenance(device=spec.device)
    manifest = {
        "config": spec.config,
        "fingerprint": fingerprint,
        "method": method.describe(),
        "dataset": {"name": spec.dataset, "protocol_id": protocol,
                    "card_sha256": dataset.card.card_sha256},
        "provenance": provenance,
    }
    # The manifest records the settings that produced the rows: written by the first session, never
    # rewritten (the identity check guarantees later sessions have the same settings); each session's
    # environment is appended to records/sessions-<shard>.jsonl.
    spec.folder.write_manifest(spec.rank, spec.world_size, manifest)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    # Phase 1: SR, timed. Metrics are not built yet, so nothing they do can touch SR outputs or timing.
    timer = Timer(device=spec.device, warmup=spec.warmup, nfe=method.nfe,
                  context={"dtype": spec.dtype, "batch_size": spec.batch_size, **spec.setting})
    sr_counts = run_sr_phase(spec, method, dataset, timer)
    timing = timer.summary()
    if not getattr(method, "measures_time", True):
        timing = {"measured": False, "reason": "outputs made elsewhere, not timed"}
    del method
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    # Phase 2: metrics, on the PNGs written by phase 1.
    metrics, unavailable = build_metrics(list(spec.metrics), device=spec.device)
    set_metrics = {name: m for name, m in metrics.items() if m.spec.set_level}
    image_metrics = {name: m for name, m in metrics.items() if name not in set_metrics}
    row_prov = row_provenance(protocol_id=protocol, card_sha256=dataset.card.card_sha256,
                              method=spec.setting.get("label", spec.method),
                              checkpoint_sha256=manifest["method"].get("checkpoint_sha256"), environment=provenance)
    row_prov["fingerprint"] = fingerprint
    m_counts = run_metrics_phase(spec, dataset, image_metrics, row_prov, batch_size=max(1, spec.batch_size))
    counts = {"sr": sr_counts, "metrics": m_counts}
    if set_metrics:  # per-image features of the set-level metrics (FID, KID), beside the rows
        counts["features"] = record_features(spec, dataset, set_metrics, batch_size=max(1, spec.batch_size))
    spec.folder.row_store("sessions", spec.rank, spec.world_size).append(
        {"started": started, "provenance": provenance, "counts": counts})
    # Frequency analysis: per-image radial spectra beside the rows (vectors, not metric values).
    spectra = wants_spectra(spec.metrics)
    if spectra:
        record_spectra(spec, dataset)
    if spec.world_size > 1:
        _barrier()
        if spec.rank != 0:
            return {}
        counts = _launch_counts(spec)
    if spectra:
        write_spectra_summary(spec.run_dir)
    # Set-level values, once per run, from the features every shard wrote (gathered on rank 0).
    set_values, set_gaps = set_metric_values(spec.folder, set_metrics)
    specs = {name: get_spec(name) for name in spec.metrics}
    extra = {
        "fingerprint": fingerprint,
        "protocol_id": protocol,
        "protocol_subset_of": dict(dataset.card.subset_of) or None,
        "card_sha256": dataset.card.card_sha256,
        "nfe": manifest["method"].get("nfe"),
        "method_info": manifest["method"],
        "timing": _timing_from_rows(spec, timing if timing.get("n_images") or timing.get("measured") is False
                                    else _previous_timing(spec)),
        "counts": counts,
        "provenance": provenance,
    }
    return summarize(spec, specs, unavailable, extra, set_values, set_gaps)


def latency_conditions(spec: RunSpec, batch_size: int) -> dict[str, Any]:
    """What a latency depends on beyond the method: the device (its name: the GPU model or the CPU), the
    threads, the batch size and the precision. Recorded in each timed SR row."""
    from resshift.provenance import device_info

    return {"device": device_info(spec.device).get("name"), "threads": torch.get_num_threads(),
            "batch_size": int(batch_size), "dtype": spec.dtype}


def _timing_from_rows(spec: RunSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Latency statistics over the timed images of the run (all shards, all resumed sessions) measured under the
    conditions of the newest timed row (:func:`latency_conditions`): a session resumed with other threads, batch
    size or device does not pool its latencies with the earlier ones; the count left out is
    ``n_other_conditions``.

    ``context`` (device, precision, threads, peak memory of the last session that timed anything) is kept, and
    the conditions are given as ``conditions`` (so they survive a session killed before its summary); the
    statistics are recomputed from the per-image rows so a resumed run reports the whole set, not only the
    images of its last session.
    """
    import numpy as np

    timed = [r for r in spec.folder.rows("sr") if r.get("status") == "ok" and r.get("timed", True)]
    reference = max(timed, key=lambda r: r.get("written_ns", -1)).get("timing_conditions") if timed else None
    lat = np.array([r["latency_s"] for r in timed if r.get("timing_conditions") == reference], dtype=float)
    out = dict(context)
    if reference is not None:
        out["conditions"] = reference
        out.setdefault("device", reference.get("device"))
    if len(timed) > lat.size:
        out["n_other_conditions"] = len(timed) - int(lat.size)
    if lat.size:
        out.update(n_images=int(lat.size), median_s=float(np.median(lat)), p90_s=float(np.percentile(lat, 90)),
                   mean_s=float(lat.mean()), min_s=float(lat.min()), max_s=float(lat.max()))
    return out


def _launch_counts(spec: RunSpec) -> dict[str, dict[str, int]]:
    """The counts of this session summed over its shards: each rank's newest ``sessions`` row (every rank appends
    one before the barrier rank 0 waits at)."""
    total: dict[str, dict[str, int]] = {}
    for rank in range(spec.world_size):
        rows = spec.folder.row_store("sessions", rank, spec.world_size).rows()
        if not rows:
            raise RuntimeError(f"{spec.run_dir}: no session record of shard {rank} of {spec.world_size} after the "
                               "barrier")
        newest = max(rows, key=lambda r: r.get("written_ns", -1))
        for phase, counts in newest.get("counts", {}).items():
            for key, value in counts.items():
                total.setdefault(phase, {}).setdefault(key, 0)
                total[phase][key] += int(value)
    return total


def _previous_timing(spec: RunSpec) -> dict[str, Any]:
    """Timing of an earlier, complete SR phase (a resumed run that had nothing left to time)."""
    return spec.folder.summary().get("timing", {}) if spec.folder.has_summary() else {}


def _barrier() -> None:
    """Wait for every rank (torchrun) before rank 0 merges the shards' rows."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    dist.barrier()
