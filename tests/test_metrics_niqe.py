"""NIQE with the real MATLAB parameters (basicsr's ``niqe_pris_params.npz``, weights-table row ``niqe-params``),
checked against an independent implementation: basicsr's own NumPy ``calculate_niqe`` (a port of the
MATLAB release), run unmodified from the same basicsr 1.4.2 sdist.

The parameter file and the sdist come from ``resshift metrics fetch-weights --metrics niqe`` (the
``tests`` nox session runs it); without them the tests skip with the reason.
"""

from __future__ import annotations

import importlib
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resshift.download import verify_checksum
from resshift.metrics.pyiqa_backend import niqe_parameters_mat
from resshift.weights.metric_files import metric_weights_dir, weight_problem
from resshift.weights.table import METRIC_FILES

# The files of basicsr 1.4.2 its NIQE needs (upstream code, not copied into the project).
_BASICSR_FILES = ("metrics/niqe.py", "metrics/metric_util.py", "metrics/niqe_pris_params.npz",
                  "utils/color_util.py", "utils/matlab_functions.py", "utils/registry.py")
IMAGES = ("ILSVRC2012_val_00000067", "ILSVRC2012_val_00000104", "ILSVRC2012_val_00000204")


def _archive() -> Path:
    from resshift.paths import cache_dir

    source = METRIC_FILES["niqe-params"].package
    path = cache_dir() / "weights" / "archives" / source.archive_url.rsplit("/", 1)[-1]
    if not path.is_file():
        pytest.skip(f"{path} absent: run `resshift metrics fetch-weights --metrics niqe` (downloads it from PyPI)")
    verify_checksum(path, source.archive_sha256, "basicsr sdist")
    return path


@pytest.fixture(scope="module")
def basicsr_niqe(tmp_path_factory: pytest.TempPathFactory):
    """basicsr's ``calculate_niqe``, imported from the sdist's files under a minimal package skeleton
    (its ``__init__`` files would import all of basicsr, which no longer imports on current torchvision)."""
    root = tmp_path_factory.mktemp("basicsr-src")
    with tarfile.open(_archive()) as tf:
        for rel in _BASICSR_FILES:
            member = tf.extractfile(f"basicsr-1.4.2/basicsr/{rel}")
            assert member is not None
            (root / "basicsr" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "basicsr" / rel).write_bytes(member.read())
    (root / "basicsr" / "__init__.py").write_text("")
    (root / "basicsr" / "metrics" / "__init__.py").write_text("")
    (root / "basicsr" / "utils" / "__init__.py").write_text("from .color_util import bgr2ycbcr  # noqa: F401\n")
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("basicsr.metrics.niqe").calculate_niqe
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "basicsr" or m.startswith("basicsr.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def niqe_metric():
    problem = weight_problem("niqe-params")
    if problem:
        pytest.skip(f"NIQE parameters unavailable: {problem}")
    pytest.importorskip("pyiqa")
    from resshift.metrics import build_metric

    return build_metric("niqe")


def test_parameter_file_is_the_pinned_one() -> None:
    problem = weight_problem("niqe-params")
    if problem:
        pytest.skip(problem)
    mat = niqe_parameters_mat(metric_weights_dir() / METRIC_FILES["niqe-params"].relpath)
    import scipy.io

    params = scipy.io.loadmat(mat)
    assert params["mu_prisparam"].shape == (1, 36) and params["cov_prisparam"].shape == (36, 36)
    # the first entries of the MATLAB release's mu_prisparam (shape parameter and variance of the MSCN fit)
    assert np.allclose(params["mu_prisparam"][0, :2], [2.6013, 0.9057], atol=1e-4)


def test_bad_parameter_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu_pris_param=np.zeros(35), cov_pris_param=np.zeros((36, 36)))
    with pytest.raises(ValueError, match=r"bad\.npz: NIQE parameters of shapes"):
        niqe_parameters_mat(bad)
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ValueError, match=r"bad\.npz: no 'mu_pris_param' array"):
        niqe_parameters_mat(bad)


@pytest.mark.filterwarnings("ignore:Please import `convolve`:DeprecationWarning")  # basicsr's scipy import
def test_niqe_agrees_with_basicsr_numpy_implementation(niqe_metric, basicsr_niqe, shared_datasets: Path) -> None:
    """pyiqa's torch NIQE (ours: YIQ luma, rounded, crop 0) and basicsr's NumPy NIQE (``convert_to='gray'``,
    the same luma: MATLAB's rgb2gray) on real images, GT and LR upsampled. Measured relative differences:
    1e-7 to 2e-5 on four of the six images, 5.5e-4 and 2.9e-3 on two (the float32 vs float64 luma rounds
    some pixels to the other 8-bit level); bound 5e-3."""
    from resshift.io import read_image

    folder = shared_datasets / "resshift-testdata" / "Val_SR"
    for name in IMAGES:
        for kind in ("gt", "lq"):
            x = read_image(folder / kind / f"{name}.png")[None]
            if kind == "lq":  # NIQE needs at least one 96x96 block; bicubic x4 to 256 x 256
                x = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic").clamp(0, 1)
            x = (x * 255).round() / 255
            ours = float(niqe_metric.compute(x)[0])
            bgr = np.ascontiguousarray((x[0].permute(1, 2, 0).numpy() * 255).round()[:, :, ::-1])
            theirs = float(basicsr_niqe(bgr, crop_border=0, input_order="HWC", convert_to="gray"))
            assert abs(ours - theirs) <= 5e-3 * abs(theirs), (name, kind, ours, theirs)
