"""Golden test of the whole scoring path: OSEDiff's shipped SR outputs scored by ``resshift score``
against the StableSR crop cards, compared per image with OSEDiff's own pyiqa log.

Data: OSEDiff's repository (github.com/cswry/OSEDiff, commit fcc4f09) ships, under
``preset/datasets/``, ``benchmark_realsr/`` and ``benchmark_drealsr/``, each with ``test_LR/``,
``test_HR/``, ``results_osediff/*.png`` (its outputs) and ``results_osediff/metrics/test_METRICS_*.log``
(the per-image log of its ``test_metrics.py``). Their licence is unclear, so nothing of them is in
this project: set ``RESSHIFT_OSEDIFF_DIR`` to a folder holding those two folders (for instance the
``preset/datasets`` folder of a clone). Without it every test here skips with that reason. The HR/LR
images are taken from there, or, when a folder lacks ``test_HR/``, from where the card's set is
found (data mirror or cache).

Default run: the first :data:`DEFAULT_LIMIT` images of each set (a few seconds); the ``slow`` test
scores all 193 images and also compares the set means with the log's averages.

Tolerances (absolute, per image; what was measured on this project's machine, CPU, pyiqa 0.1.16,
against the log written on CUDA, in the comments):

* PSNR: ``psnr-y-float`` with pyiqa's 1e-8 added to the MSE
  (:func:`resshift.reports.iqa_log.pyiqa_psnr_from_float_y`), 2e-5 dB (measured max 3.6e-6 RealSR,
  9.5e-6 DRealSR; the log has 6 decimals). Without that term the difference reaches 2.5e-3 dB on
  DRealSR (a 47.6 dB image).
* SSIM: ``ssim-pyiqa``, 5e-6 (measured max 1.2e-6 RealSR, 1.1e-6 DRealSR: the log's rounding plus
  Y pixels at a rounding tie that pyiqa's float32 Y puts on the other side).
* NIQE: 0.05 (measured max 0.018 on both sets, medians 5e-4 and 3e-4; the log was computed on CUDA);
  set mean 0.005 (measured 1e-4, 2e-4).
* LPIPS, DISTS, CLIPIQA, MANIQA: 2e-3; MUSIQ: 0.05. Not measured: their weights are not on this
  project's machine, so these comparisons skip there with the reason ``resshift metrics check``
  gives; they run wherever the weights are.
* FID (``slow`` test only: a set value, compared with the log's folder FID): 0.5, not measured either
  (the FID Inception file is not on this project's machine); the log was written on CUDA, where cuDNN
  may compute the Inception convolutions in TF32.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd
import pytest

from resshift.cli import main as cli_main
from resshift.data import load_card
from resshift.data.sources import DatasetNotAvailable, locate
from resshift.reports.iqa_log import OSEDIFF_COLUMNS, IqaLogSection, pyiqa_psnr_from_float_y, read_iqa_log
from resshift.runfolder import RunFolder

OSEDIFF_ENV = "RESSHIFT_OSEDIFF_DIR"
SETS = {"stablesr-realsr-crop": ("benchmark_realsr", 100), "stablesr-drealsr-crop": ("benchmark_drealsr", 93)}
DEFAULT_LIMIT = 4
TOLERANCE = {"PSNR": 2e-5, "SSIM": 5e-6, "NIQE": 0.05, "LPIPS": 2e-3, "DISTS": 2e-3, "CLIPIQA": 2e-3,
             "MUSIQ": 0.05, "MANIQA": 2e-3}
MEAN_TOLERANCE = {"NIQE": 0.005}  # others: the per-image tolerance (the log's averages have 4 decimals)
FID_TOLERANCE = 0.5  # absolute, on the whole set (the log gives one FID per folder)
#: Our metrics scored besides the log's: the rounded-Y conventions, to report how far they are.
EXTRA_METRICS = ("psnr", "ssim")


def _osediff_root() -> Path:
    value = os.environ.get(OSEDIFF_ENV)
    if not value:
        pytest.skip(f"OSEDiff's shipped benchmark folders not given: set {OSEDIFF_ENV} to a folder holding "
                    "benchmark_realsr/ and benchmark_drealsr/ (preset/datasets of github.com/cswry/OSEDiff @ fcc4f09)")
    root = Path(value).expanduser()
    if not root.is_dir():
        pytest.skip(f"{OSEDIFF_ENV}={root} is not a folder")
    return root


def _set_files(dataset: str) -> tuple[Path, Path, Path]:
    """(SR folder, log file, root of the card's LR/HR) of one set, or skip naming what is missing."""
    folder = _osediff_root() / SETS[dataset][0]
    sr_dir = folder / "results_osediff"
    logs = sorted(glob.glob(str(sr_dir / "metrics" / "test_METRICS_*.log")))
    if not sr_dir.is_dir() or not logs:
        pytest.skip(f"{sr_dir}: OSEDiff's outputs or their metrics/test_METRICS_*.log not found")
    if (folder / "test_HR").is_dir():
        hr_root = folder
    else:
        try:
            hr_root = locate(load_card(dataset))
        except DatasetNotAvailable as err:
            pytest.skip(f"{folder / 'test_HR'} not found and the card's set is not available: {err}")
    return sr_dir, Path(logs[-1]), hr_root


_SCORED: dict[tuple[str, int | None], tuple[pd.DataFrame, dict, IqaLogSection]] = {}


def _scored(dataset: str, limit: int | None, out: Path) -> tuple[pd.DataFrame, dict, IqaLogSection]:
    """Score OSEDiff's outputs with ``resshift score`` (every log metric and :data:`EXTRA_METRICS`);
    return (per-image table indexed by name, summary, the log's section)."""
    key = (dataset, limit)
    if key not in _SCORED:
        sr_dir, log_path, hr_root = _set_files(dataset)
        metrics = [m for m, _ in OSEDIFF_COLUMNS.values()] + list(EXTRA_METRICS)
        if limit is None:  # the log's FID is over the whole folder: only the whole set compares with it
            metrics.append("fid")
        args = ["score", str(sr_dir), "--dataset", dataset, "--root", str(hr_root), "--metrics", ",".join(metrics),
                "--label", "OSEDiff", "--nfe", "1", "--source", "cswry/OSEDiff@fcc4f09 results_osediff",
                "-o", str(out)]
        if limit is not None:
            args += ["--limit", str(limit)]
        assert cli_main(args) == 0
        folder = RunFolder(out)
        per_image = folder.per_image().set_index("name")
        sections = read_iqa_log(log_path)
        assert list(sections) == ["results_osediff"], log_path
        _SCORED[key] = (per_image, folder.summary(), sections["results_osediff"])
    return _SCORED[key]


def _compare(per_image: pd.DataFrame, summary: dict, section: IqaLogSection, column: str) -> pd.Series:
    """Per-image |ours - log| of one log column (ours converted to pyiqa's PSNR for PSNR); skips when
    our metric is unavailable here, with its reason."""
    metric = OSEDIFF_COLUMNS[column][0]
    if metric in summary.get("unavailable", {}):
        pytest.skip(f"{metric} unavailable here: {summary['unavailable'][metric]}")
    assert (per_image["status"] == "ok").all()
    ours = per_image[metric].astype(float)
    if column == "PSNR":
        ours = ours.map(pyiqa_psnr_from_float_y)
    logged = pd.Series(section.column(column)).reindex(ours.index)
    assert not logged.isna().any(), f"images missing from the log: {list(logged[logged.isna()].index)}"
    return (ours - logged).abs()


@pytest.mark.parametrize("column", list(OSEDIFF_COLUMNS))
@pytest.mark.parametrize("dataset", list(SETS))
def test_first_images_match_osediff_log(dataset, column, tmp_path_factory):
    per_image, summary, section = _scored(dataset, DEFAULT_LIMIT, tmp_path_factory.mktemp("score") / "run")
    assert len(per_image) == DEFAULT_LIMIT
    diff = _compare(per_image, summary, section, column)
    worst = diff.idxmax()
    assert diff.max() <= TOLERANCE[column], (
        f"{dataset} {column}: |ours - log| = {diff.max():.3g} on {worst} (line {section.lines[worst]}), "
        f"tolerance {TOLERANCE[column]}")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(SETS))
