"""Reports from finished run folders: tables (Markdown, LaTeX, CSV) with intervals and paired tests,
the published-number comparison, plots, ``report.md`` and the self-contained ``report.html``."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from resshift.reports.html import render_html
from resshift.reports.plots import comparison_grid, method_colours, per_image_distributions, quality_vs
from resshift.reports.reference import compare_with_reference, reference_numbers
from resshift.reports.results import find_incomplete, find_run_dirs, find_skipped, per_image_table, runs_table
from resshift.reports.spectral import frequency_section
from resshift.reports.stability import stability_markdown, stability_table, with_stability
from resshift.reports.statistics import METHOD_TEXT, against_best, pairwise_table, with_intervals
from resshift.reports.tables import (
    against_best_markdown,
    metric_columns,
    provenance_markdown,
    published_markdown,
    reference_markdown,
    to_latex,
    to_markdown,
)
from resshift.reports.visual import LR_KEY, image_view, shared_names, write_view_assets

log = logging.getLogger(__name__)

__all__ = ["write_report", "find_run_dirs", "runs_table"]


def _visual_panels(df: pd.DataFrame, dataset: str, max_methods: int = 6) -> list[tuple[str, torch.Tensor]]:
    """The crops of the comparison view (LR nearest-upsampled, each method's SR, GT) of the first image
    shared by the runs on ``dataset``."""
    runs = df[df["dataset"] == dataset].head(max_methods)
    names = shared_names(runs)
    view = image_view(runs, names[0]) if names else None
    if view is None:
        return []
    return [(f"LR ({names[0]})" if s.key == LR_KEY else s.label, s.image) for s in view.sources]


class _Portable:
    """Rewrites machine-specific absolute paths in report text: run folders relative to the report's run
    roots, then the documented locations as their variables ($RESSHIFT_METRIC_WEIGHTS, $RESSHIFT_CACHE,
    $RESSHIFT_SHARED), the project folder as ``.`` and the home folder as ``~``."""

    def __init__(self, roots: list[Path]) -> None:
        from resshift.paths import CACHE_ENV, PROJECT_ROOT, SHARED_ENV, cache_dir, shared_dir
        from resshift.weights.metric_files import WEIGHTS_ENV, metric_weights_dir

        pairs = [(str(r.resolve()), r.resolve().name) for r in roots]
        pairs += [(str(metric_weights_dir()), f"${WEIGHTS_ENV}"), (str(cache_dir()), f"${CACHE_ENV}"),
                  (str(shared_dir()), f"${SHARED_ENV}"), (str(PROJECT_ROOT), "."), (str(Path.home()), "~")]
        self.pairs = sorted(((a, b) for a, b in pairs if len(a) > 1), key=lambda ab: -len(ab[0]))

    def __call__(self, text: str) -> str:
        for absolute, portable in self.pairs:
            text = text.replace(absolute, portable)
        return text


def write_report(paths: list[str | Path], out_dir: str | Path, title: str = "Evaluation report",
                 view_limit: int | None = None) -> Path:
    """Write tables, statistics, the published-number comparison, plots, ``report.md`` and ``report.html``
    for the runs found under ``paths``.

    ``view_limit``: at most this many images per data set get comparison-view crops (default: all).
    Returns the path of ``report.md`` inside ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = find_run_dirs(list(paths))
    incomplete = [f"{i['path']}: {i['reason']}" for i in find_incomplete(list(paths))]
    if not run_dirs:
        raise FileNotFoundError(f"no finished runs (summary.json) under: {', '.join(map(str, paths))}"
                                + "".join(f"\n  {line}" for line in incomplete))
    portable = _Portable([Path(p) for p in paths])
    df = runs_table(run_dirs)
    per_image = per_image_table(run_dirs)
    metrics = metric_columns(df)
    df = with_intervals(df, per_image, metrics)
    pairwise = pairwise_table(df, per_image, metrics)
    df = against_best(df, pairwise, metrics)
    stability = stability_table(df, per_image, metrics)
    df = with_stability(df, stability)

    def write(name: str, text: str) -> Path:
        path = out_dir / name
        path.write_text(portable(text), encoding="utf-8")
        return path

    write("results.csv", df.drop(columns=["run"]).to_csv(index=False))
    write("pairwise.csv", pairwise.drop(columns=["run_a", "run_b"], errors="ignore").to_csv(index=False))
    write("seed_stability.csv", stability.to_csv(index=False))
    write("tables.md", to_markdown(df, with_intervals=True))
    write("tables.tex", to_latex(df))
    refs = reference_numbers()
    cmp = compare_with_reference(df, refs)
    write("reference_comparison.csv", cmp.to_csv(index=False))
    colours = method_colours(df)
    figures: list[Path] = []
    figures += quality_vs(df, "nfe", out_dir, "quality_vs_nfe", "NFE (network evaluations per image)", colours)
    figures += quality_vs(df, "ms_per_image", out_dir, "quality_vs_runtime", "median ms per image", colours)
    figures += per_image_distributions(per_image, out_dir, colours)
    for i, dataset in enumerate(sorted(df["dataset"].unique())):  # one grid per data set
        stem = "visual_comparison" if i == 0 else f"visual_comparison_{dataset}"
        try:
            panels = _visual_panels(df, dataset)
            size = int(panels[0][1].shape[-1]) if panels else 0
            figures += comparison_grid(panels, out_dir, stem=stem, crop=(0, 0, size))
        except Exception as err:  # noqa: BLE001 - an unreadable image must not cost the tables
            log.warning("visual comparison grid of %s skipped: %s", dataset, err)
    views = write_view_assets(df, out_dir, limit=view_limit)
    view_notes = [f"Comparison view of {ds}: LR and GT are not shown for {v['missing_inputs']} of "
                  f"{len(v['images'])} images (their run folders hold no visual records: written before the SR "
                  "phase saved LR and GT crops)." for ds, v in views["datasets"].items() if v["missing_inputs"]]

    freq_lines, freq_figures = frequency_section(df, per_image, out_dir, colours)
    skipped = [f"{s.get('label') or s.get('method')} on {s.get('dataset')}: {s.get('reason')}"
               for s in find_skipped(list(paths))]
    published_md = published_markdown(df, refs)
    reference_md = (published_md + "\n### Our runs against their published rows\n\n" if published_md else "") + (
        reference_markdown(cmp))
    stability_lines = stability_markdown(stability)
    devices = ", ".join(sorted({str(d) for d in df["device"].dropna()})) or "unknown"
    lines = [
        f"# {title}",
        "",
        f"Runs: {len(df)}. Timing: median milliseconds per image of the method's `upscale` call alone "
        f"(no disk I/O, no metrics; warm-up excluded), on {devices}. Images: scored/total per run. "
        f"Each mean is followed by its [95 % interval]. The page `report.html` beside this file has the "
        f"same tables, sortable, with a per-image comparison view.",
        "",
        METHOD_TEXT,
        "",
        "## Results",
        "",
        to_markdown(df, with_intervals=True),
        "## Paired comparisons against the best",
        "",
        against_best_markdown(df),
        *stability_lines,
        "## Against published numbers",
        "",
        reference_md,
        *freq_lines,
        "## Figures",
        "",
    ]
    lines += [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"]
    if view_notes:
        lines += ["", *view_notes]
    lines += ["", "## Provenance", "", provenance_markdown(df)]
    if skipped:
        lines += ["", "## Skipped runs", "", "Data sets that could be neither found nor built here:", ""]
        lines += [f"- {s}" for s in skipped]
    if incomplete:
        lines += ["", "## Incomplete runs", "", "Run folders whose summary does not show all their rows (resume "
                  "them to complete the tables):", ""]
        lines += [f"- {s}" for s in incomplete]
    report = write("report.md", "\n".join(lines) + "\n")
    html = render_html(title, df, pairwise, per_image, views,
                       {"reference": reference_md, "frequency": "\n".join(freq_lines),
                        "stability": "\n".join(stability_lines)},
                       [p for p in figures if p.suffix == ".png"], skipped, METHOD_TEXT, incomplete)
    write("report.html", html)
    return report
