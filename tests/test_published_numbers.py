"""Published numbers as data: the loader's checks, the spread of one method over several sources, the
report's table of published rows beside ours, and the parts of the StableSR crop preset that do not need
the crop data cards."""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_reports import _fake_run

from resshift.paths import PROJECT_ROOT
from resshift.reports import write_report
from resshift.reports.reference import (
    COLUMNS,
    compare_with_reference,
    load_reference_numbers,
    published_bands,
    reference_numbers,
)
from resshift.reports.tables import published_markdown, reference_markdown

CROPS = ("stablesr-realsr-crop", "stablesr-drealsr-crop")
PRESET = PROJECT_ROOT / "eval" / "experiment" / "paper_stablesr_crops.yaml"


def _refs(rows: list[tuple]) -> pd.DataFrame:
    """A published table built by hand: (method, nfe, protocol, metric, value text, source, confidence)."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.assign(value_text=df["value"], value=df["value"].astype(float))


# One method (A) published by three sources with a known spread, one (B) by a single source.
KNOWN = _refs([
    ("A", 1, "p", "ssim", "0.7000", "paper one", "repo"),
    ("A", 1, "p", "ssim", "0.7250", "paper two", "repo"),
    ("A", 1, "p", "ssim", "0.6900", "paper three", "2nd"),
    ("A", 1, "p", "lpips", "0.3000", "paper one", "repo"),
    ("A", 1, "p", "lpips", "0.3000", "paper two", "repo"),
    ("A", 1, "p", "musiq", "60.5", "paper two", "repo"),
    ("B", 50, "p", "ssim", "0.6500", "paper one", "recall"),
    ("A", 1, "q", "ssim", "0.9000", "paper one", "repo"),
])


def test_bands_give_min_max_over_sources() -> None:
    bands = published_bands(KNOWN).set_index(["protocol", "method", "nfe", "metric"])
    a = bands.loc[("p", "A", 1, "ssim")]
    assert (a["n_sources"], a["low"], a["high"]) == (3, 0.69, 0.725)
    assert a["spread"] == pytest.approx(0.035, abs=1e-12)
    assert (a["low_text"], a["high_text"]) == ("0.6900", "0.7250")
    assert a["sources"] == "paper one; paper two; paper three"
    assert bands.loc[("p", "A", 1, "lpips"), "spread"] == 0 and bands.loc[("p", "A", 1, "lpips"), "n_sources"] == 2
    assert bands.loc[("p", "B", 50, "ssim"), "n_sources"] == 1
    assert bands.loc[("q", "A", 1, "ssim"), "n_sources"] == 1  # another protocol is another band


def test_published_table_lists_each_source_then_the_band() -> None:
    runs = pd.DataFrame([{"method": "ours-x", "nfe": 4, "protocol": "p", "ssim": 0.71234, "lpips": 0.31},
                         {"method": "ours-y", "nfe": 1, "protocol": "other", "ssim": 0.5}])
    md = published_markdown(runs, KNOWN)
    assert "### p: published rows beside ours" in md and "### other" not in md and "### q" not in md
    assert "| method | NFE | from | ssim ↑ | lpips ↓ | musiq ↑ |" in md
    assert "| ours-x | 4 | this report | 0.7123 | 0.3100 | n/a |" in md
    # sources are numbered in table order; each published row keeps the printed text of its value
    assert "| A | 1 | [1] | 0.7000 | 0.3000 |  |" in md
    assert "| A | 1 | [2] | 0.7250 | 0.3000 | 60.5 |" in md
    assert "| A | 1 | [3] | 0.6900 |  |  |" in md
    # the band: min-max over the sources that publish the metric; equal values give the value; one source none
    assert "| A: band | 1 | 3 sources | 0.6900–0.7250 (3) | 0.3000 (2) |  |" in md
    assert "| B | 50 | [1] | 0.6500 |  |  |" in md and "B: band" not in md
    assert "1. paper one — confidence recall, repo (unverified)" in md
    assert "3. paper three — confidence 2nd" in md
    assert published_markdown(runs[runs["protocol"] == "other"], KNOWN) == ""


def test_comparison_keeps_one_row_per_source_with_the_band() -> None:
    ours = pd.DataFrame([{"method": "a-run", "protocol": "p", "reference": "A", "ssim": 0.705, "lpips": 0.2}])
    cmp = compare_with_reference(ours, KNOWN)
    ssim = cmp[cmp["metric"] == "ssim"].set_index("source")
    assert list(ssim.index) == ["paper one", "paper two", "paper three"]
    assert ssim.loc["paper one", "verdict"] == "within" and ssim.loc["paper two", "verdict"] == "outside"
    assert ssim.loc["paper three", "verdict"] == "outside"  # |0.705 - 0.69| > 0.01
    assert set(ssim["band_low"]) == {0.69} and set(ssim["band_high"]) == {0.725} and set(ssim["n_sources"]) == {3}
    md = reference_markdown(cmp)
    assert "| a-run | p | ssim | 0.7050 | 0.7000 (A) | +0.0050 | ±0.01 | within | repo | 0.6900–0.7250 (3 sources) " \
           "| paper one |" in md
    assert "| a-run | p | lpips | 0.2000 | 0.3000 (A) | -0.1000 | ±0.01 | outside | repo | 0.3000 (2 sources) |" in md


def test_packaged_numbers_keep_each_source_of_one_method() -> None:
    """The issue's example: ResShift on RealSR-crop as three papers publish it, each its own row."""
    refs = reference_numbers()
    sel = refs[(refs["method"] == "ResShift") & (refs["protocol"] == "stablesr-realsr-crop")]
    by = {src.split(" ")[0]: rows.set_index("metric")["value"] for src, rows in sel.groupby("source")}
    assert set(by) == {"OSEDiff", "CCSR", "TSD-SR"}
    cols = ("psnr-y-float", "ssim-pyiqa", "lpips")  # these tables' SSIM is pyiqa's (cs clamped at 0)
    assert [by["OSEDiff"][m] for m in cols] == [26.31, 0.7421, 0.3460]
    assert [by["CCSR"][m] for m in cols] == [26.31, 0.7411, 0.3489]
    assert [by["TSD-SR"][m] for m in cols] == [26.39, 0.7567, 0.3158]
    assert set(sel["nfe"]) == {15} and set(sel["confidence"]) == {"repo"}
    band = published_bands(sel).set_index("metric").loc["psnr-y-float"]
    assert (band["low_text"], band["high_text"], band["n_sources"]) == ("26.31", "26.39", 3)


