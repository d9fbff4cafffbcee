"""Frequency analysis: spectra, HF energy ratio and band PSNRs on images with known spectra; the
runner's spectra records; the report's "Frequency analysis" section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from resshift.methods import build_method
from resshift.methods.bicubic import BicubicUpsampler
from resshift.metrics import MetricInputError, build_metrics, get_spec
from resshift.metrics import spectral as S
from resshift.metrics.registry import MetricSpec
from resshift.reports import write_report
from resshift.reports.spectral import classify, first_crossing_below, frequency_section
from resshift.runfolder import RunFolder
from resshift.runner.run import RunSpec, run, run_metrics_phase, run_sr_phase
from resshift.runner.spectra import record_spectra, write_spectra_summary
from resshift.timing import Timer

SPECTRAL = ["hf-ratio", "hf-log-ratio-abs", "psnr-low", "psnr-mid", "psnr-high", "hf-ratio-lrup"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def metrics():
    available, unavailable = build_metrics(SPECTRAL)
    assert not unavailable
    return available


def _noise(n: int, size: int, seed: int = 0, channels: int = 1) -> torch.Tensor:
    """Uniform white noise on [0, 1] (variance 1/12)."""
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Circular Gaussian blur (exact FFT multiplication by exp(-2 pi^2 sigma^2 f^2))."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :]
    transfer = torch.exp(-2 * math.pi**2 * sigma**2 * (fy**2 + fx**2))
    return torch.fft.ifft2(torch.fft.fft2(x) * transfer).real.clamp(0, 1)


def _cosine(size: int, ky: float, kx: float) -> torch.Tensor:
    """A pure cosine with ``ky``, ``kx`` cycles over the image, as a (1, 1, size, size) image."""
    t = torch.arange(size, dtype=torch.float64)
    phase = 2 * math.pi * (ky * t[:, None] + kx * t[None, :]) / size
    return (0.5 + 0.4 * torch.cos(phase))[None, None]


# --------------------------------------------------------------------------- registry


def test_spectral_specs_declare_direction_and_reference() -> None:
    better = {n: get_spec(n).better for n in SPECTRAL}
    assert better == {"hf-ratio": "none", "hf-log-ratio-abs": "lower", "psnr-low": "higher",
                      "psnr-mid": "higher", "psnr-high": "higher", "hf-ratio-lrup": "none"}
    assert {get_spec(n).mode for n in SPECTRAL[:-1]} == {"FR"}
    assert get_spec("hf-ratio-lrup").mode == "LR" and "bicubic-upsampled" in get_spec("hf-ratio-lrup").input_convention
    assert get_spec("psnr").better == "higher" and get_spec("lpips").better == "lower"
    with pytest.raises(ValueError, match="no better direction"):
        MetricSpec("x", "FR", True, (0, 1), "", "resshift", "x@1", "", "", informational=True)
    with pytest.raises(ValueError, match="'FR', 'NR' or 'LR'"):
        MetricSpec("x", "GT", False, (0, 1), "", "resshift", "x@1", "", "")


def test_luma_is_full_range_bt601_of_8bit_values() -> None:
    assert S.LUMA_WEIGHTS == pytest.approx((0.299, 0.587, 0.114), abs=1e-12)
    rgb = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert S.luma(rgb)[0, 0, 0].item() == pytest.approx(0.299 + 0.587 * 128 / 255)  # 0.5 -> 128 in 8 bits
    gray = torch.full((1, 1, 4, 4), 0.25)
    assert S.luma(gray)[0, 0, 0].item() == pytest.approx(64 / 255)


# --------------------------------------------------------------------------- known spectra


def test_white_noise_has_a_flat_spectrum_at_its_variance() -> None:
    p = S.radial_power_spectrum(_noise(8, 128)).mean(dim=0)
    expected = 1 / 12 + S.QUANTIZATION_POWER  # uniform noise variance (+ 8-bit rounding)
    assert p[2:].mean().item() == pytest.approx(expected, rel=0.03)
    assert ((p[2:] / expected - 1).abs() < 0.15).all(), p / expected


@pytest.mark.parametrize(("size", "ky", "kx"),
                         [(128, 0, 24), (128, 16, 16), (256, 0, 48), (96, 9, 13), (128, 0, 24.5), (128, 7.3, 5.1)])
def test_a_pure_sinusoid_lands_in_its_band(size: int, ky: float, kx: float) -> None:
    r = math.hypot(ky, kx) / size / 0.5  # radial frequency in units of Nyquist
    profile = S.radial_power_spectrum(_cosine(size, ky, kx))[0]
    assert int(torch.argmax(profile)) == min(int(r * S.N_BANDS), S.N_BANDS - 1)
    # Away from the peak's neighbours (Hann main lobe) only 8-bit rounding noise is left, also for
    # frequencies between FFT bins (without the window their leakage is ~1e-2 of the peak).
    far = (torch.arange(S.N_BANDS) - int(torch.argmax(profile))).abs() > 1
    assert profile[far].max().item() < 1e-4 * profile.max().item()


def test_blur_is_detected_as_smoothing_with_the_gaussian_transfer(metrics) -> None:
    sigma = 1.5
    gt = _noise(4, 128, seed=1)
    sr = _blur(gt, sigma)
    ratio = S.spectrum_ratio(sr, gt).mean(dim=0)
    f = S.band_centres() * 0.5  # cycles per pixel
    analytic = torch.exp(-4 * math.pi**2 * sigma**2 * f**2)
    sel = S.band_centres() <= 0.5
    assert torch.allclose(ratio[sel], analytic[sel], rtol=0.15), (ratio[sel], analytic[sel])
    hf = metrics["hf-ratio"].compute(sr, gt)
    assert (hf < 0.01).all()
    assert (metrics["hf-log-ratio-abs"].compute(sr, gt) > 6.5).all()
    low, mid, high = (metrics[f"psnr-{b}"].compute(sr, gt) for b in ("low", "mid", "high"))
    assert (high < mid).all() and (mid < low).all()


def test_added_noise_is_detected_and_spread_by_band_area(metrics) -> None:
    gt = _blur(_noise(2, 128, seed=2), 3.0)  # smooth image: almost no energy above half Nyquist
    noise = 0.02 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sr = (gt + noise).clamp(0, 1)
    assert (metrics["hf-ratio"].compute(sr, gt) > 10).all()
    mse = torch.stack([S.band_mse(sr, gt, lo, hi) for lo, hi in S.PSNR_BANDS.values()])
    # White error: each band's share of the MSE is its share of the frequency square [-1, 1]^2.
    areas = torch.tensor([math.pi * 0.25**2, math.pi * (0.5**2 - 0.25**2), 4 - math.pi * 0.5**2]) / 4
    share = mse / mse.sum(dim=0)
    assert torch.allclose(share, areas[:, None].to(share), atol=0.02), share
    low, mid, high = (metrics[f"psnr-{b}"].compute(sr, gt) for b in ("low", "mid", "high"))
    assert (high < mid).all() and (mid < low).all()


def test_band_mses_add_up_to_the_luma_mse(metrics) -> None:
    a, b = _noise(2, 64, seed=4, channels=3), _noise(2, 64, seed=5, channels=3)
    total = sum(S.band_mse(a, b, lo, hi) for lo, hi in S.PSNR_BANDS.values())
    direct = S.luma(a, minus=b).double().pow(2).mean(dim=(-2, -1))  # Parseval; the FFTs pass through complex64
    assert torch.allclose(total, direct, rtol=1e-6)
    for band, (lo, hi) in S.PSNR_BANDS.items():
        expected = -10 * torch.log10(S.band_mse(a, b, lo, hi))
        assert torch.allclose(metrics[f"psnr-{band}"].compute(a, b).double(), expected, atol=1e-4)


def test_identical_and_flat_images_give_ratio_one_and_capped_psnr(metrics) -> None:
    x = _noise(2, 64, seed=6, channels=3).float()
    assert metrics["hf-ratio"].compute(x, x).tolist() == [1.0, 1.0]
    assert metrics["hf-log-ratio-abs"].compute(x, x).tolist() == [0.0, 0.0]
    for band in ("low", "mid", "high"):
        assert metrics[f"psnr-{band}"].compute(x, x).tolist() == [S.PSNR_CAP_DB] * 2
    flat_a, flat_b = torch.full((1, 3, 32, 32), 0.2), torch.full((1, 3, 32, 32), 0.7)
    assert metrics["hf-ratio"].compute(flat_a, flat_b).item() == 1.0  # both at the quantisation floor


def test_band_axis_is_size_independent() -> None:
    curves, hf = {}, {}
    for size in (128, 256):
        gt = _noise(16 if size == 128 else 4, size, seed=size)
        sr = _blur(gt, 1.0)
        curves[size] = S.radial_power_spectrum(sr).mean(dim=0)
        hf[size] = S.hf_ratio(sr, gt).mean().item()
    assert torch.allclose(curves[128][2:], curves[256][2:], rtol=0.2), curves[128] / curves[256]
    assert hf[128] == pytest.approx(hf[256], rel=0.1)


def test_batch_gives_per_image_results(metrics) -> None:
    gt = _noise(3, 64, seed=7, channels=3).float()
    sr = torch.stack([gt[0], _blur(gt[1:2].double(), 1.0)[0].float(), (gt[2] * 0.5 + 0.25)])
    lr = F.interpolate(gt, scale_factor=0.25, mode="area")
    for name, metric in metrics.items():
        ref = lr if metric.spec.mode == "LR" else gt
        batched = metric.compute(sr, ref)
        single = torch.cat([metric.compute(sr[i: i + 1], ref[i: i + 1]) for i in range(3)])
        assert torch.allclose(batched, single, rtol=1e-6), name


def test_lr_reference_metric_uses_the_bicubic_upsampled_input(metrics) -> None:
    lr = _noise(2, 32, seed=8, channels=3).float()
    bicubic = BicubicUpsampler(4).upscale(lr)
    metric = metrics["hf-ratio-lrup"]
    assert metric.compute(bicubic, lr).tolist() == [1.0, 1.0]
    noisy = (bicubic + 0.05 * torch.randn(bicubic.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)
    assert (metric.compute(noisy, lr) > 2).all()
    with pytest.raises(MetricInputError, match="not one integer multiple of the LR size 32x32"):
        metric.compute(bicubic[..., :100, :], lr)
    with pytest.raises(MetricInputError, match="needs the LR input"):
        metric.compute(bicubic)


# --------------------------------------------------------------------------- runner records


class _Sample:
    def __init__(self, name: str, lr: torch.Tensor, hr: torch.Tensor | None) -> None:
        self.name, self.lr, self.hr = name, lr, hr
        self.meta: dict = {}  # the reader's notes (none here)


class _LROnlySet:
    """A two-image set without HR images (like RealSet65)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(10)
        self.images = {f"img{i}": torch.rand(3, 16, 16, generator=g) for i in range(2)}

    def names(self) -> list[str]:
        return sorted(self.images)

    def read(self, name: str) -> _Sample:
        return _Sample(name, self.images[name], None)


