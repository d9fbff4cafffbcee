"""GAN/regression baselines through spandrel, offline: random weights saved in each official key layout.

RRDBNet files are written in the three layouts the released files use (BasicSR ``params_ema`` for
Real-ESRGAN, KAIR for BSRGAN/ESRGAN, the original ``model.N`` layout for RealSR-JPEG); the same
weights in the three layouts must give the same image. SwinIR files are the state dict of spandrel's
port of the official class (official key names, buffers included, ``params_ema`` wrapper).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("spandrel")

from resshift import weights as W  # noqa: E402
from resshift.methods import build_method  # noqa: E402
from resshift.methods.spandrel_sr import SpandrelSR, load_descriptor  # noqa: E402

NF, GC, NB = 64, 32, 1  # feature and growth channels as released; 1 block instead of 23 (detected)


def _rrdb_weights(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """(role, tensor) of an x4 RRDBNet in a neutral naming; roles are mapped to each layout below."""
    gen = torch.Generator().manual_seed(seed)

    def conv(cout: int, cin: int) -> list[torch.Tensor]:
        return [torch.randn(cout, cin, 3, 3, generator=gen) * 0.03, torch.randn(cout, generator=gen) * 0.01]

    out = [("first", conv(NF, 3))]
    for b in range(NB):
        for r in range(1, 4):
            for c in range(1, 6):
                cin = NF + (c - 1) * GC
                out.append((f"block.{b}.{r}.{c}", conv(NF if c == 5 else GC, cin)))
    out += [("trunk", conv(NF, NF)), ("up1", conv(NF, NF)), ("up2", conv(NF, NF)), ("hr", conv(NF, NF)),
            ("last", conv(3, NF))]
    return out


def _layout(role: str, layout: str) -> str:
    if role.startswith("block."):
        _, b, r, c = role.split(".")
        return {"basicsr": f"body.{b}.rdb{r}.conv{c}", "kair": f"RRDB_trunk.{b}.RDB{r}.conv{c}",
                "old": f"model.1.sub.{b}.RDB{r}.conv{c}.0"}[layout]
    names = {
        "basicsr": {"first": "conv_first", "trunk": "conv_body", "up1": "conv_up1", "up2": "conv_up2",
                    "hr": "conv_hr", "last": "conv_last"},
        "kair": {"first": "conv_first", "trunk": "trunk_conv", "up1": "upconv1", "up2": "upconv2",
                 "hr": "HRconv", "last": "conv_last"},
        "old": {"first": "model.0", "trunk": f"model.1.sub.{NB}", "up1": "model.3", "up2": "model.6",
                "hr": "model.8", "last": "model.10"},
    }
    return names[layout][role]


def _rrdb_state(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    state = {}
    for role, (w, b) in _rrdb_weights(seed):
        state[f"{_layout(role, layout)}.weight"] = w
        state[f"{_layout(role, layout)}.bias"] = b
    return state


RRDB_FILES = {"realesrgan-x4plus": "basicsr", "bsrgan": "kair", "esrgan": "kair", "realsr-jpeg": "old"}


@pytest.fixture(scope="module")
def rrdb_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("gan-weights")
    for key, layout in RRDB_FILES.items():
        state = _rrdb_state(layout)
        torch.save({"params_ema": state} if layout == "basicsr" else state, folder / W.get_entry(key).filename)
    return folder


def test_rrdb_layouts_detected_and_equal(rrdb_dir):
    lr = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(1))
    outs = {}
    for key in RRDB_FILES:
        method = build_method(key, weights_dir=str(rrdb_dir), download=False)
        info = method.describe()
        assert info["architecture"] == "ESRGAN" and info["nfe"] == 1 and info["checkpoint"] == key
        assert len(info["checkpoint_sha256"]) == 64 and info["licence"] == W.get_entry(key).licence
        outs[key] = method.upscale(lr)
        assert outs[key].shape == (1, 3, 32, 24) and 0 <= outs[key].min() and outs[key].max() <= 1
    # one set of weights in three key layouts: one network, one image
    for key in ("bsrgan", "esrgan", "realsr-jpeg"):
        assert (outs[key] - outs["realesrgan-x4plus"]).abs().max().item() <= 1e-5
    # our I/O around the network: spandrel's own call on the same file gives the same image
    direct = load_descriptor(rrdb_dir / W.get_entry("bsrgan").filename, "ESRGAN")(lr)
    assert (outs["bsrgan"] - direct).abs().max().item() <= 1e-5


def test_tiling_and_batches(rrdb_dir):
    lr = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    whole = build_method("bsrgan", weights_dir=str(rrdb_dir), download=False)
    tiled = build_method("bsrgan", weights_dir=str(rrdb_dir), download=False, chop_size=6, chop_stride=4)
    a, b = whole.upscale(lr), tiled.upscale(lr)
    assert a.shape == b.shape == (2, 3, 40, 40)
    assert (a[1:] - whole.upscale(lr[1:])).abs().max().item() <= 1e-5  # batch composition does not matter
    # tiles see less context than the whole image: close, not equal (a convolutional network)
    assert 0 < (a - b).abs().mean().item() < 0.05


def test_wrong_architecture_and_missing_file(rrdb_dir, tmp_path):
    bsrgan = rrdb_dir / W.get_entry("bsrgan").filename
    with pytest.raises(W.CheckpointMismatchError, match="detects a ESRGAN network, expected SwinIR"):
        build_method("swinir-m-real-gan", path=str(bsrgan))
    torch.save({"foo.weight": torch.zeros(3, 3)}, tmp_path / "junk.pth")
    with pytest.raises(W.CheckpointMismatchError, match="recognises no architecture"):
        build_method("spandrel", path=str(tmp_path / "junk.pth"))
    with pytest.raises(W.CheckpointNotFoundError, match="Google Drive file id"):
        build_method("realsr-jpeg", weights_dir=str(tmp_path))  # no direct URL: says where to get it
    with pytest.raises(W.ChecksumMismatchError):
        build_method("bsrgan", path=str(bsrgan), sha256="0" * 64)


# SwinIR real-world x4 GAN hyper-parameters of main_test_swinir.py (M: 180 x 6 layers of 6 blocks,
# 6 heads, 1conv; L: 240 x 9 x 6, 8 heads, 3conv); "small" keeps M's layout at a fraction of the size.
SWINIR = {
    "small": ("swinir-m-real-gan", {"embed_dim": 60, "depths": [2, 2], "num_heads": [2, 2],
                                    "resi_connection": "1conv"}),
    "M": ("swinir-m-real-gan", {"embed_dim": 180, "depths": [6] * 6, "num_heads": [6] * 6,
                                "resi_connection": "1conv"}),
    "L": ("swinir-l-real-gan", {"embed_dim": 240, "depths": [6] * 9, "num_heads": [8] * 9,
                                "resi_connection": "3conv"}),
}


@pytest.mark.parametrize("size", ["small", pytest.param("M", marks=pytest.mark.slow),
                                  pytest.param("L", marks=pytest.mark.slow)])
def test_swinir_real_gan(size, tmp_path):
    from spandrel.architectures.SwinIR import SwinIR

    key, kw = SWINIR[size]
    torch.manual_seed(0)
    net = SwinIR(upscale=4, in_chans=3, img_size=64, window_size=8, img_range=1.0, mlp_ratio=2,
                 upsampler="nearest+conv", **kw).eval()
    state = net.state_dict()
    torch.save({"params_ema": state}, tmp_path / W.get_entry(key).filename)
    method = build_method(key, weights_dir=str(tmp_path), download=False)
    assert method.describe()["architecture"] == "SwinIR"
    assert method.describe()["parameters"] == sum(p.numel() for p in net.parameters())
    lr = torch.rand(1, 3, 20, 12, generator=torch.Generator().manual_seed(3))  # not a window multiple
    with torch.inference_mode():
        expected = net(lr).clamp(0, 1)  # the network reflect-pads to its window (8) itself
    out = method.upscale(lr)  # width 12 < spandrel's minimum 16: reflect-padded to 16, as the window pad
    assert out.shape == (1, 3, 80, 48)
    assert (out - expected).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="unsafe in fp16"):
        SpandrelSR(method.descriptor, name=key, device="cuda", dtype="fp16")
