"""``report.html``: one self-contained page beside ``report.md``.

Styles, script and data are inlined; images (figures, per-image crops and thumbnails) are files in the
report folder referenced by relative paths, so the page opens from disk with no network, and a
3000-image run adds small crops, not full-size images. Sections: results per protocol (sortable,
best value marked, values not distinguishable from the best shaded, intervals, image counts, timing
conditions, unavailable metrics with their reason), paired comparisons, the seed stability of runs that
differ only in their seed, the per-image table linking to the comparison view (before/after slider
between any two of LR, each method and GT, synchronised zoom), the published-number comparison, the
frequency analysis, the figures and the provenance of each row. The page's behaviour is
``assets/report.js``; its look ``assets/report.css``.
"""

from __future__ import annotations

import json
import math
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from resshift.reports.tables import (
    _fmt,
    arrow,
    best_values,
    image_counts,
    is_set_level,
    metric_columns,
    set_level_notes,
    set_level_text,
)


def _asset(name: str) -> str:
    return resources.files("resshift.reports").joinpath("assets", name).read_text(encoding="utf-8")


def _num(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def _md(text: str) -> str:
    import markdown

    return markdown.markdown(text, extensions=["tables"])


def _results_table(block: pd.DataFrame) -> str:
    from resshift.metrics import get_spec

    metrics = metric_columns(block)
    best = best_values(block, metrics)
    head = ["<th>method</th><th title='network evaluations per image'>NFE</th>"
            "<th title='median ms per image of the method call; conditions below'>ms/img</th>"
            "<th title='images scored / images in the run'>images</th>"]
    for m in metrics:
        spec = get_spec(m)
        head.append(f"<th title='{escape(spec.description)}; better: {spec.better}'>{escape(m)} {arrow(m)}</th>")
    rows = []
    for _, r in block.iterrows():
        ms = _num(r.get("ms_per_image"))
        cells = [f"<td>{escape(str(r['method']))}</td>",
                 f"<td>{'' if _num(r.get('nfe')) is None else int(r['nfe'])}</td>",
                 f"<td data-v='{'' if ms is None else ms}' title='{escape(str(r.get('timing_conditions') or ''))}'>"
                 f"{'n/a' if ms is None else f'{ms:.1f}'}</td>",
                 f"<td data-v='{_num(r.get('n_ok')) or ''}'>{escape(image_counts(r))}</td>"]
        for m in metrics:
            value = _num(r.get(m))
            if value is None:
                reason = r.get(f"{m}_unavailable")
                reason = reason if isinstance(reason, str) else "not computed for this run"
                cells.append(f"<td class='unavailable' title='{escape(reason)}'>n/a</td>")
                continue
            cls, title = [], []
            if m in best and value == best[m] and len(block) > 1:
                cls.append("best")
                title.append("best in this protocol")
            elif r.get(f"{m}_vs_best") is not None and not pd.isna(r.get(f"{m}_vs_best")):
                diff, p = _num(r.get(f"{m}_vs_best_diff")), _num(r.get(f"{m}_vs_best_p"))
                ev = bool(r.get(f"{m}_vs_best_evidence"))
                title.append(f"vs best ({r[f'{m}_vs_best']}): Δ {diff:+.4g}, Wilcoxon p = "
                             f"{'n/a' if p is None else f'{p:.3g}'}; "
                             + ("worse with evidence" if ev else "not distinguishable from the best"))
                if not ev:
                    cls.append("tie")
            low, high = _num(r.get(f"{m}_ci_low")), _num(r.get(f"{m}_ci_high"))
            ci = "" if low is None or high is None else f" <span class='ci'>[{_fmt(low, m)}, {_fmt(high, m)}]</span>"
            n_scored, n_ok = _num(r.get(f"{m}_n_scored")), _num(r.get("n_ok"))
            if is_set_level(m):
                count, unreliable = set_level_text(r, m)
                title.append(f"one value over {'?' if n_scored is None else int(n_scored)} images (SR set against "
                             "the HR set)" + (f"; {r.get(f'{m}_warning')}" if unreliable else ""))
                ci += f" <span class='ci'>{escape(count.strip())}{'†' if unreliable else ''}</span>"
            if n_scored is not None and n_ok is not None and n_scored < n_ok:
                note = r.get(f"{m}_note")
                title.append(f"{int(n_scored)} of {int(n_ok)} images scored"
                             + (f": {note}" if isinstance(note, str) else ""))
                ci += " <span class='ci'>*</span>"
            cells.append(f"<td class='{' '.join(cls)}' data-v='{value}' title='{escape('; '.join(title))}'>"
                         f"{_fmt(value, m)}{ci}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class='scroll'><table class='sortable results'><thead><tr>" + "".join(head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _unavailable_notes(block: pd.DataFrame) -> str:
    notes: dict[tuple[str, str], list[str]] = {}
    for _, r in block.iterrows():
        for m in metric_columns(block):
            reason = r.get(f"{m}_unavailable")
            if _num(r.get(m)) is None and isinstance(reason, str):
                notes.setdefault((m, reason), []).append(str(r["method"]))
    items = "".join(f"<li><b>{escape(m)}</b> unavailable for {escape(', '.join(who))}: {escape(reason)}</li>"
                    for (m, reason), who in notes.items())
    items += "".join(f"<li>{escape(note)}</li>" for note in set_level_notes(block, metric_columns(block)))
    return f"<ul class='note'>{items}</ul>" if items else ""


def _timing_notes(block: pd.DataFrame) -> str:
    items = "".join(f"<li>{escape(str(r['method']))}: {escape(str(r.get('timing_conditions')))}</li>"
                    for _, r in block.iterrows() if isinstance(r.get("timing_conditions"), str))
    return f"<details><summary>timing conditions</summary><ul class='note'>{items}</ul></details>" if items else ""


def _pairwise_table(pairs: pd.DataFrame) -> str:
    if pairs.empty:
        return "<p class='note'>No pair of runs with per-image values on the same images.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("A", "B", "metric", "n", "mean A − B", "95 % interval",
                                             "Wilcoxon p", "verdict"))
    rows = []
    for _, r in pairs.iterrows():
        m = str(r["metric"])
        p = _num(r["p_value"])
        if r["better"]:
            verdict = f"{r['better']} better"
        elif r["evidence"]:
            verdict = "differ"
        else:
            verdict = "within noise"
        cls = " class='evidence'" if r["evidence"] else ""
        low, high = _num(r["ci_low"]), _num(r["ci_high"])
        interval = "n/a" if low is None or high is None else f"[{low:+.4g}, {high:+.4g}]"
        rows.append(
            f"<tr data-metric='{escape(m)}'><td>{escape(str(r['method_a']))}</td>"
            f"<td>{escape(str(r['method_b']))}</td><td>{escape(m)} {arrow(m)}</td><td>{int(r['n'])}</td>"
            f"<td data-v='{r['mean_diff']}'>{r['mean_diff']:+.4g}</td>"
            f"<td data-v='{'' if low is None else low}'>{interval}</td>"
            f"<td data-v='{'' if p is None else p}'>{'n/a' if p is None else f'{p:.3g}'}</td>"
            f"<td{cls}>{escape(verdict)}</td></tr>")
    return ("<div class='scroll'><table class='sortable pairwise'><thead><tr>" + head + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _provenance_table(df: pd.DataFrame) -> str:
    cols = [("method", "method"), ("dataset", "data set"), ("protocol", "protocol"),
            ("fingerprint", "config fingerprint"), ("checkpoint_sha256", "checkpoint SHA-256"),
            ("card_sha256", "data card SHA-256"), ("git_commit", "git commit"), ("device", "device"),
            ("platform", "platform"), ("packages", "package versions")]
    head = "".join(f"<th>{escape(label)}</th>" for _, label in cols)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for key, _ in cols:
            v = r.get(key)
            text = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            if key in ("checkpoint_sha256", "card_sha256", "git_commit") and len(text) > 16:
                cells.append(f"<td title='{escape(text)}'><code>{escape(text[:12])}…</code></td>")
            elif key == "packages" and text:
                cells.append(f"<td><details><summary>{len(text.split(';'))} packages</summary>"
                             f"{escape(text).replace(';', '<br>')}</details></td>")
            else:
                cells.append(f"<td>{escape(text) or '<span class=muted>—</span>'}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class='scroll'><table class='sortable provenance'><thead><tr>" + head + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _image_note(row: pd.Series, method: str) -> str:
    """What a reader should know about one run's row of an image: a failure with its error, and the run's
    ``notes`` column (e.g. why a metric has no value)."""
    parts = []
    status = row.get("status")
    if isinstance(status, str) and status != "ok":
        error = row.get("error")
        parts.append(f"{status}" + (f" ({error})" if isinstance(error, str) and error else ""))
    note = row.get("notes")
    if isinstance(note, str) and note:
        parts.append(note)
    return f"{method}: {'; '.join(parts)}" if parts else ""


def per_image_payload(df: pd.DataFrame, per_image: pd.DataFrame) -> dict[str, Any]:
    """Per data set: run keys and labels, metrics, (run key, metric) columns, one row per image (values of
    rows with status ok) and notes per image (failures with their error, the runs' ``notes``)."""
    out: dict[str, Any] = {}
    if per_image.empty:
        return out
    for dataset, runs in df.groupby("dataset", sort=True):
        runs = runs.reset_index(drop=True)
        keys = {str(run): f"m{i}" for i, run in enumerate(runs["run"])}
        labels = {str(r): str(m) for r, m in zip(runs["run"], runs["method"], strict=True)}
        sub = per_image[per_image["run"].astype(str).isin(keys)]
        ok = sub["status"] == "ok" if "status" in sub.columns else pd.Series(True, index=sub.index)
        metrics = [m for m in metric_columns(sub) if m in sub.columns and pd.to_numeric(sub.loc[ok, m],
                                                                                       errors="coerce").notna().any()]
        columns = [[keys[str(run)], m] for m in metrics for run in runs["run"]]
        position = {(k, m): j for j, (k, m) in enumerate(columns)}
        table: dict[str, list[Any]] = {}
        notes: dict[str, str] = {}
        for name, g in sub.groupby(sub["name"].astype(str), sort=True):
            row: list[Any] = [None] * len(columns)
            texts = []
            for idx, r in g.iterrows():
                run = str(r["run"])
                if ok[idx]:
                    for m in metrics:
                        row[position[(keys[run], m)]] = _num(r.get(m))
                text = _image_note(r, labels[run])
                if text:
                    texts.append(text)
            table[str(name)] = row
            if texts:
                notes[str(name)] = " | ".join(texts)
        out[str(dataset)] = {"runs": {keys[r]: labels[r] for r in labels}, "metrics": metrics, "columns": columns,
                             "rows": [[name, *vals] for name, vals in table.items()], "notes": notes}
    return out


def render_html(title: str, df: pd.DataFrame, pairwise: pd.DataFrame, per_image: pd.DataFrame,
                views: dict[str, Any], sections: dict[str, str], figures: list[Path], skipped: list[str],
                stats_text: str, incomplete: list[str] | None = None) -> str:
    """The page. ``df``: runs table with interval and vs-best columns; ``sections``: Markdown of the
    published-number comparison (``reference``), the frequency analysis (``frequency``) and the seed
    stability (``stability``); ``figures``: PNG files in the report folder; ``skipped``: lines about runs
    whose data set was unavailable; ``incomplete``: lines about run folders whose summary lacks rows."""
    from resshift.metrics import METRICS

    metrics = {n: {"arrow": s.arrow, "decimals": s.decimals, "better": s.better, "description": s.description}
               for n, s in METRICS.items()}
    data = {"metrics": metrics, "per_image": per_image_payload(df, per_image), "views": views,
            "labels": views.get("labels", {})}
    n_scored = int(pd.to_numeric(df.get("n_ok", pd.Series(dtype=float)), errors="coerce").fillna(0).sum())
    parts = [f"<header><h1>{escape(title)}</h1><p>{len(df)} runs on {df['protocol'].nunique()} protocol(s), "
             f"{n_scored} images scored over all runs. Means with 95 % bootstrap intervals; paired Wilcoxon "
             "signed-rank tests between runs (details under Paired comparisons).</p></header>",
             "<nav><a href='#results'>Results</a><a href='#pairs'>Paired comparisons</a>"
             "<a href='#stability'>Seed stability</a><a href='#images'>Per image</a>"
             "<a href='#published'>Published numbers</a>"
             "<a href='#frequency'>Frequency</a><a href='#figures'>Figures</a>"
             "<a href='#provenance'>Provenance</a></nav><main>",
             "<h2 id='results'>Results</h2>"
             "<p class='legend note'><span class='best'>best</span> best mean of the protocol (bold) · "
             "<span style='background:var(--tie)'>shaded</span> not distinguishable from the best (no paired "
             "evidence) · [low, high] 95 % interval of the mean · n/a: hover for the reason · * fewer images "
             "scored than the run has (hover) · ms/img: hover or open the timing conditions.</p>"]
    for protocol, block in df.groupby("protocol", sort=True):
        parts += [f"<h3>{escape(str(protocol))}</h3>", _results_table(block), _unavailable_notes(block),
                  _timing_notes(block)]
    parts.append("<h2 id='pairs'>Paired comparisons</h2>")
    parts.append(f"<p class='note'>{escape(stats_text)}</p>")
    if not pairwise.empty:
        from resshift.metrics.registry import display_order

        options = "".join(f"<option value='{escape(m)}'>{escape(m)}</option>"
                          for m in display_order(pairwise["metric"].unique()))
        parts.append("<div class='controls'><label>metric <select id='pair-metric'><option value=''>all metrics"
                     f"</option>{options}</select></label></div>")
    for protocol, block in (pairwise.groupby("protocol", sort=True) if not pairwise.empty else []):
        parts += [f"<h3>{escape(str(protocol))}</h3>", _pairwise_table(block)]
    if pairwise.empty:
        parts.append(_pairwise_table(pairwise))
    parts += ["<div id='stability'>", _md(sections.get("stability", "")), "</div>",
              "<h2 id='images'>Per image</h2>",
              "<p class='note'>Click an image name for its comparison view; click a header to sort. † the image "
              "failed in a run or carries a note (hover).</p>",
              "<div class='controls'><label>data set <select id='pi-dataset'></select></label>"
              "<label>metric <select id='pi-metric'></select></label></div><div id='per-image' class='scroll'>"
              "</div>",
              "<section id='view' hidden><h3 id='view-title'></h3>"
              "<p class='view-nav'><a id='view-prev'>← previous</a><a id='view-next'>next →</a>"
              "<a href='#images'>back to the table</a></p><p id='view-note' class='note' hidden></p>"
              "<div class='view-top'><div><div class='thumb'>"
              "<img id='view-thumb' alt='whole image'>"
              "<div id='view-box'></div></div><p class='note'>whole image; red: the crop compared</p></div>"
              "<div><div class='controls'><label>left <select id='cmp-left'></select></label>"
              "<label>right <select id='cmp-right'></select></label>"
              "<label>split <input id='split' type='range' min='0' max='100' value='50'></label>"
              "<label>zoom <input id='zoom' type='range' min='1' max='8' step='1' value='3'> "
              "<span id='zoom-value'></span></label></div>"
              "<div class='cmp-box'><div class='cmp zoomable' id='cmp'><img id='cmp-bottom' alt='left'>"
              "<img id='cmp-top' alt='right'>"
              "<div id='cmp-bar'></div></div><div class='cmp-labels'><span id='cmp-left-label'></span>"
              "<span id='cmp-right-label'></span></div></div></div></div>"
              "<h4>All sources, same crop and zoom</h4><div id='view-strip'></div>"
              "<h4>Scores of this image</h4><div id='view-scores' class='scroll'></div></section>",
              "<h2 id='published'>Against published numbers</h2>", _md(sections.get("reference", "")),
              "<div id='frequency'>", _md(sections.get("frequency", "")), "</div>",
              "<h2 id='figures'>Figures</h2><div class='figures'>"]
    parts += [f"<figure><img src='{escape(p.name)}' alt='{escape(p.stem)}'>"
              f"<figcaption>{escape(p.stem)}</figcaption></figure>" for p in figures]
    parts += ["</div>", "<h2 id='provenance'>Provenance</h2>", _provenance_table(df)]
    if skipped:
        parts += ["<h2>Skipped runs</h2><ul>" + "".join(f"<li>{escape(s)}</li>" for s in skipped) + "</ul>"]
    if incomplete:
        parts += ["<h2>Incomplete runs</h2><p>Run folders whose summary does not show all their rows (resume them "
                  "to complete the tables):</p><ul>" + "".join(f"<li>{escape(s)}</li>" for s in incomplete) + "</ul>"]
    parts.append("</main>")
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{_asset('report.css')}</style></head><body>"
            + "\n".join(parts)
            + f"<script type='application/json' id='report-data'>{payload}</script>"
            f"<script>{_asset('report.js')}</script></body></html>\n")
