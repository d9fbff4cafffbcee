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
    """Rows (method, protocol, metric, ours, reference, delta, tolerance, verdict, scope, ...) for our runs whose
    ``reference`` column names a published method on the same protocol, or on the larger protocol the run's
    set is a subset of (``subset_of``, from the data card).

    Same protocol: the verdict compares ``|delta|`` with the metric's reproduction tolerance. Subset: the
    published value is a mean over more images than the run scored, so the verdict says whether it lies in
    the run's 95 % interval of the mean (``<metric>_ci_low``/``_ci_high`` of
    :func:`resshift.reports.statistics.with_intervals`; ``n/a`` without them); ``scope`` says which."""
    from resshift.metrics.registry import tolerances

    refs = reference_numbers() if refs is None else refs
    bands = tolerances()
    out = []
    for _, row in ours.iterrows():
        ref_name = row.get("reference")
        if not isinstance(ref_name, str) or not ref_name:
            continue
        parent = row.get("subset_of")
        protocols = [(row["protocol"], "same protocol")]
        if isinstance(parent, str) and parent:
            protocols.append((parent, f"published on {parent}; this set is a subset of it"))
        for protocol, scope in protocols:
            sel = refs[(refs["method"] == ref_name) & (refs["protocol"] == protocol)]
            for _, ref in sel.iterrows():
                metric = ref["metric"]
                if metric not in row or pd.isna(row[metric]):
                    continue
                delta = float(row[metric]) - float(ref["value"])
                if protocol == row["protocol"]:
                    tol = bands.get(metric)
                    verdict = "n/a" if tol is None else ("within" if abs(delta) <= tol else "outside")
                    low = high = float("nan")
                else:
                    tol = None
                    low, high = (float(row.get(f"{metric}_ci_low", float("nan"))),
                                 float(row.get(f"{metric}_ci_high", float("nan"))))
                    inside = low <= float(ref["value"]) <= high
                    verdict = "n/a" if pd.isna(low) or pd.isna(high) else (
                        "inside the 95 % interval" if inside else "outside the 95 % interval")
                out.append({
                    "method": row["method"],
                    "protocol": row["protocol"],
                    "reference_protocol": protocol,
                    "scope": scope,
                    "metric": metric,
                    "ours": float(row[metric]),
                    "ci_low": low,
                    "ci_high": high,
                    "reference": float(ref["value"]),
                    "reference_method": ref_name,
                    "delta": delta,
                    "tolerance": tol,
                    "verdict": verdict,
                    "confidence": ref["confidence"],
                    "source": ref["source"],
                })
    return pd.DataFrame(out)
