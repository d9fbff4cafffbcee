"""Fetching: mirror copies, checksummed downloads (file:// URLs), archives, cache."""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest
import torch

from resshift.data import load_card, open_dataset
from resshift.data.cards import parse_card
from resshift.data.sources import (
    ChecksumError,
    DatasetNotAvailable,
    download,
    extract_zip,
    fetch,
    verify_files,
)
from resshift.io import write_png


def _make_pairs(root: Path, n: int = 2) -> dict[str, str]:
    g = torch.Generator().manual_seed(1)
    manifest = {}
    for i in range(n):
        for rel, shape in ((f"lq/p{i}.png", (3, 4, 4)), (f"gt/p{i}.png", (3, 16, 16))):
            write_png(root / rel, torch.rand(*shape, generator=g))
            manifest[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return manifest


def _card(tmp_path: Path, sources: str, manifest: dict[str, str] | None = None, name: str = "tiny"):
    text = (f"name: {name}\nprotocol_id: tiny\nkind: paired\nscale: 4\ncount: 2\n"
            f"layout: {{lr: lq, hr: gt}}\nsources:\n{sources}")
    if manifest:
        text += "manifest:\n" + "".join(f"  {k}: {v}\n" for k, v in manifest.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_card(path)


def test_fetch_files_source_downloads_verifies_and_caches(tmp_path):
    src = tmp_path / "remote"
    manifest = _make_pairs(src)
    card = _card(tmp_path, f"  - {{type: files, base_url: '{src.as_uri()}/'}}\n", manifest)
    result = fetch(card)
    assert result.files == 4
    ds = open_dataset(card)
    assert ds.root == result.root and len(ds) == 2
    assert verify_files(card, ds.root).ok
    # cached: a second fetch does not download again
    assert fetch(card).messages == ["already cached"]
    (ds.root / "lq" / "p0.png").write_bytes(b"tampered")
    report = verify_files(card, ds.root)
    assert not report.ok and "p0.png: SHA-256" in report.problems[0]


def test_download_rejects_wrong_digest_and_leaves_nothing(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"hello")
    dest = tmp_path / "out" / "a.bin"
    with pytest.raises(ChecksumError, match="does not match"):
        download(f.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists() and not dest.with_name("a.bin.part").exists()
    digest = hashlib.sha256(b"hello").hexdigest()
    assert download(f.as_uri(), dest, digest) == digest


def test_archive_source_unpacks_with_strip_and_checks_digest(tmp_path):
    src = tmp_path / "content"
    _make_pairs(src / "imagenet256")
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(src.rglob("*.png")):
            z.write(p, p.relative_to(src).as_posix())
    digest = hashlib.sha256(zpath.read_bytes()).hexdigest()
    card = _card(tmp_path, f"  - {{type: archive, url: '{zpath.as_uri()}', sha256: {digest}, "
                           "archive: set.zip, strip: imagenet256}\n")
    result = fetch(card)
    assert sorted(p.relative_to(result.root).as_posix() for p in result.root.rglob("*.png")) == [
        "gt/p0.png", "gt/p1.png", "lq/p0.png", "lq/p1.png"]
    assert len(open_dataset(card)) == 2
    # a wrong pinned digest is refused, naming the archive
    bad = dataclasses.replace(card, name="tiny2", sources=({**card.sources[0], "sha256": "f" * 64},))
    with pytest.raises(DatasetNotAvailable, match="does not match"):
        fetch(bad)
    # a local copy given as root is checked and unpacked too
    assert len(open_dataset(card, root=zpath)) == 2


def test_unpinned_archive_reports_its_digest(tmp_path):
    src = tmp_path / "content"
    _make_pairs(src)
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(src.rglob("*.png")):
            z.write(p, p.relative_to(src).as_posix())
    card = _card(tmp_path, f"  - {{type: archive, url: '{zpath.as_uri()}', sha256: null}}\n")
    result = fetch(card)
    assert hashlib.sha256(zpath.read_bytes()).hexdigest() in result.messages[0]


def test_zip_with_unsafe_member_is_refused(tmp_path):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="unsafe path"):
        extract_zip(zpath, tmp_path / "out")


def test_fetch_from_mirror_copies_and_checks(mirror):
    card = load_card("bicubic-x4")
    result = fetch(card, mirror=mirror)
    assert result.files == 32 and result.source.startswith("mirror")
    assert verify_files(card, result.root).ok


def test_mirror_copy_with_wrong_digest_is_refused(mirror, tmp_path):
    card = load_card("val-sr")
    first = sorted(card.manifest)[0]
    bad = dataclasses.replace(card, name="val-sr-bad", manifest={**card.manifest, first: "0" * 64})
    with pytest.raises(ChecksumError, match=first.split("/")[-1]):
        fetch(bad, mirror=mirror)


def test_imagenet_card_has_gdrive_source_and_layout():
    card = load_card("imagenet-test")
    gdrive = [s for s in card.sources if s["type"] == "gdrive"][0]
    assert gdrive["file_id"] == "1NhmpON2dB2LjManfX6uIj8Pj_Jx6N-6l" and gdrive["strip"] == "imagenet256"
    assert (card.layout.lr, card.layout.hr, card.count, card.lr_size, card.hr_size) == (
        "lq", "gt", 3000, (64, 64), (256, 256))


def test_parse_card_rejects_bad_manifest():
    with pytest.raises(ValueError, match="manifest must map"):
        parse_card("name: a\nprotocol_id: a\nkind: paired\nscale: 4\nmanifest: {x.png: abc}\n")


def test_stablesr_crop_cards_share_one_pinned_archive():
    digests = set()
    for name, folder in (("stablesr-realsr-crop", "RealSRVal_crop128"), ("stablesr-drealsr-crop", "DrealSRVal_crop128"),
                         ("stablesr-div2k-val-3000", "DIV2K_V2_val")):
        card = load_card(name)
        archive = [s for s in card.sources if s["type"] == "archive"][0]
        assert archive["strip"] == f"StableSR_testsets/{folder}" and card.mirror == archive["strip"]
        assert archive["archive"] == "StableSR_testsets.zip" and "Iceclear/StableSR-TestSets" in archive["url"]
        digests.add(archive["sha256"])
    assert digests == {"32a6344e2a0d394ffcaa7a9245df14105c590dab3ef0d3540e940add1ef9b803"}
    assert not load_card("stablesr-div2k-val-3000").manifest  # no local copy: nothing to hash


@pytest.mark.parametrize("name, folder, count", [("stablesr-realsr-crop", "benchmark_realsr", 100),
                                                 ("stablesr-drealsr-crop", "benchmark_drealsr", 93)])
def test_stablesr_crop_files_source_fetches_osediff_copy(name, folder, count):
    """The card's `files` source and manifest against a local copy of OSEDiff's folders (served as
    file:// URLs in place of raw.githubusercontent.com). Needs RESSHIFT_OSEDIFF_DIR (see
    tests/test_osediff_golden.py); skips without it."""
    import os

    root = os.environ.get("RESSHIFT_OSEDIFF_DIR")
    if not root:
        pytest.skip("RESSHIFT_OSEDIFF_DIR not set (a folder holding OSEDiff's benchmark_realsr/, benchmark_drealsr/)")
    if not (Path(root) / folder / "test_HR").is_dir():
        pytest.skip(f"RESSHIFT_OSEDIFF_DIR={root} holds no {folder}/test_HR")
    card = load_card(name)
    files = [s for s in card.sources if s["type"] == "files"][0]
    assert files["base_url"] == ("https://raw.githubusercontent.com/cswry/OSEDiff/"
                                 f"fcc4f09c7ed66a9bc0ba9433940d76b343142426/preset/datasets/{folder}/")
    local = dataclasses.replace(card, sources=({"type": "files", "base_url": (Path(root) / folder).as_uri() + "/"},))
    assert fetch(local).files == 2 * count
    ds = open_dataset(local)  # from the cache: the card's count and sizes are checked
    assert len(ds) == count and ds.has_hr and verify_files(card, ds.root).ok
    sample = ds.read(0)
    assert sample.lr.shape == (3, 128, 128) and sample.hr.shape == (3, 512, 512)
