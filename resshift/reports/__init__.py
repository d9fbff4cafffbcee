"""Reports: tables (Markdown, LaTeX, CSV), published-number comparison, plots, from finished runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from resshift.reports.plots import comparison_grid, per_image_distributions, quality_vs
from resshift.reports.reference import compare_with_reference
from resshift.reports.results import find_run_dirs, find_skipped, per_image_table, runs_table
from resshift.reports.spectral import frequency_section
from resshift.reports.tables import reference_markdown, to_latex, to_markdown

log = logging.getLogger(__name__)

__all__ = ["write_report", "find_run_dirs", "runs_table"]


def _visual_panels(df: pd.DataFrame, dataset: str, max_methods: int = 6) -> list[tuple[str, torch.Tensor]]:
    """LR (nearest-upsampled), each method's SR and the GT for one image shared by the runs on
    ``dataset``."""
    from resshift.data import open_dataset
    from resshift.io import read_image

    runs = df[df["dataset"] == dataset].head(max_methods)
    names = None
    for run in runs["run"]:
        have = {p.stem for p in (Path(run) / "sr").glob("*.png")}
        names = have if names is None else names & have
    if not names:
        return []
    name = sorted(names)[0]
    manifest = sorted(Path(runs["run"].iloc[0]).glob("run-*.json"))
    params = {}
    if manifest:
        params = (json.loads(manifest[0].read_text()).get("config", {}).get("dataset", {}) or {}).get("params") or {}
    sample = open_dataset(dataset, **params).read(name)
    scale = 4
    lr_up = F.interpolate(sample.lr[None], scale_factor=scale, mode="nearest")[0]
    panels = [(f"LR ({name})", lr_up)]
    for _, r in runs.iterrows():
        panels.append((str(r["method"]), read_image(Path(r["run"]) / "sr" / f"{name}.png")))
    if sample.hr is not None:
        panels.append(("GT", sample.hr))
    return panels


def write_report(paths: list[str | Path], out_dir: str | Path, title: str = "Evaluation report") -> Path:
    """Write tables, the published-number comparison and plots for the runs found under ``paths``.

    Returns the path of ``report.md`` inside ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = find_run_dirs(list(paths))
    if not run_dirs:
        raise FileNotFoundError(f"no finished runs (summary.json) under: {', '.join(map(str, paths))}")
    df = runs_table(run_dirs)
    df.drop(columns=["run"]).to_csv(out_dir / "results.csv", index=False)
    (out_dir / "tables.md").write_text(to_markdown(df), encoding="utf-8")
    (out_dir / "tables.tex").write_text(to_latex(df), encoding="utf-8")
    cmp = compare_with_reference(df)
    cmp.to_csv(out_dir / "reference_comparison.csv", index=False)
    per_image = per_image_table(run_dirs)
    figures: list[Path] = []
    figures += quality_vs(df, "nfe", out_dir, "quality_vs_nfe", "NFE (network evaluations per image)")
    figures += quality_vs(df, "ms_per_image", out_dir, "quality_vs_runtime", "median ms per image")
    figures += per_image_distributions(per_image, out_dir)
    for i, dataset in enumerate(sorted(df["dataset"].unique())):  # one grid per data set
        stem = "visual_comparison" if i == 0 else f"visual_comparison_{dataset}"
        try:
            figures += comparison_grid(_visual_panels(df, dataset), out_dir, stem=stem)
        except Exception as err:  # noqa: BLE001 - a missing data set must not cost the tables
            log.warning("visual comparison grid of %s skipped: %s", dataset, err)

    freq_lines, _ = frequency_section(df, per_image, out_dir)

    devices = ", ".join(sorted({str(d) for d in df["device"].dropna()})) or "unknown"
    lines = [
        f"# {title}",
        "",
        f"Runs: {len(df)}. Timing: median milliseconds per image of the method's `upscale` call alone "
        f"(no disk I/O, no metrics; warm-up excluded), on {devices}.",
        "",
        "## Results",
        "",
        to_markdown(df),
        "## Against published numbers",
        "",
        reference_markdown(cmp),
        *freq_lines,
        "## Figures",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"]
    skipped = find_skipped(list(paths))
    if skipped:
        lines += ["", "## Skipped runs", "", "Data sets that could be neither found nor built here:", ""]
        lines += [f"- {s.get('label') or s.get('method')} on {s.get('dataset')}: {s.get('reason')}" for s in skipped]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
