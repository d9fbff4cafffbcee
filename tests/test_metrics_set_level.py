"""Set-level metrics (FID, KID): the statistics against known values, the pyiqa glue with a generated
Inception file, and the whole run path (features per image, resume, shards, summary, report).

The FID Inception weights (``pt_inception-2015-12-05-6726825d.pth``) cannot be downloaded on the test
machine, so the network tests write a file of the same architecture and format (a state dict of pyiqa's
FID Inception-v3 with random weights, BatchNorm statistics set from a few random images so the features
vary with the input) into a temporary metric-weights folder, with every download route made to raise.
These tests check our glue and the statistics, not published FID values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from resshift.metrics.registry import get_spec
from resshift.metrics.set_level import (
    FEATURE_DIM,
    clean_resize,
    frechet_distance,
    kernel_inception_distance,
    mmd2_unbiased_polynomial,
)

# --------------------------------------------------------------------------- the statistics (no weights)


def _with_moments(rng: np.random.Generator, n: int, mean: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``n`` samples whose sample mean is exactly ``mean`` and sample covariance (ddof 1) exactly
    ``factor @ factor.T`` (up to round-off): random draws centred and whitened to identity covariance."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    chol = np.linalg.cholesky(np.cov(z, rowvar=False))
    white = np.linalg.solve(chol, z.T).T
    return white @ factor.T + mean


def _sqrtm_fid(a: np.ndarray, b: np.ndarray) -> float:
    """FID the way pytorch-fid / clean-fid / pyiqa compute it: scipy.linalg.sqrtm of the covariance product."""
    import scipy.linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    return float((mu_a - mu_b) @ (mu_a - mu_b) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(root).real)


def test_fid_of_two_gaussians_with_known_moments_is_the_closed_form():
    """Diagonal covariances: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.2, 3.0, d), rng.uniform(0.2, 3.0, d)
    x = _with_moments(rng, 50, mu1, np.diag(np.sqrt(var1)))
    y = _with_moments(rng, 70, mu2, np.diag(np.sqrt(var2)))
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-10)
    # Same covariance, shifted mean: only the mean term is left.
    shift = _with_moments(rng, 40, mu1 + 2.0, np.diag(np.sqrt(var1)))
    same = _with_moments(rng, 40, mu1, np.diag(np.sqrt(var1)))
    assert frechet_distance(shift, same) == pytest.approx(4.0 * d, rel=1e-10)


@pytest.mark.parametrize("n_a,n_b,d", [(30, 25, 8), (9, 12, 40), (12, 300, 40)])
def test_fid_agrees_with_the_sqrtm_form_the_libraries_use(n_a, n_b, d):
    """Correlated (non-commuting) covariances, more and fewer images than dimensions (rank-deficient)."""
    rng = np.random.default_rng(n_a + d)
    mix_a, mix_b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    a = rng.normal(size=(n_a, d)) @ mix_a + 1.0
    b = rng.normal(size=(n_b, d)) @ mix_b
    reference = _sqrtm_fid(a, b)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-7)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_fid_agrees_with_pyiqas_frechet_distance():
    fid_arch = pytest.importorskip("pyiqa.archs.fid_arch")
    rng = np.random.default_rng(5)
    a = np.abs(rng.normal(size=(40, 16)) @ rng.normal(size=(16, 16)))
    b = np.abs(rng.normal(size=(35, 16)))
    reference = fid_arch.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(float(reference), rel=1e-8)


@pytest.mark.parametrize("n", [5, 100])
def test_fid_of_identical_sets_is_zero_and_order_does_not_matter(n):
    rng = np.random.default_rng(n)
    a = np.abs(rng.normal(size=(n, 64)))  # pool3-like: non-negative
    b = np.abs(rng.normal(size=(n, 64))) + 0.1
    scale = float(np.trace(np.cov(a, rowvar=False)))
    assert abs(frechet_distance(a, a)) <= 1e-12 * scale
    assert abs(frechet_distance(a, a[rng.permutation(n)])) <= 1e-12 * scale
    fid = frechet_distance(a, b)
    assert fid > 0.01
    assert frechet_distance(a[rng.permutation(n)], b[rng.permutation(n)]) == pytest.approx(fid, rel=1e-12)
    assert frechet_distance(b, a) == pytest.approx(fid, rel=1e-12)  # symmetric


