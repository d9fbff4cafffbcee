"""Report figures (matplotlib, PNG and PDF): quality vs NFE, quality vs runtime, per-image
distributions and a visual comparison grid of zoomed crops."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from resshift.reports.tables import arrow, metric_columns  # noqa: E402


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` into ``out_dir`` and close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def _metric_grid(metrics: list[str]) -> tuple[plt.Figure, list[plt.Axes]]:
    n = max(1, len(metrics))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def quality_vs(df: pd.DataFrame, x: str, out_dir: Path, stem: str, xlabel: str, logx: bool = True) -> list[Path]:
    """One panel per metric: each method a line over its runs (e.g. several NFE), per protocol marker."""
    metrics = [m for m in metric_columns(df) if m in df.columns and df[m].notna().any()]
    data = df.dropna(subset=[x]) if x in df.columns else df.iloc[0:0]
    if data.empty or not metrics:
        return []
    fig, axes = _metric_grid(metrics)
    markers = "osD^vP*X"
    for ax, metric in zip(axes, metrics, strict=True):
        for i, (protocol, block) in enumerate(data.groupby("protocol")):
            for family, sub in block.groupby("method_name"):
                sub = sub.dropna(subset=[metric]).sort_values(x)
                if sub.empty:
                    continue
                ax.plot(sub[x].astype(float).clip(lower=0.5), sub[metric], marker=markers[i % len(markers)],
                        label=f"{family} ({protocol})")
        ax.set_title(f"{metric} {arrow(metric)}")
        ax.set_xlabel(xlabel)
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save_figure(fig, out_dir, stem)


def per_image_distributions(per_image: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Box plots of each metric's per-image values, one box per (method, dataset)."""
    if per_image.empty:
        return []
    metrics = [m for m in metric_columns(per_image.drop(columns=["latency_s", "status", "error", "name"],
                                                         errors="ignore")) if m in per_image.columns]
    metrics = [m for m in metrics if pd.api.types.is_numeric_dtype(per_image[m]) and per_image[m].notna().any()]
    if not metrics:
        return []
    fig, axes = _metric_grid(metrics)
    for ax, metric in zip(axes, metrics, strict=True):
        by_run = per_image.groupby(["method", "dataset"])
        groups = [(f"{m}\n{d}", g[metric].dropna().to_numpy()) for (m, d), g in by_run]
        groups = [(k, v) for k, v in groups if len(v)]
        ax.boxplot([v for _, v in groups], showmeans=True)
        ax.set_xticks(range(1, len(groups) + 1), [k for k, _ in groups], fontsize=7, rotation=30, ha="right")
        ax.set_title(f"{metric} per image")
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
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6), squeeze=False)
    for ax, (title, img) in zip(axes[0], panels, strict=True):
        patch = img[:, top: top + size, left: left + size].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        ax.imshow(patch, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return save_figure(fig, out_dir, stem)
