"""The run folder: the summary schema, the visual records the SR phase saves, and a report that reads
them without the data set."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image

from resshift.data import open_dataset
from resshift.data.cards import load_card
from resshift.data.embedded import build_embedded
from resshift.data.loader import DatasetError
from resshift.io import read_image
from resshift.paths import PROJECT_ROOT
from resshift.reports import write_report
from resshift.runfolder import SUMMARY_FIELDS, SUMMARY_SCHEMA_VERSION, RunFolder
from resshift.runfolder.visual import THUMB, choose_crop, nearest_index, thumbnail, visual_crops
from resshift.runner.app import spec_from_config
from resshift.runner.run import run
from resshift.runner.sr_loop import LoadFailure, batches

# --------------------------------------------------------------------------- summary schema


def _summary(**over: object) -> dict:
    base = {k: None for k in SUMMARY_FIELDS if k != "summary_schema"}
    base.update(method="bicubic", dataset="toy", metrics={})
    base.update(over)
    return base


def test_summary_is_written_with_its_schema_version_and_read_back(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_summary(_summary(), "# md\n", pd.DataFrame({"name": ["a"], "status": ["ok"]}))
    data = folder.summary()
    assert data["summary_schema"] == SUMMARY_SCHEMA_VERSION and data["method"] == "bicubic"
    assert folder.summary_md_file.read_text() == "# md\n"
    assert folder.per_image()["name"].tolist() == ["a"]


def test_summary_outside_the_schema_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    frame = pd.DataFrame()
    with pytest.raises(ValueError, match=r"summary.json: .*undocumented keys: extra_key"):
        folder.write_summary(_summary(extra_key=1), "", frame)
    incomplete = _summary()
    del incomplete["timing"]
    with pytest.raises(ValueError, match=r"missing keys: timing"):
        folder.write_summary(incomplete, "", frame)
    assert not folder.summary_file.exists()


def test_unreadable_or_foreign_summaries_name_the_file_and_the_problem(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.summary_file.write_text("{broken")
    with pytest.raises(ValueError, match=r"summary.json: cannot read run summary"):
        folder.summary()
    folder.summary_file.write_text(json.dumps({"method": "m", "dataset": "d"}))
    with pytest.raises(ValueError, match=r"summary.json: not a run summary \(no metrics\)"):
        folder.summary()
    folder.summary_file.write_text(json.dumps(_summary(summary_schema=SUMMARY_SCHEMA_VERSION + 1)))
    with pytest.raises(ValueError, match=rf"summary schema {SUMMARY_SCHEMA_VERSION + 1} is not one this code reads"):
        folder.summary()
    folder.summary_file.write_text(json.dumps({"method": "m", "dataset": "d", "metrics": {}}))
    assert folder.summary()["method"] == "m"  # written before the version key: read as version 1
    assert folder.summary()["set_metrics"] == {}  # version 1 has no set-level metrics


def test_a_version_1_summary_is_still_read_and_reported(tmp_path: Path) -> None:
    """Schema 2 added ``set_metrics``; folders written before read with it empty, into the same report table."""
    from resshift.reports.results import runs_table

    old = {k: v for k, v in _summary(summary_schema=1, metrics={"psnr": {"mean": 30.0, "std": 1.0, "n": 2}},
                                      n_ok=2, n_images=2, n_failed=0).items() if k != "set_metrics"}
    RunFolder(tmp_path).summary_file.write_text(json.dumps(old))
    assert SUMMARY_SCHEMA_VERSION == 2 and "set_metrics" in SUMMARY_FIELDS
    assert RunFolder(tmp_path).summary()["set_metrics"] == {}
    table = runs_table([tmp_path])
    assert table.loc[0, "psnr"] == 30.0 and "fid" not in table.columns


def test_readme_documents_every_summary_key() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("#### `summary.json`")[1].split("\n#")[0]
    keys = re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M)
    assert keys == list(SUMMARY_FIELDS)


# --------------------------------------------------------------------------- visual record pieces


def _dense_choose_crop(image: torch.Tensor, size: int) -> tuple[int, int, int]:
    """The box choice computed the long way: the whole energy image and its integral."""
    h, w = image.shape[-2:]
    size = min(size, h, w)
    luma = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).double()
    energy = torch.zeros_like(luma)
    energy[:, 1:] += (luma[:, 1:] - luma[:, :-1]) ** 2
    energy[1:, :] += (luma[1:, :] - luma[:-1, :]) ** 2
    best, where = -1.0, (0, 0)
    for top in np.linspace(0, h - size, 4).astype(int):
        for left in np.linspace(0, w - size, 4).astype(int):
            s = float(energy[top: top + size, left: left + size].sum())
            if s > best:
                best, where = s, (int(top), int(left))
    return where[0], where[1], size


@pytest.mark.parametrize("lr_hw,hr_hw", [((16, 24), (64, 96)), ((10, 7), (40, 28)), ((9, 13), (20, 31))])
def test_nearest_index_matches_torch_and_crop_choice_matches_the_dense_computation(lr_hw, hr_hw) -> None:
    g = torch.Generator().manual_seed(sum(lr_hw))
    lr = torch.rand(3, *lr_hw, generator=g)
    up = F.interpolate(lr[None], size=hr_hw, mode="nearest")[0]
    rows, cols = nearest_index(lr_hw[0], hr_hw[0]), nearest_index(lr_hw[1], hr_hw[1])
    assert torch.equal(lr[:, rows][:, :, cols], up)
    assert choose_crop(lr, 16, upsampled_to=hr_hw) == _dense_choose_crop(up, 16)
    hr = torch.rand(3, *hr_hw, generator=g)
    hr[:, -20:, -20:] *= 4  # the most detail in the lower right corner
    assert choose_crop(hr, 16) == _dense_choose_crop(hr, 16)
    whole = choose_crop(hr, 1000)  # larger than the image: the whole shorter side
    assert whole[2] == min(hr_hw) and whole == _dense_choose_crop(hr, 1000)


@pytest.mark.parametrize("hw", [(40, 30), (256, 256), (700, 1400)])
def test_thumbnails_are_never_full_size(hw) -> None:
    image = torch.rand(3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    thumb = thumbnail(image)
    assert thumb.dtype == np.uint8 and thumb.shape[2] == 3
    assert max(thumb.shape[:2]) <= min(THUMB, max(hw) // 2)


def test_visual_crops_come_from_gt_or_the_upsampled_lr() -> None:
    g = torch.Generator().manual_seed(3)
    lr, hr = torch.rand(3, 40, 50, generator=g), torch.rand(3, 160, 200, generator=g)
    with_gt = visual_crops(lr, hr, (160, 200))
    top, left, side = with_gt.box
    assert with_gt.reference == "gt" and with_gt.box == choose_crop(hr)
    assert torch.equal(with_gt.gt, hr[:, top: top + side, left: left + side])
    up = F.interpolate(lr[None], size=(160, 200), mode="nearest")[0]
    assert torch.equal(with_gt.lr, up[:, top: top + side, left: left + side])
    no_gt = visual_crops(lr, None, (160, 200))
    assert no_gt.reference == "lr" and no_gt.gt is None and no_gt.box == choose_crop(up)
    assert max(no_gt.thumb.shape[:2]) <= 25  # from the 40x50 LR input, halved at least


def test_visual_record_is_written_once(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    g = torch.Generator().manual_seed(0)
    crops = visual_crops(torch.rand(3, 8, 8, generator=g), torch.rand(3, 32, 32, generator=g), (32, 32))
    assert folder.write_visual("Canon/001", crops) == tmp_path / "visual" / "Canon" / "001" / "box.json"
    stamp = folder.visual("Canon/001").lr.stat().st_mtime_ns
    other = visual_crops(torch.zeros(3, 8, 8), None, (32, 32))
    assert folder.write_visual("Canon/001", other) is None  # finished work is not rewritten
    record = folder.visual("Canon/001")
    assert record.lr.stat().st_mtime_ns == stamp and record.reference == "gt" and record.gt is not None
    assert folder.visual("Canon/002") is None
    record.gt.unlink()
    with pytest.raises(ValueError, match=r"Canon/001/box.json: the record's gt.png is missing"):
        folder.visual("Canon/001")


def test_batches_group_equal_keys_and_let_failures_through() -> None:
    items = [1, 1, "x", 1, 2, 2, 2, "y"]
    got = list(batches(items, 2, key=lambda v: v, alone=lambda v: isinstance(v, str)))
    # "x" comes out as soon as it is read; the batch of 1s it interrupted goes on
    assert got == ["x", [1, 1], [1], [2, 2], "y", [2]]
    failure = LoadFailure("bad", "cannot read")
    assert list(batches([failure], 4, key=lambda v: v)) == [[failure]]  # without ``alone`` it is an item


# --------------------------------------------------------------------------- the report without the data set


@pytest.fixture(scope="module")
def moved_away_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[torch.Tensor, ...]]]:
    """An embedded bicubic run whose data set folder was renamed after the run; and the LR/HR it had."""
    tmp = tmp_path_factory.mktemp("moved")
    root = build_embedded(load_card("embedded"), cache=tmp / "cache")
    # composed as the eval app does, so the manifest records the data set's root (what a report that
    # re-opened the data set would have used)
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=["method=bicubic", "dataset=embedded", f"+dataset.params.root={root}",
                                           "limit=2", "metrics=[psnr]", "hardware.threads=1"])
    spec = spec_from_config(cfg, tmp / "runs" / "bicubic__embedded")
    summary = run(spec)
    assert summary["n_ok"] == 2
    dataset = open_dataset("embedded", root=root)
    inputs = {n: (dataset.read(n).lr, dataset.read(n).hr) for n in dataset.names()[:2]}
    root.rename(root.with_name(root.name + "-moved"))
    with pytest.raises(DatasetError, match="folder not found"):  # the report cannot re-open the set
        open_dataset("embedded", root=root)
    return spec.run_dir, inputs


def _view_index(report: Path) -> dict:
    html = (report / "report.html").read_text(encoding="utf-8")
    payload = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S).group(1)
    return json.loads(payload.replace("<\\/", "</"))["views"]["datasets"]


def test_report_shows_lr_and_gt_crops_with_the_data_set_gone(moved_away_run, tmp_path: Path) -> None:
    run_dir, inputs = moved_away_run
    out = tmp_path / "report"
    text = write_report([run_dir], out).read_text(encoding="utf-8")
    images = _view_index(out)["embedded"]["images"]
    assert sorted(images) == sorted(inputs)
    for name, (lr, hr) in inputs.items():
        entry = images[name]
        assert set(entry["files"]) == {"lr", "m0", "gt"} and "note" not in entry
        top, left, side = entry["crop"]
        assert (top, left, side) == choose_crop(hr) and entry["size"] == list(hr.shape[-2:])
        gt = read_image(out / entry["files"]["gt"])
        assert torch.equal(gt, hr[:, top: top + side, left: left + side])
        up = F.interpolate(lr[None], size=tuple(hr.shape[-2:]), mode="nearest")[0]
        assert torch.equal(read_image(out / entry["files"]["lr"]), up[:, top: top + side, left: left + side])
        sr = read_image(RunFolder(run_dir).sr_image(name))
        assert torch.equal(read_image(out / entry["files"]["m0"]), sr[:, top: top + side, left: left + side])
    assert "LR and GT are not shown" not in text
    # nothing in the report is a full-size image: crops and thumbnails only
    for f in (out / "images").rglob("*"):
        if f.is_file():
            with Image.open(f) as im:
                assert max(im.size) <= 256 // 2, f


def test_old_run_folder_without_visual_records_shows_methods_and_says_so(moved_away_run, tmp_path: Path) -> None:
    run_dir, inputs = moved_away_run
    old = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, old)
    shutil.rmtree(old / "visual")
    out = tmp_path / "report"
    text = write_report([old], out).read_text(encoding="utf-8")
    images = _view_index(out)["embedded"]["images"]
    for name in inputs:
        assert set(images[name]["files"]) == {"m0"}
        assert images[name]["note"].startswith("LR and GT not shown: the run folders hold no visual record")
    assert f"LR and GT are not shown for {len(inputs)} of {len(inputs)} images" in text


def test_shard_array_files_round_trip_and_name_the_file_they_cannot_read(tmp_path):
    import numpy as np

    from resshift.runfolder.arrays import read_arrays, write_arrays

    path = write_arrays(tmp_path / "records" / "x-0-of-1.npz", names=np.array(["a", "b"]),
                        v=np.arange(6.0).reshape(2, 3))
    data = read_arrays(path, "test file", ("names", "v"))
    assert data["names"].tolist() == ["a", "b"] and data["v"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match=r"x-0-of-1\.npz: cannot read the test file \(KeyError"):
        read_arrays(path, "test file", ("names", "w"))
    broken = tmp_path / "records" / "y-0-of-1.npz"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"y-0-of-1\.npz: cannot read the spectra file"):
        read_arrays(broken, "spectra file", ("names",))
    pickled = tmp_path / "records" / "z-0-of-1.npz"
    np.savez(pickled, names=np.array([{"a": 1}], dtype=object))  # an object array needs unpickling: refused
    with pytest.raises(ValueError, match=r"z-0-of-1\.npz: cannot read the feature file \(ValueError"):
        read_arrays(pickled, "feature file", ("names",))
