from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from resshift.cli import main as cli_main
from resshift.reports import write_report
from resshift.reports.compare import compare_results, load_results
from resshift.reports.reference import ROW_KEY, compare_with_reference, reference_numbers
from resshift.reports.results import find_run_dirs, per_image_table, runs_table
from resshift.reports.tables import to_latex, to_markdown


def _fake_run(root: Path, label: str, method: str, protocol: str, metrics: dict[str, float], nfe: int,
              ms: float, reference: str | None = None, unavailable: dict | None = None,
              dataset: str = "val-sr", subset_of: dict | None = None, per_image: dict | None = None) -> Path:
    from resshift.metrics import get_spec

    run_dir = root / f"{label}__{dataset}"
    run_dir.mkdir(parents=True)
    values = per_image or {k: [v - 0.1, v + 0.1] for k, v in metrics.items()}
    n = len(next(iter(values.values())))  # per_image.csv and summary.json agree, as a run writes them
    summary = {
        "method": method, "dataset": dataset, "protocol_id": protocol, "setting": {"label": label},
        "n_images": n, "n_ok": n, "n_failed": 0, "nfe": nfe,
        "method_info": {"name": method, "nfe": nfe, "reference": reference},
        "metrics": {k: {"mean": v, "std": 0.1, "n": n, "lower_better": get_spec(k).lower_better}
                    for k, v in metrics.items()},
        "unavailable": unavailable or {},
        "timing": {"median_s": ms / 1e3, "device": "cpu-x"},
        "protocol_subset_of": subset_of,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"name": [f"i{j}" for j in range(n)], "status": ["ok"] * n, "latency_s": [ms / 1e3] * n,
                  **values}).to_csv(run_dir / "per_image.csv", index=False)
    return run_dir


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    p = "resshift-imagenet-test"
    _fake_run(root, "resshift-v1", "resshift-v1", p, {"psnr": 24.95, "ssim": 0.672, "lpips": 0.26}, 15, 900.0,
              reference="ResShift (v1, NeurIPS)", unavailable={"clipiqa": "weights file RN50.pt not found"})
    _fake_run(root, "bicubic", "bicubic", p, {"psnr": 24.20, "ssim": 0.680, "lpips": 0.45}, 0, 1.0)
    _fake_run(root, "sr3-50", "sr3", "embedded-bicubic-x4", {"psnr": 30.0}, 50, 200.0, dataset="embedded")
    return root


def test_markdown_table_bolds_best_per_protocol_with_arrows(runs: Path) -> None:
    df = runs_table(find_run_dirs([runs]))
    md = to_markdown(df)
    block = md.split("### resshift-imagenet-test")[1]
    assert "| method | NFE | ms/img | images | psnr ↑ | ssim ↑ | lpips ↓ |" in block
    assert "| resshift-v1 | 15 | 900.0 | 2/2 | **24.95** | 0.6720 | **0.2600** |" in block  # LPIPS: lower is better
    assert "| bicubic | 0 | 1.0 | 2/2 | 24.20 | **0.6800** | 0.4500 |" in block
    assert "clipiqa unavailable for resshift-v1: weights file RN50.pt not found" in block
    # a single-row protocol block has nothing to bold
    assert "| sr3-50 | 50 | 200.0 | 2/2 | 30.00 |" in md.split("### embedded-bicubic-x4")[1]


def test_latex_table(runs: Path) -> None:
    tex = to_latex(runs_table(find_run_dirs([runs])))
    assert "psnr $\\uparrow$ & ssim $\\uparrow$ & lpips $\\downarrow$" in tex
    assert "\\textbf{24.95}" in tex and tex.count("\\begin{tabular}") == 2


