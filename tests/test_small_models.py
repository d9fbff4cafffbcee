"""The shipped small models: records agree with the files, weights load, every method runs."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from resshift.data.split import read_split
from resshift.methods import build_method
from resshift.methods.small_models import NAMES
from resshift.paths import PROJECT_ROOT
from resshift.weights.shipped import SMALL_MODELS_DIR, small_model_path, small_model_record


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_record_matches_weights_split_and_config(name):
    path = small_model_path(name)
    rec = small_model_record(name)
    assert rec["name"] == name and rec["weights"] == path.name
    assert rec["weights_sha256"] == _sha(path)
    split_file = PROJECT_ROOT / rec["split"]["file"]
    assert rec["split"]["sha256"] == _sha(split_file)
    assert rec["export_dtype"] == "fp16" and rec["steps"] > 0 and rec["wall_time_s"] > 0
    assert rec["command"].startswith("python -m resshift.train.app model=")
    assert 1e6 < rec["parameters"] < 10e6  # "a few M parameters"
    assert path.stat().st_size < 10 * 2**20
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["config"])
        assert {fh.get_tensor(k).dtype for k in fh.keys()} == {torch.float16}
    assert meta["training"]["steps"] == rec["steps"]


def test_split_holds_out_the_evaluation_images():
    split = read_split(SMALL_MODELS_DIR / "split.json")
    assert len(split.heldout) == 100 and len(split.train) == 900
    assert not set(split.heldout) & set(split.train)
    assert split.eval_names(32) == list(split.heldout[:32])


@pytest.mark.parametrize(
    ("method", "params"),
    [("small-resshift", {}), ("small-sr3", {"steps": 3}), ("small-ddnm", {"steps": 3}), ("small-ddrm", {"steps": 3})],
)
def test_shipped_methods_run(method, params):
    m = build_method(method, **params)
    lr = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = m.upscale(lr, gens)
    assert out.shape == (2, 3, 64, 80) and torch.isfinite(out).all()
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    again = m.upscale(lr, [torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.equal(out, again)  # all randomness comes from the generators
    info = m.describe()
    assert info["name"] == method and info["small_model_sha256"]
    if method == "small-resshift":
        assert m.nfe == small_model_record("small-resshift")["config"]["model"]["schedule"]["steps"]

