"""Seed stability: how much a method's scores move when only the run seed changes.

Runs belong to one **seed group** when their identities (``identity.json``, read through
:class:`resshift.runfolder.RunFolder`) are equal once the seed is removed: same method, parameters and
resolved parameters (checkpoint SHA-256 included), data set and its card, image selection, device type
and precision. A folder without an identity record belongs to no group. The measures are those of CCSR
(Sun et al., "Improving the Stability of Diffusion Models for Content Consistent Super-Resolution"),
over the N seeds of a group and, per metric, the images with a finite value in every seed:

- **L-STD** (local stability): for each image, the standard deviation of the metric over the N seeds;
  the mean of these over the images.
- **G-STD** (global stability): the standard deviation over the N seeds of each seed's mean of the
  metric over the same images.

Both are sample standard deviations (``ddof=1``, :data:`DDOF`), so they need at least two seeds; a group
with one seed has none. Images with a value in some seeds only are left out of both and counted
(``n_excluded``). The deviations are taken from the first seed's value before squaring (a shift that
leaves the standard deviation unchanged), so equal values, as a deterministic method gives, give
exactly 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from resshift.reports.statistics import _values

#: Delta degrees of freedom of both standard deviations (sample standard deviation).
DDOF = 1

STABILITY_TEXT = (
    "Runs that differ only in their seed (equal `identity.json` once the seed is removed), with the measures "
    "of CCSR (Sun et al., *Improving the Stability of Diffusion Models for Content Consistent "
    "Super-Resolution*): **L-STD** = for each image, the standard deviation of the metric over the seeds, "
    "averaged over the images; **G-STD** = the standard deviation over the seeds of each seed's mean over "
    f"the same images. Sample standard deviations (ddof={DDOF}). *images*: scored in every seed (the images "
    "both measures use); *excluded*: scored in some seeds only. *mean*: the mean of the per-seed means. "
    "A deterministic method gives 0."
)

#: Columns of :func:`stability_table` (``seed_stability.csv``).
COLUMNS = ["protocol", "dataset", "method", "method_name", "seed_group", "seeds", "n_seeds", "metric", "n_images",
           "n_excluded", "mean", "l_std", "g_std", "ddof"]


def seed_group_key(identity: Mapping[str, Any] | None) -> str | None:
    """16 hex digits of SHA-256 over a run identity without its ``seed`` (sorted-key JSON); None without
    an identity. Runs with equal keys differ at most in their seed."""
    if identity is None:
        return None
    rest = {k: v for k, v in identity.items() if k != "seed"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SeedStability:
    """The stability of one metric over the seeds of one group."""

    n_seeds: int
    n_images: int  #: images with a finite value in every seed
    n_excluded: int  #: images with a finite value in some seeds but not all
    mean: float  #: mean over the seeds of each seed's mean over the ``n_images`` images
    l_std: float
    g_std: float


def _std(values: np.ndarray, axis: int) -> np.ndarray:
    """Sample standard deviation (:data:`DDOF`) along ``axis``, of the deviations from the first value
    along it: equal values give exactly 0."""
    first = np.take(values, [0], axis=axis)
    return np.std(values - first, axis=axis, ddof=DDOF)


def seed_stability(per_seed: Sequence[pd.Series]) -> SeedStability:
    """L-STD and G-STD of one metric from its per-image values in each seed (one series per seed, indexed
    by image name; NaN and non-finite values count as absent). Fewer than two seeds, or no image with a
    value in every seed, give NaN measures."""
    frame = pd.concat([pd.to_numeric(s, errors="coerce").rename(i) for i, s in enumerate(per_seed)], axis=1,
                      join="outer")
    values = frame.to_numpy(dtype=float)
    finite = np.isfinite(values)
    every = finite.all(axis=1)
    n_excluded = int((finite.any(axis=1) & ~every).sum())
    common = values[every]
    if len(per_seed) < 2 or len(common) == 0:
        return SeedStability(len(per_seed), len(common), n_excluded, float("nan"), float("nan"), float("nan"))
    seed_means = common.mean(axis=0)
    return SeedStability(n_seeds=len(per_seed), n_images=len(common), n_excluded=n_excluded,
                         mean=float(seed_means.mean()), l_std=float(_std(common, axis=1).mean()),
                         g_std=float(_std(seed_means, axis=0)))


def _label(block: pd.DataFrame) -> str:
    """The method label of a group (the labels of its runs joined where they differ)."""
    return " / ".join(dict.fromkeys(str(m) for m in block["method"]))


def stability_table(df: pd.DataFrame, per_image: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per seed group with at least two seeds and per metric with a value in any of its runs
    (:data:`COLUMNS`). ``df``: runs table with ``seed`` and ``seed_group`` columns
    (:func:`resshift.reports.results.runs_table`); ``per_image``: the runs' per-image rows. A seed found
    in several folders of a group (copies of one run) counts once, from the first folder by path."""
    rows: list[dict[str, Any]] = []
    if per_image.empty or "seed_group" not in df.columns:
        return pd.DataFrame(rows, columns=COLUMNS)
    grouped = df[df["seed_group"].notna() & df["seed"].notna()]
    for key, block in grouped.groupby("seed_group", sort=False):
        block = block.sort_values(["seed", "run"]).drop_duplicates("seed")
        if len(block) < 2:
            continue
        seeds = [int(s) for s in block["seed"]]
        for m in metrics:
            per_seed = [_values(per_image, str(run), m) for run in block["run"]]
            if all(s.dropna().empty for s in per_seed):
                continue
            st = seed_stability(per_seed)
            first = block.iloc[0]
            rows.append({"protocol": first["protocol"], "dataset": first["dataset"], "method": _label(block),
                         "method_name": first["method_name"], "seed_group": key,
                         "seeds": ";".join(map(str, seeds)), "n_seeds": st.n_seeds, "metric": m,
                         "n_images": st.n_images, "n_excluded": st.n_excluded, "mean": st.mean,
                         "l_std": st.l_std, "g_std": st.g_std, "ddof": DDOF})
    return pd.DataFrame(rows, columns=COLUMNS)


