"""Cards, the streaming loader, the embedded set and the mirror-backed sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from resshift.data import CardError, DatasetError, list_cards, load_card, open_dataset
from resshift.data.cards import parse_card
from resshift.data.degradations.matlab_resize import bicubic_downscale_8bit
from resshift.data.sources import DatasetNotAvailable
from resshift.io import write_png

MIRROR_SETS = {  # name: (count, has_hr, lr size or None, hr size or None)
    "val-sr": (32, True, (64, 64), (256, 256)),
    "bicubic-x4": (16, True, (64, 64), (256, 256)),
    "realsr-v3": (100, False, None, None),
    "realset65": (65, False, None, None),
    "realset80": (80, False, None, None),
}


def test_every_card_parses_and_names_match_files():
    names = list_cards()
    for expected in ["embedded", "imagenet-test", "val-sr", "bicubic-x4", "realsr-v3", "realset65",
                     "realset80", "folder", "paired-folder"]:
        assert expected in names
    for name in names:
        card = load_card(name)
        assert card.name == name
        assert card.protocol_id and card.scale == 4
        assert card.card_sha256 == hashlib.sha256(card.path.read_bytes()).hexdigest()


def test_card_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nkind: paired\nscale: 4\n")
    with pytest.raises(CardError, match=r"broken\.yaml.*protocol_id"):
        load_card(bad)
    bad.write_text("name: b\nprotocol_id: x\nkind: weird\nscale: 4\n")
    with pytest.raises(CardError, match="kind must be one of"):
        load_card(bad)
    with pytest.raises(CardError, match="no dataset card named 'nope'"):
        load_card("nope")


def test_embedded_set_is_built_and_lr_is_matlab_bicubic_of_hr():
    ds = open_dataset("embedded")
    assert len(ds) == 8
    assert ds.names() == sorted(ds.names())
    assert ds.card.protocol_id == "embedded-bicubic-x4" and ds.card.has_hr
    assert len(ds.card.card_sha256) == 64
    for sample in ds:
        assert sample.lr.shape == (3, 64, 64) and sample.hr.shape == (3, 256, 256)
        assert sample.lr.dtype == torch.float32
        torch.testing.assert_close(sample.lr, bicubic_downscale_8bit(sample.hr, 4), atol=0.5 / 255, rtol=0)
        assert sample.meta["protocol_id"] == "embedded-bicubic-x4"
    # second open reuses the cache folder
    assert open_dataset("embedded").root == ds.root


@pytest.mark.parametrize("name", sorted(MIRROR_SETS))
def test_mirror_sets_load(name, mirror):
    count, has_hr, lr_size, hr_size = MIRROR_SETS[name]
    ds = open_dataset(name)
    assert len(ds) == count and ds.card.has_hr == has_hr
    assert str(ds.root).startswith(str(mirror))
    first = next(iter(ds.select(ds.names()[:2])))
    assert first.lr.ndim == 3 and first.lr.shape[0] == 3
    if lr_size:
        assert tuple(first.lr.shape[1:]) == lr_size and tuple(first.hr.shape[1:]) == hr_size
    else:
        assert first.hr is None


def test_realsr_names_strip_suffix_and_optional_hr_is_used(mirror, tmp_path):
    ds = open_dataset("realsr-v3")
    assert ds.names()[0] == "Canon_001" and ds.names()[-1] == "Nikon_050"
    # A user-supplied HR folder: two pairs with HR = 4x LR
    root = tmp_path / "realsr"
    for name in ds.names()[:2]:
        lr = ds.read(name).lr[:, :8, :10]
        write_png(root / "lr" / f"{name}_LR4.png", lr)
        write_png(root / "hr" / f"{name}_HR.png", torch.rand(3, 32, 40))
    with_hr = open_dataset("realsr-v3", root=root)
    assert with_hr.card.has_hr and len(with_hr) == 2
    sample = next(iter(with_hr))
    assert sample.hr.shape == (3, 32, 40)


def test_missing_mirror_and_cache_gives_actionable_error():
    with pytest.raises(DatasetNotAvailable, match=r"val-sr.*resshift data fetch val-sr"):
        open_dataset("val-sr")


def _paired(root: Path, n: int = 3, lr_hw=(8, 6), scale: int = 4) -> None:
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        write_png(root / "lr" / f"im{i}.png", torch.rand(3, *lr_hw, generator=g))
        write_png(root / "hr" / f"im{i}.png", torch.rand(3, lr_hw[0] * scale, lr_hw[1] * scale, generator=g))


def test_paired_folder_select_shard_and_batches(tmp_path):
    _paired(tmp_path, n=5)
    ds = open_dataset("paired-folder", root=tmp_path)
    assert ds.names() == [f"im{i}" for i in range(5)]
    shards = [ds.shard(r, 2).names() for r in range(2)]
    assert shards == [["im0", "im2", "im4"], ["im1", "im3"]]
    assert sorted(sum(shards, [])) == ds.names()
    assert ds.select(["im3", "im1"]).names() == ["im1", "im3"]
    with pytest.raises(KeyError, match="im9"):
        ds.select(["im9"])
    assert [len(b) for b in ds.batches(2)] == [2, 2, 1]
    # the iterator is lazy: reading the first sample does not touch the others
    (tmp_path / "lr" / "im4.png").write_bytes(b"not an image")
    it = iter(ds)
    assert next(it).name == "im0"
    with pytest.raises(DatasetError, match=r"im4\.png: not a decodable image"):
        list(ds)


def test_size_mismatch_names_both_files(tmp_path):
    _paired(tmp_path, n=2)
    write_png(tmp_path / "hr" / "im1.png", torch.rand(3, 30, 24))
    ds = open_dataset("paired-folder", root=tmp_path)
    msg = r"hr/im1\.png: HR is 30x24 but LR .*lr/im1\.png is 8x6; scale 4 needs HR 32x24"
    with pytest.raises(DatasetError, match=msg):
        ds.read("im1")


def test_missing_partner_names_the_file(tmp_path):
    _paired(tmp_path, n=2)
    (tmp_path / "hr" / "im1.png").unlink()
    with pytest.raises(DatasetError, match=r"lr/im1\.png: no HR partner im1\.\*"):
        open_dataset("paired-folder", root=tmp_path)
    write_png(tmp_path / "hr" / "im1.png", torch.rand(3, 32, 24))
    write_png(tmp_path / "hr" / "extra.png", torch.rand(3, 32, 24))
    with pytest.raises(DatasetError, match=r"extra\.png: HR image without an LR partner"):
        open_dataset("paired-folder", root=tmp_path)


def test_overrides_and_folder_set(tmp_path):
    _paired(tmp_path, n=2, scale=2)
    ds = open_dataset("paired-folder", root=tmp_path, scale=2)
    assert ds.card.scale == 2 and ds.card.raw["overrides"] == {"scale": 2}
    assert next(iter(ds)).hr.shape == (3, 16, 12)
    with pytest.raises(TypeError, match="unknown dataset override 'colour'"):
        open_dataset("paired-folder", root=tmp_path, colour=1)
    lr_only = open_dataset("folder", root=tmp_path / "lr")
    assert not lr_only.card.has_hr and lr_only.names() == ["im0", "im1"]
    assert next(iter(lr_only)).hr is None


def test_fixed_lr_size_is_checked(tmp_path):
    card = parse_card(
        "name: t\nprotocol_id: t\nkind: paired\nscale: 4\nlr_size: [8, 8]\nlayout: {lr: lr, hr: hr}\n",
        path=tmp_path / "t.yaml",
    )
    _paired(tmp_path, n=1, lr_hw=(8, 6))
    with pytest.raises(DatasetError, match=r"im0\.png: LR is 8x6, the 't' card says 8x8"):
        next(iter(open_dataset(card, root=tmp_path)))


@pytest.mark.parametrize("name, count", [("stablesr-realsr-crop", 100), ("stablesr-drealsr-crop", 93)])
def test_stablesr_crop_cards_pair_same_file_names(name, count):
    """The layout OSEDiff and StableSR ship: test_LR/X.png pairs with test_HR/X.png (same name)."""
    card = load_card(name)
    assert card.protocol_id == name and (card.layout.lr, card.layout.hr) == ("test_LR", "test_HR")
    assert (card.layout.lr_suffix, card.layout.hr_suffix) == ("", "") and card.has_hr
    assert (card.count, card.lr_size, card.hr_size) == (count, (128, 128), (512, 512))
    lr = {k.split("/", 1)[1] for k in card.manifest if k.startswith("test_LR/")}
    hr = {k.split("/", 1)[1] for k in card.manifest if k.startswith("test_HR/")}
    assert len(lr) == count and lr == hr and len(card.manifest) == 2 * count


def test_osediff_layout_loads_and_checks_hr_is_4x_lr(tmp_path):
    g = torch.Generator().manual_seed(3)
    for stem in ("Canon_001_LR4", "Nikon_002_LR4"):
        write_png(tmp_path / "test_LR" / f"{stem}.png", torch.rand(3, 8, 6, generator=g))
        write_png(tmp_path / "test_HR" / f"{stem}.png", torch.rand(3, 32, 24, generator=g))
    # the card pins 128 -> 512; these small stand-ins need the sizes released
    ds = open_dataset("stablesr-realsr-crop", root=tmp_path, lr_size=None, hr_size=None)
    assert ds.names() == ["Canon_001_LR4", "Nikon_002_LR4"] and ds.card.has_hr
    sample = ds.read("Nikon_002_LR4")
    assert sample.hr.shape == (3, 32, 24) and sample.meta["hr_path"].endswith("test_HR/Nikon_002_LR4.png")
    with pytest.raises(DatasetError, match=r"Canon_001_LR4\.png: LR is 8x6, the '\S+' card says 128x128"):
        open_dataset("stablesr-realsr-crop", root=tmp_path).read("Canon_001_LR4")
    write_png(tmp_path / "test_HR" / "Nikon_002_LR4.png", torch.rand(3, 32, 20, generator=g))
    msg = (r"test_HR/Nikon_002_LR4\.png: HR is 32x20 but LR .*test_LR/Nikon_002_LR4\.png is 8x6; "
           r"scale 4 needs HR 32x24")
    with pytest.raises(DatasetError, match=msg):
        open_dataset("stablesr-realsr-crop", root=tmp_path, lr_size=None, hr_size=None).read("Nikon_002_LR4")
    (tmp_path / "test_HR" / "Canon_001_LR4.png").unlink()
    with pytest.raises(DatasetError, match=r"test_LR/Canon_001_LR4\.png: no HR partner Canon_001_LR4\.\*"):
        open_dataset("stablesr-realsr-crop", root=tmp_path)


def test_no_reference_cards_without_download_source(tmp_path):
    for name, sub, count in (("reallr200", ".", 200), ("reallq250", "lq", 250)):
        card = load_card(name)
        assert (card.kind, card.protocol_id, card.count, card.has_hr) == ("lr-only", name, count, False)
        assert card.layout.lr == sub and all(s["type"] == "manual" for s in card.sources)
        with pytest.raises(DatasetNotAvailable, match=f"{name}.*no download source: pass its folder as root"):
            open_dataset(name)
        write_png(tmp_path / name / sub / "img_01.png", torch.rand(3, 9, 7))
        ds = open_dataset(name, root=tmp_path / name)  # a user's folder: the count is not enforced
        assert ds.names() == ["img_01"] and next(iter(ds)).hr is None
