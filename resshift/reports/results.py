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


def runs_table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per run: identity columns, NFE, timing, and each metric's mean (``<metric>``) and std."""
    rows = []
    for run_dir in run_dirs:
        s = load_summary(run_dir)
        setting = s.get("setting") or {}
        timing = s.get("timing") or {}
        row: dict[str, Any] = {
            "run": str(run_dir),
            "method": setting.get("label", s["method"]),
            "method_name": s["method"],
            "reference": (s.get("method_info") or {}).get("reference") or setting.get("reference"),
            "dataset": s["dataset"],
            "protocol": s.get("protocol_id") or s["dataset"],
            "nfe": s.get("nfe"),
            "n_ok": s.get("n_ok"),
            "n_failed": s.get("n_failed"),
            "images_digest": s.get("images_digest"),
            "fingerprint": s.get("fingerprint"),
            "ms_per_image": 1e3 * timing["median_s"] if timing.get("median_s") is not None else None,
            "device": timing.get("device"),
        }
        for name, m in (s.get("metrics") or {}).items():
            row[name] = m["mean"]
            row[f"{name}_std"] = m["std"]
        for name, reason in (s.get("unavailable") or {}).items():
            row[f"{name}_unavailable"] = reason
        rows.append(row)
    return pd.DataFrame(rows)


def per_image_table(run_dirs: list[Path]) -> pd.DataFrame:
    """All per-image rows of the given runs, with method and dataset columns added."""
    frames = []
    for run_dir in run_dirs:
        s = load_summary(run_dir)
        path = Path(run_dir) / "per_image.csv"
        if not path.is_file():
            continue
        df = pd.read_csv(path)
        df.insert(0, "method", (s.get("setting") or {}).get("label", s["method"]))
        df.insert(1, "dataset", s["dataset"])
        df.insert(2, "run", str(run_dir))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
