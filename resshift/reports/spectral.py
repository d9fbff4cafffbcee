"""The report's "Frequency analysis" section: spectral table, two figures, and a finding generated
from the numbers.

- Table (per protocol): HF energy ratio (geometric mean over images, and how many are below 1), its
  |log2|, the band-limited PSNRs, the ratio to the bicubic-upsampled LR input, and two features of
  the mean SR/reference spectrum ratio curve: the lowest frequency where it falls below 1/2
  (:data:`HALF_POWER`) and its maximum.
- ``spectrum_ratio``: the mean SR/reference power ratio per radial band for every run, one panel per
  protocol, log-frequency axis (reference = GT, or the bicubic-upsampled LR input on sets without GT).
- ``hf_ratio_vs_nfe``: HF energy ratio against NFE, drawn like ``quality_vs_nfe`` (log NFE axis,
  one line per method family and protocol, NFE 0 drawn at 0.5).
- The finding: every sentence is computed from the table with the thresholds stated in it
  (:data:`MATCH_FACTOR`, :data:`TREND_LOG2`).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from resshift.metrics.registry import KIND_SPECTRAL, METRICS  # noqa: E402
from resshift.metrics.spectral import mean_band_ratio  # noqa: E402
from resshift.reports.plots import (  # noqa: E402
    FONT,
    families,
    family_lines,
    legend_below,
    method_colours,
    outside_legend,
    run_value_axis,
    save_figure,
)
from resshift.runfolder import RunFolder, RunSpectra  # noqa: E402
from resshift.runfolder.spectra import REFERENCE_LABELS  # noqa: E402

SPECTRAL_COLUMNS = tuple(n for n, s in METRICS.items() if s.kind == KIND_SPECTRAL)
# An HF energy ratio within [1 / MATCH_FACTOR, MATCH_FACTOR] counts as "about the reference's".
MATCH_FACTOR = 1.25
# A change of log2(hf-ratio) larger than this between a method's lowest and highest NFE is a trend.
TREND_LOG2 = 0.1
# The spectrum-ratio level whose first crossing is reported (half the reference's power).
HALF_POWER = 0.5
LR_NYQUIST_X4 = 0.25
HF_CUTOFF = 0.5


def _nfe_text(nfe: object) -> str:
    return "?" if nfe is None or (isinstance(nfe, float) and math.isnan(nfe)) else str(int(nfe))


def _ratio_column(block: pd.DataFrame) -> str | None:
    """``hf-ratio`` (vs GT) when the block has it, else ``hf-ratio-lrup`` (vs upsampled LR), else None."""
    for col in ("hf-ratio", "hf-ratio-lrup"):
        if col in block.columns and block[col].notna().any():
            return col
    return None


def classify(ratio: float) -> str:
    """``"below"``, ``"match"`` or ``"above"`` by :data:`MATCH_FACTOR`."""
    if ratio < 1.0 / MATCH_FACTOR:
        return "below"
    if ratio > MATCH_FACTOR:
        return "above"
    return "match"


def first_crossing_below(centres: np.ndarray, curve: np.ndarray, level: float = HALF_POWER) -> float | None:
    """The lowest band centre where ``curve`` is below ``level`` (NaN bands skipped), or None."""
    idx = np.flatnonzero(np.isfinite(curve) & (curve < level))
    return float(centres[idx[0]]) if idx.size else None


def _curves(df: pd.DataFrame) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Run folder -> (reference, band centres, mean ratio curve) for runs with recorded spectra.

    The reference is GT when every run of the same protocol has GT spectra, else the upsampled LR.
    """
    loaded: dict[str, RunSpectra] = {}
    for run in df["run"]:
        spectra = RunFolder(run).spectra()
        if spectra is not None and spectra.names:
            loaded[str(run)] = spectra
    out: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    for _, block in df.groupby("protocol"):
        runs = [str(r) for r in block["run"] if str(r) in loaded]
        ref = "gt" if runs and all(loaded[r].n_images("gt") for r in runs) else "lrup"
        for r in runs:
            out[r] = (ref, loaded[r].band_centres, mean_band_ratio(loaded[r].power_sr, loaded[r].reference_power(ref)))
    return out


