"""Loading finished runs into one table: one row per (method, setting, dataset) run, read through
:class:`resshift.runfolder.RunFolder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from resshift.methods.outputs import METHOD_NAME as SCORED_OUTPUTS
from resshift.reports.stability import seed_group_key
from resshift.runfolder import RunFolder, find_incomplete, find_run_dirs, find_skipped

__all__ = ["find_incomplete", "find_run_dirs", "find_skipped", "per_image_table", "runs_table", "timing_conditions"]


def timing_conditions(timing: dict[str, Any]) -> str:
    """The conditions of a run's timing in one line: what was timed and on what (device, dtype, batch,
    threads, images timed, warm-up excluded)."""
    ctx = {**(timing.get("context") or {}), **(timing.get("conditions") or {})}  # the rows' conditions first
    parts = [str(timing.get("device") or ctx.get("device_name") or "unknown device")]
    if ctx.get("dtype"):
        parts.append(str(ctx["dtype"]))
    if ctx.get("batch_size") is not None:
        parts.append(f"batch {ctx['batch_size']}")
    if ctx.get("threads"):
        parts.append(f"{ctx['threads']} threads")
    if timing.get("n_images") is not None:
        parts.append(f"median of {timing['n_images']} images")
    if timing.get("n_other_conditions"):
        parts.append(f"{timing['n_other_conditions']} image(s) timed under other conditions left out")
    if timing.get("warmup_batches_excluded"):
        parts.append(f"{timing['warmup_batches_excluded']} warm-up batch(es) excluded")
    text = ", ".join(parts)
    return f"{text}; {timing['included']}" if timing.get("included") else text


def _checkpoint_hashes(run_dir: Path) -> str:
    """The checkpoint SHA-256 values a run recorded (per-image provenance, else its manifest), ';'-joined."""
    hashes: set[str] = set()
    folder = RunFolder(run_dir)
    per_image = folder.per_image(columns=["checkpoint_sha256"])
    if per_image is not None and "checkpoint_sha256" in per_image:
        hashes |= {str(v) for v in per_image["checkpoint_sha256"].dropna() if str(v)}
    if not hashes:
        for manifest in folder.manifests():
            method = manifest.get("method") or {}
            if method.get("checkpoint_sha256"):
                hashes.add(str(method["checkpoint_sha256"]))
    return ";".join(sorted(hashes))


def _missing_text(missing: object) -> str:
    """``"<count> images: <reason>; ..."`` from a summary's ``{reason: count}`` of images without a value."""
    if not isinstance(missing, dict) or not missing:
        return ""
    return "; ".join(f"{count} image{'s' if count != 1 else ''}: {reason}" for reason, count in missing.items())


