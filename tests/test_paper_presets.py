"""The paper presets run end to end (small random ResShift networks in the release file names)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from test_pipeline_cli import SMALL_UNET, SMALL_VQ

from resshift.paths import PROJECT_ROOT
from resshift.runner.app import spec_from_config
from resshift.runner.run import run


@pytest.fixture
def small_release_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from resshift import weights
    from resshift.models import UNetModelSwin, VQModelTorch

    torch.manual_seed(0)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for version in ("v1", "v3", "sinsr-v1"):  # SinSR's UNet is the v1 architecture
        torch.save(UNetModelSwin(**SMALL_UNET).state_dict(), wdir / weights.get_entry(version).filename)
    torch.save(VQModelTorch(**SMALL_VQ).state_dict(), wdir / weights.get_entry("vqgan").filename)
    monkeypatch.setattr(weights, "load_unet", functools.partial(weights.load_unet, params=SMALL_UNET))
    monkeypatch.setattr(weights, "load_autoencoder", functools.partial(weights.load_autoencoder, params=SMALL_VQ))
    return wdir


def _compose(overrides: list[str]):
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=False)


# Published rows each preset must regenerate (their methods' weights are public).
PAPER_ROWS = {
    "paper_imagenet_test": {"ResShift (v1, NeurIPS)", "SinSR", "BSRGAN", "RealESRGAN", "SwinIR (real)",
                            "LDM-15", "LDM-30"},
    "paper_realworld": {"ResShift (v1, NeurIPS)", "SinSR", "BSRGAN", "RealESRGAN", "LDM-15"},
}


@pytest.mark.parametrize("preset", sorted(PAPER_ROWS))
def test_preset_lists_every_row(preset: str) -> None:
    from resshift.reports.reference import reference_numbers

    published = set(reference_numbers()["method"])
    references, labels = {}, {}
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={preset}"], return_hydra_config=True)
        for name in cfg.hydra.sweeper.params.method.split(","):
            method = compose("config", overrides=[f"+experiment={preset}", f"method={name}"]).method
            reference = method.get("reference")
            assert reference is None or reference in published, (name, reference)
            references[reference], labels[name] = name, method.label
    assert PAPER_ROWS[preset] <= set(references), PAPER_ROWS[preset] - set(references)
    assert references["LDM-15"] == "ldm-15" and labels["ldm-15"] == "ldm-15-public-compvis"
    # rows that cannot run are listed, with the reason and the way in (scoring outputs made elsewhere)
    not_run = {r.row: r for r in cfg.paper_rows_not_run}
    assert set(not_run) == {"DASR"}
    assert not_run["DASR"].reason and not_run["DASR"].way_in.startswith("resshift score SR_DIR --dataset")


def test_sinsr_and_gan_rows_run_on_val_sr_mirror(small_release_files: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, shared_datasets: Path) -> None:
    pytest.importorskip("spandrel")
    from test_spandrel_methods import _rrdb_state

    monkeypatch.setenv("RESSHIFT_DATA_MIRROR", str(shared_datasets))
    torch.save(_rrdb_state("kair"), small_release_files / weights_entry("bsrgan").filename)
    nfe = {}
    for name in ("sinsr", "bsrgan"):
        cfg = _compose(["+experiment=paper_imagenet_test", "dataset=val-sr", f"method={name}", "limit=1",
                        "hardware.warmup=0", f"method.params.weights_dir={small_release_files}",
                        "method.params.download=false", "metrics=[psnr,ssim]"])
        summary = run(spec_from_config(cfg, tmp_path / name))
        assert summary["n_ok"] == 1 and summary["protocol_id"] == "resshift-val-sr"
        assert summary["timing"]["median_s"] > 0
        nfe[name] = summary["nfe"]
    assert nfe == {"sinsr": 1, "bsrgan": 1}


def weights_entry(key: str):
    from resshift import weights

    return weights.get_entry(key)


@pytest.mark.usefixtures("shared_datasets")
def test_imagenet_preset_on_val_sr_mirror(small_release_files: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, shared_datasets: Path) -> None:
    monkeypatch.setenv("RESSHIFT_DATA_MIRROR", str(shared_datasets))
    cfg = _compose(["+experiment=paper_imagenet_test", "dataset=val-sr", "method=resshift-v3", "limit=2",
                    f"method.params.weights_dir={small_release_files}", "method.params.download=false"])
    assert (cfg.method.params.chop_size, cfg.method.params.chop_stride, cfg.hardware.batch_size) == (64, 64, 64)
    assert list(cfg.metrics) == ["psnr", "ssim", "lpips", "clipiqa", "musiq"]
    spec = spec_from_config(cfg, tmp_path / "run")
    summary = run(spec)
    assert summary["n_ok"] == 2 and summary["protocol_id"] == "resshift-val-sr"
    assert summary["nfe"] == 4
    assert set(summary["metrics"]) >= {"psnr", "ssim"}
    assert 0 < summary["metrics"]["psnr"]["mean"] < 60
    for name in ("clipiqa", "musiq"):  # weights absent here: reported, never invented
        assert name in summary["metrics"] or name in summary["unavailable"]
    rows = spec.folder.rows("sr")
    assert all(r["sr_hw"] == [256, 256] for r in rows)
    # the checkpoint's SHA-256 is on every result row
    v3_file = small_release_files / "resshift_realsrx4_s4_v3.pth"
    expected = hashlib.sha256(v3_file.read_bytes()).hexdigest()
    assert summary["method_info"]["checkpoint_sha256"] == expected
    assert {r["provenance"]["checkpoint_sha256"] for r in spec.folder.rows("metrics")} == {expected}


def test_realworld_preset_on_realset65_mirror(small_release_files: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, shared_datasets: Path) -> None:
    monkeypatch.setenv("RESSHIFT_DATA_MIRROR", str(shared_datasets))
    cfg = _compose(["+experiment=paper_realworld", "dataset=realset65", "method=resshift-v1", "select=[chip]",
                    "method.params.chop_size=64", "method.params.chop_stride=48",
                    f"method.params.weights_dir={small_release_files}", "method.params.download=false",
                    "metrics=[clipiqa,musiq,niqe]"])
    spec = spec_from_config(cfg, tmp_path / "run")
    summary = run(spec)
    assert summary["n_ok"] == 1 and summary["protocol_id"] == "resshift-realset65" and summary["nfe"] == 15
    row = spec.folder.rows("sr")[0]
    assert row["sr_hw"] == [4 * row["lr_hw"][0], 4 * row["lr_hw"][1]]
    assert set(summary["metrics"]) | set(summary["unavailable"]) == {"clipiqa", "musiq", "niqe"}