def test_reference_comparison_verdicts(runs: Path) -> None:
    df = runs_table(find_run_dirs([runs]))
    cmp = compare_with_reference(df).set_index("metric")
    assert cmp.loc["psnr", "reference"] == 25.01
    assert cmp.loc["psnr", "delta"] == pytest.approx(-0.06)
    assert cmp.loc["psnr", "verdict"] == "within"  # |-0.06| <= 0.15
    assert cmp.loc["lpips", "verdict"] == "outside"  # 0.26 vs 0.231, band 0.01
    assert set(cmp["method"]) == {"resshift-v1"}


def test_subset_runs_meet_the_larger_protocols_numbers_by_their_interval(tmp_path: Path) -> None:
    """A run on a subset (val-sr of ImageNet-Test) is set against the full set's published row through its
    95 % interval of the mean, never against the reproduction tolerance; a set without subset_of is not."""
    from resshift.reports.statistics import with_intervals
    from resshift.reports.tables import reference_markdown

    root = tmp_path / "runs"
    psnr = [21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 22.5, 23.5]  # mean 23.375: 24.04 published lies inside
    ssim = [0.60, 0.61, 0.62, 0.60, 0.61, 0.62, 0.61, 0.60]  # mean 0.60875, tight: 0.665 outside
    subset = {"protocol_id": "resshift-imagenet-test", "note": "first 32 (unverified)"}
    _fake_run(root, "realesrgan-x4plus-ncnn", "spandrel", "resshift-val-sr",
              {"psnr": sum(psnr) / 8, "ssim": sum(ssim) / 8}, 1, 600.0, reference="RealESRGAN",
              subset_of=subset, per_image={"psnr": psnr, "ssim": ssim})
    _fake_run(root, "realesrgan-other", "spandrel", "resshift-other-set", {"psnr": 23.4}, 1, 600.0,
              reference="RealESRGAN", dataset="other")
    df = runs_table(find_run_dirs([root]))
    assert df.set_index("method").loc["realesrgan-x4plus-ncnn", "subset_of"] == "resshift-imagenet-test"
    cmp = compare_with_reference(with_intervals(df, per_image_table(find_run_dirs([root])), ["psnr", "ssim"]))
    assert set(cmp["method"]) == {"realesrgan-x4plus-ncnn"}  # no published row on resshift-other-set
    by_metric = cmp.set_index("metric")
    assert by_metric.loc["psnr", "reference"] == 24.04 and by_metric.loc["psnr", "reference_protocol"] == (
        "resshift-imagenet-test")
    assert by_metric.loc["psnr", "verdict"] == "inside the 95 % interval"
    assert by_metric.loc["ssim", "verdict"] == "outside the 95 % interval"
    assert pd.isna(by_metric.loc["psnr", "tolerance"])
    md = reference_markdown(cmp)
    assert "| realesrgan-x4plus-ncnn | resshift-val-sr (subset of resshift-imagenet-test) | psnr |" in md
    assert "whether the published mean lies in our 95 % bootstrap interval" in md


def test_reference_numbers_are_well_formed() -> None:
    refs = reference_numbers()
    assert set(refs["confidence"]) <= {"repo", "2nd", "recall", "rerun"}
    sel = (refs["method"] == "ResShift (v1, NeurIPS)") & (refs["protocol"] == "resshift-realset65")
    row = refs[sel & (refs["metric"] == "musiq")]
    assert float(row["value"].iloc[0]) == 61.330
    # one method may be published by several sources: a row is one (method, nfe, protocol, metric, source)
    assert not refs.duplicated(ROW_KEY).any()


def test_write_report_outputs(runs: Path, tmp_path: Path) -> None:
    out = write_report([runs], tmp_path / "rep")
    text = out.read_text()
    assert "## Against published numbers" in text and "ResShift (v1, NeurIPS)" in text
    for name in ["results.csv", "tables.md", "tables.tex", "quality_vs_nfe.png", "quality_vs_nfe.pdf",
                 "quality_vs_runtime.png", "per_image_distributions.png"]:
        assert (tmp_path / "rep" / name).is_file(), name