def runs_table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per run: identity columns (with the run ``seed`` and its ``seed_group``, the key shared by the
    runs that differ from it at most in the seed: :func:`resshift.reports.stability.seed_group_key`), image
    counts, NFE, timing and its conditions, provenance, and each metric's mean (``<metric>``), std, count
    (``<metric>_n_scored``) and, where given, why fewer images than the run's scored images have a value
    (``<metric>_note``) or why the metric is missing (``<metric>_unavailable``).

    A set-level metric (FID, KID: summary key ``set_metrics``) fills ``<metric>`` with its one value and
    ``<metric>_n_scored`` with the images of each set; ``<metric>_warning`` holds the summary's warning of a
    value computed on fewer images than the metric's ``warn_below_images`` (else it is empty)."""
    rows = []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        s = folder.summary()
        identity = folder.identity()
        setting = s.get("setting") or {}
        timing = s.get("timing") or {}
        prov = s.get("provenance") or {}
        git = prov.get("git") or {}
        row: dict[str, Any] = {
            "run": str(run_dir),
            "method": setting.get("label", s["method"]),
            "method_name": s["method"],
            "family": method_family(s["method"], setting.get("label")),
            "reference": (s.get("method_info") or {}).get("reference") or setting.get("reference"),
            "dataset": s["dataset"],
            "protocol": s.get("protocol_id") or s["dataset"],
            "subset_of": (s.get("protocol_subset_of") or {}).get("protocol_id"),
            "subset_note": (s.get("protocol_subset_of") or {}).get("note"),
            "nfe": s.get("nfe"),
            "n_images": s.get("n_images"),
            "n_ok": s.get("n_ok"),
            "n_failed": s.get("n_failed"),
            "images_digest": s.get("images_digest"),
            "fingerprint": s.get("fingerprint"),
            "seed": (identity or {}).get("seed"),
            "seed_group": seed_group_key(identity),
            "ms_per_image": 1e3 * timing["median_s"] if timing.get("median_s") is not None else None,
            "device": timing.get("device"),
            "timing_conditions": timing_conditions(timing) if timing else None,
            "card_sha256": s.get("card_sha256"),
            "checkpoint_sha256": _checkpoint_hashes(run_dir),
            "git_commit": (git.get("commit") or "") + (" (dirty)" if git.get("dirty") else ""),
            "packages": ";".join(f"{k}={v}" for k, v in sorted((prov.get("packages") or {}).items()) if v),
            "platform": prov.get("platform"),
        }
        for name, m in (s.get("metrics") or {}).items():
            row[name] = m["mean"]
            row[f"{name}_std"] = m.get("std")
            row[f"{name}_n_scored"] = m.get("n")
            note = _missing_text(m.get("missing")) or m.get("reason") or m.get("note")
            if note:
                row[f"{name}_note"] = note
        for name, m in (s.get("set_metrics") or {}).items():
            row[name] = m["value"]
            row[f"{name}_n_scored"] = m.get("n_images")
            if m.get("warning"):
                row[f"{name}_warning"] = m["warning"]
            note = _missing_text(m.get("missing"))
            if note:
                row[f"{name}_note"] = note
        for name, reasons in (s.get("metric_gaps") or {}).items():
            if name not in (s.get("metrics") or {}) and name not in (s.get("set_metrics") or {}) and \
                    _missing_text(reasons):
                row[f"{name}_unavailable"] = f"no image has a value ({_missing_text(reasons)})"
        for name, reason in (s.get("unavailable") or {}).items():
            row[f"{name}_unavailable"] = reason
        rows.append(row)
    return pd.DataFrame(rows)


def method_family(method_name: str, label: str | None) -> str:
    """The family a run is drawn and coloured with in reports: its method's registry name (the runs of one
    method at several NFE form one line), except for outputs made elsewhere and scored here, where each
    label is a method of its own (two brought methods are never joined into one line)."""
    return str(label) if method_name == SCORED_OUTPUTS and label else str(method_name)


def _check_against_summary(path: Path, per_image: pd.DataFrame, summary: dict) -> None:
    """``per_image.csv`` must hold the rows ``summary.json`` was computed from (both are written together from the
    run's rows): the same count of scored images and, per metric, the same count and mean (to 1e-9 relative).
    Raises ``ValueError`` naming the file and the first difference (a hand-edited or mixed-up file would give the
    report's intervals and tests from other numbers than its means)."""
    ok = per_image[per_image["status"] == "ok"] if "status" in per_image else per_image
    if len(ok) != int(summary.get("n_ok", len(ok))):
        raise ValueError(f"{path}: {len(ok)} scored images, its summary.json says {summary.get('n_ok')}; the files do "
                         "not belong together (edited by hand?): resume the run to write both again")
    for name, entry in (summary.get("metrics") or {}).items():
        values = pd.to_numeric(ok[name], errors="coerce").dropna() if name in ok else pd.Series(dtype=float)
        mean = entry.get("mean")
        if len(values) != int(entry.get("n", len(values))) or (
                mean is not None and len(values) and abs(float(values.mean()) - mean) > 1e-9 * max(1.0, abs(mean))):
            found = f"mean {values.mean()}" if len(values) else "no values"
            raise ValueError(f"{path}: {name} over {len(values)} images, {found}; its summary.json says "
                             f"{entry.get('n')} images, mean {mean}; the files do not belong together (edited by "
                             "hand?): resume the run to write both again")


def per_image_table(run_dirs: list[Path]) -> pd.DataFrame:
    """All per-image rows of the given runs, with method (label), method_name, family
    (:func:`method_family`), dataset and run columns added."""
    frames = []
    for run_dir in run_dirs:
        folder = RunFolder(run_dir)
        s = folder.summary()
        df = folder.per_image()
        if df is None:
            continue
        _check_against_summary(folder.per_image_file, df, s)
        label = (s.get("setting") or {}).get("label")
        df.insert(0, "method", label or s["method"])
        df.insert(1, "method_name", s["method"])
        df.insert(2, "family", method_family(s["method"], label))
        df.insert(3, "dataset", s["dataset"])
        df.insert(4, "run", str(run_dir))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
