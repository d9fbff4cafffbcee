"""The held-out evaluation set is built on first use; runs on an unavailable set are skipped, not failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from run_folders import run_folder

from resshift.data import open_dataset
from resshift.data.cards import load_card
from resshift.data.sources import DatasetNotAvailable
from resshift.paths import CACHE_ENV, PROJECT_ROOT, SHARED_ENV


def _small_heldout_card(count: int = 3):
    card = load_card("imagenet-heldout")
    return card.with_overrides(count=count, builder={**card.builder, "count": count})


def test_heldout_set_is_built_on_first_use_and_reused(shared_datasets: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    ds = open_dataset(_small_heldout_card(3))
    assert len(ds) == 3
    item = ds.read(ds.items[0].name)
    assert tuple(item.lr.shape[-2:]) == (64, 64) and tuple(item.hr.shape[-2:]) == (256, 256)
    record = json.loads((tmp_path / "datasets" / "imagenet-heldout" / "build.json").read_text())
    assert record["count"] == 3 and record["degradation"] == "testing" and len(record["files"]) == 3
    lq = sorted((tmp_path / "datasets" / "imagenet-heldout" / "lq").glob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in lq]
    assert len(open_dataset(_small_heldout_card(3))) == 3  # found in the cache, not rebuilt
    assert [p.stat().st_mtime_ns for p in lq] == stamps


def test_unavailable_heldout_set_names_both_failures(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "no-shared"))
    with pytest.raises(DatasetNotAvailable) as err:
        open_dataset("imagenet-heldout")
    msg = str(err.value)
    assert "imagenet-heldout" in msg and "building it failed" in msg and "held-out image(s) missing" in msg


def _app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), CACHE_ENV: str(tmp_path / "cache"),
           SHARED_ENV: str(tmp_path / "no-shared")}
    cmd = [sys.executable, "-m", "resshift.runner.app", *args, "limit=2", "metrics=[psnr]", f"run.root={tmp_path}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_sweep_skips_an_unavailable_set_and_reports_it(tmp_path: Path) -> None:
    proc = _app(tmp_path, "-m", "method=bicubic", "dataset=embedded,imagenet-heldout", "skip_unavailable=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = json.loads((run_folder(tmp_path, "bicubic", "imagenet-heldout") / "skipped.json").read_text())
    assert skipped["dataset"] == "imagenet-heldout" and "building it failed" in skipped["reason"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Skipped runs" in report and "bicubic on imagenet-heldout:" in report
    assert (tmp_path / "report" / "results.csv").read_text().count("\n") == 2  # header + the embedded run


def test_unavailable_set_fails_the_run_by_default(tmp_path: Path) -> None:
    proc = _app(tmp_path, "method=bicubic", "dataset=imagenet-heldout")
    assert proc.returncode != 0
    assert "imagenet-heldout" in proc.stderr and "building it failed" in proc.stderr
    assert not list(tmp_path.glob("bicubic__imagenet-heldout__*/skipped.json"))


def test_sweep_over_embedded_and_heldout_reports_both(shared_datasets: Path, tmp_path: Path) -> None:
    """The default sweep's two data sets (here with bicubic only): one table each, one visual grid each."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), CACHE_ENV: str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "resshift.runner.app", "-m", "method=bicubic", "dataset=embedded,imagenet-heldout",
           "skip_unavailable=true", "limit=2", "metrics=[psnr]", f"run.root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / "report"
    text = (report / "report.md").read_text()
    assert "### embedded-bicubic-x4" in text and "### small-models-imagenet-heldout" in text
    assert "Skipped runs" not in text
    assert (report / "visual_comparison.png").is_file()
    assert (report / "visual_comparison_imagenet-heldout.png").is_file()
