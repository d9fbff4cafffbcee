"""Loading finished runs into one table: one row per (method, setting, dataset) run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run folders (holding ``summary.json``) at or below each path, sorted, without duplicates."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(s.parent.resolve() for s in p.glob("**/summary.json"))
        else:
            raise FileNotFoundError(f"{p}: not a run folder (no summary.json) and not a folder")
    return sorted(found)


def find_skipped(paths: list[str | Path]) -> list[dict[str, Any]]:
    """The ``skipped.json`` records (runs whose data set was unavailable) at or below each path,
    except in folders that hold a finished run."""
    out = []
    for p in map(Path, paths):
        files = [p / "skipped.json"] if (p / "skipped.json").is_file() else sorted(p.glob("**/skipped.json"))
        for f in files:
            if not (f.parent / "summary.json").is_file():
                out.append(json.loads(f.read_text(encoding="utf-8")))
    return out


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read run summary ({err})") from err


def timing_conditions(timing: dict[str, Any]) -> str:
    """The conditions of a run's timing in one line: what was timed and on what (device, dtype, batch,
    threads, images timed, warm-up excluded)."""
    ctx = timing.get("context") or {}
    parts = [str(timing.get("device") or ctx.get("device_name") or "unknown device")]
    if ctx.get("dtype"):
        parts.append(str(ctx["dtype"]))
    if ctx.get("batch_size") is not None:
        parts.append(f"batch {ctx['batch_size']}")
    if ctx.get("threads"):
        parts.append(f"{ctx['threads']} threads")
    if timing.get("n_images") is not None:
        parts.append(f"median of {timing['n_images']} images")
    if timing.get("warmup_batches_excluded"):
        parts.append(f"{timing['warmup_batches_excluded']} warm-up batch(es) excluded")
    text = ", ".join(parts)
    return f"{text}; {timing['included']}" if timing.get("included") else text


def _checkpoint_hashes(run_dir: Path) -> str:
    """The checkpoint SHA-256 values a run recorded (per-image provenance, else its manifest), ';'-joined."""
    hashes: set[str] = set()
    per_image = Path(run_dir) / "per_image.csv"
    if per_image.is_file():
        col = pd.read_csv(per_image, usecols=lambda c: c == "checkpoint_sha256").get("checkpoint_sha256")
        if col is not None:
            hashes |= {str(v) for v in col.dropna() if str(v)}
    if not hashes:
        for manifest in sorted(Path(run_dir).glob("run-*.json")):
            try:
                method = json.loads(manifest.read_text(encoding="utf-8")).get("method") or {}
            except (OSError, json.JSONDecodeError):
                continue
            if method.get("checkpoint_sha256"):
                hashes.add(str(method["checkpoint_sha256"]))
    return ";".join(sorted(hashes))


def _missing_text(missing: object) -> str:
    """``"<count> images: <reason>; ..."`` from a summary's ``{reason: count}`` of images without a value."""
    if not isinstance(missing, dict) or not missing:
        return ""
    return "; ".join(f"{count} image{'s' if count != 1 else ''}: {reason}" for reason, count in missing.items())


def runs_table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per run: identity columns, image counts, NFE, timing and its conditions, provenance, and each
    metric's mean (``<metric>``), std, count (``<metric>_n_scored``) and, where given, why fewer images than
    the run's scored images have a value (``<metric>_note``) or why the metric is missing
    (``<metric>_unavailable``)."""
    rows = []
    for run_dir in run_dirs:
        s = load_summary(run_dir)
        setting = s.get("setting") or {}
        timing = s.get("timing") or {}
        prov = s.get("provenance") or {}
        git = prov.get("git") or {}
        row: dict[str, Any] = {
            "run": str(run_dir),
            "method": setting.get("label", s["method"]),
            "method_name": s["method"],
            "reference": (s.get("method_info") or {}).get("reference") or setting.get("reference"),
            "dataset": s["dataset"],
            "protocol": s.get("protocol_id") or s["dataset"],
            "nfe": s.get("nfe"),
            "n_images": s.get("n_images"),
            "n_ok": s.get("n_ok"),
            "n_failed": s.get("n_failed"),
            "images_digest": s.get("images_digest"),
            "fingerprint": s.get("fingerprint"),
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
        for name, reasons in (s.get("metric_gaps") or {}).items():
            if name not in (s.get("metrics") or {}) and _missing_text(reasons):
                row[f"{name}_unavailable"] = f"no image has a value ({_missing_text(reasons)})"
        for name, reason in (s.get("unavailable") or {}).items():
            row[f"{name}_unavailable"] = reason
        rows.append(row)
    return pd.DataFrame(rows)


def per_image_table(run_dirs: list[Path]) -> pd.DataFrame:
    """All per-image rows of the given runs, with method (label), method_name, dataset and run columns added."""
    frames = []
    for run_dir in run_dirs:
        s = load_summary(run_dir)
        path = Path(run_dir) / "per_image.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        df.insert(0, "method", (s.get("setting") or {}).get("label", s["method"]))
        df.insert(1, "method_name", s["method"])
        df.insert(2, "dataset", s["dataset"])
        df.insert(3, "run", str(run_dir))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
