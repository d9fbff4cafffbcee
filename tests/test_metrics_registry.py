"""The metric registry: names, metadata, and agreement with pyiqa's own metadata."""

from __future__ import annotations

import dataclasses

import pytest

from resshift.metrics import METRICS, PAPER_METRICS, build_metrics, get_spec, metric_names
from resshift.metrics.registry import MetricSpec

EXPECTED = {
    # name: (mode, lower_better, backend, version)
    "psnr": ("FR", False, "resshift", "psnr_y_ycbcr@1"),
    "ssim": ("FR", False, "resshift", "ssim_y_ycbcr@1"),
    "psnr-y-float": ("FR", False, "resshift", "psnr_y_ycbcr_float@1"),
    "ssim-pyiqa": ("FR", False, "resshift", "ssim_y_ycbcr_csclamp@1"),
    "psnr-rgb": ("FR", False, "resshift", "psnr_rgb@1"),
    "ssim-rgb": ("FR", False, "resshift", "ssim_rgb@1"),
    "lpips": ("FR", True, "pyiqa", "lpips_alex_v0.1@1"),
    "lpips-vgg": ("FR", True, "pyiqa", "lpips_vgg_v0.1@1"),
    "clipiqa": ("NR", False, "pyiqa", "clipiqa_rn50_5pairs@1"),
    "musiq": ("NR", False, "pyiqa", "musiq_koniq@1"),
    "niqe": ("NR", True, "pyiqa", "niqe_yiq_original@1"),
    "dists": ("FR", True, "pyiqa", "dists_vgg16@1"),
    "maniqa-pipal": ("NR", False, "pyiqa", "maniqa_pipal_uniform20@1"),
    "maniqa-koniq": ("NR", False, "pyiqa", "maniqa_koniq_uniform20@1"),
    "topiq-nr": ("NR", False, "pyiqa", "topiq_nr_koniq_res50@1"),
    "liqe": ("NR", False, "pyiqa", "liqe_koniq@1"),
    "fid": ("FR", True, "pyiqa", "fid_clean_pt_inception@1"),
    "kid": ("FR", True, "pyiqa", "kid_clean_pt_inception_poly3@1"),
    "hf-ratio": ("FR", False, "resshift", "hf_ratio_gt@1"),
    "hf-log-ratio-abs": ("FR", True, "resshift", "hf_log2_ratio_abs_gt@1"),
    "psnr-low": ("FR", False, "resshift", "psnr_low_band@1"),
    "psnr-mid": ("FR", False, "resshift", "psnr_mid_band@1"),
    "psnr-high": ("FR", False, "resshift", "psnr_high_band@1"),
    "hf-ratio-lrup": ("LR", False, "resshift", "hf_ratio_lr_bicubic@1"),
}


def test_registry_contents():
    assert set(metric_names()) == set(EXPECTED)
    for name, (mode, lower, backend, version) in EXPECTED.items():
        spec = get_spec(name)
        assert (spec.mode, spec.lower_better, spec.backend, spec.version) == (mode, lower, backend, version)
        assert spec.value_range[0] < spec.value_range[1]
        assert spec.input_convention and spec.source and spec.description
    assert set(PAPER_METRICS) <= set(METRICS)
    assert len({s.version for s in METRICS.values()}) == len(METRICS)


def test_specs_are_frozen_and_validated():
    spec = get_spec("psnr")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="mode"):
        MetricSpec("x", "XX", False, (0, 1), "", "resshift", "x@1", "", "")
    with pytest.raises(ValueError, match="pyiqa_name"):
        MetricSpec("x", "NR", False, (0, 1), "", "pyiqa", "x@1", "", "")


def test_unknown_name_is_a_configuration_error():
    with pytest.raises(KeyError, match="unknown metric 'psnr_y'.*known: psnr"):
        get_spec("psnr_y")
    with pytest.raises(KeyError, match="unknown metric"):
        build_metrics(["psnr", "lpips_alex"])


def test_backend_label_reports_installed_versions():
    from importlib import metadata

    assert get_spec("lpips").backend_label() == f"pyiqa {metadata.version('pyiqa')}"
    assert get_spec("psnr").backend_label().startswith("resshift ")
    rec = get_spec("musiq").as_record()
    assert rec["backend_version"].startswith("pyiqa ") and rec["weights"] == ["musiq-koniq"]


def test_pyiqa_metadata_agrees_with_registry():
    """Our FR/NR and direction must match pyiqa's table for the metric we wrap. pyiqa files its
    folder-against-folder FID under 'NR' (it takes no image pairs); ours is 'FR' because it needs the HR
    set, and set-level."""
    pytest.importorskip("pyiqa")
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for spec in METRICS.values():
        if spec.backend != "pyiqa":
            continue
        cfg = DEFAULT_CONFIGS[spec.pyiqa_name]
        assert cfg["metric_mode"] == ("NR" if spec.set_level else spec.mode), spec.name
        assert bool(cfg.get("lower_better", False)) == spec.lower_better, spec.name
        assert cfg["metric_opts"]["type"] == spec.kind, spec.name


