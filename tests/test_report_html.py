"""report.html and the report's statistics: intervals, paired tests, the page's content and, in a real
headless Chromium, its behaviour (sorting, the comparison view's slider and zoom)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import Chromium, chromium_or_skip_reason
from PIL import Image

from resshift.reports import write_report
from resshift.reports.statistics import RESAMPLES, SEED, mean_interval, paired_comparison

NAMES = [f"img{i}" for i in range(8)]


def _run(root: Path, label: str, psnr: list[float], lpips: list[float], hf: list[float], size: int = 64,
         seed: int = 0) -> Path:
    """A finished run on a data set that cannot be opened here (so the view shows methods only)."""
    run = root / f"{label}__nowhere"
    (run / "sr").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(run / "sr" / f"{name}.png")
    metrics = {"psnr": psnr, "lpips": lpips, "hf-ratio": hf}
    summary = {
        "method": label.split("-")[0], "dataset": "nowhere", "protocol_id": "nowhere-x4", "setting": {"label": label},
        "n_images": len(NAMES) + 1, "n_ok": len(NAMES), "n_failed": 1, "nfe": 4, "fingerprint": "0123456789abcdef",
        "metrics": {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in metrics.items()},
        "metric_gaps": {"niqe": {"image too small": len(NAMES)}},
        "unavailable": {"musiq": f"weights file musiq.pth not found in {root}/cache (fetch it)"},
        "timing": {"median_s": 0.5, "device": "cpu-x", "included": "method call only",
                   "context": {"dtype": "fp32", "batch_size": 1, "threads": 2}},
        "provenance": {"git": {"commit": "abcdef0123456789", "dirty": False}, "packages": {"torch": "2.x"}},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    rows = pd.DataFrame({"name": NAMES, "status": "ok", "latency_s": 0.5, **metrics, "checkpoint_sha256": "f" * 64,
                         "notes": ["lpips: image smaller than the network's input" if n == "img1" else ""
                                   for n in NAMES]})
    failed = pd.DataFrame({"name": ["img8"], "status": ["failed"], "error": ["cannot decode img8.png"]})
    pd.concat([rows, failed]).to_csv(run / "per_image.csv", index=False)
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    base = np.linspace(24.0, 27.0, len(NAMES))
    jitter = np.array([0.1, -0.05, 0.2, 0.0, 0.15, -0.1, 0.05, 0.3])
    # "better" beats "worse" by about 1 dB on every image; "close" is within noise of "better"
    _run(root, "better-a", list(base + 1.0), list(0.2 + 0.01 * jitter), [0.5] * 8, seed=1)
    _run(root, "worse-b", list(base), list(0.3 + 0.01 * jitter), [0.01, 1, 10, 100, 0.1, 1, 10, 100], seed=2)
    _run(root, "close-c", list(base + 1.0 + jitter - jitter.mean()), list(0.2 + 0.01 * jitter[::-1]), [0.4] * 8,
         seed=3)
    out = tmp_path_factory.mktemp("report")
    write_report([root], out)
    return out


def test_interval_is_seeded_and_has_the_normal_width() -> None:
    x = np.random.default_rng(0).normal(10.0, 2.0, 400)
    low, high, n = mean_interval(x)
    assert (low, high, n) == mean_interval(x) and n == 400  # same seed, same interval
    assert low < x.mean() < high
    # percentile bootstrap of a mean of 400 normal values: width ~ 2 * 1.96 * sd / sqrt(n)
    assert high - low == pytest.approx(2 * 1.96 * x.std(ddof=1) / np.sqrt(400), rel=0.12)
    assert mean_interval([3.0, 3.0, 3.0])[:2] == (3.0, 3.0)
    assert np.isnan(mean_interval([1.0, float("nan")])[0])  # one finite value: no interval
    assert RESAMPLES >= 1000 and isinstance(SEED, int)


def test_paired_wilcoxon_on_known_values() -> None:
    a = pd.Series(np.arange(8.0) + 1.0, index=NAMES)
    b = a - np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    res = paired_comparison(a, b)
    # every one of the 8 differences positive: exact two-sided p = 2 / 2**8
    assert res.n == 8 and res.p_value == pytest.approx(2 / 256)
    assert res.mean_diff == pytest.approx(2.25) and res.low > 0 and res.evidence()
    # images only one run has are left out; identical runs have no evidence and p is NaN
    same = paired_comparison(a, a.drop(NAMES[:3]))
    assert same.n == 5 and np.isnan(same.p_value) and not same.evidence()


def test_pairwise_table_names_the_better_method_by_direction(report: Path) -> None:
    pairs = pd.read_csv(report / "pairwise.csv")
    row = pairs[(pairs["metric"] == "psnr") & (pairs["method_a"] == "better-a") & (pairs["method_b"] == "worse-b")]
    assert row["p_value"].iloc[0] == pytest.approx(2 / 256) and row["better"].iloc[0] == "better-a"
    lp = pairs[(pairs["metric"] == "lpips") & (pairs["method_a"] == "better-a") & (pairs["method_b"] == "worse-b")]
    assert lp["better"].iloc[0] == "better-a"  # lower LPIPS is better
    close = pairs[(pairs["metric"] == "psnr") & (pairs["method_a"] == "better-a") & (pairs["method_b"] == "close-c")]
    assert not close["evidence"].iloc[0]
    assert set(pairs["test"]) == {"wilcoxon signed-rank (two-sided)"}
    assert pairs[pairs["metric"] == "hf-ratio"]["better"].isna().all()  # informational: nobody is "better"


def test_results_csv_has_intervals_counts_and_vs_best(report: Path) -> None:
    res = pd.read_csv(report / "results.csv").set_index("method")
    assert res.loc["worse-b", "psnr_ci_low"] < res.loc["worse-b", "psnr"] < res.loc["worse-b", "psnr_ci_high"]
    assert res.loc["worse-b", "psnr_vs_best"] == "better-a" and bool(res.loc["worse-b", "psnr_vs_best_evidence"])
    assert not bool(res.loc["close-c", "psnr_vs_best_evidence"])
    assert res.loc["better-a", "psnr_n"] == 8 and res.loc["better-a", "fingerprint"] == "0123456789abcdef"
    md = (report / "report.md").read_text()
    assert "| better-a | 4 | 500.0 | 8/9 (1 failed) |" in md
    assert "niqe unavailable for all runs: no image has a value (8 images: image too small)" in md
    assert "| better-a | nowhere | 0123456789ab | ffffffffffff | — | abcdef012345 | cpu-x |" in md
    assert "## Paired comparisons against the best" in md and "scipy.stats.wilcoxon" in md
    assert f"{RESAMPLES} resamples, seed {SEED}" in md


def test_report_writes_no_absolute_paths_and_loads_nothing_from_the_network(report: Path) -> None:
    for f in report.rglob("*"):
        if f.suffix in (".md", ".html", ".csv", ".tex"):
            text = f.read_text(encoding="utf-8")
            assert "/tmp/" not in text and str(Path.home()) + "/" not in text, f.name
    html = (report / "report.html").read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)=['"]([^'"#]+)['"]""", html)
    assert refs and not [r for r in refs if "://" in r or r.startswith("//")]
    for r in refs:
        assert (report / r).is_file(), r
    data = json.loads(re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html,
                                re.S).group(1).replace("<\\/", "</"))
    images = data["views"]["datasets"]["nowhere"]["images"]
    assert sorted(images) == NAMES and set(images["img0"]["files"]) == {"m0", "m1", "m2"}
    block = data["per_image"]["nowhere"]
    assert [r[0] for r in block["rows"]] == [*NAMES, "img8"]  # the failed image is listed, without values
    assert block["rows"][-1][1:] == [None] * len(block["columns"])
    assert block["notes"]["img8"].startswith("better-a: failed (cannot decode img8.png)")
    assert "close-c: lpips: image smaller than the network's input" in block["notes"]["img1"]
    for entry in images.values():
        for rel in [entry["thumb"], *entry["files"].values()]:
            assert (report / rel).is_file() and (report / rel).stat().st_size < 60_000
    assert "$RESSHIFT" not in html or "musiq" in html


