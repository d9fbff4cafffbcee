from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from run_folders import run_folder

from resshift.paths import PROJECT_ROOT
from resshift.runfolder import RowStore, RunFolder
from resshift.runner.app import per_seed_configs, seed_list, spec_from_config
from resshift.runner.run import RunSpec, run


def _spec(tmp_path: Path, **kw) -> RunSpec:
    base = dict(run_dir=tmp_path / "run", method="bicubic", dataset="embedded", metrics=["psnr", "ssim"],
                warmup=1)
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSpec, dict]:
    spec = _spec(tmp_path_factory.mktemp("emb"), metrics=["psnr", "ssim", "lpips-vgg"])
    return spec, run(spec)


def test_end_to_end_on_embedded_set(embedded_run: tuple[RunSpec, dict]) -> None:
    spec, summary = embedded_run
    assert summary["n_ok"] == 8 and summary["n_failed"] == 0
    assert summary["protocol_id"] == "embedded-bicubic-x4"
    assert len(list(spec.sr_dir.glob("*.png"))) == 8
    per_image = pd.read_csv(spec.run_dir / "per_image.csv")
    assert set(per_image["status"]) == {"ok"}
    # Bicubic x4 of a bicubic-x4-downscaled photo: PSNR-Y in the usual 20-40 dB band, SSIM in (0, 1).
    assert 20 < summary["metrics"]["psnr"]["mean"] < 40
    assert 0 < summary["metrics"]["ssim"]["mean"] < 1
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(per_image["psnr"].mean())
    assert (spec.run_dir / "summary.md").read_text().count("| psnr ↑") == 1
    assert summary["timing"]["n_images"] >= 7  # the warm-up call is not timed
    # provenance on every result row
    assert set(per_image["protocol_id"]) == {"embedded-bicubic-x4"}
    assert per_image["card_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert per_image["packages"].str.contains("torch=").all()
    assert "git_commit" in per_image.columns and "checkpoint_sha256" in per_image.columns


def test_missing_weights_are_reported_not_invented(embedded_run: tuple[RunSpec, dict]) -> None:
    spec, summary = embedded_run
    if "lpips-vgg" not in summary["unavailable"]:
        pytest.skip("lpips-vgg weights are present on this machine")
    assert "lpips-vgg" not in summary["metrics"]
    assert "not found" in summary["unavailable"]["lpips-vgg"]
    per_image = pd.read_csv(spec.run_dir / "per_image.csv")
    assert "lpips-vgg" not in per_image.columns
    assert "lpips-vgg | unavailable" in (spec.run_dir / "summary.md").read_text()


def test_per_image_psnr_matches_metric_on_files(embedded_run: tuple[RunSpec, dict]) -> None:
    from resshift.data import open_dataset
    from resshift.io import read_image
    from resshift.metrics import build_metrics

    spec, _ = embedded_run
    metrics, _ = build_metrics(["psnr"])
    sample = open_dataset("embedded").read("coffee")
    sr = read_image(spec.sr_dir / "coffee.png")
    expected = float(metrics["psnr"].compute(sr[None], sample.hr[None])[0])
    row = next(r for r in spec.folder.rows("metrics") if r["name"] == "coffee")
    assert row["values"]["psnr"] == pytest.approx(expected, abs=1e-9)


def test_rerun_resumes_without_duplicates(tmp_path: Path) -> None:
    spec = _spec(tmp_path, limit=4)
    first = run(spec)
    sr_file = next(spec.records_dir.glob("sr-*.jsonl"))
    m_file = next(spec.records_dir.glob("metrics-*.jsonl"))
    lines = sr_file.read_text().splitlines()
    # Simulate a kill -9 in the middle of writing the last row, and lose the last metrics row too.
    sr_file.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    m_lines = m_file.read_text().splitlines()
    m_file.write_text("\n".join(m_lines[:-1]) + "\n")
    second = run(spec)
    assert second["counts"]["sr"] == {"done": 1, "skipped": 3, "failed": 0}
    names = [json.loads(x)["name"] for x in sr_file.read_text().splitlines()]
    assert sorted(names) == sorted(set(names)) and len(names) == 4
    assert second["metrics"]["psnr"]["mean"] == pytest.approx(first["metrics"]["psnr"]["mean"], abs=1e-12)
    third = run(spec)
    assert third["counts"]["sr"]["done"] == 0 and third["counts"]["metrics"]["done"] == 0


def test_bad_image_is_recorded_and_run_goes_on(tmp_path: Path) -> None:
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(lr_dir / f"img{i}.png")
    (lr_dir / "img1.png").write_bytes(b"garbage")
    spec = _spec(tmp_path, dataset="folder", dataset_params={"root": str(lr_dir)}, metrics=["psnr"])
    summary = run(spec)
    assert summary["n_ok"] == 2 and summary["n_failed"] == 1
    failed = [r for r in spec.folder.rows("sr") if r["status"] == "failed"]
    assert failed[0]["name"] == "img1" and "img1.png" in failed[0]["error"]
    assert summary["metrics"] == {}  # PSNR needs HR; an LR-only set has none
    assert (spec.sr_dir / "img2.png").is_file()


def test_hydra_config_composes_with_overrides(tmp_path: Path) -> None:
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=["method=bicubic", "dataset=embedded", "limit=2", "metrics=[psnr]"])
    spec = spec_from_config(cfg, tmp_path)
    assert (spec.method, spec.dataset, spec.limit, list(spec.metrics)) == ("bicubic", "embedded", 2, ["psnr"])
    assert re.fullmatch(r"bicubic__embedded__[0-9a-f]{8}", cfg.run.name)
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        same = compose("config", overrides=["method=bicubic", "dataset=embedded", "limit=2", "metrics=[psnr,ssim]"])
        seed = compose("config", overrides=["method=bicubic", "dataset=embedded", "limit=2", "seed=7"])
    assert same.run.name == cfg.run.name  # the metric list is not part of the identity
    assert seed.run.name != cfg.run.name