def test_runner_records_spectra_on_a_set_without_gt(tmp_path: Path) -> None:
    spec = RunSpec(run_dir=tmp_path / "run", method="bicubic", metrics=SPECTRAL)
    dataset = _LROnlySet()
    run_sr_phase(spec, build_method("bicubic"), dataset, Timer(device="cpu", warmup=0))
    metrics, _ = build_metrics(SPECTRAL)
    run_metrics_phase(spec, dataset, metrics)
    rows = spec.folder.rows("metrics")
    assert [r["values"] for r in rows] == [{"hf-ratio-lrup": 1.0}] * 2  # bicubic against itself
    assert set(rows[0]["skipped"]) == set(SPECTRAL[:-1])  # the GT metrics say why they are missing
    assert record_spectra(spec, dataset).name == "spectra-0-of-1.npz"
    spectra = spec.folder.spectra()
    assert spectra.names == ["img0", "img1"] and spectra.power_sr.shape == (2, S.N_BANDS)
    assert np.isnan(spectra.power_gt).all() and spectra.preferred_reference() == "lrup"
    assert spectra.n_images("gt") == 0 and spectra.n_images("lrup") == 2
    summary = json.loads(write_spectra_summary(spec.run_dir).read_text())
    assert set(summary["curves"]) == {"lrup"} and summary["curves"]["lrup"]["n_images"] == 2
    # 64x64 SR: band 0 (r < 1/32) holds the DC bin only, so the ratio is defined from band 1 on.
    assert np.allclose(summary["curves"]["lrup"]["mean_ratio"][1:], 1.0, atol=0.02)


