"""Uncertainty of the reported means: bootstrap intervals and paired tests between methods (SciPy).

- **Interval of a mean** (:func:`mean_interval`): 95 % percentile bootstrap over images
  (``scipy.stats.bootstrap``, ``method="percentile"``, :data:`RESAMPLES` resamples, generator seeded
  with :data:`SEED`), so a report rebuilt from the same runs prints the same interval.
- **Paired comparison** (:func:`paired_comparison`): for two runs on the same protocol, the images both
  scored; the mean of the per-image differences A - B with its bootstrap interval (as above), and the
  two-sided Wilcoxon signed-rank test of the differences (``scipy.stats.wilcoxon``, ``zero_method="wilcox"``:
  zero differences are dropped; exact distribution for small samples, normal approximation otherwise, as
  SciPy's ``method="auto"`` chooses). No correction for multiple comparisons is applied; a verdict is
  "better" only when p < :data:`ALPHA` *and* the interval excludes 0.

Inputs are per-image values (NaN and non-finite values are dropped first). Fewer than two values give
NaN bounds; the Wilcoxon test needs at least one non-zero difference (else p is NaN).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20231
ALPHA = 0.05

METHOD_TEXT = (
    f"Intervals: {100 * CONFIDENCE:g} % percentile bootstrap of the mean over images "
    f"(scipy.stats.bootstrap, {RESAMPLES} resamples, seed {SEED}). Paired comparisons: images scored by both "
    f"runs; mean per-image difference with its bootstrap interval (same settings) and the two-sided Wilcoxon "
    f"signed-rank test (scipy.stats.wilcoxon, zero differences dropped); a gap counts as evidence when "
    f"p < {ALPHA:g} and the interval excludes 0 (no multiple-comparison correction)."
)


def _finite(values: object) -> np.ndarray:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return arr[np.isfinite(arr)]


def mean_interval(values: object, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                  seed: int = SEED) -> tuple[float, float, int]:
    """``(low, high, n)``: percentile-bootstrap interval of the mean of the finite ``values``.

    ``n`` is how many values were used; with fewer than two the bounds are NaN. All values equal gives
    ``(v, v)``.
    """
    x = _finite(values)
    if len(x) < 2:
        return float("nan"), float("nan"), len(x)
    if np.all(x == x[0]):
        return float(x[0]), float(x[0]), len(x)
    res = stats.bootstrap((x,), np.mean, n_resamples=resamples, confidence_level=confidence,
                          method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high), len(x)


@dataclass(frozen=True)
class Paired:
    """Paired comparison of run A and run B on one metric (difference = A - B)."""

    n: int
    mean_diff: float
    low: float
    high: float
    p_value: float

    def evidence(self, alpha: float = ALPHA) -> bool:
        """True when p < ``alpha`` and the interval excludes 0."""
        return bool(self.p_value < alpha and (self.low > 0 or self.high < 0))


def paired_comparison(a: pd.Series, b: pd.Series) -> Paired:
    """Compare two per-image series indexed by image name, on the names both have a finite value for."""
    a = pd.to_numeric(a, errors="coerce")
    b = pd.to_numeric(b, errors="coerce")
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    both = both[np.isfinite(both["a"]) & np.isfinite(both["b"])]
    d = (both["a"] - both["b"]).to_numpy(dtype=float)
    if len(d) == 0:
        return Paired(0, float("nan"), float("nan"), float("nan"), float("nan"))
    low, high, _ = mean_interval(d)
    p = float("nan")
    if np.any(d != 0):
        with warnings.catch_warnings():  # small samples: SciPy warns that the normal approximation is rough
            warnings.simplefilter("ignore", UserWarning)
            p = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return Paired(len(d), float(d.mean()), low, high, p)


def _values(per_image: pd.DataFrame, run: str, metric: str) -> pd.Series:
    """A run's per-image values of ``metric`` (rows with status ok), indexed by image name."""
    rows = per_image[per_image["run"] == run]
    if "status" in rows.columns:
        rows = rows[rows["status"] == "ok"]
    if metric not in rows.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(rows.set_index(rows["name"].astype(str))[metric], errors="coerce")


