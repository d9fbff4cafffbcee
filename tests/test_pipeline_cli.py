"""The folder pipeline and the ``resshift sr`` command (small random networks, few small images)."""

from __future__ import annotations

import functools
import shutil

import cv2
import numpy as np
import pytest
import torch

from resshift.cli import main
from resshift.methods.base import SRMethod
from resshift.pipeline import super_resolve_folder

# tiny networks with the official layout (one Swin level kept at the lowest resolution)
SMALL_UNET = {
    "image_size": 64, "in_channels": 3, "model_channels": 32, "out_channels": 3,
    "attention_resolutions": [8], "dropout": 0, "channel_mult": [1, 1, 1, 1],
    "num_res_blocks": [1, 1, 1, 1], "conv_resample": True, "dims": 2, "use_fp16": False,
    "num_head_channels": 32, "use_scale_shift_norm": True, "resblock_updown": False, "swin_depth": 2,
    "swin_embed_dim": 32, "window_size": 8, "mlp_ratio": 2, "cond_lq": True, "lq_size": 64,
}  # fmt: skip
SMALL_VQ = {
    "embed_dim": 3, "n_embed": 64,
    "ddconfig": {"double_z": False, "z_channels": 3, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 32, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [],
                 "dropout": 0.0, "padding_mode": "zeros"},
}  # fmt: skip


class RecordingMethod(SRMethod):
    """Nearest x4 plus a generator-dependent offset; records batch sizes and first draws."""

    name = "recording"
    stochastic = True

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.device = "cpu"

    def upscale(self, lr, generators=None):
        self.batches.append(lr.shape[0])
        offs = torch.stack([torch.rand(1, generator=g) for g in generators]).reshape(-1, 1, 1, 1) * 0.1
        return (torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest") * 0.9 + offs).clamp(0, 1)


def _write(path, arr):
    assert cv2.imwrite(str(path), arr)


def test_pipeline_groups_sizes_reads_any_format_and_reports_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    _write(src / "a.png", rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
    _write(src / "b.png", rng.integers(0, 256, (8, 10), dtype=np.uint8))  # grayscale
    _write(src / "c.png", rng.integers(0, 256, (6, 6, 4), dtype=np.uint8))  # RGBA
    _write(src / "d.png", rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
    _write(src / "a.jpg", rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))  # same stem as a.png
    (src / "broken.png").write_bytes(b"not an image")
    method = RecordingMethod()
    report = super_resolve_folder(src, tmp_path / "out", method, bs=2, progress=False)
    assert sorted(p.name for p in report.written) == ["a.png", "b.png", "c.png", "d.png"]
    assert method.batches == [2, 1, 1]  # a.jpg + b.png (8x10), then c.png (6x6) and d.png (8x10) alone
    failed = {p.name: why for p, why in report.failures}
    assert set(failed) == {"a.png", "broken.png"}  # a.jpg sorts first and takes the name a.png
    assert "already used" in failed["a.png"] and "broken.png" in failed["broken.png"]
    out = cv2.imread(str(tmp_path / "out" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert out.shape == (32, 40, 3)
    assert any("alpha" in note for p, note in report.notes if p.name == "c.png")
    # per-image noise: the same image gives the same output alone or in a batch
    alone = super_resolve_folder(src / "d.png", tmp_path / "alone", RecordingMethod(), progress=False)
    assert alone.ok
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "alone" / "d.png")), cv2.imread(str(tmp_path / "out" / "d.png"))
    )


@pytest.fixture
def small_weights_dir(tmp_path, monkeypatch):
    """Release-named checkpoint files holding small random networks; loaders told the small shapes."""
    from resshift import weights
    from resshift.models import UNetModelSwin, VQModelTorch

    torch.manual_seed(0)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    torch.save(UNetModelSwin(**SMALL_UNET).state_dict(), wdir / weights.get_entry("v3").filename)
    torch.save(VQModelTorch(**SMALL_VQ).state_dict(), wdir / weights.get_entry("vqgan").filename)
    monkeypatch.setattr(weights, "load_unet", functools.partial(weights.load_unet, params=SMALL_UNET))
    monkeypatch.setattr(
        weights, "load_autoencoder", functools.partial(weights.load_autoencoder, params=SMALL_VQ)
    )
    return wdir


def test_cli_on_realset65_images(shared_datasets, small_weights_dir, tmp_path, capsys):
    realset = shared_datasets / "resshift-testdata" / "RealSet65"
    src = tmp_path / "in"
    src.mkdir()
    for name in ("comic1.png", "penguin1.png"):  # 112x112 RGB; 215x167 RGBA (alpha all 255)
        shutil.copy(realset / name, src / name)
    (src / "zz_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    args = ["sr", str(src), "-o", str(out), "--model", "v3", "--bs", "2", "--device", "cpu",
            "--chop-size", "64", "--chop-stride", "64", "--tile-batch", "4",
            "--weights-dir", str(small_weights_dir), "--no-progress", "--seed", "7"]  # fmt: skip
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1, "a bad file makes the exit code non-zero"
    assert "zz_broken.jpg" in captured.err
    assert "wrote 2 image(s)" in captured.out
    for name, (h, w) in {"comic1": (112, 112), "penguin1": (215, 167)}.items():
        img = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (4 * h, 4 * w, 3), name
        assert img.std() > 0, name


def test_cli_errors(tmp_path, capsys):
    assert main(["sr", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "x.png").write_bytes(b"")
    args = ["sr", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--chop-size", "100", "--device", "cpu"]
    assert main(args) == 1
    assert "no default chop stride" in capsys.readouterr().err
    args = ["sr", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"), "--device", "cpu", "--dtype", "fp16"]
    assert main(args) == 1
    assert "needs a CUDA device" in capsys.readouterr().err