def test_embedded_run_writes_spectral_columns_and_spectra(tmp_path: Path) -> None:
    spec = RunSpec(run_dir=tmp_path / "run", method="bicubic", dataset="embedded", metrics=["psnr", *SPECTRAL],
                   limit=2, threads=1, setting={"label": "bicubic"})
    summary = run(spec)
    assert set(SPECTRAL) <= set(summary["metrics"])
    assert summary["metrics"]["hf-ratio"]["better"] == "none"
    assert summary["metrics"]["hf-ratio-lrup"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert summary["metrics"]["hf-ratio"]["mean"] < 0.8  # bicubic loses high frequencies
    md = (spec.run_dir / "summary.md").read_text()
    assert "| hf-ratio · |" in md and "| hf-log-ratio-abs ↓ |" in md
    curves = json.loads((spec.run_dir / "spectra.json").read_text())["curves"]
    assert set(curves) == {"gt", "lrup"} and curves["gt"]["n_images"] == 2
    assert curves["gt"]["mean_ratio"][1] == pytest.approx(1.0, abs=0.1)  # low frequencies kept
    assert curves["gt"]["mean_ratio"][-1] < 0.5  # near Nyquist mostly gone


# --------------------------------------------------------------------------- report


def _fake_run(root: Path, label: str, family: str, nfe: int, hf: float, seed: int,
              curve: np.ndarray | None = None) -> Path:
    """A finished run with spectral metrics, per-image rows and a spectra file."""
    run = root / label
    (run / "records").mkdir(parents=True)
    values = {"psnr": 25.0, "hf-ratio": hf, "hf-log-ratio-abs": abs(math.log2(hf)), "psnr-low": 35.0,
              "psnr-mid": 28.0, "psnr-high": 24.0, "hf-ratio-lrup": 2 * hf}
    per_image = {k: [v, v] for k, v in values.items()}
    per_image["hf-ratio"] = [hf * 2, hf / 2]  # geometric mean hf, arithmetic mean 1.25 hf
    summary = {"method": family, "dataset": "toy", "protocol_id": "toy-x4", "setting": {"label": label},
               "n_images": 2, "n_ok": 2, "n_failed": 0, "nfe": nfe, "method_info": {"name": family, "nfe": nfe},
               "metrics": {k: {"mean": sum(v) / 2, "std": 0.0, "n": 2, "lower_better": get_spec(k).lower_better}
                           for k, v in per_image.items()},  # arithmetic means of the rows, as a run writes them
               "unavailable": {}, "timing": {"median_s": 0.01, "device": "cpu"}}
    (run / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"name": ["a", "b"], "status": ["ok", "ok"], "latency_s": [0.01, 0.01], **per_image}).to_csv(
        run / "per_image.csv", index=False)
    edges = S.band_edges().numpy()
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 1.0, (2, S.N_BANDS))
    ratio = np.full(S.N_BANDS, hf) if curve is None else curve
    np.savez(run / "records" / "spectra-0-of-1.npz", names=np.array(["a", "b"]), band_edges=edges,
             power_sr=gt * ratio, power_gt=gt, power_lrup=gt, version=np.array(S.SPECTRAL_VERSION))
    return run