def with_intervals(df: pd.DataFrame, per_image: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """``df`` (runs table) with ``<metric>_ci_low``, ``<metric>_ci_high`` and ``<metric>_n`` columns."""
    out = df.copy()
    for m in metrics:
        lows, highs, ns = [], [], []
        for run in out["run"]:
            low, high, n = mean_interval(_values(per_image, str(run), m)) if not per_image.empty else (
                float("nan"), float("nan"), 0)
            lows.append(low)
            highs.append(high)
            ns.append(n)
        out[f"{m}_ci_low"], out[f"{m}_ci_high"], out[f"{m}_n"] = lows, highs, ns
    return out


def pairwise_table(df: pd.DataFrame, per_image: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every pair of runs on the same protocol and data set, for every metric both have per-image values of.

    Columns: protocol, dataset, run_a, run_b (run folders, to tell runs with one label apart), method_a,
    method_b, metric, n, mean_diff (A - B), ci_low, ci_high,
    p_value, test, evidence (p < alpha and interval excludes 0).
    """
    from resshift.metrics import get_spec

    rows = []
    if per_image.empty:
        return pd.DataFrame(rows)
    for (protocol, dataset), block in df.groupby(["protocol", "dataset"], sort=True):
        for (_, ra), (_, rb) in combinations(block.iterrows(), 2):
            for m in metrics:
                va, vb = _values(per_image, str(ra["run"]), m), _values(per_image, str(rb["run"]), m)
                if va.dropna().empty or vb.dropna().empty:
                    continue
                res = paired_comparison(va, vb)
                if res.n == 0:
                    continue
                better = get_spec(m).better
                winner = ""
                if res.evidence() and better != "none":
                    a_wins = (res.mean_diff > 0) == (better == "higher")
                    winner = str(ra["method"] if a_wins else rb["method"])
                rows.append({"protocol": protocol, "dataset": dataset, "run_a": str(ra["run"]),
                             "run_b": str(rb["run"]), "method_a": ra["method"],
                             "method_b": rb["method"], "metric": m, "n": res.n, "mean_diff": res.mean_diff,
                             "ci_low": res.low, "ci_high": res.high, "p_value": res.p_value,
                             "test": "wilcoxon signed-rank (two-sided)", "evidence": res.evidence(),
                             "better": winner})
    return pd.DataFrame(rows)


def against_best(df: pd.DataFrame, pairwise: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """``df`` with ``<metric>_vs_best`` (the best run's method in its protocol), ``<metric>_vs_best_diff``
    (this run - best), ``<metric>_vs_best_p`` and ``<metric>_vs_best_evidence`` for every run that is not
    the best; empty for the best run and for metrics without a better direction."""
    from resshift.metrics import get_spec

    out = df.copy()
    for m in metrics:
        spec = get_spec(m)
        cols = {k: [None] * len(out) for k in ("", "_diff", "_p", "_evidence")}
        if spec.better != "none" and m in out.columns:
            for _, block in out.groupby(["protocol", "dataset"], sort=False):
                vals = pd.to_numeric(block[m], errors="coerce").dropna()
                if len(vals) < 2:
                    continue
                best_idx = vals.idxmin() if spec.lower_better else vals.idxmax()
                best = out.loc[best_idx, "method"]
                for idx in block.index:
                    if idx == best_idx or pd.isna(out.loc[idx, m]):
                        continue
                    row = _pair_row(pairwise, str(out.loc[idx, "run"]), str(out.loc[best_idx, "run"]), m)
                    if row is None:
                        continue
                    pos = out.index.get_loc(idx)
                    cols[""][pos], cols["_diff"][pos] = best, row[0]
                    cols["_p"][pos], cols["_evidence"][pos] = row[1], row[2]
        for suffix, values in cols.items():
            out[f"{m}_vs_best{suffix}"] = values
    return out


def _pair_row(pairwise: pd.DataFrame, run: str, best: str, metric: str) -> tuple[float, float, bool] | None:
    """(run - best, p, evidence) from the pairwise table, whichever order the pair was stored in."""
    if pairwise.empty:
        return None
    sel = pairwise[pairwise["metric"] == metric]
    fwd = sel[(sel["run_a"] == run) & (sel["run_b"] == best)]
    if len(fwd):
        r = fwd.iloc[0]
        return float(r["mean_diff"]), float(r["p_value"]), bool(r["evidence"])
    rev = sel[(sel["run_a"] == best) & (sel["run_b"] == run)]
    if len(rev):
        r = rev.iloc[0]
        return -float(r["mean_diff"]), float(r["p_value"]), bool(r["evidence"])
    return None
