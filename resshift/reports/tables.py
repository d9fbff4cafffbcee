"""Comparison tables in Markdown, LaTeX and CSV: rows are methods, columns metrics, one block per protocol.

Each metric column carries its better-direction arrow; the best value of each column within a
protocol is bold. Order, arrows and decimals come from the metric registry (:class:`MetricSpec`).
Metrics a run could not compute are shown as ``n/a`` with the reason listed below the table, never
as a number. A set-level metric (FID, KID) shows its one value with the number of images it was computed
on, ``(n=93)``, and a dagger when that is fewer than the metric's ``warn_below_images``, explained below
the table.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Registered metric columns present in a table (or listed as unavailable), in display order
    (:attr:`resshift.metrics.MetricSpec.order`)."""
    from resshift.metrics.registry import display_order

    names = set(df.columns) | {c[: -len("_unavailable")] for c in df.columns if c.endswith("_unavailable")}
    return display_order(names)


def arrow(metric: str) -> str:
    """The metric's arrow (``↓`` / ``↑`` / ``·``); no arrow for an unregistered name."""
    from resshift.metrics import METRICS

    return METRICS[metric].arrow if metric in METRICS else ""


def _fmt(value: object, metric: str) -> str:
    from resshift.metrics import METRICS

    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return METRICS[metric].format(float(value)) if metric in METRICS else f"{float(value):.4f}"


