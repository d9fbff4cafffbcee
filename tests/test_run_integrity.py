"""Results belong to their configuration, and nothing broken is scored (one test per failure mode)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image
from run_folders import run_folder

from resshift.cli import main as cli_main
from resshift.io import read_image, write_png
from resshift.methods.base import SRMethod
from resshift.methods.params import MethodParams
from resshift.methods.registry import _FACTORIES, register_method
from resshift.paths import PROJECT_ROOT
from resshift.pipeline import super_resolve_folder
from resshift.reports.compare import compare_results, load_results
from resshift.runfolder import RunFolder
from resshift.runner.app import spec_from_config
from resshift.runner.identity import RunFolderBusy, RunIdentityError, lock_run_folder
from resshift.runner.run import RunSpec, run


class NaNOnSecond(SRMethod):
    """Bicubic x4, but the image whose LR mean is largest comes out as NaN (an fp16 overflow)."""

    name = "test-nan"
    nfe = 0

    def upscale(self, lr, generators=None):
        out = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
        means = lr.flatten(1).mean(1)
        out[means > 0.6] = float("nan")
        return out


if "test-nan" not in _FACTORIES:
    register_method("test-nan", MethodParams)(lambda params: NaNOnSecond())


def _paired(root: Path, sizes: dict[str, int], seed: int = 0, exact: bool = False) -> Path:
    """A paired folder (lr/, hr/) with LR of the given sides; ``exact``: HR = bicubic x4 of LR."""
    rng = np.random.default_rng(seed)
    for name, side in sizes.items():
        lr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        write_png(root / "lr" / f"{name}.png", lr)
        if exact:
            up = F.interpolate(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255, scale_factor=4,
                               mode="bicubic", align_corners=False).clamp(0, 1)[0]
            write_png(root / "hr" / f"{name}.png", up)
        else:
            write_png(root / "hr" / f"{name}.png", rng.integers(0, 256, (4 * side, 4 * side, 3), dtype=np.uint8))
    return root


def _spec(run_dir: Path, root: Path, **kw) -> RunSpec:
    base = dict(run_dir=run_dir, method="bicubic", dataset="paired-folder", dataset_params={"root": str(root)},
                metrics=["psnr", "ssim"], warmup=0)
    base.update(kw)
    return RunSpec(**base)


def _app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "resshift.runner.app", *args, f"run.root={tmp_path / 'runs'}", "report=false",
           "hardware.warmup=0"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


# 1. Resume ignores what changed -------------------------------------------------------------------------


def test_each_configuration_gets_its_own_folder(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"

    def name(*overrides: str) -> str:
        with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
            return compose("config", overrides=["method=small-resshift", *overrides]).run.name

    base = name("dataset=paired-folder", f"dataset.params.root={a}", "seed=1")
    others = [
        name("dataset=paired-folder", f"dataset.params.root={a}", "seed=2"),
        name("dataset=paired-folder", f"dataset.params.root={b}", "seed=1"),
        name("dataset=paired-folder", f"dataset.params.root={a}", "seed=1", "method.params.chop_stride=8"),
        name("dataset=paired-folder", f"dataset.params.root={a}", "seed=1", "limit=3"),
        name("dataset=paired-folder", f"dataset.params.root={a}", "seed=1", "select=[img1]"),
    ]
    assert base.startswith("small-resshift-15__paired-folder__")
    assert len({base, *others}) == 6
    assert name("dataset=paired-folder", f"dataset.params.root={a}", "seed=1", "metrics=[psnr]") == base


def test_resume_refuses_another_configuration(tmp_path):
    root = _paired(tmp_path / "A", {"img1": 8, "img2": 8})
    run_dir = tmp_path / "run"
    first = run(_spec(run_dir, root, method="small-resshift", seed=1))
    png = (run_dir / "sr" / "img1.png").read_bytes()
    for change in ({"seed": 2}, {"dataset_params": {"root": str(_paired(tmp_path / "B", {"img1": 8}, seed=5))}},
                   {"method_params": {"chop_stride": 8}}, {"limit": 1}):
        with pytest.raises(RunIdentityError, match="another configuration") as err:
            run(_spec(run_dir, root, method="small-resshift", **{"seed": 1, **change}))
        key = next(iter(change))
        assert {"seed": "seed", "dataset_params": "dataset.params.root", "method_params": "chop_stride",
                "limit": "images.limit"}[key] in str(err.value)
    assert (run_dir / "sr" / "img1.png").read_bytes() == png  # nothing rewritten
    again = run(_spec(run_dir, root, method="small-resshift", seed=1))  # same configuration: resumes
    assert again["counts"]["sr"] == {"done": 0, "skipped": 2, "failed": 0}
    assert again["metrics"]["psnr"]["mean"] == first["metrics"]["psnr"]["mean"]
    assert again["fingerprint"] == first["fingerprint"]


def test_two_folders_with_one_file_name_are_two_runs(tmp_path):
    a = _paired(tmp_path / "A", {"img1": 8}, seed=1)
    b = _paired(tmp_path / "B", {"img1": 8}, seed=2)
    for root in (a, b):
        proc = _app(tmp_path, "method=bicubic", "dataset=paired-folder", f"dataset.params.root={root}",
                    "metrics=[psnr]")
        assert proc.returncode == 0, proc.stderr[-2000:]
    folders = sorted((tmp_path / "runs").glob("bicubic__paired-folder__*"))
    assert len(folders) == 2
    psnrs = {json.loads((f / "summary.json").read_text())["metrics"]["psnr"]["mean"] for f in folders}
    assert len(psnrs) == 2


# 2. Non-finite outputs ----------------------------------------------------------------------------------


def _nan_inputs(root: Path) -> Path:
    write_png(root / "lr" / "dark.png", np.full((8, 8, 3), 40, np.uint8))
    write_png(root / "lr" / "light.png", np.full((8, 8, 3), 220, np.uint8))
    for name in ("dark", "light"):
        write_png(root / "hr" / f"{name}.png", np.full((32, 32, 3), 100, np.uint8))
    return root


def test_non_finite_output_fails_the_image_in_the_runner(tmp_path):
    root = _nan_inputs(tmp_path / "in")
    spec = _spec(tmp_path / "run", root, method="test-nan", metrics=["psnr"])
    summary = run(spec)
    assert summary["n_ok"] == 1 and summary["n_failed"] == 1
    assert "3072 NaN" in summary["failed"]["light"]  # every one of the 3 x 32 x 32 values
    assert not (spec.sr_dir / "light.png").exists()
    assert summary["metrics"]["psnr"]["n"] == 1


def test_non_finite_output_fails_the_image_in_resshift_sr(tmp_path, capsys):
    root = _nan_inputs(tmp_path / "in")
    report = super_resolve_folder(root / "lr", tmp_path / "out", "test-nan", progress=False)
    assert [p.name for p in report.written] == ["dark.png"]
    assert [p.name for p, _ in report.failures] == ["light.png"] and "NaN" in report.failures[0][1]
    assert not (tmp_path / "out" / "light.png").exists()
    code = cli_main(["sr", str(root / "lr"), "-o", str(tmp_path / "cli"), "--method", "test-nan", "--no-progress"])
    assert code == 1 and "non-finite output" in capsys.readouterr().err


# 3. Metrics fail one at a time --------------------------------------------------------------------------


def test_one_failing_metric_keeps_the_others(tmp_path):
    root = _paired(tmp_path / "in", {"big": 12, "tiny": 2})  # tiny: 8x8 SR, too small for SSIM's window
    spec = _spec(tmp_path / "run", root, metrics=["psnr", "ssim", "hf-ratio"])
    summary = run(spec)
    assert summary["n_ok"] == 2 and summary["n_failed"] == 0
    assert summary["metrics"]["psnr"]["n"] == 2 and summary["metrics"]["hf-ratio"]["n"] == 2
    assert summary["metrics"]["ssim"]["n"] == 1 and summary["metrics"]["ssim"]["n_missing"] == 1
    (reason,) = summary["metrics"]["ssim"]["missing"]
    assert "11x11" in reason
    table = pd.read_csv(spec.run_dir / "per_image.csv").set_index("name")
    assert not pd.isna(table.loc["tiny", "psnr"]) and pd.isna(table.loc["tiny", "ssim"])
    assert "ssim" in table.loc["tiny", "metric_errors"]
    assert "11x11" in (spec.run_dir / "summary.md").read_text()


# 4. Infinite PSNR ---------------------------------------------------------------------------------------


def _strict(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"{path}: {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_identical_images_keep_every_file_strict_and_compare_passes(tmp_path):
    root = _paired(tmp_path / "in", {"same": 8, "other": 8}, exact=True)
    spec = _spec(tmp_path / "run", root)
    summary = run(spec)
    assert summary["metrics"]["psnr"]["mean"] == 100.0  # both reproduced exactly: the cap, never inf
    _strict(spec.run_dir / "summary.json")
    for path in (spec.run_dir / "records").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line, parse_constant=pytest.fail)
    table = load_results(spec.run_dir)
    assert not compare_results(table, table).failed
    assert cli_main(["compare", str(spec.run_dir), str(spec.run_dir)]) == 0


# 5. Failed images are part of the result ----------------------------------------------------------------


def test_compare_fails_on_fewer_or_other_images(tmp_path):
    root = _paired(tmp_path / "in", {f"img{i}": 8 for i in range(8)})
    full = _spec(tmp_path / "full", root, metrics=["psnr"])
    run(full)
    broken = tmp_path / "in2"
    _paired(broken, {f"img{i}": 8 for i in range(8)})
    (broken / "lr" / "img3.png").write_bytes(b"not a png")
    lossy = _spec(tmp_path / "lossy", broken, metrics=["psnr"])
    summary = run(lossy)
    assert (summary["n_ok"], summary["n_failed"]) == (7, 1)
    base = load_results(full.run_dir)
    new = load_results(lossy.run_dir)
    new["fingerprint"] = base["fingerprint"]  # same label; only the images differ
    result = compare_results(base, new, max_runtime_ratio=None)
    assert result.failed
    assert {"FEWER IMAGES", "OTHER IMAGES"} <= set(result.table["status"])
    changed = load_results(lossy.run_dir)
    assert "CONFIG CHANGED" in set(compare_results(base, changed, max_runtime_ratio=None).table["status"])


# 6. One SR loop ------------------------------------------------------------------------------------------


def test_resshift_sr_and_eval_write_identical_pngs(tmp_path):
    root = tmp_path / "in"
    rng = np.random.default_rng(3)
    for name in ("Canon/001", "Nikon/001", "solo"):
        write_png(root / f"{name}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    code = cli_main(["sr", str(root), "-o", str(tmp_path / "cli"), "--method", "small-resshift", "--recursive",
                     "--seed", "9", "--no-progress"])
    assert code == 0
    spec = RunSpec(run_dir=tmp_path / "run", method="small-resshift", dataset="folder",
                   dataset_params={"root": str(root), "recursive": True}, metrics=[], seed=9, warmup=0)
    assert run(spec)["n_ok"] == 3
    for name in ("Canon/001", "Nikon/001", "solo"):  # sub-folders kept: the two 001 do not collide
        assert (tmp_path / "cli" / f"{name}.png").read_bytes() == (spec.sr_dir / f"{name}.png").read_bytes()
    assert (tmp_path / "cli" / "Canon/001.png").read_bytes() != (tmp_path / "cli" / "Nikon/001.png").read_bytes()


# 8. Exit codes -------------------------------------------------------------------------------------------


def test_runner_exits_non_zero_when_images_failed(tmp_path):
    root = _paired(tmp_path / "in", {"a": 8, "b": 8})
    (root / "lr" / "b.png").write_bytes(b"garbage")
    proc = _app(tmp_path, "method=bicubic", "dataset=paired-folder", f"dataset.params.root={root}",
                "metrics=[psnr]")
    assert proc.returncode == 1
    assert "1 of 2 images failed" in proc.stderr
    run_dir = run_folder(tmp_path / "runs", "bicubic", "paired-folder")
    assert {r["name"]: r["status"] for r in RunFolder(run_dir).rows("sr")} == {"a": "ok", "b": "failed"}


# 9. Locks and temporary files ---------------------------------------------------------------------------


def test_a_second_process_cannot_enter_a_busy_run_folder(tmp_path):
    with lock_run_folder(tmp_path):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            with lock_run_folder(tmp_path):
                pass
        with pytest.raises(RunFolderBusy):  # a torchrun rank cannot join a single-process run either
            with lock_run_folder(tmp_path, rank=0, world_size=2):
                pass
    with lock_run_folder(tmp_path, rank=0, world_size=2), lock_run_folder(tmp_path, rank=1, world_size=2):
        pass  # the shards of one run work side by side
    with lock_run_folder(tmp_path):
        pass  # released


def test_concurrent_writers_of_one_png_do_not_collide(tmp_path):
    errors: list[BaseException] = []
    image = torch.rand(3, 64, 64)

    def write() -> None:
        try:
            for _ in range(20):
                write_png(tmp_path / "x.png", image)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and read_image(tmp_path / "x.png").shape == (3, 64, 64)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary left behind


# 10. Numeric names ---------------------------------------------------------------------------------------


def test_numeric_image_names_select(tmp_path):
    root = _paired(tmp_path / "in", {"100007": 8, "0014": 8, "2": 8})
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=paired-folder", f"dataset.params.root={root}",
                                           "select=[100007,0014]", "metrics=[psnr]"])
    spec = spec_from_config(cfg, tmp_path / "run")
    assert spec.select == ["100007", "0014"]  # the parser's number 100007, as a string
    summary = run(spec)
    assert summary["n_ok"] == 2
    assert sorted(r["name"] for r in spec.folder.rows("sr")) == ["0014", "100007"]
    from resshift.data import open_dataset

    data = open_dataset("paired-folder", root=str(root))
    assert data.select([14, 100007, "2"]).names() == ["0014", "100007", "2"]  # zeros a parser dropped
    with pytest.raises(KeyError, match="no item"):
        data.select([15])


# 11. Reader notes --------------------------------------------------------------------------------------


def test_reader_notes_are_recorded_per_image(tmp_path):
    root = _paired(tmp_path / "in", {"plain": 8, "rgba": 8})
    rgba = np.concatenate([np.asarray(Image.open(root / "lr" / "rgba.png")), np.full((8, 8, 1), 128, np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(root / "lr" / "rgba.png")
    spec = _spec(tmp_path / "run", root, metrics=["psnr"])
    run(spec)
    rows = {r["name"]: r for r in spec.folder.rows("sr")}
    assert rows["plain"]["notes"] == []
    assert rows["rgba"]["notes"] == ["lr: alpha channel dropped (NOT fully opaque)"]
    table = pd.read_csv(spec.run_dir / "per_image.csv").set_index("name")
    assert "alpha channel dropped" in table.loc["rgba", "notes"]


# resshift sr as a user expects ---------------------------------------------------------------------------


def test_resshift_sr_checks_options_before_loading_anything(tmp_path, capsys):
    src = tmp_path / "in"
    write_png(src / "a.png", np.zeros((8, 8, 3), np.uint8))
    (src / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: not an image, not a failure
    assert cli_main(["sr", str(src), "-o", str(tmp_path / "o"), "--method", "no-such"]) == 1
    err = capsys.readouterr().err
    assert "unknown method 'no-such'" in err and "small-resshift" in err and "bicubic" in err
    for bad in (["--bs", "0"], ["--chop-size", "64", "--chop-stride", "0"], ["--tile-batch", "-1"]):
        with pytest.raises(SystemExit) as stop:
            cli_main(["sr", str(src), "-o", str(tmp_path / "o"), *bad])
        assert stop.value.code == 2
        assert "must be at least 1" in capsys.readouterr().err
    empty = tmp_path / "weights"
    empty.mkdir()
    assert cli_main(["sr", str(src), "-o", str(tmp_path / "o"), "--model", "v1", "--weights-dir", str(empty)]) == 1
    err = capsys.readouterr().err
    assert err.count("not found in") == 2 and str(empty) in err  # UNet and VQ both listed at once
    assert cli_main(["sr", str(src), "-o", str(tmp_path / "o"), "--method", "bicubic", "--no-progress"]) == 0
    assert "wrote 1 image(s)" in capsys.readouterr().out


def test_metrics_phase_failure_keeps_earlier_values_and_counts_as_failed(tmp_path):
    """An SR output broken in the run folder between sessions: the metrics phase fails on that image when a metric
    is added. Its earlier values stay in its row, it counts as failed (n_failed, summary.failed) instead of
    silently dropping to fewer scored images, and a later session with the file repaired scores it again."""
    root = _paired(tmp_path / "set", {"a": 8, "b": 8, "c": 8})
    first = run(_spec(tmp_path / "run", root, metrics=["psnr"]))
    assert first["n_ok"] == 3 and first["n_failed"] == 0
    sr_b = tmp_path / "run" / "sr" / "b.png"
    good = sr_b.read_bytes()
    sr_b.write_bytes(b"not a png")
    broken = run(_spec(tmp_path / "run", root, metrics=["psnr", "ssim"]))
    assert broken["n_failed"] == 1 and "b" in broken["failed"] and "metrics phase" in broken["failed"]["b"]
    assert broken["metrics"]["psnr"]["n"] == 2 and broken["metrics"]["ssim"]["n"] == 2
    row = next(r for r in RunFolder(tmp_path / "run").rows("metrics") if r["name"] == "b")
    assert row["status"] == "failed" and set(row["values"]) == {"psnr"}  # the earlier value is kept
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv").set_index("name")
    assert per_image.loc["b", "status"] == "failed"
    from resshift.reports import write_report

    write_report([tmp_path / "run"], tmp_path / "report")  # the unreadable output costs only its own view
    assert '"unreadable": {"b":' in (tmp_path / "report" / "report.html").read_text()
    sr_b.write_bytes(good)
    repaired = run(_spec(tmp_path / "run", root, metrics=["psnr"]))  # psnr is there: the failure alone re-scores
    assert repaired["n_failed"] == 0 and repaired["metrics"]["psnr"]["n"] == 3
    assert repaired["metrics"]["psnr"]["mean"] == pytest.approx(first["metrics"]["psnr"]["mean"], abs=1e-12)


def test_resume_under_other_code_or_packages_is_refused(tmp_path, monkeypatch):
    """A session after an update of the package's sources or of a package that computes the numbers would mix
    its rows with the earlier ones: refused, naming what changed; nothing in the folder is rewritten."""
    import resshift.provenance as provenance

    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    run_dir = tmp_path / "run"
    first = run(_spec(run_dir, root, metrics=["psnr"]))
    rows = (run_dir / "records" / "sr-0-of-1.jsonl").read_bytes()
    real_versions = provenance.package_versions()
    changes = {"code.resshift_sources_sha256": ("code_sha256", lambda: "0" * 64),
               "code.packages.torch": ("package_versions", lambda: {**real_versions, "torch": "0.0.1"})}
    for key, (attribute, fake) in changes.items():
        with monkeypatch.context() as m:
            m.setattr(provenance, attribute, fake)
            with pytest.raises(RunIdentityError, match="made by other code") as err:
                run(_spec(run_dir, root, metrics=["psnr", "ssim"]))
        assert key in str(err.value)
    assert (run_dir / "records" / "sr-0-of-1.jsonl").read_bytes() == rows
    again = run(_spec(run_dir, root, metrics=["psnr", "ssim"]))  # the same code: resumes
    assert again["fingerprint"] == first["fingerprint"] and again["counts"]["sr"]["skipped"] == 2
    other_root = run(_spec(tmp_path / "run2", root, metrics=["psnr"]))  # the fingerprint names the configuration
    assert other_root["fingerprint"] == first["fingerprint"]
    record = json.loads((run_dir / "identity.json").read_text())
    del record["code"]  # a folder from before the code was recorded
    (run_dir / "identity.json").write_text(json.dumps(record))
    with pytest.raises(RunIdentityError, match="not recorded"):
        run(_spec(run_dir, root, metrics=["psnr"]))


def test_resume_refuses_input_files_changed_on_disk(tmp_path):
    """The identity holds a digest of every selected LR and HR file: an HR replaced on disk (outputs made from the
    old pair would be scored against the new one) or a file added that moves what ``limit`` selects is refused,
    naming the image; the unchanged set resumes."""
    root = _paired(tmp_path / "set", {"b": 8, "c": 8, "d": 8})
    run_dir = tmp_path / "run"
    first = run(_spec(run_dir, root, metrics=["psnr"], limit=2))
    good = (root / "hr" / "c.png").read_bytes()
    _paired(tmp_path / "other", {"c": 8}, seed=9)
    (root / "hr" / "c.png").write_bytes((tmp_path / "other" / "hr" / "c.png").read_bytes())
    with pytest.raises(RunIdentityError, match="another configuration") as err:
        run(_spec(run_dir, root, metrics=["psnr", "ssim"], limit=2))
    assert "images.inputs.c.hr" in str(err.value) and "images.inputs.b" not in str(err.value)
    (root / "hr" / "c.png").write_bytes(good)
    _paired(tmp_path / "extra", {"a": 8})  # sorts first: limit=2 now selects a and b
    for sub in ("lr", "hr"):
        (root / sub / "a.png").write_bytes((tmp_path / "extra" / sub / "a.png").read_bytes())
    with pytest.raises(RunIdentityError, match="another configuration") as err:
        run(_spec(run_dir, root, metrics=["psnr"], limit=2))
    assert "images.inputs.a: (absent)" in str(err.value) and "images.inputs.c" in str(err.value)
    (root / "lr" / "a.png").unlink()
    (root / "hr" / "a.png").unlink()
    again = run(_spec(run_dir, root, metrics=["psnr"], limit=2))
    assert again["fingerprint"] == first["fingerprint"] and again["counts"]["sr"]["skipped"] == 2


def test_a_refused_session_does_not_rewrite_the_folders_hydra_record(tmp_path):
    """Hydra writes its config record before the identity check: each start gets its own folder under .hydra, so
    a session refused for another configuration leaves the record of the session that made the rows as it was."""
    first = _app(tmp_path, "method=bicubic", "dataset=embedded", "limit=1", "metrics=[psnr]", "run.name=fixed")
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "fixed"
    before = {p: p.read_bytes() for p in (run_dir / ".hydra").rglob("*.yaml")}
    assert any(p.name == "overrides.yaml" and b"limit=1" in data for p, data in before.items())
    refused = _app(tmp_path, "method=bicubic", "dataset=embedded", "limit=1", "metrics=[psnr]", "run.name=fixed",
                   "seed=7")
    assert refused.returncode == 2 and "another configuration" in refused.stderr
    assert all(p.read_bytes() == data for p, data in before.items())
    assert len(list((run_dir / ".hydra").iterdir())) == 2  # the refused start's record is beside, not over it


def test_report_lists_run_folders_whose_summary_lacks_rows(tmp_path):
    """A run folder named for a report that holds rows but no summary (a first session killed), or rows written
    after its summary (a later session stopped before it), is listed with the reason instead of being left out
    or shown as complete without a word; a report over such a folder alone names it in its error."""
    from resshift.reports import write_report
    from resshift.runfolder import RowStore

    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    runs = tmp_path / "runs"
    run(_spec(runs / "done", root, metrics=["psnr"]))
    run(_spec(runs / "killed", root, metrics=["psnr"], seed=2))
    (runs / "killed" / "summary.json").unlink()
    run(_spec(runs / "stale", root, metrics=["psnr"], seed=3))
    os.utime(runs / "stale" / "summary.json", ns=(1, 1))
    RowStore(runs / "stale" / "records" / "sr-0-of-1.jsonl").append({"name": "a", "status": "ok"})
    text = write_report([runs], tmp_path / "report").read_text()
    section = text.split("## Incomplete runs", 1)[1]
    assert "killed: rows of 2 image(s) but no summary.json" in section
    assert "stale: rows written after its summary.json" in section and "/done" not in section
    assert "Incomplete runs" in (tmp_path / "report" / "report.html").read_text()
    with pytest.raises(FileNotFoundError, match="rows of 2 image"):
        write_report([runs / "killed"], tmp_path / "report2")


def test_adding_a_metric_computes_only_that_metric(tmp_path):
    """A metric added to a finished run is computed alone: the values already in the rows are kept as they are
    (a stored PSNR set to a marker value survives the session that adds SSIM)."""
    from resshift.runfolder import RowStore

    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    run(_spec(tmp_path / "run", root, metrics=["psnr"]))
    store = RowStore(tmp_path / "run" / "records" / "metrics-0-of-1.jsonl")
    for row in RunFolder(tmp_path / "run").rows("metrics"):
        store.append({**row, "values": {"psnr": 1.25}})
    summary = run(_spec(tmp_path / "run", root, metrics=["psnr", "ssim"]))
    assert summary["metrics"]["psnr"]["mean"] == 1.25 and summary["metrics"]["ssim"]["n"] == 2
    assert summary["counts"]["metrics"] == {"done": 2, "skipped": 0, "failed": 0}


def test_timing_pools_only_latencies_of_the_same_conditions(tmp_path):
    """A run interrupted after some images and resumed with another thread count: the summary's latency statistics
    come from the images timed under the newest session's conditions alone, the others counted as left out, and
    the conditions are in the summary even when the earlier session wrote none."""
    from resshift.reports.results import timing_conditions

    root = _paired(tmp_path / "set", {"a": 8, "b": 8, "c": 8, "d": 8})
    run_dir = tmp_path / "run"
    run(_spec(run_dir, root, metrics=["psnr"], threads=1))
    rows = (run_dir / "records" / "sr-0-of-1.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "records" / "sr-0-of-1.jsonl").write_text("".join(rows[:2]))  # killed after two images
    (run_dir / "summary.json").unlink()
    summary = run(_spec(run_dir, root, metrics=["psnr"], threads=2))
    timing = summary["timing"]
    assert timing["conditions"]["threads"] == 2 and timing["conditions"]["batch_size"] == 1
    assert timing["n_images"] == 2 and timing["n_other_conditions"] == 2
    assert "2 threads" in timing_conditions(timing) and "2 image(s) timed under other conditions" in \
        timing_conditions(timing)


def test_a_sweep_reports_and_fails_on_its_own_runs_only(tmp_path):
    """run.root holds an earlier run with a failed image; a sweep into the same root reports its own two runs and
    exits 0 (it reported the earlier run too and exited 1 naming it); a sweep that loses an image exits 1."""
    root = _paired(tmp_path / "in", {"a": 8, "b": 8})
    (root / "lr" / "b.png").write_bytes(b"garbage")
    earlier = _app(tmp_path, "method=bicubic", "dataset=paired-folder", f"dataset.params.root={root}",
                   "metrics=[psnr]")
    assert earlier.returncode == 1
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    sweep = subprocess.run([sys.executable, "-m", "resshift.runner.app", "-m", "method=bicubic", "dataset=embedded",
                            "limit=1", "metrics=[psnr]", "seed=1,2", f"run.root={tmp_path / 'runs'}",
                            "hardware.warmup=0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    report = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "Runs: 2." in report and "paired-folder" not in report
    lossy = _app(tmp_path, "-m", "method=bicubic", "dataset=paired-folder", f"dataset.params.root={root}",
                 "metrics=[psnr]", "seed=3,4", "report=false")
    assert lossy.returncode == 1 and lossy.stderr.count("image(s) failed in") == 2


def test_two_users_folders_are_two_protocols(tmp_path):
    """The generic paired-folder card names no data: runs on two folders with the same file names but other images
    get protocol ids of their own (the card's plus a digest of the inputs), so the report never pairs their images
    by name; runs on one folder share one protocol whatever their limit."""
    from resshift.reports import write_report

    a = _paired(tmp_path / "A", {"x": 8, "y": 8, "z": 8}, seed=1)
    b = _paired(tmp_path / "B", {"x": 8, "y": 8, "z": 8}, seed=2)
    runs = tmp_path / "runs"
    on_a = run(_spec(runs / "a", a, metrics=["psnr"]))
    on_b = run(_spec(runs / "b", b, metrics=["psnr"]))
    on_a2 = run(_spec(runs / "a2", a, metrics=["psnr"], limit=2, setting={"label": "again"}))
    assert on_a["protocol_id"].startswith("paired-folder@") and on_a["protocol_id"] != on_b["protocol_id"]
    assert on_a2["protocol_id"] == on_a["protocol_id"]
    write_report([runs / "a", runs / "b"], tmp_path / "report")
    assert (tmp_path / "report" / "pairwise.csv").read_text().strip() == ""  # nothing paired across the folders
    embedded = run(_spec(runs / "e", a, dataset="embedded", dataset_params={}, metrics=["psnr"], limit=1))
    assert embedded["protocol_id"] == "embedded-bicubic-x4"  # a card with data of its own keeps its id


def test_what_cannot_run_is_refused_before_anything_is_written(tmp_path, capsys):
    """A limit below 1, an unknown metric, a label that is a path, a run folder among the inputs: refused with the
    setting named, before the method runs or a run folder is made; `resshift sr -o` into its input folder refuses
    before any input is overwritten."""
    from resshift.runner.run import RunSpecError

    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    cases = {"limit=": dict(limit=0), "limit=-1": dict(limit=-1), "unknown metric 'foo'": dict(metrics=["psnr", "foo"]),
             "a plain name": dict(setting={"label": "../../escape"}),
             "a count >= 0": dict(method="outputs", method_params={"root": str(root / "lr"), "nfe": -5}),
             "of data set 'paired-folder'": dict(run_dir=root / "hr" / "runs" / "x")}
    for expected, change in cases.items():
        kw = {"run_dir": tmp_path / "run", **change}
        with pytest.raises(RunSpecError, match=re.escape(expected)):
            run(_spec(root=root, **kw))
        assert not (tmp_path / "run").exists() and not (root / "hr" / "runs" / "x").exists()
    proc = _app(tmp_path, "method=bicubic", "dataset=embedded", "metrics=[psnr,foo]", "run.name=never")
    assert proc.returncode == 2 and "unknown metric 'foo'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs" / "never").exists()
    before = (root / "lr" / "a.png").read_bytes()
    assert cli_main(["sr", str(root / "lr"), "-o", str(root / "lr"), "--method", "bicubic"]) == 2
    assert "would overwrite this input" in capsys.readouterr().err
    assert (root / "lr" / "a.png").read_bytes() == before


def test_a_session_with_other_metrics_extends_the_summary(tmp_path):
    """A finished run with psnr, resumed asking for ssim alone: the summary (and the report built from it) keeps
    psnr beside the new ssim, as the rows do; psnr is not recomputed."""
    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    first = run(_spec(tmp_path / "run", root, metrics=["psnr"]))
    second = run(_spec(tmp_path / "run", root, metrics=["ssim"]))
    assert set(second["metrics"]) == {"psnr", "ssim"}
    assert second["metrics"]["psnr"] == first["metrics"]["psnr"]
    assert second["counts"]["metrics"]["done"] == 2


def test_reader_notes_of_scored_output_files_are_recorded(tmp_path):
    """An output file brought for scoring that is RGBA and not fully opaque: scored after the alpha is dropped, as
    LR inputs are, and its row says so (``sr: alpha channel dropped (NOT fully opaque)``)."""
    root = _paired(tmp_path / "set", {"a": 8, "b": 8}, exact=True)
    sr = tmp_path / "sr"
    sr.mkdir()
    for name in ("a", "b"):
        rgb = np.asarray(Image.open(root / "hr" / f"{name}.png").convert("RGB"))
        alpha = np.full(rgb.shape[:2], 255 if name == "a" else 128, np.uint8)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(sr / f"{name}.png")
    out = tmp_path / "scored"
    assert cli_main(["score", str(sr), "--gt", str(root / "hr"), "--lr", str(root / "lr"), "--metrics", "psnr",
                     "-o", str(out)]) == 0
    notes = pd.read_csv(out / "per_image.csv").set_index("name")["notes"].fillna("")
    assert "sr: alpha channel dropped (NOT fully opaque)" in notes["b"]
    assert "NOT fully opaque" not in notes["a"]


def test_compare_refuses_a_baseline_that_is_no_runs_table_and_never_matches_one_run_twice(tmp_path, capsys):
    """A baseline CSV without runs (or without the key columns) is an error, not "no regression"; with two
    baseline runs of one label, a new run answers only for the one with its fingerprint: the other is MISSING
    (it was compared with the same new run and reported as changed)."""
    junk = tmp_path / "junk.csv"
    junk.write_text("a,b\n")
    root = _paired(tmp_path / "set", {"a": 8, "b": 8})
    run(_spec(tmp_path / "runs" / "one", root, metrics=["psnr"], setting={"label": "X"}))
    run(_spec(tmp_path / "runs" / "two", root, metrics=["psnr"], seed=2, setting={"label": "X"}))
    assert cli_main(["compare", str(junk), str(tmp_path / "runs")]) == 2
    assert "not a runs table" in capsys.readouterr().err
    assert cli_main(["compare", str(tmp_path / "nothing"), str(tmp_path / "runs")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(tmp_path / "empty"), str(tmp_path / "runs")]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "rep")]) == 2
    assert capsys.readouterr().err.startswith("error: no finished runs")
    baseline = load_results(tmp_path / "runs")
    new = baseline[baseline["run"].astype(str).str.endswith("one")]
    result = compare_results(baseline, new, max_runtime_ratio=None)
    statuses = result.table.groupby("status").size().to_dict()
    assert result.failed and statuses.get("MISSING") == 1 and "CONFIG CHANGED" not in statuses


def test_report_refuses_a_per_image_csv_that_does_not_match_its_summary(tmp_path):
    """per_image.csv edited by hand (values shifted, rows dropped): the report would give intervals and tests from
    other numbers than its means; it refuses naming the file instead. The files as written pass."""
    from resshift.reports import write_report

    root = _paired(tmp_path / "set", {"a": 8, "b": 8, "c": 8})
    run_dir = tmp_path / "runs" / "one"
    run(_spec(run_dir, root, metrics=["psnr"]))
    write_report([run_dir], tmp_path / "ok")
    frame = pd.read_csv(run_dir / "per_image.csv")
    frame["psnr"] += 10
    frame.to_csv(run_dir / "per_image.csv", index=False)
    with pytest.raises(ValueError, match="per_image.csv: psnr over 3 images"):
        write_report([run_dir], tmp_path / "edited")
    frame["psnr"] -= 10
    frame.iloc[:2].to_csv(run_dir / "per_image.csv", index=False)
    with pytest.raises(ValueError, match="2 scored images, its summary.json says 3"):
        write_report([run_dir], tmp_path / "dropped")


def test_a_copy_that_differs_from_the_cards_manifest_is_not_the_protocols_data(tmp_path):
    """A data set whose card lists the SHA-256 of its files: a local copy with one GT file changed is refused,
    naming the file and pointing to scoring it as one's own set, instead of being scored under the protocol."""
    import yaml

    from resshift.provenance import file_sha256
    from resshift.runner.run import RunSpecError

    root = _paired(tmp_path / "copy", {"a": 8, "b": 8})
    card = tmp_path / "toy-protocol.yaml"
    manifest = {f"{sub}/{n}.png": file_sha256(root / sub / f"{n}.png") for sub in ("lr", "hr") for n in "ab"}
    card.write_text(yaml.safe_dump({"name": "toy-protocol", "protocol_id": "toy-protocol-x4", "kind": "paired",
                                    "scale": 4, "layout": {"lr": "lr", "hr": "hr"}, "manifest": manifest}))
    first = run(_spec(tmp_path / "run", root, dataset=str(card), metrics=["psnr"]))
    assert first["protocol_id"] == "toy-protocol-x4"
    _paired(tmp_path / "other", {"b": 8}, seed=4)
    (root / "hr" / "b.png").write_bytes((tmp_path / "other" / "hr" / "b.png").read_bytes())
    with pytest.raises(RunSpecError, match=r"differ from its card's manifest[\s\S]*hr/b\.png[\s\S]*your own set"):
        run(_spec(tmp_path / "run2", root, dataset=str(card), metrics=["psnr"]))
    assert not (tmp_path / "run2").exists()


def test_a_launch_with_another_number_of_processes_cannot_enter(tmp_path):
    """While the ranks of a 2-process launch work in a folder, a rank of a 3-process launch (another process) is
    refused; another rank of the same 2-process launch enters."""
    code = ("import sys; from resshift.runner.identity import lock_run_folder as L\n"
            "r, w = map(int, sys.argv[1:])\n"
            f"with L({str(tmp_path)!r}, r, w): print('ENTERED')")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}

    def attempt(rank: int, world: int) -> str:
        proc = subprocess.run([sys.executable, "-c", code, str(rank), str(world)], env=env, capture_output=True,
                              text=True, timeout=60)
        return "ENTERED" if "ENTERED" in proc.stdout else proc.stderr

    with lock_run_folder(tmp_path, rank=0, world_size=2):
        assert "another number of processes" in attempt(0, 3)
        assert "another number of processes" in attempt(2, 3)
        assert attempt(1, 2) == "ENTERED"
    assert attempt(0, 3) == "ENTERED"  # released


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_a_cuda_run_without_a_cuda_device_is_refused_at_once(tmp_path):
    """device=cuda where no CUDA device is available: refused before the data is read, naming the device."""
    from resshift.runner.run import RunSpecError

    root = _paired(tmp_path / "set", {"a": 8})
    with pytest.raises(RunSpecError, match="device 'cuda': no CUDA device"):
        run(_spec(tmp_path / "run", root, device="cuda"))
    assert not (tmp_path / "run").exists()