def test_report_has_the_frequency_section_table_figures_and_finding(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    centres = S.band_centres().numpy()
    smooth = np.where(centres < 0.3, 1.0, 0.1)  # falls below 1/2 at the first band past 0.3
    _fake_run(root, "bicubic", "bicubic", 0, 0.01, 0, curve=smooth)
    for nfe, hf in ((15, 0.9), (50, 0.7), (100, 0.5)):
        _fake_run(root, f"sr3-{nfe}", "sr3", nfe, hf, nfe)
    _fake_run(root, "noisy", "noisy", 4, 3.0, 4)
    out = tmp_path / "report"
    text = write_report([root], out).read_text()
    section = text.split("## Frequency analysis")[1].split("## Figures")[0]
    assert "| method | NFE | hf-ratio (gm) · | images < 1 | hf-log-ratio-abs ↓ |" in section
    assert "| bicubic | 0 | 0.010 | 2/2 | 6.644 | 35.00 | 28.00 | 24.00 | 0.020 |" in section
    first_below = centres[centres >= 0.3][0]
    assert f"| {first_below:.3f} | 1.00 @ {centres[0]:.3f} | below |" in section
    assert "| noisy | 4 | 3.000 | 0/2 |" in section and "| above |" in section
    assert "Lose high-frequency energy: sr3-50, sr3-100, bicubic; within the band: sr3-15; add it: noisy." in section
    assert "**sr3**: hf-ratio 0.900 (15) → 0.700 (50) → 0.500 (100)" in section
    assert "monotone over 3 step counts; it falls with NFE" in section
    assert "Closest to the reference by |log2 hf-ratio|: sr3-15 (0.152) < sr3-50 (0.515)" in section
    for stem in ("spectrum_ratio", "hf_ratio_vs_nfe"):
        assert f"![{stem}]({stem}.png)" in section
        assert (out / f"{stem}.png").is_file() and (out / f"{stem}.pdf").is_file()
    # the main table shows the informational column without an arrow and never bolds it
    results = text.split("## Results")[1].split("## Against")[0]
    assert "| hf-ratio · | hf-log-ratio-abs ↓ | hf-ratio-lrup · |" in results
    assert "| **0.1520** [" in results  # sr3-15 is closest to GT by |log2| (its interval follows)
    assert "**3.0000**" not in results and "**6.0000**" not in results  # noisy's ratios are not "best"


def test_report_without_spectral_metrics_says_how_to_get_them(tmp_path: Path) -> None:
    df = pd.DataFrame({"run": ["x"], "method": ["m"], "method_name": ["m"], "protocol": ["p"], "nfe": [1],
                       "psnr": [30.0]})
    lines, figures = frequency_section(df, pd.DataFrame(), tmp_path)
    assert figures == [] and "Not computed: add `hf-ratio`" in "\n".join(lines)


def test_thresholds_and_crossings() -> None:
    assert [classify(v) for v in (0.79, 0.8, 1.0, 1.25, 1.26)] == ["below", "match", "match", "match", "above"]
    centres = np.array([0.1, 0.2, 0.3, 0.4])
    assert first_crossing_below(centres, np.array([1.0, np.nan, 0.4, 0.2])) == 0.3
    assert first_crossing_below(centres, np.array([1.0, 0.9, 0.8, 0.6])) is None


def test_spectra_shards_merge_and_layout_mismatch_is_an_error(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()

    def shard(rank: int, names: list[str], n_bands: int = S.N_BANDS) -> None:
        p = np.full((len(names), n_bands), float(rank + 1))
        np.savez(records / f"spectra-{rank}-of-2.npz", names=np.array(names), band_edges=S.band_edges(n_bands).numpy(),
                 power_sr=p, power_gt=p / 2, power_lrup=p, version=np.array(S.SPECTRAL_VERSION))

    assert RunFolder(tmp_path).spectra() is None
    shard(0, ["b", "d"])
    shard(1, ["a", "c"])
    merged = RunFolder(tmp_path).spectra()
    assert merged.names == ["a", "b", "c", "d"]
    assert merged.power_sr[:, 0].tolist() == [2.0, 1.0, 2.0, 1.0]
    assert np.allclose(S.mean_band_ratio(merged.power_sr, merged.reference_power("gt")), 2.0)
    shard(1, ["a", "c"], n_bands=16)
    with pytest.raises(ValueError, match="spectra-1-of-2.npz: band layout differs"):
        RunFolder(tmp_path).spectra()