@pytest.mark.browser
@pytest.mark.skipif(chromium_or_skip_reason() is not None, reason=str(chromium_or_skip_reason()))
def test_report_page_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Loads report.html from disk, sorts a table, opens a comparison view, moves the slider and the zoom."""
    artefacts = Path(os.environ.get("RESSHIFT_TEST_ARTEFACTS", tmp_path))
    with Chromium() as page:
        page.open((report / "report.html").as_uri())
        page.wait_for("document.body.dataset.ready === '1'")
        # sort the results table by psnr: descending after two clicks, best first
        col = page.eval("Array.from(document.querySelector('table.results thead tr').cells)"
                        ".findIndex(th => th.textContent.startsWith('psnr'))")
        assert col > 0
        page.eval(f"document.querySelector('table.results thead tr').cells[{col}].click()")
        first = "document.querySelector('table.results tbody tr').cells[0].textContent"
        assert page.eval(f"document.querySelector('table.results thead tr').cells[{col}]"
                         ".getAttribute('aria-sort')") == "ascending"
        assert page.eval(first) == "worse-b"
        page.eval(f"document.querySelector('table.results thead tr').cells[{col}].click()")
        assert page.eval(first) in ("better-a", "close-c")
        assert page.eval("document.querySelectorAll('table.results td.best').length") >= 2
        # the paired comparisons can be narrowed to one metric
        visible = "Array.from(document.querySelectorAll('table.pairwise tbody tr')).filter(r => !r.hidden).length"
        assert page.eval(visible) == 3 * 3  # three pairs, three metrics
        page.eval("const p = document.getElementById('pair-metric'); p.value = 'lpips';"
                  "p.dispatchEvent(new Event('change'))")
        assert page.eval(visible) == 3
        # the per-image table has one row per image, a column per method for the chosen metric (or for every
        # metric), and links to the view
        assert page.eval("document.querySelectorAll('#per-image tbody tr').length") == len(NAMES) + 1
        assert "failed" in page.eval("Array.from(document.querySelectorAll('#per-image tbody td.noted'))"
                                     ".map(td => td.title).join(' ')")
        cols = "document.querySelector('#per-image thead tr').cells.length"
        assert page.eval(cols) == 1 + 3
        page.eval("const m = document.getElementById('pi-metric'); m.value = ''; m.dispatchEvent(new Event('change'))")
        assert page.eval(cols) == 1 + 3 * 3  # psnr, lpips, hf-ratio for three runs
        page.eval("document.querySelector('#per-image tbody a[href*=\"img3\"]').click()")
        page.wait_for("!document.getElementById('view').hidden")
        assert page.eval("document.getElementById('view-title').textContent") == "nowhere / img3"
        page.wait_for("document.getElementById('cmp-top').complete && "
                      "document.getElementById('cmp-top').naturalWidth === 64")
        # pick two methods, move the slider and the zoom
        page.eval("const l = document.getElementById('cmp-left'); l.value = 'm1'; l.dispatchEvent(new Event('change'))")
        assert page.eval("document.getElementById('cmp-bottom').src").endswith("/img3/m1.png")
        page.eval("const s = document.getElementById('split'); s.value = 30; s.dispatchEvent(new Event('input'))")
        assert page.eval("document.getElementById('cmp-top').style.clipPath") == "inset(0px 0px 0px 30%)"
        page.eval("const z = document.getElementById('zoom'); z.value = 5; z.dispatchEvent(new Event('input'))")
        widths = page.eval("Array.from(document.querySelectorAll('.zoomable')).map(e => e.getBoundingClientRect()"
                           ".width)")
        assert widths == [64 * 5] * len(widths) and len(widths) == 4  # the slider and three sources, in step
        assert page.errors() == []
        shot = page.screenshot(artefacts / "report-view.png")
        assert shot.stat().st_size > 10_000
