"""Shared test fixtures.

Tests that read the shared material (golden tensors, real images) use the ``shared`` fixture, which
resolves the one setting ``RESSHIFT_SHARED`` (default ``../shared``) and skips with the reason when
the folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resshift.paths import SHARED_ENV, shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_dir()
    if not root.is_dir():
        pytest.skip(f"shared test material not found at {root} (set {SHARED_ENV} to its location)")
    return root


@pytest.fixture(scope="session")
def golden(shared: Path) -> Path:
    path = shared / "golden"
    if not (path / "index.json").is_file():
        pytest.skip(f"golden fixtures not found at {path}")
    return path


@pytest.fixture(scope="module")
def small_nets(golden: Path):
    """The golden small UNet and VQ (weights recorded with the official code), in eval mode."""
    import json

    from safetensors.torch import load_file

    from resshift.models import UNetModelSwin, VQModelTorch

    index = json.loads((golden / "index.json").read_text())["weights"]
    unet = UNetModelSwin(**index["weights_unet_small.safetensors"]["constructor_kwargs"])
    unet.load_state_dict(load_file(str(golden / "weights_unet_small.safetensors")))
    vq = VQModelTorch(**index["weights_vq_small.safetensors"]["constructor_kwargs"])
    vq.load_state_dict(load_file(str(golden / "weights_vq_small.safetensors")))
    return unet.eval(), vq.eval()


@pytest.fixture(scope="session")
def shared_datasets(shared: Path) -> Path:
    path = shared / "datasets"
    if not path.is_dir():
        pytest.skip(f"data mirror not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Keep the thread count fixed so numerical comparisons do not depend on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def one_thread():
    """One torch thread (tiny networks, small FFTs): avoids oversubscription on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