def test_compare_detects_metric_and_runtime_regressions(runs: Path, tmp_path: Path) -> None:
    base = load_results(runs)
    assert not compare_results(base, base.copy()).failed
    worse = base.copy()
    worse.loc[worse["method"] == "bicubic", "psnr"] -= 0.2
    result = compare_results(base, worse)
    assert result.failed
    bad = result.table[result.table["status"] != "ok"]
    assert list(bad["quantity"]) == ["psnr"] and list(bad["method"]) == ["bicubic"]
    slower = base.copy()
    slower["ms_per_image"] *= 2
    assert compare_results(base, slower).failed
    assert not compare_results(base, slower, max_runtime_ratio=None).failed
    small = base.copy()
    small.loc[small["method"] == "bicubic", "psnr"] -= 0.1
    assert not compare_results(base, small).failed  # inside the 0.15 dB band


def test_compare_cli_exit_codes(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    baseline = tmp_path / "baseline.csv"
    assert cli_main(["compare", str(baseline), str(runs), "--save-baseline"]) == 0
    assert cli_main(["compare", str(baseline), str(runs)]) == 0
    df = pd.read_csv(baseline)
    df.loc[df["method"] == "resshift-v1", "ssim"] += 0.05
    df.to_csv(baseline, index=False)
    assert cli_main(["compare", str(baseline), str(runs)]) == 1
    assert "REGRESSED" in capsys.readouterr().out


def test_report_on_missing_runs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        write_report([tmp_path], tmp_path / "out")


def test_provenance_keeps_the_device_name_whole_and_shortens_only_digests() -> None:
    from resshift.reports.tables import provenance_markdown

    df = pd.DataFrame([{"method": "m", "dataset": "val-sr", "fingerprint": "0123456789abcdef",
                        "checkpoint_sha256": "a" * 64, "card_sha256": None, "git_commit": "b" * 40,
                        "device": "Intel(R) Xeon(R) Platinum 8480C"},
                       {"method": "n", "dataset": "val-sr", "device": float("nan")}])
    text = provenance_markdown(df)
    assert "| Intel(R) Xeon(R) Platinum 8480C |" in text
    assert "| 0123456789ab | aaaaaaaaaaaa | — | bbbbbbbbbbbb |" in text
    assert text.rstrip().endswith("| n | val-sr | — | — | — | — | — |")


def test_nfe_axis_labels_the_runs_nfe_and_no_minor_ticks() -> None:
    """NFE 0 and 1 alone once got crowded minor labels (6x10^-1 ... 9x10^-1) naming no run."""
    import matplotlib.pyplot as plt

    from resshift.reports.plots import run_value_axis

    fig, ax = plt.subplots()
    try:
        ax.plot([0.5, 1.0, 15.0], [1.0, 2.0, 3.0])
        run_value_axis(ax, pd.Series([0, 1, 15, 1, None]), integer=True)
        fig.canvas.draw()
        assert ax.get_xscale() == "log"
        assert list(ax.get_xticks()) == [0.5, 1.0, 15.0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "15"]
        assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))
    finally:
        plt.close(fig)


def test_runtime_axis_labels_the_runs_values_and_no_minor_ticks() -> None:
    """Runs at 16.3 and 23.8 ms per image got the crowded minor labels 1.6x10^1 ... 2.4x10^1 over each other."""
    import matplotlib.pyplot as plt

    from resshift.reports.plots import run_value_axis

    fig, ax = plt.subplots()
    try:
        ax.plot([16.3, 23.8], [1.0, 2.0])
        run_value_axis(ax, pd.Series([16.3, 23.8, None, 16.31]))
        fig.canvas.draw()
        assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [16.0, 24.0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "24"]
        assert all(t.get_text() == "" for t in ax.get_xticklabels(minor=True))
        run_value_axis(ax, pd.Series([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0]), most=4)
        assert list(ax.get_xticks()) == [1.0, 3.0, 13.0, 34.0]  # at most 4, from the ends inwards
    finally:
        plt.close(fig)