def test_score_with_gt_and_lr_writes_its_default_run_folder_beside_them(tmp_path, monkeypatch):
    """`resshift score SR --gt HR --lr LR` from the folder holding all three: the default run folder runs/... is in
    the GT folder's parent but in none of the input folders, so it is accepted (it was refused as inside the data)."""
    root = _paired(tmp_path, {"a": 8, "b": 8}, exact=True)
    (root / "sr").mkdir()
    for name in ("a", "b"):
        (root / "sr" / f"{name}.png").write_bytes((root / "hr" / f"{name}.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli_main(["score", "sr", "--gt", "hr", "--lr", "lr", "--metrics", "psnr"]) == 0
    assert len(list((tmp_path / "runs").glob("sr__paired-folder__*/summary.json"))) == 1
    assert cli_main(["score", "sr", "--gt", "hr", "--lr", "lr", "--metrics", "psnr", "-o", "sr/inside"]) == 2


def test_the_manifest_check_sees_through_links_and_extra_files(tmp_path):
    """The card-manifest check holds for a copy whose GT folder is a symbolic link to a changed folder, and for an
    extra image the manifest does not list (it was scored under the protocol's id)."""
    import yaml

    from resshift.provenance import file_sha256
    from resshift.runner.run import RunSpecError

    root = _paired(tmp_path / "copy", {"a": 8, "b": 8})
    card = tmp_path / "toy-protocol.yaml"
    manifest = {f"{sub}/{n}.png": file_sha256(root / sub / f"{n}.png") for sub in ("lr", "hr") for n in "ab"}
    card.write_text(yaml.safe_dump({"name": "toy-protocol", "protocol_id": "toy-protocol-x4", "kind": "paired",
                                    "scale": 4, "layout": {"lr": "lr", "hr": "hr"}, "manifest": manifest}))
    linked = tmp_path / "linked"
    (linked).mkdir()
    (linked / "lr").symlink_to(root / "lr")
    changed = tmp_path / "changed-hr"
    changed.mkdir()
    (changed / "a.png").write_bytes((root / "hr" / "a.png").read_bytes())
    _paired(tmp_path / "other", {"b": 8}, seed=4)
    (changed / "b.png").write_bytes((tmp_path / "other" / "hr" / "b.png").read_bytes())
    (linked / "hr").symlink_to(changed)
    with pytest.raises(RunSpecError, match=r"changed-hr/b\.png: SHA-256"):
        run(_spec(tmp_path / "run1", linked, dataset=str(card), metrics=["psnr"]))
    _paired(tmp_path / "extra", {"c": 8})
    for sub in ("lr", "hr"):
        (root / sub / "c.png").write_bytes((tmp_path / "extra" / sub / "c.png").read_bytes())
    with pytest.raises(RunSpecError, match=r"c\.png: not in the card's manifest"):
        run(_spec(tmp_path / "run2", root, dataset=str(card), metrics=["psnr"]))