def test_whole_sets_match_osediff_log_and_averages(dataset, tmp_path_factory, capsys):
    per_image, summary, section = _scored(dataset, None, tmp_path_factory.mktemp("score") / "run")
    count = SETS[dataset][1]
    assert len(per_image) == count == len(section.images) and summary["n_ok"] == count
    lines, failures, skipped = [], [], []
    for column, (metric, _) in OSEDIFF_COLUMNS.items():
        if metric in summary.get("unavailable", {}):
            skipped.append(f"{column} ({metric}): {summary['unavailable'][metric]}")
            continue
        diff = _compare(per_image, summary, section, column)
        ours_mean = (per_image[metric].astype(float).map(pyiqa_psnr_from_float_y) if column == "PSNR"
                     else per_image[metric].astype(float)).mean()
        mean_gap = abs(ours_mean - section.averages[column])
        lines.append(f"{column:8} {metric:13} max|diff| {diff.max():.3g} ({diff.idxmax()})  "
                     f"mean ours {ours_mean:.4f} log {section.averages[column]:.4f}")
        if diff.max() > TOLERANCE[column]:
            failures.append(f"{column}: max |ours - log| {diff.max():.3g} on {diff.idxmax()} > {TOLERANCE[column]}")
        if mean_gap > 5e-5 + MEAN_TOLERANCE.get(column, TOLERANCE[column]):
            failures.append(f"{column}: set mean {ours_mean:.6f} vs the log's {section.averages[column]}")
    if "fid" in summary.get("unavailable", {}):
        skipped.append(f"FID (fid): {summary['unavailable']['fid']}")
    elif section.fid is not None:
        fid = summary["set_metrics"]["fid"]
        assert fid["n_images"] == count
        lines.append(f"FID      fid           ours {fid['value']:.6f} log {section.fid:.6f} "
                     f"(set value, {count} images)")
        if abs(fid["value"] - section.fid) > FID_TOLERANCE:
            failures.append(f"FID: {fid['value']:.6f} vs the log's {section.fid} (tolerance {FID_TOLERANCE})")
    # the rounded-Y conventions are not what the log holds: how far they are, for the record
    for metric, column in zip(EXTRA_METRICS, ("PSNR", "SSIM"), strict=True):
        gap = (per_image[metric].astype(float) - pd.Series(section.column(column))).abs()
        lines.append(f"{column:8} {metric:13} max|diff| {gap.max():.3g} ({gap.idxmax()})  (rounded Y; not the log's)")
    with capsys.disabled():
        print(f"\n{dataset}: {count} images vs {section.folder} log\n  " + "\n  ".join(lines)
              + "".join(f"\n  skipped {s}" for s in skipped))
    assert not failures, "; ".join(failures)
    assert (per_image["ssim"] - pd.Series(section.column("SSIM"))).abs().max() > 1e-3  # why ssim-pyiqa exists
