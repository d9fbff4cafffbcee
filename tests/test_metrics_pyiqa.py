"""pyiqa glue with the real pyiqa architectures and weight files generated here.

The released weights cannot be downloaded on the test machine, so each test writes files with the
expected names into a temporary weight directory:

* LPIPS: the real v0.1 AlexNet linear layers (they ship inside the ``lpips`` wheel) plus a randomly
  initialised torchvision AlexNet backbone (seeded);
* MUSIQ: a randomly initialised pyiqa MUSIQ (KonIQ head, seeded);
* NIQE: a random but valid model-parameter ``.mat`` (mean vector and SPD covariance);
* CLIP-IQA: a *reduced* CLIP ResNet (same classes and code path as RN50, fewer/narrower layers), with
  the expected SHA-256 patched to the generated file's.

So these tests check our glue (paths, input range, colour order, batching, isolation, availability),
not the published scores.
"""

from __future__ import annotations

import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pyiqa = pytest.importorskip("pyiqa")

from resshift.metrics import build_metrics  # noqa: E402
from resshift.metrics.base import MetricInputError  # noqa: E402
from resshift.provenance import file_sha256  # noqa: E402
from resshift.weights import metric_files as wmod  # noqa: E402
from resshift.weights.table import METRIC_FILES, WeightFile  # noqa: E402

LEARNED = ("lpips", "musiq", "niqe", "clipiqa")

# pyiqa's CLIP loader calls the deprecated torch.jit.load (the format of OpenAI's RN50.pt).
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


def _write_lpips_files(root: Path) -> None:
    import lpips
    import torchvision

    lin = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    dst = root / METRIC_FILES["lpips-alex-v0.1"].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lin, dst)
    torch.manual_seed(11)
    alex = torchvision.models.alexnet()
    # Keep the file small-ish on disk but real-shaped: torchvision loads it strictly.
    dst = root / METRIC_FILES["torchvision-alexnet"].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(alex.state_dict(), dst)


def _write_musiq_file(root: Path) -> None:
    from pyiqa.archs.musiq_arch import MUSIQ

    torch.manual_seed(12)
    net = MUSIQ(pretrained=False, num_class=1)
    dst = root / METRIC_FILES["musiq-koniq"].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), dst)


def _write_niqe_file(root: Path) -> None:
    """Random NIQE parameters in basicsr's ``.npz`` layout (the weights table's file)."""
    rng = np.random.default_rng(13)
    a = rng.normal(size=(36, 36))
    dst = root / METRIC_FILES["niqe-params"].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as fh:
        np.savez(fh, mu_pris_param=rng.normal(size=(1, 36)), cov_pris_param=a @ a.T + 36 * np.eye(36))


class _ParameterHolder(torch.nn.Module):
    """Carries a model's parameters into a TorchScript archive (the format of OpenAI's RN50.pt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _write_small_clip_file(root: Path) -> None:
    from pyiqa.archs.clip_model import CLIP

    torch.manual_seed(14)
    net = CLIP(
        embed_dim=64, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
        vision_patch_size=None, context_length=77, vocab_size=49408,
        transformer_width=64, transformer_heads=1, transformer_layers=1,
    )
    holder = _ParameterHolder()
    for name, child in net.named_children():
        holder.add_module(name, child)
    for name, param in net.named_parameters(recurse=False):
        holder.register_parameter(name, param)
    dst = root / METRIC_FILES["clip-rn50"].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(holder, torch.zeros(1), check_trace=False).save(str(dst))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("metric-weights")
    _write_lpips_files(root)
    _write_musiq_file(root)
    _write_niqe_file(root)
    _write_small_clip_file(root)
    return root


def _accept_generated_clip(mp: pytest.MonkeyPatch, weights_dir: Path) -> str:
    """Accept the generated CLIP and NIQE files (their SHA-256 replace the pinned hashes); returns CLIP's."""
    for key in ("niqe-params", "clip-rn50"):
        wf = METRIC_FILES[key]
        fake = WeightFile(**{**wf.__dict__, "sha256": file_sha256(weights_dir / wf.relpath)})
        mp.setitem(METRIC_FILES, key, fake)
    return fake.sha256


@pytest.fixture
def clip_sha(weights_dir, monkeypatch):
    return _accept_generated_clip(monkeypatch, weights_dir)


