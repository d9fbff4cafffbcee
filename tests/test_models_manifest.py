"""Full-size architectures against the official state_dict manifests (built on the meta device)."""

from __future__ import annotations

import json

import pytest
import torch

from resshift.models import UNetModelSwin, VQModelTorch
from resshift.models.configs import AUTOENCODER_PARAMS, RELEASED_CONFIGS, UNET_PARAMS, released_config

UNET_PARAMETERS = 118_593_583
VQ_PARAMETERS = 55_322_782


def _manifest_rows(model: torch.nn.Module) -> list[dict]:
    params = {name for name, _ in model.named_parameters()}
    return [
        {
            "key": key,
            "shape": list(t.shape),
            "dtype": str(t.dtype).removeprefix("torch."),
            "kind": "parameter" if key in params else "buffer",
        }
        for key, t in model.state_dict().items()
    ]


def _build_meta(cls, kwargs):
    with torch.device("meta"):
        return cls(**kwargs)


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "bicsr", "vq_f4"])
def test_state_dict_matches_manifest(golden, name):
    manifest = json.loads((golden / f"manifest_{name}.json").read_text())
    cls = VQModelTorch if name == "vq_f4" else UNetModelSwin
    model = _build_meta(cls, manifest["constructor_kwargs"])
    expected = [{k: e[k] for k in ("key", "shape", "dtype", "kind")} for e in manifest["state_dict"]]
    assert _manifest_rows(model) == expected  # same keys, same order, same shapes and dtypes
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    assert sum(b.numel() for b in model.buffers()) == manifest["total_buffer_elements"]


@pytest.mark.parametrize("version", sorted(RELEASED_CONFIGS))
def test_released_configs_equal_manifests(golden, version):
    manifest = json.loads((golden / f"manifest_{version}.json").read_text())
    config = released_config(version)
    assert config.unet_params == manifest["constructor_kwargs"]
    assert config.autoencoder_params == manifest["autoencoder"]["params"]
    assert config.diffusion.as_params() == manifest["diffusion_params"]
    assert config.config_file == manifest["config_file"]


def test_full_size_parameter_counts():
    unet = _build_meta(UNetModelSwin, UNET_PARAMS)
    vq = _build_meta(VQModelTorch, AUTOENCODER_PARAMS)
    assert sum(p.numel() for p in unet.parameters()) == UNET_PARAMETERS
    assert sum(p.numel() for p in vq.parameters()) == VQ_PARAMETERS
    assert len(unet.state_dict()) == 564 and len(vq.state_dict()) == 205
    assert unet.min_size_multiple == 64


def test_schedule_settings_per_version():
    steps = {v: c.diffusion.steps for v, c in RELEASED_CONFIGS.items()}
    assert steps == {"v1": 15, "v2": 15, "v3": 4, "bicsr": 4}
    assert {v: c.diffusion.min_noise_level for v, c in RELEASED_CONFIGS.items()} == {
        "v1": 0.04, "v2": 0.04, "v3": 0.2, "bicsr": 0.2,
    }
    for config in RELEASED_CONFIGS.values():
        d = config.diffusion
        assert (d.kappa, d.power, d.etas_end, d.scale_factor) == (2.0, 0.3, 0.99, 1.0)
        assert d.normalize_input and d.latent_flag and config.padding_offset == 64
    with pytest.raises(KeyError, match="known: v1, v2, v3, bicsr"):
        released_config("v4")


def test_configs_are_copies():
    config = released_config("v3")
    config.unet_params["model_channels"] = 1
    assert released_config("v3").unet_params["model_channels"] == 160
