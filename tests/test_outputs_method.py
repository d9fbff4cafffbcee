"""Scoring outputs made elsewhere: same numbers as the suite's own run, pairing by name, failures named."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from resshift.cli import main as cli_main
from resshift.data.loader import DatasetError
from resshift.methods.outputs import OutputsFolder
from resshift.paths import PROJECT_ROOT
from resshift.runner.app import spec_from_config
from resshift.runner.run import RunSpec, run

METRICS = ["psnr", "ssim"]


@pytest.fixture(scope="module")
def bicubic_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's own bicubic run on the embedded set: its sr/*.png are 'outputs made elsewhere'."""
    run_dir = tmp_path_factory.mktemp("bicubic") / "run"
    run(RunSpec(run_dir=run_dir, method="bicubic", dataset="embedded", metrics=METRICS))
    return run_dir


def _copy_outputs(run_dir: Path, dest: Path, as_bmp: tuple[str, ...] = ()) -> Path:
    dest.mkdir(parents=True)
    for png in sorted((run_dir / "sr").glob("*.png")):
        if png.stem in as_bmp:  # another (lossless) extension: paired by name all the same
            Image.open(png).save(dest / f"{png.stem}.bmp")
        else:
            shutil.copy(png, dest / png.name)
    return dest


def _per_image(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "per_image.csv").set_index("name").sort_index()


def _compose(overrides: list[str]):
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=False)


