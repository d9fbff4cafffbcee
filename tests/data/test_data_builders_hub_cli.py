"""The imagenet-test builder, the Hugging Face source (offline) and the ``resshift data`` CLI."""

from __future__ import annotations

import io
import json
import random
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resshift.cli import main
from resshift.data import DatasetError, load_card, open_dataset
from resshift.data.builders import build_imagenet_test, center_gt, list_sources, select_images
from resshift.data.degradations.realesrgan import TESTING, degrade_one
from resshift.seeding import image_generator


def test_select_images_follows_python_random_and_restores_state(tmp_path):
    files = [tmp_path / f"{i:03d}.JPEG" for i in range(50)]
    random.seed(1)
    before = random.random()
    random.seed(1)
    chosen = select_images(files, 5, 10000)
    assert random.random() == before  # global RNG state untouched
    random.seed(10000)
    random.shuffle(list(files))
    assert chosen == random.sample(files, 5)
    with pytest.raises(ValueError, match="cannot select 60 images from 50"):
        select_images(files, 60, 10000)


def test_center_gt_resizes_shortest_side_and_crops():
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, 140:160] = 255  # a centred bar survives the centre crop
    out = center_gt(arr, 64)
    assert out.shape == (64, 64, 3) and out[:, 32].min() == 255 and out[:, 0].max() == 0
    assert center_gt(np.zeros((64, 80, 3), np.uint8), 64).shape == (64, 64, 3)


def test_builder_on_imagenet_samples(shared_datasets, tmp_path):
    source = shared_datasets / "imagenet-samples"
    card = load_card("imagenet-test")
    result = build_imagenet_test(card, source, dest=tmp_path / "built", count=6)
    assert result.count == 6 and result.protocol_id == "resshift-imagenet-test-rebuilt"
    ds = open_dataset("imagenet-test", root=result.root)
    assert ds.card.protocol_id == "resshift-imagenet-test-rebuilt" and ds.card.count == 6
    record = json.loads((result.root / "build.json").read_text())
    files = list_sources(source, card.builder["source_glob"])
    expected = sorted(p.stem for p in select_images(files, 6, 10000))
    assert ds.names() == expected and [f.rsplit(".", 1)[0] for f in sorted(record["files"])] == expected
    psnrs = []
    for s in ds:
        assert s.lr.shape == (3, 64, 64) and s.hr.shape == (3, 256, 256)
        up = F.interpolate(s.lr[None], scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        psnrs.append(float(-10 * torch.log10(((up - s.hr) ** 2).mean())))
    # Degradation statistics in the range of the released Val_SR pairs (18.5-32.3 dB, mean 22.3)
    assert 15 < statistics.mean(psnrs) < 32
    # Deterministic per image: the LR is the testing degradation seeded by (seed, file stem) alone
    first = ds.read(ds.names()[0])
    lr, _ = degrade_one(first.hr, image_generator(card.builder["seed"], first.name), TESTING)
    assert torch.equal(lr, first.lr)


def _hub_dir(tmp_path, bad_size: bool = False):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    def png(arr):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    rng = np.random.default_rng(0)
    rows = {"id": [], "low": [], "high": []}
    for i in range(3):
        rows["id"].append(f"img{2 - i}")
        rows["low"].append({"bytes": png(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)), "path": None})
        hr_shape = (30, 24, 3) if bad_size and i == 0 else (32, 24, 3)
        rows["high"].append({"bytes": png(rng.integers(0, 256, hr_shape, dtype=np.uint8)), "path": None})
    image = datasets.Image()
    feats = datasets.Features({"id": datasets.Value("string"), "low": image, "high": image})
    out = tmp_path / "hub"
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(out))
    return out


def test_huggingface_source_offline(tmp_path):
    root = _hub_dir(tmp_path)
    ds = open_dataset("hf://someone/tiny-sr", root=root, lr_column="low", hr_column="high", name_column="id")
    assert ds.names() == ["img0", "img1", "img2"] and ds.card.has_hr
    assert ds.card.huggingface["repo"] == "someone/tiny-sr"
    s = ds.read("img2")
    assert s.lr.shape == (3, 8, 6) and s.hr.shape == (3, 32, 24) and s.lr.dtype == torch.float32
    assert len(ds.shard(0, 2)) == 2
    lr_only = open_dataset("hf://someone/tiny-sr", root=root, lr_column="low")
    assert not lr_only.card.has_hr and lr_only.names() == ["000000", "000001", "000002"]
    with pytest.raises(DatasetError, match="no column 'nope'"):
        open_dataset("hf://someone/tiny-sr", root=root, lr_column="nope")


def test_huggingface_size_mismatch_names_the_row(tmp_path):
    root = _hub_dir(tmp_path, bad_size=True)
    ds = open_dataset("hf://someone/tiny-sr", root=root, lr_column="low", hr_column="high", name_column="id")
    with pytest.raises(DatasetError, match=r"\[0\]\.high: HR is 30x24"):
        ds.read("img2")


def test_cli_list_verify_fetch_build(mirror, tmp_path, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "val-sr" in out and "resshift-val-sr" in out and str(mirror) in out
    assert main(["data", "verify", "bicubic-x4"]) == 0
    assert "OK bicubic-x4: 16 items" in capsys.readouterr().out
    assert main(["data", "fetch", "realset65"]) == 0
    assert "65 files" in capsys.readouterr().out
    rc = main(["data", "build", "imagenet-test", "--imagenet-val", str(mirror / "imagenet-samples"),
               "--count", "2", "--out", str(tmp_path / "b")])
    assert rc == 0 and len(list((tmp_path / "b" / "lq").glob("*.png"))) == 2


def test_cli_verify_reports_a_corrupt_file(tmp_path, capsys):
    src = open_dataset("embedded").root
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(src, root)
    (root / "lr" / "coffee.png").write_bytes(b"broken")
    card = tmp_path / "embedded-copy.yaml"
    card.write_text("name: embedded-copy\nprotocol_id: x\nkind: paired\nscale: 4\nlayout: {lr: lr, hr: hr}\n")
    assert main(["data", "verify", str(card), "--root", str(root)]) == 1
    assert "coffee.png: not a decodable image" in capsys.readouterr().out


def test_huggingface_input_digests_follow_the_bytes_not_the_location(tmp_path):
    """A run's identity records a digest of each input: for a Hugging Face source, of the image bytes, so the same
    data at another path digests alike and other data at the same path does not."""
    root = _hub_dir(tmp_path)
    kw = dict(lr_column="low", hr_column="high", name_column="id")
    first = open_dataset("hf://someone/tiny-sr", root=root, **kw).input_digests()
    moved = tmp_path / "moved"
    root.rename(moved)
    assert open_dataset("hf://someone/tiny-sr", root=moved, **kw).input_digests() == first
    other = _hub_dir(tmp_path, bad_size=True)  # other pixels under the same names and columns
    changed = open_dataset("hf://someone/tiny-sr", root=other, **kw).input_digests()
    assert set(changed) == set(first) and all(changed[n]["hr"] != first[n]["hr"] for n in first)