def test_statistics_refuse_bad_inputs():
    a = np.zeros((4, 3))
    with pytest.raises(ValueError, match="at least 2 images"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError, match="one d"):
        frechet_distance(a, np.zeros((4, 2)))
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        kernel_inception_distance(bad, a)


def test_unbiased_mmd_on_a_set_computed_by_hand():
    """d = 1, k(u, v) = (uv + 1)^3; X = {0, 1}, Y = {1, 2}.
    Within X: 2 k(0,1) = 2; within Y: 2 k(1,2) = 54 -> (2 + 54) / (2 * 1) = 28.
    Across: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37 -> 2 * 37 / 4 = 18.5. MMD^2 = 9.5."""
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert mmd2_unbiased_polynomial(x, y) == 9.5
    assert kernel_inception_distance(x, y) == 9.5  # both sets fit one subset: computed once
    same = mmd2_unbiased_polynomial(x, x)
    assert same == pytest.approx(2 * 1 - 2 * (1 + 1 + 1 + 8) / 4)  # unbiased: not 0, and below 0
    low, high = get_spec("kid").value_range  # the registry's range admits it
    assert low <= same < 0 < high


def test_kid_subsets_average_to_the_whole_set_estimate():
    """Each subset estimate is unbiased for the whole-set U-statistic, so many subsets average to it."""
    rng = np.random.default_rng(7)
    a, b = np.abs(rng.normal(size=(8, 4))), np.abs(rng.normal(size=(8, 4))) + 0.5
    whole = mmd2_unbiased_polynomial(a, b)
    subsets = kernel_inception_distance(a, b, subsets=4000, subset_size=4, seed=1)
    spread = np.std([kernel_inception_distance(a, b, subsets=1, subset_size=4, seed=s) for s in range(200)])
    assert abs(subsets - whole) < 4 * spread / np.sqrt(4000)
    assert kernel_inception_distance(a, b, subsets=50, subset_size=4, seed=3) == kernel_inception_distance(
        a, b, subsets=50, subset_size=4, seed=3)  # seeded: reproducible
    assert kernel_inception_distance(a[::-1], b) == pytest.approx(kernel_inception_distance(a, b), rel=1e-12)


def test_kid_agrees_with_pyiqa_on_sets_below_its_subset_size():
    fid_arch = pytest.importorskip("pyiqa.archs.fid_arch")
    rng = np.random.default_rng(9)
    a, b = np.abs(rng.normal(size=(12, FEATURE_DIM))), np.abs(rng.normal(size=(12, FEATURE_DIM))) * 1.1
    assert kernel_inception_distance(a, b) == pytest.approx(fid_arch.mmd_polynomial_kernel(a, b), rel=1e-9)


def test_clean_resize_is_pyiqas(tmp_path):
    fid_arch = pytest.importorskip("pyiqa.archs.fid_arch")
    from resshift.io import read_image

    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate(((40, 52), (512, 480))):  # upscaled and antialiased downscale
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        expected = fid_arch.ResizeDataset([str(tmp_path / f"{i}.png")], mode="clean")[0]
        got = clean_resize(read_image(tmp_path / f"{i}.png"))
        assert got.shape == (3, 299, 299) and got.dtype == torch.float32
        assert torch.equal(got, expected)


# --------------------------------------------------------------------------- the network (generated file)

pyiqa = pytest.importorskip("pyiqa")

from resshift.metrics import build_metrics  # noqa: E402
from resshift.provenance import file_sha256  # noqa: E402
from resshift.weights.table import METRIC_FILES  # noqa: E402

INCEPTION_KEY = "fid-inception"


def write_fid_inception(root: Path, seed: int = 31) -> Path:
    """A state dict of pyiqa's FID Inception-v3 with random weights, saved like pytorch-fid's release file."""
    import pyiqa.archs.inception as inception

    real = inception.load_pretrained_network
    inception.load_pretrained_network = lambda *args, **kwargs: None
    try:
        torch.manual_seed(seed)
        net = inception.fid_inception_v3()
    finally:
        inception.load_pretrained_network = real
    for module in net.modules():  # statistics from a few inputs, so features depend on the image
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net(torch.nn.functional.interpolate(torch.rand(3, 3, 30, 30, generator=g), size=(299, 299)) * 2 - 1)
    dst = root / METRIC_FILES[INCEPTION_KEY].relpath
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.eval().state_dict(), dst)
    return dst


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("metric-weights")
    write_fid_inception(root)
    return root