def best_values(df: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    """The best mean of each metric with a better direction among the rows of ``df`` (one protocol)."""
    from resshift.metrics import get_spec

    best: dict[str, float] = {}
    for m in metrics:
        if m in df.columns and df[m].notna().any() and get_spec(m).better != "none":
            best[m] = df[m].min() if get_spec(m).lower_better else df[m].max()
    return best


def image_counts(row: pd.Series) -> str:
    """``"scored/total"`` images of a run, with the failed count when there are failures."""
    n_ok, n_failed, n_all = row.get("n_ok"), row.get("n_failed"), row.get("n_images")
    if n_ok is None or pd.isna(n_ok):
        return "?"
    total = int(n_all) if n_all is not None and not pd.isna(n_all) else int(n_ok) + int(n_failed or 0)
    text = f"{int(n_ok)}/{total}"
    if n_failed is not None and not pd.isna(n_failed) and int(n_failed):
        text += f" ({int(n_failed)} failed)"
    return text


def is_set_level(metric: str) -> bool:
    """True for a registered set-level metric (one value per run: FID, KID)."""
    from resshift.metrics import METRICS

    return metric in METRICS and METRICS[metric].set_level


def set_level_text(row: pd.Series, metric: str) -> tuple[str, bool]:
    """``(" (n=<images>)", unreliable)`` of a set-level value: its image count and whether it was computed on
    fewer images than the metric's ``warn_below_images`` (the run's summary then carries a warning)."""
    n = row.get(f"{metric}_n_scored")
    text = "" if n is None or pd.isna(n) else f" (n={int(n)})"
    warning = row.get(f"{metric}_warning")
    return text, isinstance(warning, str) and bool(warning)


def set_level_notes(df: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The notes under a table with set-level columns: what the values are, and which runs' values are
    computed on too few images to be reliable."""
    from resshift.metrics import get_spec

    shown = [m for m in metrics if is_set_level(m) and m in df.columns and df[m].notna().any()]
    if not shown:
        return []
    notes = [f"{', '.join(shown)}: one value per run (the SR set against the HR set of the same images; n = images "
             "in each set), not a mean over images, so no interval"]
    for m in shown:
        few = [str(r["method"]) for _, r in df.iterrows() if not pd.isna(r.get(m)) and set_level_text(r, m)[1]]
        if few:
            threshold = int(get_spec(m).option_dict.get("warn_below_images", 0))
            notes.append(f"† {m} over fewer than {threshold} images ({', '.join(few)}): FID and KID are biased and "
                         "vary strongly with the sample below that size (StableSR issue #105); compare only runs on "
                         "the same images")
    return notes


def interval_text(row: pd.Series, metric: str) -> str:
    """``" [low, high]"`` from the ``<metric>_ci_low/high`` columns, or ``""`` where there is none."""
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{_fmt(low, metric)}, {_fmt(high, metric)}]"


def _cells(df: pd.DataFrame, bold: Callable[[str], str],
           with_intervals: bool = False) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body cells and footnotes of one protocol block."""
    metrics = metric_columns(df)
    header = ["method", "NFE", "ms/img", "images"] + [f"{m} {arrow(m)}" for m in metrics]
    best = best_values(df, metrics)
    body: list[list[str]] = []
    notes: list[str] = []
    unavailable: dict[tuple[str, str], list[str]] = {}
    for _, row in df.iterrows():
        cells = [str(row["method"]), "" if pd.isna(row.get("nfe")) else str(int(row["nfe"])),
                 "n/a" if pd.isna(row.get("ms_per_image")) else f"{row['ms_per_image']:.1f}", image_counts(row)]
        for m in metrics:
            value = row.get(m)
            text = _fmt(value, m)
            if text != "n/a" and m in best and float(value) == best[m] and len(df) > 1:
                text = bold(text)
            if text != "n/a" and with_intervals:
                text += interval_text(row, m)
            if text != "n/a" and is_set_level(m):
                count, unreliable = set_level_text(row, m)
                text += count + ("†" if unreliable else "")
            reason = row.get(f"{m}_unavailable")
            if text == "n/a" and isinstance(reason, str):
                unavailable.setdefault((m, reason), []).append(str(row["method"]))
            cells.append(text)
        body.append(cells)
    for (m, reason), methods in unavailable.items():
        who = "all runs" if len(methods) == len(df) and len(df) > 1 else ", ".join(methods)
        notes.append(f"{m} unavailable for {who}: {reason}")
    notes += set_level_notes(df, metrics)
    return header, body, notes


def to_markdown(df: pd.DataFrame, with_intervals: bool = False) -> str:
    """Markdown tables, one per protocol; with ``with_intervals`` each mean is followed by its interval
    (``<metric>_ci_low/high`` columns, see :mod:`resshift.reports.statistics`)."""
    out = []
    for protocol, block in df.groupby("protocol", sort=True):
        header, body, notes = _cells(block, lambda s: f"**{s}**", with_intervals)
        out.append(f"### {protocol}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(r) + " |" for r in body]
        out += [""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def to_latex(df: pd.DataFrame) -> str:
    """LaTeX ``tabular`` blocks (booktabs), one per protocol."""
    out = []
    for protocol, block in df.groupby("protocol", sort=True):
        header, body, notes = _cells(block, lambda s: f"\\textbf{{{s}}}")
        header = [h.replace("↓", "$\\downarrow$").replace("↑", "$\\uparrow$").replace("·", "$\\cdot$")
                  for h in header]
        out.append(f"% protocol: {protocol}")
        out.append("\\begin{tabular}{l" + "r" * (len(header) - 1) + "}")
        out.append("\\toprule")
        out.append(" & ".join(_tex(h) for h in header) + " \\\\")
        out.append("\\midrule")
        out += [" & ".join(_tex(c) for c in r) + " \\\\" for r in body]
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out += [f"% {n}" for n in notes] + [""]
    return "\n".join(out)


def _tex(text: str) -> str:
    if text.startswith("\\textbf") or "$" in text:
        return text
    return text.replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")


def reference_markdown(cmp: pd.DataFrame) -> str:
    """The ours-vs-published table: delta and whether it falls inside the tolerance band (same protocol)
    or whether the published full-set value lies in our subset's 95 % interval (``scope``); each published
    row with its source, and the spread of all sources that publish that method on that protocol and metric
    (``band_low``–``band_high``, ``n_sources`` of :func:`resshift.reports.reference.compare_with_reference`)."""
    if cmp.empty:
        return "No run in this report has a published counterpart on the same protocol.\n"
    lines = ["| method | protocol | metric | ours | published | Δ | tolerance / our 95 % interval | verdict | "
             "confidence | published band | source |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    any_subset = False
    for _, r in cmp.iterrows():
        flag = " (unverified)" if r["confidence"] == "recall" else ""
        subset = r.get("reference_protocol", r["protocol"]) != r["protocol"]
        if subset:
            band = f"[{_fmt(r['ci_low'], r['metric'])}, {_fmt(r['ci_high'], r['metric'])}]"
            where = f"{r['protocol']} (subset of {r['reference_protocol']})"
            any_subset = True
        else:
            band = "n/a" if pd.isna(r["tolerance"]) else f"±{r['tolerance']:g}"
            where = r["protocol"]
        n = r.get("n_sources")
        spread = "one source"
        if n is not None and not pd.isna(n) and int(n) > 1:
            low, high = _fmt(r["band_low"], r["metric"]), _fmt(r["band_high"], r["metric"])
            spread = f"{low if low == high else f'{low}–{high}'} ({int(n)} sources)"
        lines.append(
            f"| {r['method']} | {where} | {r['metric']} | {_fmt(r['ours'], r['metric'])} | "
            f"{_fmt(r['reference'], r['metric'])} ({r['reference_method']}) | {r['delta']:+.4f} | {band} | "
            f"{r['verdict']} | {r['confidence']}{flag} | {spread} | {r.get('source', '')} |"
        )
    if any_subset:
        lines += ["", "Rows marked *subset of*: the published value is the mean over the larger set, ours over this "
                  "set's images; the verdict says whether the published mean lies in our 95 % bootstrap interval "
                  "(what sampling alone explains), not whether the protocols agree to the reproduction tolerance."]
    return "\n".join(lines) + "\n"


def published_markdown(runs: pd.DataFrame, refs: pd.DataFrame) -> str:
    """Per protocol of the report's runs that has published numbers: our runs and every published row side
    by side, one row per method and source, and under each method published by several sources its band.

    ``runs``: the runs table (``method``, ``nfe``, ``protocol`` and metric mean columns); ``refs``: published
    rows (:func:`resshift.reports.reference.reference_numbers`). Columns: the metrics published on the
    protocol, in registry display order. Our values use the metric's decimals; published values are shown as
    the source printed them (``value_text``). A band cell is ``low–high (n)`` over the n sources that publish
    the metric for that method and NFE (one value when they agree); the sources are listed, numbered, under
    each table with their confidence (``recall``: unverified). Only exact protocol matches are shown (a run
    on a subset is set against the larger set's rows in the comparison table instead). Returns ``""`` when
    no run's protocol has published rows.
    """
    from resshift.metrics.registry import display_order
    from resshift.reports.reference import UNVERIFIED, published_bands

    out: list[str] = []
    for protocol in sorted({str(p) for p in runs["protocol"].dropna()}):
        pub = refs[refs["protocol"] == protocol]
        if pub.empty:
            continue
        if "value_text" not in pub:
            pub = pub.assign(value_text=pub["value"].map(lambda v: f"{float(v):g}"))
        metrics = display_order(set(pub["metric"]))
        sources = list(dict.fromkeys(pub["source"]))
        number = {s: i + 1 for i, s in enumerate(sources)}
        bands = published_bands(pub).set_index(["method", "nfe", "metric"])
        out += [f"### {protocol}: published rows beside ours", "",
                "| method | NFE | from | " + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |",
                "|" + "|".join("---" for _ in range(len(metrics) + 3)) + "|"]
        for _, r in runs[runs["protocol"] == protocol].iterrows():
            nfe = r.get("nfe")
            nfe_text = "?" if nfe is None or pd.isna(nfe) else str(int(nfe))
            out.append(f"| {r['method']} | {nfe_text} | this report | "
                       + " | ".join(_fmt(r.get(m), m) for m in metrics) + " |")
        for (method, nfe), block in pub.groupby(["method", "nfe"], sort=True):
            order = [s for s in sources if s in set(block["source"])]
            for source in order:
                rows = block[block["source"] == source].set_index("metric")
                cells = [str(rows.loc[m, "value_text"]) if m in rows.index else "" for m in metrics]
                out.append(f"| {method} | {nfe} | [{number[source]}] | " + " | ".join(cells) + " |")
            if len(order) > 1:
                cells = []
                for m in metrics:
                    key = (method, nfe, m)
                    if key not in bands.index or int(bands.loc[key, "n_sources"]) < 2:
                        cells.append("")
                        continue
                    b = bands.loc[key]
                    text = (b["low_text"] if b["low"] == b["high"] else f"{b['low_text']}–{b['high_text']}")
                    cells.append(f"{text} ({int(b['n_sources'])})")
                out.append(f"| {method}: band | {nfe} | {len(order)} sources | " + " | ".join(cells) + " |")
        out += ["", "Sources:", ""]
        for source in sources:
            levels = sorted(set(pub.loc[pub["source"] == source, "confidence"]))
            flag = " (unverified)" if set(levels) & UNVERIFIED else ""
            out.append(f"{number[source]}. {source} — confidence {', '.join(levels)}{flag}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def against_best_markdown(df: pd.DataFrame) -> str:
    """Per protocol, each run against the best run of each metric: mean paired difference (this run - best)
    and the Wilcoxon p-value; ``≈`` marks a gap with no evidence (see :mod:`resshift.reports.statistics`).

    Reads the ``<metric>_vs_best*`` columns of :func:`resshift.reports.statistics.against_best`.
    """
    out = []
    for protocol, block in df.groupby("protocol", sort=True):
        metrics = [m for m in metric_columns(block) if f"{m}_vs_best" in block.columns
                   and block[f"{m}_vs_best"].notna().any()]
        if not metrics:
            continue
        best_of = best_values(block, metrics)
        out += [f"### {protocol}", "", "| method | " + " | ".join(f"{m} {arrow(m)}" for m in metrics) + " |",
                "|" + "|".join("---" for _ in range(len(metrics) + 1)) + "|"]
        for _, row in block.iterrows():
            cells = []
            for m in metrics:
                best = row.get(f"{m}_vs_best")
                if best is None or pd.isna(best):
                    cells.append("best" if m in best_of and row.get(m) == best_of[m] else "")
                    continue
                p = row.get(f"{m}_vs_best_p")
                ptext = "p n/a" if p is None or pd.isna(p) else f"p={float(p):.2g}"
                mark = "" if row.get(f"{m}_vs_best_evidence") else "≈ "
                cells.append(f"{mark}{float(row[f'{m}_vs_best_diff']):+.{_decimals(m)}f} ({ptext})")
            out.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        out.append("")
    if not out:
        return "No protocol has two runs with per-image values of the same metric.\n"
    from resshift.reports.statistics import ALPHA

    return "\n".join(["Cells: mean per-image difference to the best run of the column (its value is marked "
                      f"`best`), Wilcoxon signed-rank p; `≈` = no evidence of a difference (p ≥ {ALPHA:g} or the "
                      "interval contains 0).", "", *out])


def _decimals(metric: str) -> int:
    from resshift.metrics import METRICS

    return METRICS[metric].decimals if metric in METRICS else 4


def provenance_markdown(df: pd.DataFrame) -> str:
    """One line per run: config fingerprint, checkpoint and data-card SHA-256 and git commit (first 12 hex
    digits; the full values are in ``results.csv``) and the device as recorded (a CPU or GPU name is not
    shortened)."""
    def text_of(v: object) -> str:
        return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)

    def short(v: object) -> str:
        text = text_of(v)
        return "—" if not text else ";".join(t[:12] for t in text.split(";"))

    lines = ["| method | data set | fingerprint | checkpoint | data card | git commit | device |",
             "|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['method']} | {r['dataset']} | {short(r.get('fingerprint'))} | "
                     f"{short(r.get('checkpoint_sha256'))} | {short(r.get('card_sha256'))} | "
                     f"{short(r.get('git_commit'))} | {text_of(r.get('device')) or '—'} |")
    return "\n".join(lines) + "\n"