@pytest.fixture(scope="module")
def built(weights_dir):
    with pytest.MonkeyPatch.context() as mp:
        _accept_generated_clip(mp, weights_dir)
        available, unavailable = build_metrics(list(LEARNED), device="cpu", weights_dir=weights_dir)
    assert unavailable == {}, unavailable
    return available


def _images(seed: int, b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.nn.functional.avg_pool2d(torch.rand(b, 3, h, w, generator=g), 3, 1, 1)
    sr = (hr + 0.05 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return sr, hr


def test_lpips_glue_matches_the_lpips_package_on_unit_range_inputs(built, weights_dir):
    """pyiqa takes [0,1]; the lpips package with normalize=True is the independent reference."""
    import lpips

    lin = torch.load(
        weights_dir / METRIC_FILES["lpips-alex-v0.1"].relpath, map_location="cpu", weights_only=True
    )
    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False).eval()
    ref.load_state_dict(lin, strict=False)
    backbone = torch.load(weights_dir / METRIC_FILES["torchvision-alexnet"].relpath, weights_only=True)
    for i in range(1, 6):
        piece = getattr(ref.net, f"slice{i}")
        piece.load_state_dict({k: backbone[f"features.{k}"] for k in piece.state_dict()})
    sr, hr = _images(0, 3, 48, 40)
    ours = built["lpips"].compute(sr, hr)
    with torch.no_grad():
        expected = ref(sr, hr, normalize=True).reshape(-1)
        wrong_range = ref(sr, hr, normalize=False).reshape(-1)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, wrong_range, atol=1e-4)  # the convention matters
    # pyiqa loads its linear layers non-strictly: check they really came from our file.
    net = built["lpips"].model.net
    torch.testing.assert_close(net.lin0.model[1].weight, lin["lin0.model.1.weight"])


def test_musiq_loads_our_file(built, weights_dir):
    from pyiqa.archs.musiq_arch import MUSIQ

    state = torch.load(weights_dir / METRIC_FILES["musiq-koniq"].relpath, weights_only=True)
    ref = MUSIQ(pretrained=False, num_class=1).eval()
    ref.load_state_dict(state)
    sr, _ = _images(1, 1, 64, 48)
    with torch.no_grad():
        expected = ref(sr).reshape(-1)
    torch.testing.assert_close(built["musiq"].compute(sr), expected)


def test_niqe_uses_our_parameters(built, weights_dir):
    from pyiqa.archs.niqe_arch import NIQE

    from resshift.metrics.pyiqa_backend import niqe_parameters_mat

    ref = NIQE(pretrained_model_path=niqe_parameters_mat(weights_dir / METRIC_FILES["niqe-params"].relpath))
    sr, _ = _images(2, 2, 192, 200)
    got = built["niqe"].compute(sr)
    torch.testing.assert_close(got, ref(sr).reshape(-1).float())
    assert torch.isfinite(got).all()


def test_clipiqa_scores_are_probabilities(built):
    sr, _ = _images(3, 2, 64, 96)
    got = built["clipiqa"].compute(sr)
    assert got.shape == (2,) and ((got > 0) & (got < 1)).all()


@pytest.mark.parametrize("name", LEARNED)
def test_batched_equals_per_image_and_uint8_equals_float(built, name):
    metric = built[name]
    h, w = (192, 200) if name == "niqe" else (64, 72)
    sr, hr = _images(4, 2, h, w)
    sr = sr.mul(255).round() / 255
    batched = metric.compute(sr, hr)
    single = torch.cat([metric.compute(sr[i : i + 1], hr[i : i + 1]) for i in range(2)])
    assert batched.dtype == torch.float32 and batched.shape == (2,)
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)
    u8 = (sr * 255).round().to(torch.uint8)
    torch.testing.assert_close(metric.compute(u8, hr), batched, rtol=1e-5, atol=1e-6)


def test_grayscale_odd_size_and_range_errors(built):
    sr, hr = _images(5, 1, 61, 47)
    gray = sr[:, :1]
    rgb = gray.expand(-1, 3, -1, -1)
    torch.testing.assert_close(built["lpips"].compute(gray, hr), built["lpips"].compute(rgb, hr))
    with pytest.raises(MetricInputError, match=r"\[-1, 1\]"):
        built["musiq"].compute(sr * 2 - 1)