@pytest.fixture(scope="module")
def downloads_refused():
    """Every download route raises while this module's tests run (tests/offline.py)."""
    from offline import refuse_downloads

    with pytest.MonkeyPatch.context() as mp:
        yield refuse_downloads(mp)


@pytest.fixture(scope="module")
def built(fid_weights, downloads_refused):
    available, unavailable = build_metrics(["fid", "kid", "psnr"], weights_dir=fid_weights)
    assert unavailable == {} and downloads_refused == []
    return available


def test_fid_and_kid_build_offline_from_our_file_and_share_one_network(built, fid_weights):
    from resshift.metrics import SetMetric

    fid, kid = built["fid"], built["kid"]
    assert isinstance(fid, SetMetric) and isinstance(kid, SetMetric) and fid.features is kid.features
    state = torch.load(fid_weights / METRIC_FILES[INCEPTION_KEY].relpath, weights_only=True)
    net = fid.features.network
    torch.testing.assert_close(net.blocks[0][0].conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    torch.testing.assert_close(net.blocks[3][2].branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    assert not net.training
    assert fid.features.weights_sha256 == file_sha256(fid_weights / METRIC_FILES[INCEPTION_KEY].relpath)


def test_features_equal_pyiqas_folder_features(built, tmp_path):
    """Our per-image path (tensors read by resshift.io) gives the features pyiqa's folder FID computes."""
    from pyiqa.archs.fid_arch import get_folder_features

    from resshift.io import read_image

    rng = np.random.default_rng(11)
    for i, (h, w) in enumerate(((64, 80), (120, 72))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    extractor = built["fid"].features
    ours = extractor([read_image(tmp_path / f"img{i}.png") for i in range(2)])
    reference = get_folder_features(str(tmp_path), extractor.network, num_workers=0, batch_size=2,
                                    device=torch.device("cpu"), mode="clean", verbose=False)
    assert ours.shape == (2, FEATURE_DIM) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5 * float(np.abs(reference).max()))
    assert float(np.abs(ours[0] - ours[1]).max()) > 1e-3 * float(np.abs(ours).max())  # features depend on the image
    one_by_one = extractor([read_image(tmp_path / "img1.png")])[0]  # alone, not in a batch
    np.testing.assert_allclose(one_by_one, ours[1], rtol=1e-5, atol=1e-5 * float(np.abs(ours).max()))


def test_missing_or_foreign_inception_file_is_unavailable_never_a_number(tmp_path, fid_weights):
    from resshift.weights import metric_files as wmod

    available, unavailable = build_metrics(["psnr", "fid", "kid"], weights_dir=tmp_path)
    assert set(available) == {"psnr"}
    where = tmp_path / "hub" / "pyiqa"
    for name in ("fid", "kid"):
        assert unavailable[name] == (f"weights file pt_inception-2015-12-05-6726825d.pth not found in {where} "
                                     f"({wmod.FETCH_HINT})")
    # A file of the right name but another network: the construction error names the file.
    wrong = tmp_path / METRIC_FILES[INCEPTION_KEY].relpath
    wrong.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, wrong)
    _, unavailable = build_metrics(["fid"], weights_dir=tmp_path)
    assert "CheckpointMismatchError" in unavailable["fid"] and str(wrong) in unavailable["fid"]


def test_a_pickled_object_is_refused_not_unpickled(tmp_path):
    dst = tmp_path / METRIC_FILES[INCEPTION_KEY].relpath
    dst.parent.mkdir(parents=True)
    torch.save({"weights": torch.zeros(1), "extra": object.__new__(_Unsafe)}, dst)
    _, unavailable = build_metrics(["fid"], weights_dir=tmp_path)
    assert "weights_only=True" in unavailable["fid"]


class _Unsafe:
    """An arbitrary class: a checkpoint holding it must not be unpickled."""


def test_weights_row_names_the_file_pyiqa_loads():
    import pyiqa.archs.inception as inception

    row = METRIC_FILES[INCEPTION_KEY]
    assert row.url == inception.FID_WEIGHTS_URL
    assert row.filename == "pt_inception-2015-12-05-6726825d.pth" and row.relpath.startswith("hub/pyiqa/")
    assert row.sha256 == "" and row.name_prefix == "6726825d" and not row.check_name_prefix


# --------------------------------------------------------------------------- the run path


def _run_spec(run_dir: Path, **kw):
    from resshift.runner.run import RunSpec

    base = dict(run_dir=run_dir, method="bicubic", dataset="embedded", metrics=["psnr", "fid", "kid"], limit=2,
                warmup=0)
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def weights_env(fid_weights, downloads_refused):
    from resshift.weights.metric_files import WEIGHTS_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WEIGHTS_ENV, str(fid_weights))
        yield fid_weights