def test_same_numbers_as_running_the_method(bicubic_run: Path, tmp_path: Path) -> None:
    names = sorted(p.stem for p in (bicubic_run / "sr").glob("*.png"))
    folder = _copy_outputs(bicubic_run, tmp_path / "sr", as_bmp=(names[0],))
    cfg = _compose(["method=outputs", f"method.params.root={folder}", "method.label=bicubic-elsewhere",
                    "method.params.nfe=0", "method.params.source=bicubic run of the suite",
                    "method.reference=null", "dataset=embedded", f"metrics=[{','.join(METRICS)}]"])
    spec = spec_from_config(cfg, tmp_path / "scored")
    summary = run(spec)
    assert summary["n_ok"] == len(names) == 8 and summary["n_failed"] == 0
    ours, theirs = _per_image(spec.run_dir), _per_image(bicubic_run)
    for metric in METRICS:
        assert (ours[metric] - theirs[metric]).abs().max() <= 1e-9
        assert summary["metrics"][metric]["mean"] == pytest.approx(
            pd.read_json(bicubic_run / "summary.json", typ="series")["metrics"][metric]["mean"], abs=1e-9)
    # provenance: the folder, one digest, and each scored file's SHA-256 on its row
    info = summary["method_info"]
    assert info["root"] == str(folder.resolve()) and info["n_files"] == 8 and len(info["files_sha256"]) == 64
    assert info["nfe"] == 0 == summary["nfe"] and info["source"] == "bicubic run of the suite"
    first = folder / f"{names[0]}.bmp"
    assert ours.loc[names[0], "sr_file"] == first.name
    assert ours.loc[names[0], "sr_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    # timing: not measured, shown as n/a (never 0)
    assert summary["timing"]["measured"] is False and ours["latency_s"].isna().all()
    assert "Timing: n/a" in (spec.run_dir / "summary.md").read_text()
    from resshift.reports.results import runs_table

    table = runs_table([bicubic_run, spec.run_dir]).set_index("method")
    assert pd.isna(table.loc["bicubic-elsewhere", "ms_per_image"])  # the report prints n/a
    assert table.loc["bicubic", "ms_per_image"] > 0


def test_each_scored_method_is_its_own_family_in_reports(bicubic_run: Path, tmp_path: Path) -> None:
    """Two methods' outputs scored here are two lines and two colours in the figures, not one 'outputs'
    family joined across them; the suite's own runs keep their method as the family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resshift.reports.plots import family_lines, method_colours
    from resshift.reports.results import per_image_table, runs_table

    runs = [bicubic_run]
    for label, nfe in (("A-elsewhere", 1), ("B-elsewhere", 4)):
        folder = _copy_outputs(bicubic_run, tmp_path / f"sr-{label}")
        spec = RunSpec(run_dir=tmp_path / label, method="outputs", dataset="embedded", metrics=METRICS,
                       method_params={"root": str(folder), "nfe": nfe}, setting={"label": label})
        run(spec)
        runs.append(spec.run_dir)
    table = runs_table(runs)
    assert sorted(table["family"]) == ["A-elsewhere", "B-elsewhere", "bicubic"]
    assert set(table["method_name"]) == {"bicubic", "outputs"}
    assert set(per_image_table(runs)["family"]) == {"A-elsewhere", "B-elsewhere", "bicubic"}
    assert len(method_colours(table)) == 3
    fig, ax = plt.subplots()
    family_lines(ax, table, "nfe", "psnr", sorted(table["protocol"].unique()), method_colours(table))
    assert len(ax.lines) == 3  # one per family: A and B are not one line from NFE 1 to NFE 4
    plt.close(fig)


@pytest.mark.slow
def test_report_shows_timing_na(bicubic_run: Path, tmp_path: Path) -> None:
    from resshift.reports import write_report

    folder = _copy_outputs(bicubic_run, tmp_path / "sr")
    spec = RunSpec(run_dir=tmp_path / "scored", method="outputs", dataset="embedded", metrics=METRICS,
                   method_params={"root": str(folder), "nfe": 0}, setting={"label": "bicubic-elsewhere"})
    run(spec)
    report = write_report([bicubic_run, spec.run_dir], tmp_path / "report").parent
    row = next(line for line in (report / "tables.md").read_text().splitlines() if "bicubic-elsewhere" in line)
    assert "| n/a |" in row and "| 0 |" in row  # runtime n/a, NFE 0 as declared


def test_missing_extra_and_wrong_size_are_named(bicubic_run: Path, tmp_path: Path) -> None:
    names = sorted(p.stem for p in (bicubic_run / "sr").glob("*.png"))
    folder = _copy_outputs(bicubic_run, tmp_path / "sr")
    (folder / f"{names[1]}.png").unlink()  # missing
    shutil.copy(folder / f"{names[0]}.png", folder / "stray.png")  # matches no image
    small = Image.open(folder / f"{names[2]}.png").crop((0, 0, 256, 255))  # 255 rows: wrong size
    small.save(folder / f"{names[2]}.png")
    spec = RunSpec(run_dir=tmp_path / "scored", method="outputs", method_params={"root": str(folder)},
                   dataset="embedded", metrics=METRICS, batch_size=4)
    summary = run(spec)
    assert summary["n_ok"] == 6 and summary["n_failed"] == 2
    table = _per_image(spec.run_dir)
    assert f"{names[1]}.*" in table.loc[names[1], "error"] and table.loc[names[1], "status"] == "failed"
    wrong = table.loc[names[2], "error"]
    assert "255x256" in wrong and "256x256" in wrong and "never cropped or resized" in wrong
    assert table.loc[names[3], "status"] == "ok"  # one bad image fails alone, not its batch
    info = summary["method_info"]
    assert info["missing_outputs"] == [names[1]] and info["unmatched_outputs"] == ["stray.png"]
    text = (spec.run_dir / "summary.md").read_text()
    assert "stray.png" in text and names[1] in text


def test_digest_pairing_and_changes(tmp_path: Path) -> None:
    def folder(name: str, value: int) -> Path:
        root = tmp_path / name
        (root / "sub").mkdir(parents=True)
        Image.new("RGB", (8, 4), (value, 0, 0)).save(root / "sub" / "x_out.png")
        Image.new("RGB", (8, 4), (0, 9, 0)).save(root / "y_out.jpg")
        return root

    a, b, a2 = OutputsFolder(folder("a", 1), suffix="_out"), OutputsFolder(folder("b", 2), suffix="_out"), \
        OutputsFolder(folder("a2", 1), suffix="_out")
    assert a.describe()["files_sha256"] != b.describe()["files_sha256"]  # one pixel differs
    assert a.describe()["files_sha256"] == a2.describe()["files_sha256"]  # same files, other folder
    assert a.describe()["root"] != a2.describe()["root"]
    a.expect_images(["sub/x", "y", "z"])  # sub-folders kept, extensions free
    assert a.missing == ["z"] and a.unmatched == []
    assert tuple(a.read("sub/x", (1, 2)).shape) == (3, 4, 8)
    with pytest.raises(ValueError, match="expected 8x8"):
        a.read("y", (2, 2))
    with pytest.raises(FileNotFoundError, match="'z'"):
        a.read("z", (1, 2))
    Image.new("RGB", (8, 4), (7, 0, 0)).save(tmp_path / "a" / "sub" / "x_out.png")
    with pytest.raises(ValueError, match="changed after the run started"):
        a.read("sub/x", (1, 2))
    Image.new("RGB", (8, 4)).save(tmp_path / "b" / "y_out.png")
    with pytest.raises(DatasetError, match="two images share the name 'y_out'"):
        OutputsFolder(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="outputs folder not found"):
        OutputsFolder(tmp_path / "nope")


def test_score_cli(bicubic_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = _copy_outputs(bicubic_run, tmp_path / "sr")
    out = tmp_path / "cli-run"
    code = cli_main(["score", str(folder), "--dataset", "embedded", "--metrics", "psnr,ssim", "--label", "mine",
                     "--nfe", "1", "-o", str(out)])
    assert code == 0 and "Timing: n/a" in capsys.readouterr().out
    ours, theirs = _per_image(out), _per_image(bicubic_run)
    assert (ours["psnr"] - theirs["psnr"]).abs().max() <= 1e-9
    # --gt/--lr: the same images as a paired folder
    from resshift.data import open_dataset

    root = open_dataset("embedded").root
    out2 = tmp_path / "cli-gt"
    code = cli_main(["score", str(folder), "--gt", str(root / "hr"), "--lr", str(root / "lr"), "--metrics",
                     "psnr", "-o", str(out2)])
    assert code == 0 and (_per_image(out2)["psnr"] - theirs["psnr"]).abs().max() <= 1e-9
    with pytest.raises(SystemExit, match="--gt needs --lr"):
        cli_main(["score", str(folder), "--gt", str(root / "hr")])
    (folder / next(folder.glob("*.png")).name).unlink()
    assert cli_main(["score", str(folder), "--dataset", "embedded", "--metrics", "psnr", "-o",
                     str(tmp_path / "cli-missing")]) == 1  # a failed image: non-zero exit
    # never resumed with other files: the run identity (folder digest in describe()) refuses it
    capsys.readouterr()
    assert cli_main(["score", str(folder), "--dataset", "embedded", "--metrics", "psnr,ssim", "-o", str(out)]) == 2
    assert "files_sha256" in capsys.readouterr().err
