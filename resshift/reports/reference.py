"""Published reference numbers (kept as data) and the tolerance bands used to compare against them.

``reference_numbers.csv`` holds every published value the reports show, one row per method, NFE,
protocol, metric and source: ``method, nfe, protocol, metric, value, source, confidence``
(``repo`` / ``2nd`` / ``recall`` / ``rerun``; ``recall`` values are unverified and shown flagged).
``metric`` is the registry name of the convention the source used (e.g. ``psnr-y-float`` for pyiqa's
``psnr(test_y_channel=True, color_space='ycbcr')``). One method may be published on one protocol by
several sources with different values (each paper re-runs its competitors); each is its own row, and
:func:`published_bands` gives the spread (min–max over the sources). The tolerance band of each metric
is its registry ``MetricSpec.tolerance`` (also what ``resshift compare`` uses).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

UNVERIFIED = {"recall"}
CONFIDENCE = ("repo", "2nd", "recall", "rerun")
COLUMNS = ("method", "nfe", "protocol", "metric", "value", "source", "confidence")
ROW_KEY = ["method", "nfe", "protocol", "metric", "source"]
"""What identifies a published row: the same method, NFE, protocol and metric appears once per source."""


def load_reference_numbers(path: str | Path) -> pd.DataFrame:
    """Read and check a table of published numbers.

    Returns the columns of :data:`COLUMNS` (``value`` as float, ``nfe`` as int) plus ``value_text``, the
    value exactly as written in the file (the precision the source printed). Raises ``ValueError``
    naming the file (and the line) for: other columns than :data:`COLUMNS`, an empty field, an NFE that
    is not a non-negative integer, a value that is not a finite number, a confidence outside
    :data:`CONFIDENCE`, a metric name the registry (:mod:`resshift.metrics.registry`) does not know, or
    two rows with the same :data:`ROW_KEY`.
    """
    from resshift.metrics.registry import METRICS

    path = Path(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(raw.columns) != COLUMNS:
        raise ValueError(f"{path}: columns must be {', '.join(COLUMNS)}; found {', '.join(map(str, raw.columns))}")
    nfe, value = [], []
    for i, row in raw.iterrows():
        where = f"{path}: line {int(i) + 2}"  # line 1 is the header
        empty = [c for c in COLUMNS if not row[c].strip()]
        if empty:
            raise ValueError(f"{where}: empty {', '.join(empty)}")
        if not row["nfe"].isdigit():
            raise ValueError(f"{where}: nfe {row['nfe']!r} is not a non-negative integer")
        try:
            number = float(row["value"])
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{where}: value {row['value']!r} is not a finite number")
        if row["confidence"] not in CONFIDENCE:
            raise ValueError(f"{where}: confidence {row['confidence']!r} is not one of {', '.join(CONFIDENCE)}")
        if row["metric"] not in METRICS:
            raise ValueError(f"{where}: metric {row['metric']!r} is not in the metric registry "
                             "(resshift/metrics/registry.py)")
        nfe.append(int(row["nfe"]))
        value.append(number)
    refs = raw.assign(nfe=nfe, value=value, value_text=raw["value"].str.strip())
    dup = refs.duplicated(ROW_KEY, keep=False)
    if dup.any():
        lines = ", ".join(str(int(i) + 2) for i in refs.index[dup])
        raise ValueError(f"{path}: lines {lines} repeat one method, nfe, protocol, metric and source")
    return refs


def reference_numbers() -> pd.DataFrame:
    """The table of published numbers shipped with the package (checked by :func:`load_reference_numbers`)."""
    with resources.as_file(resources.files("resshift.reports").joinpath("reference_numbers.csv")) as path:
        return load_reference_numbers(path)


def published_bands(refs: pd.DataFrame) -> pd.DataFrame:
    """The spread of each method's published values over its sources: one row per (protocol, method, nfe,
    metric) with ``n_sources``, ``low``/``high`` (min and max of ``value``), ``spread`` (= high - low),
    ``low_text``/``high_text`` (the published texts of those values, where ``refs`` has ``value_text``)
    and ``sources`` (joined with ``"; "``, in table order)."""
    out = []
    for (protocol, method, nfe, metric), block in refs.groupby(["protocol", "method", "nfe", "metric"], sort=False):
        lo, hi = block["value"].idxmin(), block["value"].idxmax()
        text = block["value_text"] if "value_text" in block else block["value"].map(str)
        out.append({"protocol": protocol, "method": method, "nfe": nfe, "metric": metric,
                    "n_sources": len(block), "low": float(block.loc[lo, "value"]),
                    "high": float(block.loc[hi, "value"]),
                    "spread": float(block.loc[hi, "value"]) - float(block.loc[lo, "value"]),
                    "low_text": str(text[lo]), "high_text": str(text[hi]), "sources": "; ".join(block["source"])})
    columns = ["protocol", "method", "nfe", "metric", "n_sources", "low", "high", "spread", "low_text",
               "high_text", "sources"]
    return pd.DataFrame(out, columns=columns)


def compare_with_reference(ours: pd.DataFrame, refs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows (method, protocol, metric, ours, reference, delta, tolerance, verdict, scope, ...) for our runs whose
    ``reference`` column names a published method on the same protocol, or on the larger protocol the run's
    set is a subset of (``subset_of``, from the data card).

    Same protocol: the verdict compares ``|delta|`` with the metric's reproduction tolerance. Subset: the
    published value is a mean over more images than the run scored, so the verdict says whether it lies in
    the run's 95 % interval of the mean (``<metric>_ci_low``/``_ci_high`` of
    :func:`resshift.reports.statistics.with_intervals`; ``n/a`` without them); ``scope`` says which.

    A method published by several sources gives one row per source (``source``), each with the band of all
    of them on that protocol and metric (``band_low``, ``band_high``, ``n_sources``: :func:`published_bands`)."""
    from resshift.metrics.registry import tolerances

    refs = reference_numbers() if refs is None else refs
    bands = tolerances()
    spread = published_bands(refs).set_index(["protocol", "method", "nfe", "metric"])
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
                band = spread.loc[(protocol, ref_name, ref["nfe"], metric)]
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
                    "band_low": float(band["low"]),
                    "band_high": float(band["high"]),
                    "n_sources": int(band["n_sources"]),
                    "delta": delta,
                    "tolerance": tol,
                    "verdict": verdict,
                    "confidence": ref["confidence"],
                    "source": ref["source"],
                })
    return pd.DataFrame(out)