@pytest.fixture(scope="module")
def fid_run(weights_env, tmp_path_factory):
    from resshift.runner.run import run

    spec = _run_spec(tmp_path_factory.mktemp("fid-run") / "run")
    return spec, run(spec)


def _independent_features(spec, extractor) -> tuple[np.ndarray, np.ndarray]:
    """SR and HR features of the run's images computed here from the files, outside the runner."""
    from resshift.data import open_dataset
    from resshift.io import read_image

    ds = open_dataset("embedded")
    names = ds.names()[:2]  # limit=2: the first two names of the set
    sr = extractor([read_image(spec.folder.sr_image(n)) for n in names])
    hr = extractor([ds.read(n).hr for n in names])
    return sr, hr


def test_run_writes_one_set_value_per_metric_with_its_image_count_and_warning(fid_run, built):
    spec, summary = fid_run
    assert summary["summary_schema"] == 2
    fid, kid = summary["set_metrics"]["fid"], summary["set_metrics"]["kid"]
    for entry in (fid, kid):
        assert entry["n_images"] == 2 and entry["reliable"] is False and entry["warn_below_images"] == 1000
        assert "StableSR issue #105" in entry["warning"] and entry["missing"] == {}
        assert entry["features"] == "inception_v3_fid_pool3_clean299@1"
    assert fid["version"] == "fid_clean_pt_inception@1" and kid["options"]["subsets"] == 100
    assert "fid" not in summary["metrics"] and "fid" not in summary["metric_gaps"]
    sr, hr = _independent_features(spec, built["fid"].features)
    assert fid["value"] == pytest.approx(frechet_distance(sr, hr), rel=1e-5)
    assert kid["value"] == pytest.approx(kernel_inception_distance(sr, hr), rel=1e-5, abs=1e-9)
    assert fid["value"] > 0
    per_image = pd.read_csv(spec.run_dir / "per_image.csv")
    assert not {"fid", "kid"} & set(per_image.columns) and per_image["psnr"].notna().all()
    md = (spec.run_dir / "summary.md").read_text()
    assert "| fid ↓ |" in md and "| 2 |" in md and "below 1000 images" in md
    stored = spec.folder.features(fid["features"], fid["weights_sha256"])
    assert stored.names == sorted(per_image["name"]) and stored.sr.shape == (2, FEATURE_DIM)
    assert json.loads((spec.run_dir / "summary.json").read_text())["set_metrics"]["fid"]["value"] == fid["value"]


def test_resumed_run_reuses_the_features(fid_run):
    from resshift.runner.run import run

    spec, first = fid_run
    before = spec.folder.features_file(0, 1).read_bytes()
    again = run(spec)
    assert again["counts"]["features"] == {"done": 0, "skipped": 2, "failed": 0}
    assert again["set_metrics"]["fid"]["value"] == first["set_metrics"]["fid"]["value"]
    assert again["set_metrics"]["kid"]["value"] == first["set_metrics"]["kid"]["value"]
    assert spec.folder.features_file(0, 1).read_bytes() == before  # nothing rewritten


