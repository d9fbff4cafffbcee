"""Seed stability in the report: L-STD and G-STD (CCSR) over run folders that differ only in their seed."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resshift.reports import write_report
from resshift.reports.results import find_run_dirs, per_image_table, runs_table
from resshift.reports.stability import DDOF, seed_group_key, seed_stability, stability_table


def _identity(seed: int, method: str = "small-sr3", steps: int = 2, dataset: str = "val-sr",
              device: str = "cpu") -> dict:
    """An identity as the runner stores it (the parts that matter here)."""
    return {
        "dataset": {"card_sha256": "c" * 64, "name": dataset, "params": {}, "protocol_id": f"resshift-{dataset}"},
        "device": device, "dtype": "fp32", "images": {"limit": None, "select": None},
        "method": {"name": method, "params": {"steps": steps}, "resolved": {"name": method, "steps": steps}},
        "seed": seed,
    }


def _run(root: Path, folder: str, label: str, identity: dict | None, values: dict[str, dict[str, float | None]],
         failed: tuple[str, ...] = ()) -> Path:
    """A finished run folder: ``values`` is ``{metric: {image: value}}`` (None: no value); ``failed``: images
    whose SR failed (a row without values)."""
    run_dir = root / folder
    run_dir.mkdir(parents=True)
    names = sorted({n for per in values.values() for n in per})
    dataset = identity["dataset"]["name"] if identity else "val-sr"
    summary = {
        "method": identity["method"]["name"] if identity else "small-sr3", "dataset": dataset,
        "protocol_id": f"resshift-{dataset}", "setting": {"label": label}, "n_images": len(names) + len(failed),
        "n_ok": len(names), "n_failed": len(failed), "nfe": 2, "fingerprint": folder,
        "metrics": {m: {"mean": float(np.mean([v for v in per.values() if v is not None])), "std": 0.0,
                        "n": sum(v is not None for v in per.values()), "lower_better": False}
                    for m, per in values.items()},
        "timing": {"median_s": 0.01, "device": "cpu-x"},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if identity is not None:
        (run_dir / "identity.json").write_text(json.dumps({"fingerprint": folder, "identity": identity}))
    rows = [{"name": n, "status": "ok", **{m: per.get(n) for m, per in values.items()}} for n in names]
    rows += [{"name": n, "status": "failed", "error": "SR failed"} for n in failed]
    pd.DataFrame(rows).to_csv(run_dir / "per_image.csv", index=False)
    return run_dir


# Known values: psnr of images a and b over seeds 1, 2, 3 (image c is scored in seed 1 only: excluded).
PSNR = {1: {"a": 30.0, "b": 20.0, "c": 50.0}, 2: {"a": 31.0, "b": 20.0}, 3: {"a": 32.0, "b": 23.0}}
# a: std(30, 31, 32) = 1; b: std(20, 20, 23) = sqrt(3); L-STD = (1 + sqrt(3)) / 2.
L_STD = (1.0 + math.sqrt(3.0)) / 2.0
# seed means over a and b: 25, 25.5, 27.5 (mean 26); G-STD = sqrt((1 + 0.25 + 2.25) / 2).
G_STD = math.sqrt(3.5 / 2.0)
# A deterministic method: the same values in every seed (0.1 and 0.7: their float mean is not exactly them).
SSIM = {"a": 0.1, "b": 0.7}


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, psnr in PSNR.items():
        _run(root, f"small-sr3__val-sr__s{seed}", "small-sr3", _identity(seed), {"psnr": psnr},
             failed=("c",) if seed == 2 else ())
        _run(root, f"bicubic__val-sr__s{seed}", "bicubic", _identity(seed, method="bicubic", steps=0),
             {"psnr": {"a": 24.2, "b": 25.3}, "ssim": SSIM})
    # not of the small-sr3 group: another parameter, another data set, another device, no identity record
    _run(root, "small-sr3-3__val-sr__s1", "small-sr3-3", _identity(1, steps=3), {"psnr": {"a": 10.0, "b": 11.0}})
    _run(root, "small-sr3__other__s2", "small-sr3", _identity(2, dataset="other"), {"psnr": {"a": 9.0, "b": 1.0}})
    _run(root, "small-sr3__val-sr__cuda", "small-sr3", _identity(4, device="cuda"), {"psnr": {"a": 0.0, "b": 0.0}})
    _run(root, "small-sr3__val-sr__old", "small-sr3", None, {"psnr": {"a": 99.0, "b": 1.0}})
    return root


def _table(root: Path | list[Path]) -> pd.DataFrame:
    dirs = find_run_dirs(root if isinstance(root, list) else [root])
    df = runs_table(dirs)
    return stability_table(df, per_image_table(dirs), ["psnr", "ssim"])


def test_measures_on_known_values_with_sample_std() -> None:
    st = seed_stability([pd.Series(v) for v in PSNR.values()])
    assert DDOF == 1
    assert (st.n_seeds, st.n_images, st.n_excluded) == (3, 2, 1)
    assert st.l_std == pytest.approx(L_STD, abs=1e-12)
    assert st.g_std == pytest.approx(G_STD, abs=1e-12)
    assert st.mean == pytest.approx(26.0)
    # ddof=1, not the population std (which would give 0.8165 for image a)
    assert st.l_std == pytest.approx(np.mean([np.std([30, 31, 32], ddof=1), np.std([20, 20, 23], ddof=1)]))
    assert st.l_std != pytest.approx(np.mean([np.std([30, 31, 32]), np.std([20, 20, 23])]))


def test_equal_values_give_exactly_zero() -> None:
    assert np.std(np.array([0.1, 0.1, 0.1]), ddof=1) != 0.0  # the plain formula leaves a rounding residue
    st = seed_stability([pd.Series(SSIM) for _ in range(3)])
    assert st.l_std == 0.0 and st.g_std == 0.0


def test_one_seed_or_no_common_image_gives_no_measure() -> None:
    one = seed_stability([pd.Series(SSIM)])
    assert math.isnan(one.l_std) and math.isnan(one.g_std)
    apart = seed_stability([pd.Series({"a": 1.0}), pd.Series({"b": 2.0})])
    assert (apart.n_images, apart.n_excluded) == (0, 2) and math.isnan(apart.l_std)
    nan = seed_stability([pd.Series({"a": 1.0, "b": 2.0}), pd.Series({"a": 1.5, "b": float("nan")})])
    assert (nan.n_images, nan.n_excluded) == (1, 1)
    assert nan.l_std == pytest.approx(np.std([1.0, 1.5], ddof=1))


def test_group_key_ignores_only_the_seed() -> None:
    assert seed_group_key(_identity(1)) == seed_group_key(_identity(2))
    assert seed_group_key(_identity(1)) != seed_group_key(_identity(1, steps=3))
    assert seed_group_key(_identity(1)) != seed_group_key(_identity(1, device="cuda"))
    assert seed_group_key(None) is None


def test_runs_differing_in_more_than_the_seed_are_not_grouped(runs: Path) -> None:
    table = _table(runs)
    assert sorted(set(table["method"])) == ["bicubic", "small-sr3"]
    assert len(table) == 3  # small-sr3: psnr; bicubic: psnr and ssim; nothing for single-seed groups
    row = table[(table["method"] == "small-sr3") & (table["metric"] == "psnr")].iloc[0]
    assert (row["seeds"], row["n_seeds"], row["n_images"], row["n_excluded"]) == ("1;2;3", 3, 2, 1)
    assert row["l_std"] == pytest.approx(L_STD) and row["g_std"] == pytest.approx(G_STD)
    assert row["dataset"] == "val-sr" and row["ddof"] == 1
    df = runs_table(find_run_dirs([runs]))
    groups = df.set_index(df["run"].map(lambda r: Path(r).name))["seed_group"]
    assert groups["small-sr3__val-sr__s1"] == groups["small-sr3__val-sr__s3"]
    for other in ("small-sr3-3__val-sr__s1", "small-sr3__other__s2", "small-sr3__val-sr__cuda"):
        assert groups[other] != groups["small-sr3__val-sr__s1"]
    assert pd.isna(groups["small-sr3__val-sr__old"])


def test_deterministic_method_is_exactly_stable(runs: Path) -> None:
    table = _table(runs)
    bicubic = table[table["method"] == "bicubic"].set_index("metric")
    assert (bicubic["l_std"] == 0.0).all() and (bicubic["g_std"] == 0.0).all()
    assert list(bicubic["n_images"]) == [2, 2]


def test_a_seed_in_two_folders_counts_once(runs: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(runs / "small-sr3__val-sr__s1", copy / "small-sr3__val-sr__s1")
    table = _table([runs, copy])
    row = table[(table["method"] == "small-sr3") & (table["metric"] == "psnr")].iloc[0]
    assert row["n_seeds"] == 3 and row["l_std"] == pytest.approx(L_STD)


def test_report_shows_the_section_csv_and_page(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    md = write_report([runs], out).read_text()
    section = md.split("## Seed stability")[1].split("## Against published numbers")[0]
    assert "ddof=1" in section and "CCSR" in section
    assert (f"| small-sr3 | 3 (1, 2, 3) | psnr ↑ | 26.00 | {L_STD:.3g} | {G_STD:.3g} | 2 | 1 |") in section
    assert "| bicubic | 3 (1, 2, 3) | ssim ↑ | 0.4000 | 0 | 0 | 2 | 0 |" in section
    assert "small-sr3-3" not in section
    csv = pd.read_csv(out / "seed_stability.csv")
    assert len(csv) == 3 and set(csv["ddof"]) == {1}
    results = pd.read_csv(out / "results.csv")
    member = results[results["fingerprint"] == "small-sr3__val-sr__s2"].iloc[0]
    assert member["seed"] == 2 and member["psnr_l_std"] == pytest.approx(L_STD)
    assert member["seed_group_n_seeds"] == 3
    alone = results[results["fingerprint"] == "small-sr3-3__val-sr__s1"].iloc[0]
    assert pd.isna(alone["psnr_l_std"]) and pd.isna(alone["psnr_g_std"])
    html = (out / "report.html").read_text()
    assert "<a href='#stability'>" in html and "<div id='stability'>" in html
    block = html.split("<div id='stability'>")[1].split("</div>")[0]
    assert "<table>" in block and "L-STD" in block and "small-sr3" in block


def test_report_without_seed_groups_says_how_to_get_them(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _run(root, "a__val-sr__1", "a", _identity(1), {"psnr": {"a": 1.0, "b": 2.0}})
    _run(root, "b__val-sr__1", "b", None, {"psnr": {"a": 1.0, "b": 2.0}})
    out = tmp_path / "rep"
    md = write_report([root], out).read_text()
    section = md.split("## Seed stability")[1].split("## Against published numbers")[0]
    assert "seeds=[1,2,3]" in section and "L-STD" in section and "|" not in section
    assert pd.read_csv(out / "seed_stability.csv").empty
    assert "psnr_l_std" not in pd.read_csv(out / "results.csv").columns
