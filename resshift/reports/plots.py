"""Report figures (matplotlib, PNG and PDF): quality vs NFE, quality vs runtime, per-image
distributions and a visual comparison grid of zoomed crops.

Every figure uses constrained layout, puts its legend outside the axes, draws metrics whose registry
spec has ``log_scale`` (ratios spread over orders of magnitude) on a log axis, and gives each method
(family: :func:`families`) one colour across all figures (:func:`method_colours`); protocols are
told apart by marker.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from resshift.reports.tables import arrow, metric_columns  # noqa: E402

MARKERS = "osD^vP*X"
FONT = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8}


def families(df: pd.DataFrame) -> pd.Series:
    """The method family of each row: the results tables' ``family`` column
    (:func:`resshift.reports.results.method_family`), else ``method_name``, else ``method``."""
    for column in ("family", "method_name", "method"):
        if column in df.columns:
            return df[column].astype(str)
    return pd.Series("", index=df.index, dtype=str)


def method_colours(df: pd.DataFrame) -> dict[str, tuple[float, float, float, float]]:
    """One colour per method family (:func:`families`), in name order, from the tab10/tab20 palettes."""
    families_ = sorted(set(families(df).dropna())) if len(df) else []
    cmap = plt.get_cmap("tab10" if len(families_) <= 10 else "tab20")
    return {f: cmap(i % cmap.N) for i, f in enumerate(families_)}


def _log_scale(metric: str) -> bool:
    from resshift.metrics import METRICS

    return metric in METRICS and METRICS[metric].log_scale


def outside_legend(fig: plt.Figure, colours: dict[str, object], protocols: list[str]) -> None:
    """A figure legend below the axes: one entry per method colour, one per protocol marker."""
    handles = [Line2D([], [], color=c, lw=2, label=f) for f, c in colours.items()]
    if len(protocols) > 1:
        handles += [Line2D([], [], color="grey", marker=MARKERS[i % len(MARKERS)], ls="", label=p)
                    for i, p in enumerate(protocols)]
    legend_below(fig, handles)


def legend_below(fig: plt.Figure, handles: list) -> None:
    """A legend below the axes (constrained layout makes room), as many columns as fit the figure width."""
    if not handles:
        return
    longest = max(len(h.get_label()) for h in handles)
    fit = int(fig.get_figwidth() / (0.45 + 0.075 * longest))
    fig.legend(handles=handles, loc="outside lower center", ncols=max(1, min(len(handles), fit)), frameon=False)


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` into ``out_dir`` and close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths


def _metric_grid(metrics: list[str], height: float = 2.9) -> tuple[plt.Figure, list[plt.Axes]]:
    n = max(1, len(metrics))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, height * rows + 0.7), squeeze=False,
                                 layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def family_lines(ax: plt.Axes, data: pd.DataFrame, x: str, y: str, protocols: list[str],
                 colours: dict[str, object]) -> None:
    """On ``ax``: for each protocol (marker) and method family (colour), ``y`` over ``x`` of its runs in
    ``x`` order; x = 0 (NFE of a method without network) is drawn at 0.5 for log axes."""
    for i, protocol in enumerate(protocols):
        block = data[data["protocol"] == protocol]
        for family, sub in block.groupby(families(block)):
            sub = sub.dropna(subset=[y]).sort_values(x)
            if sub.empty:
                continue
            ax.plot(sub[x].astype(float).clip(lower=0.5), sub[y], marker=MARKERS[i % len(MARKERS)],
                    color=colours.get(str(family), "black"), ms=5, lw=1.3)


def run_value_axis(ax: plt.Axes, values: pd.Series, integer: bool = False, most: int = 6) -> None:
    """A log x axis labelled at the values the runs have, without minor tick labels: a narrow range such as
    NFE 0-1 or 16-24 ms per image otherwise gets crowded ``6x10^-1`` labels that name no run. ``integer``
    (NFE): every value, ``0`` at 0.5 where :func:`family_lines` draws it; else (measured values such as
    ms per image) the positive values to 2 significant digits, at most ``most`` of them spread over the
    range."""
    if integer:
        ticks = sorted({int(v) for v in values.dropna()})
    else:
        ticks = sorted({float(f"{v:.2g}") for v in values.dropna() if v > 0})
        if len(ticks) > most:
            ticks = [ticks[round(i * (len(ticks) - 1) / (most - 1))] for i in range(most)]
    ax.set_xscale("log")
    ax.set_xticks([max(v, 0.5) for v in ticks], [f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


def quality_vs(df: pd.DataFrame, x: str, out_dir: Path, stem: str, xlabel: str,
               colours: dict[str, object] | None = None, logx: bool = True) -> list[Path]:
    """One panel per metric: each method family a line over its runs (e.g. several NFE), per protocol
    marker; NFE 0 (no network) is drawn at 0.5 on the log axis."""
    metrics = [m for m in metric_columns(df) if m in df.columns and df[m].notna().any()]
    data = df.dropna(subset=[x]) if x in df.columns else df.iloc[0:0]
    if data.empty or not metrics:
        return []
    colours = colours or method_colours(df)
    protocols = sorted(data["protocol"].unique())
    with plt.rc_context(FONT):
        fig, axes = _metric_grid(metrics)
        for ax, metric in zip(axes, metrics, strict=True):
            family_lines(ax, data, x, metric, protocols, colours)
            ax.set_title(f"{metric} {arrow(metric)}")
            ax.set_xlabel(xlabel)
            if x == "nfe" or logx:
                run_value_axis(ax, data[x], integer=x == "nfe")
            if _log_scale(metric):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        outside_legend(fig, {f: c for f, c in colours.items() if f in set(families(data))}, protocols)
        return save_figure(fig, out_dir, stem)


def per_image_distributions(per_image: pd.DataFrame, out_dir: Path,
                            colours: dict[str, object] | None = None) -> list[Path]:
    """Box plots of each metric's per-image values, one box per (method, data set), coloured by method
    family; the mean is the white triangle."""
    if per_image.empty:
        return []
    metrics = [m for m in metric_columns(per_image) if m in per_image.columns]
    metrics = [m for m in metrics if pd.api.types.is_numeric_dtype(per_image[m]) and per_image[m].notna().any()]
    if not metrics:
        return []
    family = families(per_image)
    colours = colours or method_colours(per_image)
    datasets = sorted(per_image["dataset"].unique())
    with plt.rc_context(FONT):
        fig, axes = _metric_grid(metrics, height=3.3)
        for ax, metric in zip(axes, metrics, strict=True):
            groups = []
            for (m, d), g in per_image.assign(_family=family).groupby(["method", "dataset"], sort=True):
                v = pd.to_numeric(g[metric], errors="coerce").dropna()
                if _log_scale(metric):
                    v = v[v > 0]
                if len(v):
                    label = m if len(datasets) == 1 else f"{m} ({d[:10]})"
                    groups.append((label, v.to_numpy(), colours.get(str(g["_family"].iloc[0]), "grey")))
            if not groups:
                continue
            box = ax.boxplot([v for _, v, _ in groups], showmeans=True, patch_artist=True, widths=0.6,
                             meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black"},
                             medianprops={"color": "black"})
            for patch, (_, _, c) in zip(box["boxes"], groups, strict=True):
                patch.set_facecolor(c)
                patch.set_alpha(0.75)
            ax.set_xticks(range(1, len(groups) + 1), [k for k, _, _ in groups], rotation=40, ha="right")
            ax.set_title(f"{metric} {arrow(metric)} per image")
            if _log_scale(metric):
                ax.set_yscale("log")
            ax.grid(alpha=0.3, axis="y")
        return save_figure(fig, out_dir, "per_image_distributions")


def comparison_grid(panels: list[tuple[str, torch.Tensor]], out_dir: Path, stem: str = "visual_comparison",
                    crop: tuple[int, int, int] | None = None) -> list[Path]:
    """A row of zoomed crops (LR upsampled by nearest, each method, GT), all cropped to the same HR box.

    ``panels`` are (title, image (3,H,W) in [0,1]) at HR resolution (the LR panel is pre-upsampled by
    the caller). ``crop`` is (top, left, size) in HR pixels; default: a centred square of H/2.
    """
    if not panels:
        return []
    h, w = panels[0][1].shape[-2:]
    top, left, size = crop or (h // 4, w // 4, min(h, w) // 2)
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, len(panels), figsize=(2.0 * len(panels), 2.4), squeeze=False,
                                 layout="constrained")
        for ax, (title, img) in zip(axes[0], panels, strict=True):
            patch = img[:, top: top + size, left: left + size].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax.imshow(patch, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        return save_figure(fig, out_dir, stem)
