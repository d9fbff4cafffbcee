"""Helpers for comparing against the golden fixtures of the official code.

Tolerance: a float tensor matches when ``max|actual - expected| <= REL_TOL * max|expected|``, with
``REL_TOL = 1e-5``, i.e. float32 round-off relative to the tensor's scale. (The official code moves
its own outputs by up to ~3e-6 of the scale between 1 and 2 CPU threads; our SDPA attention and
operation order differ from upstream only at that level.)

``kernel_path`` runs a test on both the fast kernels and the plain reference path; the tolerance is
the same for both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REL_TOL = 1e-5


def assert_scaled_close(
    actual: torch.Tensor, expected: torch.Tensor, name: str, rel: float = REL_TOL
) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"{name}: max abs error {err:.3g} > {rel:g} x scale {scale:.3g}"


def golden_index(golden: Path) -> dict:
    return json.loads((golden / "index.json").read_text())


def load_golden(golden: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(golden / name))


@pytest.fixture(params=["fast", "reference"])
def kernel_path(request):
    """Run a test on the fast kernels and on the plain reference path (``resshift.models.fast``)."""
    from resshift.models.fast import fast_kernels

    with fast_kernels(request.param == "fast"):
        yield request.param
