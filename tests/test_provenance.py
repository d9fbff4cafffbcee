"""Provenance helpers: streaming file hashes with a cache, card hash, git, versions, device."""

from __future__ import annotations

import hashlib
import os
import re
from importlib import metadata

import pytest
import torch

from resshift import provenance
from resshift.provenance import (
    card_hash,
    collect_provenance,
    device_info,
    file_sha256,
    git_commit,
    package_versions,
    row_provenance,
)


def test_file_sha256_streams_and_caches(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    data = os.urandom(3 * 2**20 + 17)  # several chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    # A second call is served from the cache: make reading impossible and ask again.
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-read")))
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    monkeypatch.undo()
    # A change (same size, new mtime) invalidates it.
    new = bytes(reversed(data))
    path.write_bytes(new)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_sha256(path) == hashlib.sha256(new).hexdigest()


def test_file_sha256_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        file_sha256(tmp_path / "absent.pth")


def test_card_hash_ignores_line_endings(tmp_path):
    (tmp_path / "a.yaml").write_bytes(b"name: x\nprotocol_id: p\n")
    (tmp_path / "b.yaml").write_bytes(b"name: x\r\nprotocol_id: p\r\n")
    (tmp_path / "c.yaml").write_bytes(b"name: y\nprotocol_id: p\n")
    assert card_hash(tmp_path / "a.yaml") == card_hash(tmp_path / "b.yaml")
    assert card_hash(tmp_path / "a.yaml") == hashlib.sha256(b"name: x\nprotocol_id: p\n").hexdigest()
    assert card_hash(tmp_path / "a.yaml") != card_hash(tmp_path / "c.yaml")


def test_git_commit_here_and_without_git(tmp_path):
    info = git_commit()
    if info["commit"] is not None:  # a checkout
        assert re.fullmatch(r"[0-9a-f]{40}", info["commit"]) and isinstance(info["dirty"], bool)
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_versions_device_and_row():
    versions = package_versions()
    assert versions["torch"] == metadata.version("torch")
    assert versions["python"] and "definitely-not-a-package" not in versions
    dev = device_info("cpu")
    assert dev["device"] == "cpu" and dev["name"] and dev["torch_threads"] == torch.get_num_threads()
    env = collect_provenance("cpu")
    row = row_provenance(protocol_id="imagenet-test-resshift", card_sha256="ab" * 32, method="bicubic",
                         checkpoint_sha256=None, environment=env)
    assert row["protocol_id"] == "imagenet-test-resshift" and row["method"] == "bicubic"
    assert row["git_commit"] == env["git"]["commit"] and row["device"] == dev["name"]
    assert row["packages"]["torch"] == versions["torch"]
    assert set(provenance.TRACKED_PACKAGES) <= set(row["packages"])