def test_sharded_run_equals_single_process(tmp_path: Path) -> None:
    """Two gloo processes under torchrun split the images; merged rows equal a one-process run."""
    single = _spec(tmp_path / "single", limit=5, metrics=["psnr"])
    run(single)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29531",
           "-m", "resshift.runner.app", "limit=5", "metrics=[psnr]", "report=false",
           f"run.root={tmp_path / 'sharded'}", "hardware.warmup=0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = run_folder(tmp_path / "sharded", "bicubic", "embedded")
    assert sorted(p.name for p in (run_dir / "records").glob("sr-*.jsonl")) == ["sr-0-of-2.jsonl", "sr-1-of-2.jsonl"]
    shard0 = {r["name"] for r in RowStore(run_dir / "records" / "sr-0-of-2.jsonl").rows()}
    shard1 = {r["name"] for r in RowStore(run_dir / "records" / "sr-1-of-2.jsonl").rows()}
    assert not shard0 & shard1 and len(shard0 | shard1) == 5
    merged = {r["name"]: r["values"]["psnr"] for r in RunFolder(run_dir).rows("metrics")}
    ref = {r["name"]: r["values"]["psnr"] for r in single.folder.rows("metrics")}
    assert merged == ref
    counts = json.loads((run_dir / "summary.json").read_text())["counts"]  # both shards' images, not rank 0's
    assert counts["sr"] == counts["metrics"] == {"done": 5, "skipped": 0, "failed": 0}
    for name in ref:
        a = np.asarray(Image.open(single.sr_dir / f"{name}.png"))
        b = np.asarray(Image.open(run_dir / "sr" / f"{name}.png"))
        assert np.array_equal(a, b)
    assert json.loads((run_dir / "summary.json").read_text())["n_ok"] == 5