def test_features_of_another_network_file_are_recomputed_not_mixed(fid_run, tmp_path):
    import shutil

    from resshift.runfolder.features import RunFeatures
    from resshift.runner.run import run

    spec, first = fid_run
    copy = _run_spec(tmp_path / "run")
    shutil.copytree(spec.run_dir, copy.run_dir)
    stored = copy.folder.shard_features(0, 1)
    assert stored is not None
    copy.folder.write_features(0, 1, RunFeatures(stored.names, stored.sr + 1.0, stored.hr, stored.version,
                                                 "0" * 64))  # made by another file, and different
    again = run(copy)
    assert again["counts"]["features"] == {"done": 2, "skipped": 0, "failed": 0}
    assert again["set_metrics"]["fid"]["value"] == pytest.approx(first["set_metrics"]["fid"]["value"], rel=1e-6)
    assert copy.folder.shard_features(0, 1).weights_sha256 == first["set_metrics"]["fid"]["weights_sha256"]


def test_two_shards_gathered_give_the_unsharded_value(fid_run, tmp_path, monkeypatch):
    """Two torchrun shards in one process (the barrier is a no-op; rank 1 first, then rank 0 merges)."""
    import resshift.runner.run as run_module

    spec, single = fid_run
    monkeypatch.setattr(run_module, "_barrier", lambda: None)
    shard1 = run_module.run(_run_spec(tmp_path / "run", rank=1, world_size=2))
    assert shard1 == {}
    merged = run_module.run(_run_spec(tmp_path / "run", rank=0, world_size=2))
    folder = _run_spec(tmp_path / "run").folder
    parts = [folder.shard_features(r, 2) for r in (0, 1)]
    assert parts[0] is not None and parts[1] is not None
    assert not set(parts[0].names) & set(parts[1].names) and len(parts[0]) == len(parts[1]) == 1
    for name in ("fid", "kid"):
        assert merged["set_metrics"][name]["n_images"] == 2
        assert merged["set_metrics"][name]["value"] == pytest.approx(single["set_metrics"][name]["value"], rel=1e-6)
    # the same folder resumed as one process: the two shards' features are taken over, none recomputed
    resumed = run_module.run(_run_spec(tmp_path / "run"))
    assert resumed["counts"]["features"] == {"done": 0, "skipped": 2, "failed": 0}
    assert folder.shard_features(0, 1).names == sorted(parts[0].names + parts[1].names)
    for name in ("fid", "kid"):
        assert resumed["set_metrics"][name]["value"] == pytest.approx(merged["set_metrics"][name]["value"], rel=1e-6)


def test_sets_without_hr_get_no_value_but_the_reason(weights_env, tmp_path):
    from resshift.runner.run import run

    lr = tmp_path / "lr"
    lr.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(lr / f"img{i}.png")
    summary = run(_run_spec(tmp_path / "run", dataset="folder", dataset_params={"root": str(lr)}, limit=None))
    assert summary["set_metrics"] == {}
    gap = summary["metric_gaps"]["fid"]
    assert list(gap.values()) == [2] and "no HR image" in next(iter(gap))
    assert "| fid | no value |" in (tmp_path / "run" / "summary.md").read_text()


def test_run_without_the_inception_file_reports_fid_unavailable(tmp_path, monkeypatch):
    from resshift.runner.run import run
    from resshift.weights.metric_files import WEIGHTS_ENV

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "empty"))
    summary = run(_run_spec(tmp_path / "run", limit=2, metrics=["psnr", "fid"]))
    assert summary["set_metrics"] == {} and "fid" not in summary["metric_gaps"]
    assert "pt_inception-2015-12-05-6726825d.pth not found" in summary["unavailable"]["fid"]
    assert not list((tmp_path / "run" / "records").glob("features-*"))


def test_report_shows_the_set_value_with_its_image_count_and_the_warning(fid_run, tmp_path):
    from resshift.reports import write_report

    spec, summary = fid_run
    write_report([spec.run_dir], tmp_path / "report")
    tables = (tmp_path / "report" / "tables.md").read_text()
    fid_text = f"{summary['set_metrics']['fid']['value']:.2f} (n=2)†"
    assert "fid ↓" in tables and "kid ↓" in tables and fid_text in tables
    assert "† fid over fewer than 1000 images (bicubic)" in tables and "StableSR issue #105" in tables
    results = pd.read_csv(tmp_path / "report" / "results.csv")
    assert results.loc[0, "fid"] == pytest.approx(summary["set_metrics"]["fid"]["value"])
    assert results.loc[0, "fid_n_scored"] == 2 and "StableSR" in results.loc[0, "fid_warning"]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "(n=2)†" in html and "one value over 2 images" in html