def _below_one_counts(per_image: pd.DataFrame, col: str) -> dict[str, tuple[int, int]]:
    """Run folder -> (images with ``col`` < 1, images with a value)."""
    if per_image.empty or col not in per_image.columns or "run" not in per_image.columns:
        return {}
    out = {}
    for run, g in per_image.groupby("run"):
        v = pd.to_numeric(g[col], errors="coerce").dropna()
        out[str(run)] = (int((v < 1.0).sum()), int(len(v)))
    return out


def with_geometric_means(df: pd.DataFrame, per_image: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``hf-ratio`` / ``hf-ratio-lrup`` replaced by the geometric mean over each run's images
    (``2 ** mean(log2 ratio)``), where the per-image rows have them; other runs keep their mean.

    Ratios spread over orders of magnitude: one flat image at 1.0 must not outweigh seven at 0.005.
    """
    out = df.copy()
    if per_image.empty or "run" not in per_image.columns:
        return out
    for col in (n for n in SPECTRAL_COLUMNS if METRICS[n].log_scale):
        if col not in per_image.columns or col not in out.columns:
            continue
        values = pd.to_numeric(per_image[col], errors="coerce")
        ok = values.notna() & (values > 0) & np.isfinite(values)
        gm = np.exp2(np.log2(values[ok]).groupby(per_image.loc[ok, "run"].astype(str)).mean())
        runs = out["run"].astype(str)
        out[col] = np.where(runs.isin(gm.index), runs.map(gm), out[col])
    return out


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def spectral_markdown(df: pd.DataFrame, per_image: pd.DataFrame,
                      curves: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> str:
    """The spectral table, one block per protocol (runs in NFE order within each method)."""
    out = []
    for protocol, block in df.groupby("protocol", sort=True):
        col = _ratio_column(block)
        below = _below_one_counts(per_image, col) if col else {}
        ref = next((curves[str(r)][0] for r in block["run"] if str(r) in curves), None)
        ref_label = REFERENCE_LABELS.get(ref or "", "n/a")
        header = ["method", "NFE", f"hf-ratio (gm) {METRICS['hf-ratio'].arrow}", "images < 1",
                  *(f"{m} {METRICS[m].arrow}" for m in ("hf-log-ratio-abs", "psnr-low", "psnr-mid", "psnr-high")),
                  f"hf-ratio-lrup (gm) {METRICS['hf-ratio-lrup'].arrow}", f"f(ratio<{HALF_POWER:g})", "max ratio @ f",
                  "verdict"]
        out += [f"### {protocol}", "", f"Spectrum ratio reference: {ref_label}.", "",
                "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for _, row in block.assign(_family=families(block)).sort_values(["_family", "nfe"],
                                                                      na_position="first").iterrows():
            run = str(row["run"])
            n_below = below.get(run)
            f_half = peak = "n/a"
            if run in curves:
                _, centres, curve = curves[run]
                crossing = first_crossing_below(centres, curve)
                f_half = "none" if crossing is None else f"{crossing:.3f}"
                if np.isfinite(curve).any():
                    i = int(np.nanargmax(curve))
                    peak = f"{curve[i]:.2f} @ {centres[i]:.3f}"
            ratio = row.get(col) if col else None
            verdict = "n/a" if ratio is None or pd.isna(ratio) else classify(float(ratio))
            if verdict != "n/a" and col == "hf-ratio-lrup":
                verdict += " (vs bicubic)"
            bands = [_fmt(row.get(m), METRICS[m].decimals) for m in ("psnr-low", "psnr-mid", "psnr-high")]
            cells = [str(row["method"]), _nfe_text(row.get("nfe")), _fmt(row.get("hf-ratio")),
                     "n/a" if n_below is None else f"{n_below[0]}/{n_below[1]}",
                     _fmt(row.get("hf-log-ratio-abs")), *bands, _fmt(row.get("hf-ratio-lrup")), f_half, peak, verdict]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _describe_run(row: pd.Series, col: str, below: dict[str, tuple[int, int]],
                  curves: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> str:
    ratio = float(row[col])
    ref = "GT" if col == "hf-ratio" else "the bicubic-upsampled LR input"
    kind = classify(ratio)
    if kind == "below":
        text = f"keeps {ratio:.3f}x {ref}'s energy above half Nyquist ({100 * (1 - ratio):.0f} % lost)"
    elif kind == "above":
        text = f"has {ratio:.3f}x {ref}'s energy above half Nyquist ({100 * (ratio - 1):.0f} % added)"
    else:
        text = f"is within a factor {MATCH_FACTOR:g} of {ref}'s energy above half Nyquist ({ratio:.3f}x)"
    n = below.get(str(row["run"]))
    if n and n[1]:
        text += f"; {n[0]} of {n[1]} images below 1"
    run = str(row["run"])
    if run in curves:
        _, centres, curve = curves[run]
        crossing = first_crossing_below(centres, curve)
        if crossing is None:
            text += f"; its spectrum ratio never falls below {HALF_POWER:g}"
        else:
            text += f"; its spectrum ratio first falls below {HALF_POWER:g} at {crossing:.3f} of Nyquist"
    return f"- **{row['method']}** (NFE {_nfe_text(row.get('nfe'))}) {text}."


def _trend_lines(block: pd.DataFrame, col: str) -> list[str]:
    """One sentence per method family that ran at two or more NFE values."""
    lines = []
    block = block.dropna(subset=[col, "nfe"])
    for family, sub in block.groupby(families(block)):
        sub = sub.groupby("nfe", as_index=False)[col].mean().sort_values("nfe")
        if len(sub) < 2:
            continue
        nfe, vals = sub["nfe"].astype(int).tolist(), sub[col].astype(float).tolist()
        logs = np.log2(np.maximum(vals, 1e-300))
        delta = float(logs[-1] - logs[0])
        steps = np.diff(logs)
        monotone = bool((steps >= 0).all() or (steps <= 0).all())
        path = " → ".join(f"{v:.3f} ({n})" for v, n in zip(vals, nfe, strict=True))
        if delta > TREND_LOG2:
            trend = "rises with NFE: more steps leave more high-frequency energy"
        elif delta < -TREND_LOG2:
            trend = "falls with NFE: more steps leave less high-frequency energy (a longer chain smooths more)"
        else:
            trend = f"does not move with NFE beyond ±{TREND_LOG2:g} in log2"
        shape = "monotone" if monotone else "not monotone"
        lines.append(f"- **{family}**: {col} {path}; Δlog2 = {delta:+.3f} from NFE {nfe[0]} to {nfe[-1]}, "
                     f"{shape} over {len(nfe)} step counts; it {trend}.")
    return lines


def frequency_finding(df: pd.DataFrame, per_image: pd.DataFrame,
                      curves: dict[str, tuple[str, np.ndarray, np.ndarray]]) -> str:
    """The generated finding, one block per protocol; every statement comes from the numbers."""
    out = [f"Thresholds: an HF energy ratio within [{1 / MATCH_FACTOR:.2f}, {MATCH_FACTOR:.2f}] counts as "
           f"matching its reference, below as losing high-frequency energy (smoothing), above as adding it "
           f"(noise or invented texture). An NFE trend is a change of log2 ratio larger than {TREND_LOG2:g} "
           f"between a method's lowest and highest NFE. Ratios are geometric means over images.", ""]
    for protocol, block in df.groupby("protocol", sort=True):
        col = _ratio_column(block)
        out.append(f"**{protocol}**" + ("" if col != "hf-ratio-lrup" else
                                         " (no GT: ratios are against the bicubic-upsampled LR input, so they "
                                         "say how much energy a method adds over bicubic, not whether it is right)"))
        out.append("")
        if col is None:
            out += ["- no HF energy ratio was computed for these runs.", ""]
            continue
        rows = block.dropna(subset=[col]).copy()
        rows["_dist"] = np.abs(np.log2(rows[col].astype(float)))
        rows = rows.sort_values("_dist")
        below = _below_one_counts(per_image, col)
        out += [_describe_run(r, col, below, curves) for _, r in rows.iterrows()]
        groups = {k: [str(r["method"]) for _, r in rows.iterrows() if classify(float(r[col])) == k]
                  for k in ("below", "match", "above")}
        out.append(f"- Lose high-frequency energy: {', '.join(groups['below']) or 'none'}; "
                   f"within the band: {', '.join(groups['match']) or 'none'}; "
                   f"add it: {', '.join(groups['above']) or 'none'}.")
        if len(rows) > 1:
            ranking = " < ".join(f"{r['method']} ({r['_dist']:.3f})" for _, r in rows.iterrows())
            out.append(f"- Closest to the reference by |log2 {col}|: {ranking}.")
        trends = _trend_lines(block, col)
        out += trends or ["- No method ran at more than one step count here, so nothing is said about NFE."]
        out.append("")
    return "\n".join(out)


def _ratio_axes(ax: plt.Axes) -> None:
    ax.set_yscale("log", base=2)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axhspan(1 / MATCH_FACTOR, MATCH_FACTOR, color="grey", alpha=0.12, lw=0)
    ax.grid(alpha=0.3)


def spectrum_ratio_figure(df: pd.DataFrame, curves: dict[str, tuple[str, np.ndarray, np.ndarray]],
                          out_dir: Path, stem: str = "spectrum_ratio",
                          colours: dict[str, object] | None = None) -> list[Path]:
    """Mean SR/reference radial power ratio of every run, one panel per protocol, log-frequency axis;
    colour = method family, line style = the run's place in its family's NFE order."""
    protocols = [p for p, b in df.groupby("protocol", sort=True) if any(str(r) in curves for r in b["run"])]
    if not protocols:
        return []
    colours = colours or method_colours(df)
    styles = ["-", "--", ":", "-."]
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, len(protocols), figsize=(4.6 * len(protocols), 3.9), squeeze=False,
                                 layout="constrained")
        handles = {}
        for ax, protocol in zip(axes[0], protocols, strict=True):
            block = df[df["protocol"] == protocol]
            block = block.assign(_family=families(block)).sort_values(["_family", "nfe"], na_position="first")
            ref = "gt"
            for _, row in block.iterrows():
                if str(row["run"]) not in curves:
                    continue
                ref, centres, curve = curves[str(row["run"])]
                ok = np.isfinite(curve) & (centres > 0)
                family = block[block["_family"] == row["_family"]]
                style = styles[list(family["run"]).index(row["run"]) % len(styles)]
                label = f"{row['method']} (NFE {_nfe_text(row['nfe'])})"
                (line,) = ax.plot(centres[ok], curve[ok], ls=style, lw=1.4,
                                  color=colours.get(str(row["_family"]), "black"), label=label)
                handles.setdefault(label, line)
            _ratio_axes(ax)
            ax.set_xscale("log")
            ax.axvline(LR_NYQUIST_X4, color="grey", ls=":", lw=1)
            ax.axvline(HF_CUTOFF, color="grey", ls="--", lw=1)
            ymin = ax.get_ylim()[0]
            for x, text in ((LR_NYQUIST_X4, "x4 LR Nyquist"), (HF_CUTOFF, "HF cut-off")):
                ax.text(x, ymin, text, rotation=90, va="bottom", ha="center", fontsize=7, color="dimgrey",
                        bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
            ax.set_xlabel("radial frequency (fraction of Nyquist)")
            ax.set_ylabel(f"power SR / {'GT' if ref == 'gt' else 'bicubic-up LR'} (geometric mean)")
            ax.set_title(protocol)
        legend_below(fig, list(handles.values()))
        return save_figure(fig, out_dir, stem)


def hf_ratio_vs_nfe(df: pd.DataFrame, out_dir: Path, stem: str = "hf_ratio_vs_nfe",
                    colours: dict[str, object] | None = None) -> list[Path]:
    """HF energy ratio against NFE, drawn like ``quality_vs_nfe`` (one panel per ratio column, log axes)."""
    cols = [c for c in ("hf-ratio", "hf-ratio-lrup") if c in df.columns and df[c].notna().any()]
    data = df.dropna(subset=["nfe"]) if "nfe" in df.columns else df.iloc[0:0]
    if data.empty or not cols:
        return []
    colours = colours or method_colours(df)
    protocols = sorted(data["protocol"].unique())
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, len(cols), figsize=(4.4 * len(cols), 3.6), squeeze=False, layout="constrained")
        for ax, col in zip(axes[0], cols, strict=True):
            family_lines(ax, data, "nfe", col, protocols, colours)
            _ratio_axes(ax)
            run_value_axis(ax, data["nfe"], integer=True)
            ax.set_xlabel("NFE (network evaluations per image)")
            ref = "GT" if col == "hf-ratio" else "bicubic-up LR"
            ax.set_title(f"{col}: HF energy SR / {ref}")
        outside_legend(fig, {f: c for f, c in colours.items() if f in set(families(data))}, protocols)
        return save_figure(fig, out_dir, stem)


CONVENTION_TEXT = (
    "Luma = full-range BT.601 of the 8-bit images; frequency r = radial frequency as a fraction of Nyquist "
    "(0.25 = the x4 LR input's Nyquist). hf-ratio = windowed (Hann) luma power above r = 0.5, SR / GT "
    "(1 = as GT, < 1 smoother, > 1 added energy); hf-log-ratio-abs = |log2 hf-ratio|. psnr-low / -mid / -high "
    "= luma PSNR of the error restricted to r < 0.25 / 0.25-0.5 / ≥ 0.5 (capped at 100 dB). hf-ratio-lrup "
    "compares with the bicubic-upsampled LR input instead of GT (the only reference on sets without GT). "
    "In this section hf-ratio and hf-ratio-lrup are geometric means over images (2^mean log2), unlike the "
    "arithmetic means of the Results table; the other columns are arithmetic means. "
    "Definitions: `resshift/metrics/spectral.py`."
)


def frequency_section(df: pd.DataFrame, per_image: pd.DataFrame, out_dir: Path,
                      colours: dict[str, object] | None = None) -> tuple[list[str], list[Path]]:
    """Markdown lines and figure files of the "Frequency analysis" report section."""
    has_cols = any(c in df.columns and df[c].notna().any() for c in SPECTRAL_COLUMNS)
    curves = _curves(df)
    if not has_cols and not curves:
        return (["## Frequency analysis", "",
                 "Not computed: add `hf-ratio`, `hf-log-ratio-abs`, `psnr-low`, `psnr-mid`, `psnr-high` (and "
                 "`hf-ratio-lrup` for sets without GT) to the run's `metrics`.", ""], [])
    df = with_geometric_means(df, per_image)
    colours = colours or method_colours(df)
    figures = spectrum_ratio_figure(df, curves, out_dir, colours=colours) + hf_ratio_vs_nfe(df, out_dir,
                                                                                          colours=colours)
    lines = ["## Frequency analysis", "", CONVENTION_TEXT, "", spectral_markdown(df, per_image, curves),
             "### Finding", "", frequency_finding(df, per_image, curves), ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"]
    return lines + [""], figures