def test_eval_app_writes_run_and_report(tmp_path: Path) -> None:
    """What `nox -s eval` runs: the Hydra app, then the report of the run."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "resshift.runner.app", "limit=3", "metrics=[psnr,ssim]", f"run.root={tmp_path}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = run_folder(tmp_path, "bicubic", "embedded") / "report"
    assert "| bicubic | 0 |" in (report / "tables.md").read_text()
    for name in ["report.md", "per_image_distributions.png", "visual_comparison.png", "tables.tex"]:
        assert (report / name).is_file(), name


def test_multirun_writes_one_report_over_the_sweep(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "resshift.runner.app", "-m", "method=bicubic", "seed=1,2", "limit=2",
           "metrics=[psnr]", f"run.root={tmp_path}", "run.name=bicubic-seed${seed}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "report" / "results.csv").read_text()
    assert table.count("\n") == 3  # header + one row per run of the sweep
    assert (tmp_path / "bicubic-seed1" / "summary.json").is_file()
    assert (tmp_path / "bicubic-seed2" / "summary.json").is_file()
    assert not (tmp_path / "bicubic-seed1" / "report").exists()  # no per-run report inside a sweep
    # the two runs differ only in their seed: bicubic is deterministic, so its seed stability is exactly 0
    stability = pd.read_csv(tmp_path / "report" / "seed_stability.csv")
    assert list(stability["metric"]) == ["psnr"] and list(stability["seeds"]) == ["1;2"]
    assert stability["l_std"].iloc[0] == 0.0 and stability["g_std"].iloc[0] == 0.0
    assert stability["n_images"].iloc[0] == 2


def _compose(overrides: list[str]):
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_seeds_give_each_seed_the_folder_of_that_seed_alone() -> None:
    base = ["method=bicubic", "dataset=embedded", "limit=2"]
    plain, seven = _compose(base), _compose([*base, "seed=7"])
    # `seeds` in the config moved no run without it: the folder names are those from before it existed
    assert (plain.run.name, seven.run.name) == ("bicubic__embedded__b8bf3d4e", "bicubic__embedded__3bb4fd01")
    both = _compose([*base, "seeds=[7,12345]"])
    jobs = per_seed_configs(both, seed_list(both.seeds))
    assert [run_dir.name for _, run_dir in jobs] == [seven.run.name, plain.run.name]
    assert both.run.name == seven.run.name  # the folder Hydra opens is the first seed's run folder
    assert OmegaConf.to_container(jobs[0][0], resolve=True) == OmegaConf.to_container(seven, resolve=True)
    assert [spec_from_config(cfg, run_dir).seed for cfg, run_dir in jobs] == [7, 12345]
    templated = _compose([*base, "seeds=[1,2]", "run.name=b-${seed}"])
    assert [run_dir.name for _, run_dir in per_seed_configs(templated, [1, 2])] == ["b-1", "b-2"]
    with pytest.raises(ValueError, match="one folder for several seeds"):
        per_seed_configs(_compose([*base, "seeds=[1,2]", "run.name=fixed"]), [1, 2])
    assert seed_list(None) is None and seed_list(3) == [3]
    for bad, message in (([], "no seed"), ([1, 1], "twice"), (["x"], "integers"), ([True], "integers")):
        with pytest.raises(ValueError, match=message):
            seed_list(bad)


def test_seeds_end_to_end_with_a_stochastic_method(tmp_path: Path) -> None:
    """`seeds=[1,2]` with the shipped small SR3 (2 DDIM steps, 2 images): one run folder per seed, one report
    whose seed stability matches the folders' per-image rows; each folder is that seed's and resumes alone."""
    args = ["method=small-sr3", "method.params.steps=2", "limit=2", "metrics=[psnr]", "hardware.warmup=0",
            f"run.root={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "resshift.runner.app", *args, "seeds=[1,2]"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [_compose([*args, f"seed={seed}"]).run.name for seed in (1, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no folder besides the two runs
    per_seed = [pd.read_csv(tmp_path / name / "per_image.csv").set_index("name")["psnr"] for name in names]
    assert list(per_seed[0].index) == list(per_seed[1].index) and len(per_seed[0]) == 2
    values = np.stack([s.to_numpy() for s in per_seed], axis=1)
    assert not np.array_equal(values[:, 0], values[:, 1])  # the seed changes the outputs
    row = pd.read_csv(tmp_path / names[0] / "report" / "seed_stability.csv").iloc[0]
    assert (row["metric"], row["seeds"], row["n_images"], row["n_excluded"]) == ("psnr", "1;2", 2, 0)
    assert row["l_std"] == pytest.approx(np.std(values, axis=1, ddof=1).mean(), rel=1e-9) and row["l_std"] > 0
    assert row["g_std"] == pytest.approx(np.std(values.mean(axis=0), ddof=1), rel=1e-9)
    assert "## Seed stability" in (tmp_path / names[0] / "report" / "report.md").read_text()
    # seed 2 alone is the same configuration: it resumes in its folder with nothing left to do
    summary = run(spec_from_config(_compose([*args, "seed=2"]), tmp_path / names[1]))
    assert summary["counts"]["sr"] == {"done": 0, "skipped": 2, "failed": 0}
    assert len(RunFolder(tmp_path / names[1]).rows("sr")) == 2
