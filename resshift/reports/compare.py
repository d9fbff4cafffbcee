"""Regression check: compare runs (or a stored baseline file) metric by metric and on runtime.

A metric moves "beyond tolerance" when ``|new - old| > tolerance`` for that metric (the same bands
as the published-number comparison, overridable); runtime regresses when ``new / old > max ratio``.
The baseline can be a run folder, a folder of runs, or a CSV written by ``resshift report``
(``results.csv``) / by :func:`save_baseline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resshift.reports.reference import TOLERANCES
from resshift.reports.results import find_run_dirs, runs_table
from resshift.reports.tables import metric_columns

KEY = ["method", "dataset"]


@dataclass
class Comparison:
    """The diff table and whether anything regressed."""

    table: pd.DataFrame
    failed: bool

    def to_markdown(self) -> str:
        if self.table.empty:
            return "nothing to compare (no (method, dataset) pair present in both)\n"
        cols = ["method", "dataset", "quantity", "baseline", "new", "delta", "allowed", "status"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for _, r in self.table.iterrows():
            lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
        return "\n".join(lines) + "\n"


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "n/a" if pd.isna(v) else f"{v:.4f}"
    return str(v)


def load_results(path: str | Path) -> pd.DataFrame:
    """A runs table from a CSV file or from run folders."""
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        return pd.read_csv(path)
    return runs_table(find_run_dirs([path]))


def save_baseline(paths: list[str | Path], out_csv: str | Path) -> Path:
    """Store the runs under ``paths`` as a baseline CSV for later comparisons."""
    df = runs_table(find_run_dirs(list(paths))).drop(columns=["run"])
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return out_csv


def compare_results(baseline: pd.DataFrame, new: pd.DataFrame, tolerances: dict[str, float] | None = None,
                    max_runtime_ratio: float | None = 1.5, missing_is_failure: bool = True) -> Comparison:
    """Compare two runs tables on their shared (method, dataset) rows."""
    tol = {**TOLERANCES, **(tolerances or {})}
    rows = []
    failed = False
    base_idx = baseline.set_index(KEY)
    new_idx = new.set_index(KEY)
    for key in base_idx.index:
        if key not in new_idx.index:
            rows.append({"method": key[0], "dataset": key[1], "quantity": "(run)", "baseline": float("nan"),
                         "new": float("nan"), "delta": float("nan"), "allowed": "present",
                         "status": "MISSING" if missing_is_failure else "missing"})
            failed |= missing_is_failure
            continue
        b, n = base_idx.loc[key], new_idx.loc[key]
        for metric in metric_columns(baseline):
            if metric not in b or pd.isna(b[metric]):
                continue
            new_value = n[metric] if metric in n else float("nan")
            allowed = tol.get(metric, 0.0)
            if pd.isna(new_value):
                status = "MISSING"
                delta = float("nan")
            else:
                delta = float(new_value) - float(b[metric])
                status = "ok" if abs(delta) <= allowed else "REGRESSED"
            failed |= status != "ok"
            rows.append({"method": key[0], "dataset": key[1], "quantity": metric, "baseline": float(b[metric]),
                         "new": float(new_value), "delta": delta, "allowed": f"±{allowed:g}", "status": status})
        if max_runtime_ratio and not pd.isna(b.get("ms_per_image")) and not pd.isna(n.get("ms_per_image")):
            ratio = float(n["ms_per_image"]) / float(b["ms_per_image"])
            status = "ok" if ratio <= max_runtime_ratio else "SLOWER"
            failed |= status != "ok"
            rows.append({"method": key[0], "dataset": key[1], "quantity": "ms_per_image",
                         "baseline": float(b["ms_per_image"]), "new": float(n["ms_per_image"]),
                         "delta": ratio, "allowed": f"ratio ≤ {max_runtime_ratio:g}", "status": status})
    return Comparison(pd.DataFrame(rows), failed)