# The pyiqa metric each of the post-OSEDiff names wraps, and the checkpoint its default config selects.
MODERN = {
    "dists": ("dists", None),
    "maniqa-pipal": ("maniqa-pipal", ("train_dataset", "pipal")),
    "maniqa-koniq": ("maniqa", ("train_dataset", "koniq")),
    "topiq-nr": ("topiq_nr", ("model_name", "cfanet_nr_koniq_res50")),
    "liqe": ("liqe", ("pretrained", "koniq")),
}


def test_modern_metrics_wrap_the_pyiqa_configs_the_papers_use():
    pytest.importorskip("pyiqa")
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    from resshift.weights.table import METRIC_FILES

    for name, (pyiqa_name, selector) in MODERN.items():
        spec = get_spec(name)
        assert spec.pyiqa_name == pyiqa_name
        opts = DEFAULT_CONFIGS[pyiqa_name]["metric_opts"]
        if selector is not None:
            assert opts[selector[0]] == selector[1], name
        assert spec.weights and all(key in METRIC_FILES for key in spec.weights), name
    # Two MANIQA names, two checkpoints, two version tags; both record the uniform test crops of >= 0.1.12.
    pipal, koniq = get_spec("maniqa-pipal"), get_spec("maniqa-koniq")
    assert pipal.weights != koniq.weights and pipal.version != koniq.version
    assert all("uniform" in s.version and "0.1.12" in s.input_convention for s in (pipal, koniq))
    assert DEFAULT_CONFIGS["maniqa"]["metric_opts"].get("scale") == 0.8 and "0.8" in koniq.input_convention
    assert "scale" not in DEFAULT_CONFIGS["maniqa-pipal"]["metric_opts"] and "0.13" in pipal.input_convention
    assert get_spec("liqe").option_dict["min_side"] == 224
    assert get_spec("dists").weights == ("dists", "torchvision-vgg16")


def test_set_level_metrics_are_fid_and_kid_with_their_conventions():
    pytest.importorskip("pyiqa")
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    assert {n for n, s in METRICS.items() if s.set_level} == {"fid", "kid"}
    fid, kid = get_spec("fid"), get_spec("kid")
    assert fid.pyiqa_name == kid.pyiqa_name == "fid" and DEFAULT_CONFIGS["fid"]["metric_opts"] == {"type": "FID"}
    assert fid.weights == kid.weights == ("fid-inception",)
    assert fid.option_dict["distance_type"] == "frechet" and kid.option_dict["distance_type"] == "mmd"
    assert fid.option_dict["warn_below_images"] == kid.option_dict["warn_below_images"] == 1000
    assert (kid.option_dict["subsets"], kid.option_dict["subset_size"]) == (100, 1000)  # clean-fid's defaults
    assert "clean" in fid.input_convention and "pt_inception-2015-12-05" in fid.input_convention
    assert not get_spec("psnr").set_level
    with pytest.raises(ValueError, match="level must be"):
        MetricSpec("x", "FR", False, (0, 1), "", "resshift", "x@1", "", "", level="batch")


def test_every_weight_key_exists_and_every_metric_file_is_used():
    from resshift.weights.table import METRIC_FILES

    used = {key for spec in METRICS.values() for key in spec.weights}
    assert used <= set(METRIC_FILES)
    assert set(METRIC_FILES) <= used  # no orphan row: every file is fetched for some metric


def test_display_facts_live_in_the_registry():
    from resshift.metrics.registry import display_order, tolerances

    assert display_order(["niqe", "hf-ratio", "psnr", "bogus", "lpips", "ssim", "psnr"]) == [
        "psnr", "ssim", "lpips", "niqe", "hf-ratio"]
    assert [get_spec(n).arrow for n in ("psnr", "lpips", "hf-ratio")] == ["↑", "↓", "·"]
    assert get_spec("psnr").format(27.123) == "27.12" and get_spec("ssim").format(0.5) == "0.5000"
    assert tolerances()["psnr"] == 0.15 and "hf-ratio" not in tolerances()
    assert {n for n, s in METRICS.items() if s.log_scale} == {"hf-ratio", "hf-ratio-lrup"}
    with pytest.raises(ValueError, match="kind must be"):
        MetricSpec("x", "FR", False, (0, 1), "", "resshift", "x@1", "", "", kind="LPIPS")
    with pytest.raises(ValueError, match="tolerance"):
        MetricSpec("x", "FR", False, (0, 1), "", "resshift", "x@1", "", "", tolerance=-1.0)


def test_implementation_kind_chooses_the_class():
    from resshift.metrics import build_metric
    from resshift.metrics.base import PaperYMetric
    from resshift.metrics.spectral import SPECTRAL_STATISTICS, SpectralMetric

    for name, spec in METRICS.items():
        if spec.kind == "Spectral":
            assert spec.option_dict["statistic"] in SPECTRAL_STATISTICS, name
            assert isinstance(build_metric(name), SpectralMetric), name
        elif spec.kind == "PaperY":
            assert isinstance(build_metric(name), PaperYMetric), name
        else:
            assert spec.backend == "pyiqa", name


def test_unavailable_reason_is_recorded_as_given(tmp_path):
    """build_metrics records availability's reason itself, not a string cut out of an error message."""
    from resshift.metrics.availability import unavailable_reason

    _, unavailable = build_metrics(["psnr", "niqe"], weights_dir=tmp_path)
    assert unavailable == {"niqe": unavailable_reason(get_spec("niqe"), tmp_path)}
    assert "not found" in unavailable["niqe"]
