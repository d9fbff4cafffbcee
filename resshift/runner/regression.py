"""Regression check of the shipped small models: evaluate on a fixed small set, compare with a baseline.

The check runs each entry of :data:`CHECKS` (method, parameters, label) through the runner on the
first :data:`IMAGES` images of the embedded set (no download), with the paper's Y-channel PSNR/SSIM,
and compares the means with the committed baseline (``resshift/assets/small_models/regression.csv``)
through :func:`resshift.reports.compare.compare_results` with :data:`TOLERANCES` (much tighter than
the reproduction bands: the computation is deterministic on CPU, so only platform round-off may
move it). Runtime is not compared (timing is not reproducible on shared machines).

``python -m resshift.runner.regression`` checks (exit code 1 on a regression);
``python -m resshift.runner.regression --write-baseline`` rewrites the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from resshift.reports.compare import Comparison, compare_results
from resshift.weights.shipped import SMALL_MODELS_DIR

BASELINE = SMALL_MODELS_DIR / "regression.csv"
DATASET = "embedded"
IMAGES = 2
METRICS = ("psnr", "ssim")
TOLERANCES = {"psnr": 0.05, "ssim": 0.002}
SEED = 12345

#: (registered method, parameters, label): few NFE so that the whole check takes about a minute.
CHECKS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("bicubic", {}, "bicubic"),
    ("small-resshift", {}, "small-resshift-15"),
    ("small-sr3", {"steps": 4, "sampler": "ddim"}, "small-sr3-ddim-4"),
    ("small-ddnm", {"steps": 4}, "small-ddnm-bicubic-4"),
)


def evaluate(out_dir: str | Path, overrides: dict[str, dict[str, Any]] | None = None,
             checks: tuple[tuple[str, dict[str, Any], str], ...] = CHECKS, threads: int | None = None) -> pd.DataFrame:
    """Run every check into ``out_dir/<label>`` and return the runs table (one row per label).

    ``overrides[label]`` replaces method parameters of that check (e.g. a perturbed checkpoint).
    """
    from resshift.reports.results import runs_table
    from resshift.runner.run import RunSpec, run

    out_dir = Path(out_dir)
    dirs = []
    for method, params, label in checks:
        spec = RunSpec(run_dir=out_dir / label, method=method,
                       method_params={**params, **((overrides or {}).get(label, {}))},
                       dataset=DATASET, metrics=list(METRICS), seed=SEED, limit=IMAGES, warmup=0,
                       threads=threads, setting={"label": label})
        run(spec)
        dirs.append(spec.run_dir)
    return runs_table(dirs)


def baseline_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The columns stored in the baseline (identity, NFE, image count, metric means)."""
    keep = ["method", "method_name", "dataset", "protocol", "nfe", "n_ok", *METRICS]
    return table[[c for c in keep if c in table.columns]]


def check(table: pd.DataFrame, baseline: str | Path = BASELINE, labels: list[str] | None = None) -> Comparison:
    """Compare a runs table with the baseline CSV (runtime not compared); ``labels`` restricts both."""
    base = pd.read_csv(baseline)
    if labels is not None:
        base = base[base["method"].isin(labels)]
        table = table[table["method"].isin(labels)]
    return compare_results(base, table, tolerances=TOLERANCES, max_runtime_ratio=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resshift.runner.regression", description=__doc__.split("\n")[0])
    parser.add_argument("--write-baseline", action="store_true", help=f"rewrite {BASELINE.name} from this run")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        table = evaluate(args.out or Path(tmp))
        if args.write_baseline:
            baseline_columns(table).to_csv(BASELINE, index=False, float_format="%.6f")
            print(f"wrote {BASELINE}")
            return 0
        result = check(table)
    print(result.to_markdown())
    print("REGRESSION" if result.failed else "no regression")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
