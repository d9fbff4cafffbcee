"""Each method's parameters are declared once: the dataclass, the YAMLs, the factories and describe()."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from resshift.methods import build_method
from resshift.methods.guided import GuidedPriorSR, load_prior
from resshift.methods.params import UnknownParameterError
from resshift.methods.registry import available_methods, method_params
from resshift.paths import PROJECT_ROOT
from resshift.weights.shipped import small_model_path

METHOD_DIR = PROJECT_ROOT / "eval" / "method"


def _base_yamls() -> list[Path]:
    """The method YAMLs that are not variants of another (no ``defaults`` list)."""
    return [p for p in sorted(METHOD_DIR.glob("*.yaml")) if "defaults" not in yaml.safe_load(p.read_text())]


@pytest.mark.parametrize("name", ["bicubic", "small-resshift"])
def test_unknown_parameter_names_the_method_and_the_key(name):
    with pytest.raises(UnknownParameterError, match=rf"method '{name}': unknown parameter\(s\) 'sclae'"):
        build_method(name, sclae=4)


@pytest.mark.parametrize("path", _base_yamls(), ids=lambda p: p.stem)
def test_yaml_params_are_the_declared_defaults(path):
    """Every YAML names a registered method and states exactly its defaults (presets included)."""
    from resshift.methods.registry import _PRESETS

    cfg = yaml.safe_load(path.read_text())
    name = cfg["name"]
    assert name == path.stem and name in available_methods()
    params_cls = method_params(name)
    preset = _PRESETS.get(name)
    defaults = {**params_cls().describe(), **(dict(preset.defaults) if preset else {})}
    for key, value in (cfg.get("params") or {}).items():
        assert key in defaults, f"{path.name}: {key} is not a parameter of {name}"
        if value == "???":  # Hydra's mandatory value: the parameter has no default to state
            assert defaults[key] is None, f"{path.name}: {key} is mandatory but declares {defaults[key]!r}"
            continue
        assert value == defaults[key], f"{path.name}: {key}={value!r} but the declared default is {defaults[key]!r}"


def test_protocol_defaults_pinned():
    """Where a Python default once disagreed with the documented protocol, the protocol won."""
    assert method_params("ldm-sr")().steps == 15  # eval/method/ldm-sr.yaml (LDM-15); was 100
    assert method_params("ddrm")().steps == 20 and method_params("ddnm")().steps == 100
    resshift = method_params("resshift-v3")()
    assert (resshift.chop_size, resshift.chop_stride) == (512, 448)  # official 512 -> 448; was 512 -> 512
    prior = load_prior("ours", str(small_model_path("small-prior")))
    assert GuidedPriorSR("ddrm", prior).steps == 20  # the class no longer has a default of its own (was 100)
    assert GuidedPriorSR("ddnm", prior).steps == 100


@pytest.mark.parametrize("name", ["bicubic", "small-resshift", "small-sr3", "small-ddnm", "small-ddrm"])
def test_describe_reports_every_resolved_parameter(name):
    method = build_method(name)
    info = method.describe()
    for f in fields(method.params):
        assert f.name in info, f"{name}: describe() lacks {f.name}"
    assert info["name"] == name and info["device"] == "cpu" and info["dtype"] == "fp32"
    if name.startswith("small-"):
        assert info["chop_size"] == 16 and info["chop_stride"] == 12 and info["tile_batch"] == 32
        assert info["checkpoint"] and Path(str(info["checkpoint"])).is_file()
        assert info["preset"] == name and info["small_model_sha256"]


def test_preset_parameters_override_and_stay_validated():
    method = build_method("small-sr3", steps=3, chop_size=None)
    assert method.nfe == 3 and method.describe()["chop_size"] is None
    assert build_method("bicubic", scale=2).upscale(torch.zeros(1, 3, 4, 4)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("key", ["small-resshift", "small-sr3", "small-prior"])
def test_shipped_weights_match_their_pinned_hash(key):
    from resshift.provenance import file_sha256
    from resshift.weights.shipped import small_model_record
    from resshift.weights.table import SHIPPED

    assert file_sha256(small_model_path(key)) == SHIPPED[key].sha256 == small_model_record(key)["weights_sha256"]
