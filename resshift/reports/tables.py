"""Comparison tables in Markdown, LaTeX and CSV: rows are methods, columns metrics, one block per protocol.

Each metric column carries its better-direction arrow; the best value of each column within a
protocol is bold. Metrics a run could not compute are shown as ``n/a`` with the reason listed below
the table, never as a number.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

METRIC_ORDER = ("psnr", "ssim", "lpips", "lpips-vgg", "clipiqa", "musiq", "niqe",
                "psnr-low", "psnr-mid", "psnr-high", "hf-ratio", "hf-log-ratio-abs", "hf-ratio-lrup")
_DECIMALS = {"psnr": 2, "musiq": 2, "niqe": 2, "psnr-low": 2, "psnr-mid": 2, "psnr-high": 2}


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Registered metric columns present in a table (or listed as unavailable), in the usual paper
    order, then any other registered metric by name."""
    from resshift.metrics import metric_names

    registered = set(metric_names())
    present = {c for c in df.columns if c in registered}
    present |= {c[: -len("_unavailable")] for c in df.columns if c.endswith("_unavailable")}
    return [m for m in METRIC_ORDER if m in present] + sorted(present - set(METRIC_ORDER))


def _lower_better(metric: str) -> bool:
    from resshift.metrics import get_spec

    try:
        return bool(get_spec(metric).lower_better)
    except KeyError:
        return False


def _informational(metric: str) -> bool:
    from resshift.metrics import get_spec

    try:
        return bool(get_spec(metric).informational)
    except KeyError:
        return False


def arrow(metric: str) -> str:
    """``↓`` (lower is better), ``↑`` (higher) or ``·`` (informational: no better direction)."""
    if _informational(metric):
        return "·"
    return "↓" if _lower_better(metric) else "↑"


def _fmt(value: object, metric: str) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{float(value):.{_DECIMALS.get(metric, 4)}f}"


def _cells(df: pd.DataFrame, bold: Callable[[str], str]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body cells and footnotes of one protocol block."""
    metrics = metric_columns(df)
    header = ["method", "NFE", "ms/img"] + [f"{m} {arrow(m)}" for m in metrics]
    best: dict[str, float] = {}
    for m in metrics:
        if m in df.columns and df[m].notna().any() and not _informational(m):
            best[m] = df[m].min() if _lower_better(m) else df[m].max()
    body: list[list[str]] = []
    notes: list[str] = []
    unavailable: dict[tuple[str, str], list[str]] = {}
    for _, row in df.iterrows():
        cells = [str(row["method"]), "" if pd.isna(row.get("nfe")) else str(int(row["nfe"])),
                 "n/a" if pd.isna(row.get("ms_per_image")) else f"{row['ms_per_image']:.1f}"]
        for m in metrics:
            value = row.get(m)
            text = _fmt(value, m)
            if text != "n/a" and m in best and float(value) == best[m] and len(df) > 1:
                text = bold(text)
            reason = row.get(f"{m}_unavailable")
            if text == "n/a" and isinstance(reason, str):
                unavailable.setdefault((m, reason), []).append(str(row["method"]))
            cells.append(text)
        body.append(cells)
    for (m, reason), methods in unavailable.items():
        who = "all runs" if len(methods) == len(df) and len(df) > 1 else ", ".join(methods)
        notes.append(f"{m} unavailable for {who}: {reason}")
    return header, body, notes


def to_markdown(df: pd.DataFrame) -> str:
    """Markdown tables, one per protocol."""
    out = []
    for protocol, block in df.groupby("protocol", sort=True):
        header, body, notes = _cells(block, lambda s: f"**{s}**")
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
    """The ours-vs-published table: delta and whether it falls inside the tolerance band."""
    if cmp.empty:
        return "No run in this report has a published counterpart on the same protocol.\n"
    lines = ["| method | protocol | metric | ours | published | Δ | tolerance | verdict | confidence |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in cmp.iterrows():
        flag = " (unverified)" if r["confidence"] == "recall" else ""
        tol = "n/a" if pd.isna(r["tolerance"]) else f"±{r['tolerance']:g}"
        lines.append(
            f"| {r['method']} | {r['protocol']} | {r['metric']} | {_fmt(r['ours'], r['metric'])} | "
            f"{_fmt(r['reference'], r['metric'])} ({r['reference_method']}) | {r['delta']:+.4f} | {tol} | "
            f"{r['verdict']} | {r['confidence']}{flag} |"
        )
    return "\n".join(lines) + "\n"
