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


# --- The metrics reported since OSEDiff: DISTS, MANIQA (two trainings), TOPIQ-NR, LIQE -------------------

MODERN = ("dists", "maniqa-pipal", "maniqa-koniq", "topiq-nr", "liqe")


def test_modern_metrics_without_files_are_unavailable_naming_the_file_and_its_place(tmp_path):
    from resshift.metrics import get_spec

    available, unavailable = build_metrics(["psnr", *MODERN], weights_dir=tmp_path)
    assert set(available) == {"psnr"} and set(unavailable) == set(MODERN)
    for name in MODERN:
        wf = METRIC_FILES[get_spec(name).weights[0]]
        where = (tmp_path / wf.relpath).parent
        assert unavailable[name] == f"weights file {wf.filename} not found in {where} ({wmod.FETCH_HINT})", name
    assert "MANIQA_PIPAL-ae6d356b.pth" in unavailable["maniqa-pipal"]
    assert "ckpt_koniq10k.pt" in unavailable["maniqa-koniq"]


def test_modern_metrics_name_a_missing_backbone(tmp_path):
    for key in ("dists", "liqe-koniq"):
        path = tmp_path / METRIC_FILES[key].relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"present")
    _, unavailable = build_metrics(["dists", "liqe"], weights_dir=tmp_path)
    assert unavailable["dists"].startswith(
        f"weights file vgg16-397923af.pth not found in {tmp_path / 'hub' / 'checkpoints'}")
    assert unavailable["liqe"].startswith(f"weights file ViT-B-32.pt not found in {tmp_path / 'hub' / 'clip'}")
    clip = tmp_path / METRIC_FILES["clip-vit-b32"].relpath
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"not the official ViT-B/32")
    _, unavailable = build_metrics(["liqe"], weights_dir=tmp_path)
    assert f"expected {METRIC_FILES['clip-vit-b32'].sha256}" in unavailable["liqe"]


@pytest.fixture
def offline(monkeypatch):
    """Every download route pyiqa, torchvision and timm take raises (a hidden download fails the test)."""
    from offline import refuse_downloads

    return refuse_downloads(monkeypatch)


def _save(root: Path, key: str, obj) -> Path:
    dst = root / METRIC_FILES[key].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, dst)
    return dst


def test_dists_loads_our_files_without_downloading(tmp_path, offline):
    import torchvision

    torch.manual_seed(21)
    vgg = torchvision.models.vgg16().state_dict()
    _save(tmp_path, "torchvision-vgg16", vgg)
    alpha, beta = torch.rand(1, 1475, 1, 1) * 0.1, torch.rand(1, 1475, 1, 1) * 0.1
    _save(tmp_path, "dists", {"alpha": alpha, "beta": beta})
    available, unavailable = build_metrics(["dists"], weights_dir=tmp_path)
    assert unavailable == {} and offline == []
    net = available["dists"].model.net
    torch.testing.assert_close(net.alpha, alpha)
    torch.testing.assert_close(net.stage1[0].weight, vgg["features.0.weight"])  # torchvision VGG16 from our folder
    sr, hr = _images(22, 2, 64, 72)
    got = available["dists"].compute(sr, hr)
    assert got.shape == (2,) and torch.isfinite(got).all()
    assert float(available["dists"].compute(hr, hr).abs().max()) < 1e-4  # identical images: distance 0


def test_topiq_nr_loads_the_whole_model_from_our_file_without_a_timm_download(tmp_path, offline):
    from pyiqa.archs.topiq_arch import CFANet

    torch.manual_seed(23)
    ref = CFANet(semantic_model_name="resnet50", model_name="cfanet_nr_koniq_res50", use_ref=False,
                 backbone_pretrain=False, pretrained=False).eval()
    _save(tmp_path, "topiq-nr-koniq", {"params": ref.state_dict()})
    available, unavailable = build_metrics(["topiq-nr"], weights_dir=tmp_path)
    assert unavailable == {} and offline == []
    net = available["topiq-nr"].model.net
    for name, tensor in ref.state_dict().items():  # backbone included: nothing left at timm's init
        torch.testing.assert_close(net.state_dict()[name], tensor, msg=name)
    sr, _ = _images(24, 1, 64, 80)
    with torch.no_grad():
        expected = ref(sr).reshape(-1)
    torch.testing.assert_close(available["topiq-nr"].compute(sr), expected)


