"""Published reference numbers (kept as data) and the tolerance bands used to compare against them.

``reference_numbers.csv`` holds every published value the reports show: method, NFE, protocol,
metric, value, source, confidence (``repo`` / ``2nd`` / ``recall`` / ``rerun``; ``recall`` values
are unverified and shown flagged). The tolerance band of each metric is its registry
``MetricSpec.tolerance`` (also what ``resshift compare`` uses).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

UNVERIFIED = {"recall"}


def reference_numbers() -> pd.DataFrame:
    """The table of published numbers shipped with the package."""
    with resources.files("resshift.reports").joinpath("reference_numbers.csv").open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def compare_with_reference(ours: pd.DataFrame, refs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows (method, protocol, metric, ours, reference, delta, tolerance, verdict) for our runs whose
    ``reference`` column names a published method on the same protocol."""
    from resshift.metrics.registry import tolerances

    refs = reference_numbers() if refs is None else refs
    bands = tolerances()
    out = []
    for _, row in ours.iterrows():
        ref_name = row.get("reference")
        if not isinstance(ref_name, str) or not ref_name:
            continue
        sel = refs[(refs["method"] == ref_name) & (refs["protocol"] == row["protocol"])]
        for _, ref in sel.iterrows():
            metric = ref["metric"]
            if metric not in row or pd.isna(row[metric]):
                continue
            delta = float(row[metric]) - float(ref["value"])
            tol = bands.get(metric)
            verdict = "n/a" if tol is None else ("within" if abs(delta) <= tol else "outside")
            out.append({
                "method": row["method"],
                "protocol": row["protocol"],
                "metric": metric,
                "ours": float(row[metric]),
                "reference": float(ref["value"]),
                "reference_method": ref_name,
                "delta": delta,
                "tolerance": tol,
                "verdict": verdict,
                "confidence": ref["confidence"],
                "source": ref["source"],
            })
    return pd.DataFrame(out)