def test_metric_build_and_call_leave_global_state_alone(weights_dir, clip_sha):
    torch.manual_seed(1234)
    np.random.seed(99)
    random.seed(7)
    before = (
        torch.random.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate(),
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
    )
    available, _ = build_metrics(list(LEARNED), weights_dir=weights_dir)
    sr, hr = _images(6, 1, 192, 192)
    for metric in available.values():
        metric.compute(sr, hr)
    after = (
        torch.random.get_rng_state(), np.random.get_state()[1], random.getstate(),
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
    )
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_guard_undoes_a_backend_that_reseeds_and_sets_cudnn_flags(weights_dir, monkeypatch):
    """Simulate pyiqa 0.1.10-0.1.15 side effects in construction and in every call."""
    real_create = pyiqa.create_metric

    def meddle() -> None:
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)
        torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark
        torch.backends.cudnn.deterministic = not torch.backends.cudnn.deterministic

    def create(*args, **kwargs):
        meddle()
        model = real_create(*args, **kwargs)
        forward = model.forward

        def meddling_forward(*a, **k):
            meddle()
            return forward(*a, **k)

        model.forward = meddling_forward
        return model

    monkeypatch.setattr(pyiqa, "create_metric", create)
    torch.manual_seed(5)
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    rng = torch.random.get_rng_state().clone()
    available, unavailable = build_metrics(["musiq"], weights_dir=weights_dir)
    assert unavailable == {}
    available["musiq"].compute(_images(7, 1, 32, 32)[0])
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == flags


def test_missing_weights_make_metrics_unavailable_with_reason(tmp_path):
    available, unavailable = build_metrics(["psnr", "ssim", *LEARNED, "lpips-vgg"], weights_dir=tmp_path)
    assert set(available) == {"psnr", "ssim"}
    assert set(unavailable) == {*LEARNED, "lpips-vgg"}
    assert unavailable["niqe"] == (
        f"weights file niqe_pris_params.npz not found in {tmp_path / 'hub' / 'resshift'} ({wmod.FETCH_HINT})"
    )
    assert "RN50.pt not found" in unavailable["clipiqa"]
    assert "resshift weights fetch" in unavailable["lpips"]


def test_partial_weights_name_the_missing_backbone(weights_dir, tmp_path):
    only_lin = tmp_path / METRIC_FILES["lpips-alex-v0.1"].relpath
    only_lin.parent.mkdir(parents=True)
    shutil.copyfile(weights_dir / METRIC_FILES["lpips-alex-v0.1"].relpath, only_lin)
    _, unavailable = build_metrics(["lpips"], weights_dir=tmp_path)
    assert "alexnet-owt-7be5be79.pth not found" in unavailable["lpips"]


def test_clip_file_with_wrong_hash_is_unavailable_not_redownloaded(weights_dir):
    # The official hash is in force: the generated file does not match it.
    _, unavailable = build_metrics(["clipiqa"], weights_dir=weights_dir)
    assert "SHA-256" in unavailable["clipiqa"]
    assert METRIC_FILES["clip-rn50"].sha256 in unavailable["clipiqa"]


def test_weight_dir_setting(monkeypatch, tmp_path, weights_dir, clip_sha):
    monkeypatch.setenv(wmod.WEIGHTS_ENV, str(weights_dir))
    assert wmod.metric_weights_dir() == weights_dir.resolve()
    available, unavailable = build_metrics(["niqe"])
    assert "niqe" in available and not unavailable
    monkeypatch.setenv(wmod.WEIGHTS_ENV, str(tmp_path))
    _, unavailable = build_metrics(["niqe"])
    assert str(tmp_path) in unavailable["niqe"]


def test_torch_home_is_restored(tmp_path):
    before = os.environ.get("TORCH_HOME")
    with wmod.torch_home(tmp_path):
        assert torch.hub.get_dir() == str(tmp_path.resolve() / "hub")
    assert os.environ.get("TORCH_HOME") == before


def test_clip_import_leaves_no_pkg_resources_stand_in(built):
    import sys

    from resshift.metrics.pyiqa_backend import import_clip_support

    import_clip_support()
    mod = sys.modules.get("pkg_resources")
    # Either the real setuptools module (where it exists) or nothing: never our stand-in.
    assert mod is None or getattr(mod, "__file__", None)  # the stand-in has no file
    assert "clip" in sys.modules