def test_packaged_crop_rows_are_complete_per_source() -> None:
    """Every (source, method, set) of the crop protocols has each metric that source's table prints: a
    transcription that dropped a cell fails here."""
    refs = reference_numbers()
    crops = refs[refs["protocol"].str.startswith("stablesr-")]
    full = {"psnr-y-float", "ssim-pyiqa", "lpips", "dists", "fid", "niqe", "musiq", "maniqa-pipal", "clipiqa"}
    for (source, method, protocol), rows in crops.groupby(["source", "method", "protocol"]):
        expected = full - {"maniqa-pipal"} if source.startswith("CCSR") else full  # CCSR prints no MANIQA
        assert set(rows["metric"]) == expected, (source, method, protocol)
    # the OSEDiff README's log line, more digits than its Table 1
    log = crops[crops["source"].str.startswith("OSEDiff README")
                & (crops["protocol"] == "stablesr-drealsr-crop")].set_index("metric")["value_text"]
    assert (log["psnr-y-float"], log["musiq"], log["maniqa-pipal"], log["fid"]) == (
        "27.9243", "64.6537", "0.5895", "135.296586")


@pytest.mark.parametrize(("line", "problem"), [
    ("A,1,p,ssim,0.7,src,maybe", "confidence 'maybe' is not one of"),
    ("A,1,p,ssim-typo,0.7,src,repo", "metric 'ssim-typo' is not in the metric registry"),
    ("A,one,p,ssim,0.7,src,repo", "nfe 'one' is not a non-negative integer"),
    ("A,1,p,ssim,nan,src,repo", "value 'nan' is not a finite number"),
    ("A,1,p,ssim,0.7,,repo", "empty source"),
])
def test_loader_names_the_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text(",".join(COLUMNS) + "\nB,1,p,ssim,0.6,src,repo\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"numbers.csv: line 3: {problem}"):
        load_reference_numbers(path)


def test_loader_rejects_repeated_rows_and_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    header = ",".join(COLUMNS)
    path.write_text(f"{header}\nA,1,p,ssim,0.6,src,repo\nA,1,p,ssim,0.6,other,repo\nA,1,p,ssim,0.7,src,2nd\n",
                    encoding="utf-8")
    with pytest.raises(ValueError, match="numbers.csv: lines 2, 4 repeat one method, nfe, protocol, metric and source"):
        load_reference_numbers(path)
    path.write_text("method,protocol,metric,value\nA,p,ssim,0.6\n", encoding="utf-8")
    with pytest.raises(ValueError, match="numbers.csv: columns must be method, nfe"):
        load_reference_numbers(path)


def test_report_sets_our_crop_runs_beside_every_published_row(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    p = "stablesr-realsr-crop"
    _fake_run(root, "resshift-v1", "resshift", p, {"psnr-y-float": 26.3, "ssim-pyiqa": 0.74, "lpips": 0.34}, 15, 500.0,
              reference="ResShift (v1, NeurIPS)", dataset=p)
    _fake_run(root, "sinsr", "sinsr", p, {"psnr-y-float": 26.25, "ssim-pyiqa": 0.735, "lpips": 0.32}, 1, 100.0,
              reference="SinSR", dataset=p)
    report = write_report([root], tmp_path / "rep")
    section = report.read_text(encoding="utf-8").split("## Against published numbers")[1].split("## Frequency")[0]
    assert "### stablesr-realsr-crop: published rows beside ours" in section
    assert "| resshift-v1 | 15 | this report |" in section and "| sinsr | 1 | this report |" in section
    assert "| ResShift: band | 15 | 3 sources |" in section and "26.31–26.39 (3)" in section
    for method in ("OSEDiff", "TSD-SR", "SeeSR", "PASD", "StableSR", "SUPIR", "BSRGAN", "RealESRGAN"):
        assert f"| {method} |" in section, method
    # our SinSR run against each source of SinSR's published rows, with their band
    assert "| sinsr | stablesr-realsr-crop | ssim-pyiqa | 0.7350 | 0.7347 (SinSR) |" in section
    assert "| sinsr | stablesr-realsr-crop | ssim-pyiqa | 0.7350 | 0.7351 (SinSR) |" in section
    assert "0.7347–0.7351 (2 sources)" in section
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "stablesr-realsr-crop: published rows beside ours" in html and "26.31–26.39 (3)" in html
    cmp = pd.read_csv(tmp_path / "rep" / "reference_comparison.csv")
    assert {"band_low", "band_high", "n_sources", "source"} <= set(cmp.columns)


# --- the preset ---

def _score_parser():
    import argparse

    from resshift.cli import score

    parser = argparse.ArgumentParser(prog="resshift")
    score.register(parser.add_subparsers())
    return parser


def test_stablesr_crop_preset_rows() -> None:
    from resshift.metrics.registry import METRICS

    cfg = OmegaConf.load(PRESET)
    sweep = cfg.hydra.sweeper.params
    datasets = sweep.dataset.split(",")
    assert datasets == list(CROPS) and cfg.defaults[0]["override /dataset"] == CROPS[0]
    assert list(cfg.metrics) == ["psnr-y-float", "ssim-pyiqa", "ssim", "lpips", "dists", "niqe", "musiq",
                                 "maniqa-pipal", "clipiqa", "fid", "kid"]
    # every metric the published crop rows use is computed by the preset
    assert set(reference_numbers().query("protocol in @CROPS")["metric"]) <= set(cfg.metrics)
    assert all(m in METRICS for m in cfg.metrics)
    refs = reference_numbers()
    crops = refs[refs["protocol"].isin(CROPS)]
    published = set(crops["method"])
    referenced = set()
    for name in sweep.method.split(","):
        method = OmegaConf.load(PROJECT_ROOT / "eval" / "method" / f"{name}.yaml")
        if method.get("reference"):
            assert method.reference in set(refs["method"]), (name, method.reference)
            referenced.add(method.reference)
    assert {"SinSR", "BSRGAN", "RealESRGAN"} <= referenced
    not_run = {r.row: r for r in cfg.paper_rows_not_run}
    assert set(not_run) == {"OSEDiff", "TSD-SR", "SeeSR", "PASD", "StableSR", "SUPIR"}
    # every published row of the crop sets is regenerated (reference key) or listed with its way in; the
    # ResShift-15 rows name no checkpoint, so they stand beside resshift-v1 (15 steps) by protocol only
    assert published == (referenced & published) | set(not_run) | {"ResShift"}
    parser = _score_parser()
    for row, entry in not_run.items():
        assert entry.reason
        command = shlex.split(entry.way_in.split("(and")[0])
        assert command[:2] == ["resshift", "score"]
        args = parser.parse_args(command[1:])
        assert (args.dataset, args.label, args.reference) == (CROPS[0], row, row)
        nfe = set(crops.loc[crops["method"] == row, "nfe"])
        assert nfe == {args.nfe}, (row, nfe)
        for protocol in CROPS:
            assert not crops[(crops["method"] == row) & (crops["protocol"] == protocol)].empty, (row, protocol)


def test_stablesr_crop_preset_composes() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=paper_stablesr_crops"], return_hydra_config=True)
        assert cfg.dataset.name == CROPS[0]
        for name in cfg.hydra.sweeper.params.method.split(","):
            for dataset in CROPS:
                run = compose("config", overrides=["+experiment=paper_stablesr_crops", f"method={name}",
                                                   f"dataset={dataset}"])
                assert run.dataset.name == dataset and list(run.metrics) == list(cfg.metrics)