def test_pyiqa_cache_and_timm_patches_are_undone(tmp_path):
    import timm
    from pyiqa.utils import download_util

    from resshift.metrics.pyiqa_backend import pyiqa_cache_in, timm_without_pretrained_weights

    before, create = download_util.DEFAULT_CACHE_DIR, timm.create_model
    with pyiqa_cache_in(tmp_path) as cache:
        assert download_util.DEFAULT_CACHE_DIR == str(tmp_path.resolve() / "hub" / "pyiqa") == str(cache)
    assert download_util.DEFAULT_CACHE_DIR == before
    seen = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr(timm, "create_model", lambda *a, **k: seen.append(k) or "net")
    try:
        with timm_without_pretrained_weights():
            assert timm.create_model("vit_base_patch8_224", pretrained=True) == "net"
        assert seen == [{"pretrained": False}]
    finally:
        monkey.undo()
    assert timm.create_model is create


class _FakeIqa(torch.nn.Module):
    """Stands in for a pyiqa ``InferenceModel`` (NR, higher better): the mean pixel value, calls counted."""

    metric_mode = "NR"
    lower_better = False

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x.mean(dim=(1, 2, 3))


@pytest.fixture
def fake_liqe(tmp_path, monkeypatch):
    """LIQE built around :class:`_FakeIqa` (its files are placeholders; the CLIP hash is patched to theirs)."""
    for key in ("liqe-koniq", "clip-vit-b32"):
        path = tmp_path / METRIC_FILES[key].relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())
    wf = METRIC_FILES["clip-vit-b32"]
    monkeypatch.setitem(METRIC_FILES, "clip-vit-b32",
                        WeightFile(**{**wf.__dict__, "sha256": file_sha256(tmp_path / wf.relpath)}))
    made: list[tuple[str, dict]] = []

    def create(name, as_loss=False, device=None, **kwargs):
        made.append((name, kwargs))
        return _FakeIqa()

    monkeypatch.setattr(pyiqa, "create_metric", create)
    available, unavailable = build_metrics(["liqe"], weights_dir=tmp_path)
    assert unavailable == {}
    assert made == [("liqe", {"pretrained_model_path": str(tmp_path / METRIC_FILES["liqe-koniq"].relpath)})]
    return available["liqe"]


def test_liqe_refuses_a_short_side_below_224_naming_the_size(fake_liqe):
    ok = torch.full((2, 3, 224, 300), 0.25)
    torch.testing.assert_close(fake_liqe.compute(ok), torch.full((2,), 0.25))
    for h, w in ((223, 300), (400, 200)):
        with pytest.raises(MetricInputError, match=rf"liqe: image of {h}x{w} \(HxW\).*at least 224 px"):
            fake_liqe.compute(torch.rand(1, 3, h, w))
    assert fake_liqe.model.shapes == [(2, 3, 224, 300)]  # the small images never reached pyiqa


def test_liqe_size_error_is_recorded_for_that_image_by_the_metrics_phase(fake_liqe):
    from resshift.runner.run import _score_one_metric

    values, errors = _score_one_metric(fake_liqe, torch.rand(1, 3, 128, 512), None, ["0007.png"])
    assert values == {}
    assert errors["0007.png"].startswith("MetricInputError: liqe: image of 128x512 (HxW) has a short side of 128 px")


def test_maniqa_koniq_loads_the_whole_model_from_our_file_without_a_timm_download(tmp_path, offline):
    """Construction only (20 ViT-B/8 crops take over a minute on a CPU)."""
    from pyiqa.archs.maniqa_arch import MANIQA

    from resshift.metrics.pyiqa_backend import timm_without_pretrained_weights

    torch.manual_seed(25)
    with timm_without_pretrained_weights():
        state = MANIQA(pretrained=False, train_dataset="koniq", scale=0.8).state_dict()
    _save(tmp_path, "maniqa-koniq", state)
    available, unavailable = build_metrics(["maniqa-koniq"], weights_dir=tmp_path)
    assert unavailable == {} and offline == []
    net = available["maniqa-koniq"].model.net
    assert net.test_sample == 20 and net.training is False
    loaded = net.state_dict()
    for name in ("vit.patch_embed.proj.weight", "vit.blocks.6.attn.qkv.weight", "fc_score.3.weight"):
        torch.testing.assert_close(loaded[name], state[name], msg=name)
