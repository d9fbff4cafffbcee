"""Offline metric weights: the catalogue, fetching (with local file:// URLs), checks and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from resshift.cli import main
from resshift.metrics.availability import fetch_metric_weights, weights_for_metrics
from resshift.weights import metric_files as wmod
from resshift.weights.table import METRIC_FILES, PackageSource, WeightFile


def _serve(monkeypatch, tmp_path: Path, key: str, payload: bytes, **changes) -> Path:
    """Put ``payload`` at a file:// URL and point catalogue entry ``key`` at it."""
    src = tmp_path / "server" / key
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(payload)
    wf = METRIC_FILES[key]
    fields = {**wf.__dict__, "url": src.as_uri(), **changes}
    monkeypatch.setitem(METRIC_FILES, key, WeightFile(**fields))
    return src


def _serve_package(monkeypatch, tmp_path: Path, key: str, payload: bytes, archive_sha: str | None = None) -> Path:
    """Put ``payload`` into an sdist-like tar.gz at a file:// URL and point the package row ``key`` at it."""
    monkeypatch.setenv("RESSHIFT_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "server" / "pkg-1.0.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/data/file.bin")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    wf = METRIC_FILES[key]
    archive_sha = archive_sha or hashlib.sha256(archive.read_bytes()).hexdigest()
    source = PackageSource("pkg", "1.0", archive.as_uri(), archive_sha, "pkg-1.0/data/file.bin", wheel=False)
    monkeypatch.setitem(METRIC_FILES, key, dataclasses.replace(wf, package=source,
                                                               sha256=hashlib.sha256(payload).hexdigest()))
    return archive


def test_fetch_downloads_checks_and_then_keeps(monkeypatch, tmp_path):
    payload = b"musiq weights"
    _serve(monkeypatch, tmp_path, "musiq-koniq", payload, sha256=hashlib.sha256(payload).hexdigest())
    dest = tmp_path / "w"
    (res,) = fetch_metric_weights(dest, ["musiq"])  # real torch.hub downloader, file:// URL
    assert res.status == "downloaded" and res.sha256 == hashlib.sha256(payload).hexdigest()
    assert (dest / "hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth").read_bytes() == payload
    (again,) = fetch_metric_weights(dest, ["musiq"])
    assert again.status == "present"
    assert not list(dest.rglob("*.part"))


def test_fetch_rejects_a_file_with_the_wrong_hash(monkeypatch, tmp_path):
    _serve(monkeypatch, tmp_path, "musiq-koniq", b"tampered", sha256="0" * 64)
    (res,) = fetch_metric_weights(tmp_path / "w", ["musiq"])
    assert res.status == "failed" and "does not match the published" in res.message
    assert not (tmp_path / "w/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth").exists()
    assert not list((tmp_path / "w").rglob("*.part"))


def test_fetch_extracts_a_file_from_a_package_archive(monkeypatch, tmp_path):
    """NIQE's parameters ship in basicsr's sdist: the archive is fetched (verified) and the member extracted."""
    archive = _serve_package(monkeypatch, tmp_path, "niqe-params", b"niqe parameters")
    dest = tmp_path / "w"
    (res,) = fetch_metric_weights(dest, ["niqe"])
    assert res.status == "downloaded", res.message
    assert (dest / "hub/resshift/niqe_pris_params.npz").read_bytes() == b"niqe parameters"
    assert (tmp_path / "cache" / "weights" / "archives" / archive.name).is_file()
    (again,) = fetch_metric_weights(dest, ["niqe"])
    assert again.status == "present"


def test_package_archive_with_the_wrong_hash_is_refused(monkeypatch, tmp_path):
    _serve_package(monkeypatch, tmp_path, "niqe-params", b"niqe parameters", archive_sha="1" * 64)
    (res,) = fetch_metric_weights(tmp_path / "w", ["niqe"])
    assert res.status == "failed" and "does not match the published 1111" in res.message
    assert not (tmp_path / "w/hub/resshift/niqe_pris_params.npz").exists()
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def test_name_prefix_enforced_for_torchvision_reported_for_pyiqa(monkeypatch, tmp_path):
    _serve(monkeypatch, tmp_path, "torchvision-alexnet", b"not alexnet")
    _serve(monkeypatch, tmp_path, "lpips-alex-v0.1", b"not lpips")
    by_key = {r.key: r for r in fetch_metric_weights(tmp_path / "w", ["lpips"])}
    assert by_key["torchvision-alexnet"].status == "failed"
    assert "does not start with the file name's 7be5be79" in by_key["torchvision-alexnet"].message
    assert by_key["lpips-alex-v0.1"].status == "downloaded"
    assert "not enforced" in by_key["lpips-alex-v0.1"].message


def test_one_failed_download_does_not_stop_the_others(monkeypatch, tmp_path):
    monkeypatch.setitem(
        METRIC_FILES, "musiq-koniq",
        WeightFile(**{**METRIC_FILES["musiq-koniq"].__dict__, "url": (tmp_path / "absent").as_uri()}),
    )
    _serve_package(monkeypatch, tmp_path, "niqe-params", b"ok")
    results = {r.key: r.status for r in fetch_metric_weights(tmp_path / "w", ["musiq", "niqe"])}
    assert results == {"musiq-koniq": "failed", "niqe-params": "downloaded"}


def test_weights_for_metrics_order_and_dedup():
    assert weights_for_metrics(["lpips", "lpips", "psnr", "niqe"]) == [
        "lpips-alex-v0.1", "torchvision-alexnet", "niqe-params",
    ]
    assert set(weights_for_metrics()) == set(METRIC_FILES)


def test_hf_endpoint_mirror(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example/")
    assert METRIC_FILES["musiq-koniq"].resolved_url() == (
        "https://mirror.example/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth"
    )
    assert METRIC_FILES["clip-rn50"].resolved_url().startswith("https://openaipublic.azureedge.net/")


def test_empty_file_is_a_problem(tmp_path):
    path = tmp_path / METRIC_FILES["niqe-params"].relpath
    path.parent.mkdir(parents=True)
    path.touch()
    assert "is empty" in wmod.weight_problem("niqe-params", tmp_path)


def test_catalogue_matches_the_installed_pyiqa_and_torchvision():
    """Detects drift when pyiqa or torchvision rename or re-host a file."""
    pytest.importorskip("pyiqa")
    import torchvision.models as tvm
    from pyiqa.archs import clip_model, dists_arch, lpips_arch, maniqa_arch, musiq_arch, niqe_arch, topiq_arch
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    def name(url: str) -> str:
        return url.rsplit("/", 1)[-1]

    cat = METRIC_FILES
    assert cat["lpips-alex-v0.1"].url == lpips_arch.default_model_urls["0.1_alex"]
    assert cat["lpips-vgg-v0.1"].url == lpips_arch.default_model_urls["0.1_vgg"]
    assert cat["musiq-koniq"].url == musiq_arch.default_model_urls["koniq10k"]
    # NIQE: not pyiqa's download (Hugging Face) but basicsr's copy of the same MATLAB parameters (PyPI)
    assert name(niqe_arch.default_model_urls["url"]) == "niqe_modelparameters.mat"
    assert cat["niqe-params"].url is None and cat["niqe-params"].package.package == "basicsr"
    assert cat["clip-rn50"].url == clip_model._MODELS["RN50"]
    assert cat["clip-rn50"].sha256 == clip_model._MODELS["RN50"].split("/")[-2]
    assert cat["dists"].url == dists_arch.default_model_urls["url"]
    assert cat["maniqa-pipal"].url == maniqa_arch.default_model_urls["pipal"]
    assert cat["maniqa-koniq"].url == maniqa_arch.default_model_urls["koniq"]
    topiq = DEFAULT_CONFIGS["topiq_nr"]["metric_opts"]["model_name"]
    assert cat["topiq-nr-koniq"].url == topiq_arch.default_model_urls[topiq]
    assert cat["clip-vit-b32"].url == clip_model._MODELS["ViT-B/32"]
    assert cat["clip-vit-b32"].sha256 == clip_model._MODELS["ViT-B/32"].split("/")[-2]
    assert cat["torchvision-alexnet"].url == tvm.AlexNet_Weights.IMAGENET1K_V1.url
    assert cat["torchvision-vgg16"].url == tvm.VGG16_Weights.IMAGENET1K_V1.url
    for wf in cat.values():
        assert wf.url is None or name(wf.url) == wf.filename
    # pyiqa's own files live in its >= 0.1.13 cache layout; no SHA-256 is pinned without a published one
    for key in ("dists", "maniqa-pipal", "maniqa-koniq", "topiq-nr-koniq", "liqe-koniq"):
        assert cat[key].relpath == f"hub/pyiqa/{cat[key].filename}" and cat[key].sha256 == "", key
        assert not cat[key].check_name_prefix, key  # pyiqa does not check its files: a mismatch is reported


def test_liqe_catalogue_matches_pyiqa():
    """LIQE imports OpenAI's clip package at import time (as CLIP-IQA does)."""
    pytest.importorskip("pyiqa")
    from resshift.metrics.pyiqa_backend import import_clip_support

    import_clip_support()
    from pyiqa.archs import liqe_arch

    assert METRIC_FILES["liqe-koniq"].url == liqe_arch.default_model_urls["koniq"]


def test_fetch_weights_covers_the_modern_metrics():
    assert weights_for_metrics(["dists", "maniqa-pipal", "maniqa-koniq", "topiq-nr", "liqe"]) == [
        "dists", "torchvision-vgg16", "maniqa-pipal", "maniqa-koniq", "topiq-nr-koniq", "liqe-koniq", "clip-vit-b32",
    ]


def test_cli_list_and_check(tmp_path, capsys):
    assert main(["metrics", "list"]) == 0
    out = capsys.readouterr().out
    for metric in ("psnr", "ssim", "lpips", "lpips-vgg", "clipiqa", "musiq", "niqe", "psnr_y_ycbcr@1",
                   "dists", "maniqa-pipal", "maniqa-koniq", "topiq-nr", "liqe", "maniqa_pipal_uniform20@1"):
        assert metric in out
    assert main(["metrics", "check", "--dir", str(tmp_path), "--metrics", "psnr,ssim"]) == 0
    assert main(["metrics", "check", "--dir", str(tmp_path), "--metrics", "psnr,niqe"]) == 1
    out = capsys.readouterr().out
    assert "niqe       unavailable: weights file niqe_pris_params.npz not found" in out


def test_cli_fetch_weights(monkeypatch, tmp_path, capsys):
    _serve_package(monkeypatch, tmp_path, "niqe-params", b"params")
    assert main(["metrics", "fetch-weights", "--dir", str(tmp_path / "w"), "--metrics", "niqe"]) == 0
    assert "RESSHIFT_METRIC_WEIGHTS=" in capsys.readouterr().out
    assert (tmp_path / "w/hub/resshift/niqe_pris_params.npz").read_bytes() == b"params"
