"""Regression check: compare runs (or a stored baseline file) metric by metric and on runtime.

A metric moves "beyond tolerance" when ``|new - old| > tolerance`` for that metric (the same bands
as the published-number comparison: the registry's ``MetricSpec.tolerance``, overridable); runtime
regresses when ``new / old > max ratio``.
Runs are matched by (method label, data set). A matched pair also fails when

* the new run scored fewer images than the baseline (``n_ok``), or other images (``images_digest``,
  a digest of the scored image names), since averages over different images are not comparable;
* both carry a configuration fingerprint and the fingerprints differ (another seed, checkpoint,
  data set root or parameter: not the same experiment). Baselines without fingerprints (older CSVs)
  are matched by label and data set alone.
The baseline can be a run folder, a folder of runs, or a CSV written by ``resshift report``
(``results.csv``) / by :func:`save_baseline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resshift.metrics.registry import tolerances as registry_tolerances
from resshift.reports.results import find_run_dirs, runs_table
from resshift.reports.tables import metric_columns


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


def _finite_delta(new_value: float, old_value: float) -> float:
    """``new - old``; equal values (a capped PSNR on both sides included) give 0."""
    return 0.0 if new_value == old_value else float(new_value) - float(old_value)


#: Columns a runs table needs to be compared (the key of a run).
KEY_COLUMNS = ("method", "dataset")


def load_results(path: str | Path) -> pd.DataFrame:
    """A runs table from a CSV file or from run folders. Raises ``ValueError`` naming the file for a CSV that is
    not a runs table (no rows, or without the ``method`` and ``dataset`` columns), ``FileNotFoundError`` for a
    path that holds no finished run."""
    path = Path(path)
    if path.is_file() and path.suffix == ".csv":
        try:
            table = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{path}: empty file, not a runs table") from None
        missing = [c for c in KEY_COLUMNS if c not in table.columns]
        if missing or table.empty:
            raise ValueError(f"{path}: not a runs table ({'no column ' + ', '.join(missing) if missing else 'no rows'}"
                             "; write one with `resshift compare BASELINE RUNS --save-baseline` or take a report's "
                             "results.csv)")
        return table
    dirs = find_run_dirs([path])
    if not dirs:
        raise FileNotFoundError(f"{path}: no finished run (summary.json) there")
    return runs_table(dirs)


def save_baseline(paths: list[str | Path], out_csv: str | Path) -> Path:
    """Store the runs under ``paths`` as a baseline CSV for later comparisons."""
    df = runs_table(find_run_dirs(list(paths))).drop(columns=["run"])
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return out_csv


def _present(row: pd.Series, column: str) -> bool:
    return column in row and not pd.isna(row[column]) and row[column] != ""


def _identity_checks(b: pd.Series, n: pd.Series) -> list[tuple[str, str, object, object, str]]:
    """(quantity, status, baseline, new, allowed) for every way the two runs are not comparable."""
    out: list[tuple[str, str, object, object, str]] = []
    if _present(b, "fingerprint") and _present(n, "fingerprint") and b["fingerprint"] != n["fingerprint"]:
        out.append(("fingerprint", "CONFIG CHANGED", str(b["fingerprint"])[:16], str(n["fingerprint"])[:16],
                    "same configuration"))
    if _present(b, "n_ok"):
        base_ok = int(b["n_ok"])
        new_ok = int(n["n_ok"]) if _present(n, "n_ok") else 0
        if new_ok < base_ok:
            out.append(("images scored", "FEWER IMAGES", float(base_ok), float(new_ok), f"≥ {base_ok}"))
    if _present(b, "images_digest") and _present(n, "images_digest") and b["images_digest"] != n["images_digest"]:
        out.append(("images", "OTHER IMAGES", str(b["images_digest"]), str(n["images_digest"]), "same images"))
    return out


def _counterpart(b: pd.Series, new: pd.DataFrame, shared: bool = False) -> pd.Series | None:
    """The new run that corresponds to baseline row ``b``: same label and data set, and the same
    fingerprint where several runs share a label on either side (``shared``: other baseline rows have ``b``'s
    label and data set), so that one new run never answers for two baseline runs; the one candidate otherwise
    (its fingerprint is then checked by :func:`_identity_checks`)."""
    same = new[(new["method"] == b["method"]) & (new["dataset"] == b["dataset"])]
    if (len(same) > 1 or shared) and _present(b, "fingerprint") and "fingerprint" in same:
        same = same[same["fingerprint"] == b["fingerprint"]]
    return same.iloc[0] if len(same) == 1 else None


def compare_results(baseline: pd.DataFrame, new: pd.DataFrame, tolerances: dict[str, float] | None = None,
                    max_runtime_ratio: float | None = 1.5, missing_is_failure: bool = True) -> Comparison:
    """Compare two runs tables: each baseline row with its counterpart (:func:`_counterpart`)."""
    tol = {**registry_tolerances(), **(tolerances or {})}
    rows = []
    failed = False
    for frame, name in ((baseline, "baseline"), (new, "new results")):
        missing = [c for c in KEY_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: not a runs table (no column {', '.join(missing)})")
    keys = list(zip(baseline["method"], baseline["dataset"], strict=True))
    for _, b in baseline.iterrows():
        key = (b["method"], b["dataset"])
        n = _counterpart(b, new, shared=keys.count(key) > 1)
        if n is None:
            rows.append({"method": key[0], "dataset": key[1], "quantity": "(run)", "baseline": float("nan"),
                         "new": float("nan"), "delta": float("nan"), "allowed": "present",
                         "status": "MISSING" if missing_is_failure else "missing"})
            failed |= missing_is_failure
            continue
        for quantity, status, base_v, new_v, allowed in _identity_checks(b, n):
            failed = True
            rows.append({"method": key[0], "dataset": key[1], "quantity": quantity, "baseline": base_v,
                         "new": new_v, "delta": float("nan"), "allowed": allowed, "status": status})
        for metric in metric_columns(baseline):
            if metric not in b or pd.isna(b[metric]):
                continue
            new_value = n[metric] if metric in n else float("nan")
            allowed = tol.get(metric, 0.0)
            if pd.isna(new_value):
                status = "MISSING"
                delta = float("nan")
            else:
                delta = _finite_delta(float(new_value), float(b[metric]))
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