def with_stability(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``<metric>_l_std``, ``<metric>_g_std`` and ``seed_group_n_seeds`` on every run of a seed
    group that has them (the group's values, the same on each of its runs)."""
    out = df.copy()
    if table.empty:
        return out
    for (key, metric), r in table.set_index(["seed_group", "metric"]).iterrows():
        members = out["seed_group"] == key
        out.loc[members, f"{metric}_l_std"] = r["l_std"]
        out.loc[members, f"{metric}_g_std"] = r["g_std"]
        out.loc[members, "seed_group_n_seeds"] = r["n_seeds"]
    return out


def _std_text(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    return "n/a" if not np.isfinite(v) else ("0" if v == 0 else f"{v:.3g}")


def stability_markdown(table: pd.DataFrame) -> list[str]:
    """The "Seed stability" section of ``report.md``: one table per protocol (rows: group and metric)."""
    from resshift.reports.tables import _fmt, arrow

    lines = ["## Seed stability", ""]
    if table.empty:
        return lines + ["No runs that differ only in their seed. Run a configuration with several seeds "
                        "(`seeds=[1,2,3]`, or the sweep `-m seed=1,2,3`) for L-STD and G-STD (CCSR).", ""]
    lines += [STABILITY_TEXT, ""]
    for protocol, block in table.groupby("protocol", sort=True):
        lines += [f"### {protocol}", "", "| method | seeds | metric | mean | L-STD | G-STD | images | excluded |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, r in block.iterrows():
            m = str(r["metric"])
            lines.append(f"| {r['method']} | {int(r['n_seeds'])} ({str(r['seeds']).replace(';', ', ')}) | "
                         f"{m} {arrow(m)} | {_fmt(r['mean'], m)} | {_std_text(r['l_std'])} | {_std_text(r['g_std'])} | "
                         f"{int(r['n_images'])} | {int(r['n_excluded'])} |")
        lines.append("")
    return lines
