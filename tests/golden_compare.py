"""Helpers for comparing against the golden fixtures of the official code.

Tolerance: a float tensor matches when ``max|actual - expected| <= REL_TOL * max|expected|``, with
``REL_TOL = 1e-5``, i.e. float32 round-off relative to the tensor's scale. (The official code moves
its own outputs by up to ~3e-6 of the scale between 1 and 2 CPU threads; our SDPA attention and
operation order differ from upstream only at that level.)

Recorded *coefficients and chain operations* (no networks) are compared in ulps instead
(:func:`assert_within_ulps`, :func:`assert_within_scale_ulps`): the official code computes its schedule
with NumPy's vectorised ``power``/``log``, whose last bit differs between AVX2 and AVX-512 CPUs, so
the recording itself is reproducible across machines only to 1 ulp of float32 in those coefficients
and to a few ulps (at the tensor's scale) in what is computed from them.

``kernel_path`` runs a test on the fast kernels, the plain reference path and the fast kernels with
Winograd convolutions everywhere; the tolerance is the same for all three.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
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


def ulp_distance(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> np.ndarray:
    """Elementwise distance in units in the last place (float32 or float64, same dtype), exact.

    Floats are mapped to integers that are consecutive along the real line (sign-magnitude to
    two's complement), so the result counts the representable numbers between the two values.
    """
    a = np.ascontiguousarray(actual.numpy() if isinstance(actual, torch.Tensor) else actual)
    b = np.ascontiguousarray(expected.numpy() if isinstance(expected, torch.Tensor) else expected)
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"ulp distance needs two float32 or two float64 arrays, got {a.dtype} and {b.dtype}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("ulp distance of non-finite values")
    itype = np.int32 if a.dtype == np.float32 else np.int64

    def ordinal(x: np.ndarray) -> np.ndarray:
        i = x.view(itype).astype(np.int64)
        return np.where(i < 0, np.int64(np.iinfo(itype).min) - i, i)

    # int64 difference: exact (float64 values of opposite sign and huge magnitude aside)
    return np.abs(ordinal(a) - ordinal(b)).astype(np.float64)


def assert_within_ulps(actual, expected, n: int, name: str) -> None:
    """Every element of ``actual`` within ``n`` ulps of ``expected`` (same dtype and shape)."""
    shapes = tuple(actual.shape), tuple(expected.shape)
    assert shapes[0] == shapes[1], f"{name}: shape {shapes[0]} != {shapes[1]}"
    worst = ulp_distance(actual, expected).max(initial=0.0)
    assert worst <= n, f"{name}: {worst:.0f} ulps apart (bound {n})"


def ulp_at(scale: float, dtype: torch.dtype = torch.float32) -> float:
    """The spacing of ``dtype`` at magnitude ``scale`` (``torch.finfo(dtype).eps`` times its power of two)."""
    if scale == 0:
        return float(torch.finfo(dtype).tiny)
    return float(torch.finfo(dtype).eps) * 2.0 ** math.floor(math.log2(scale))


def assert_within_scale_ulps(actual: torch.Tensor, expected: torch.Tensor, n: int, name: str) -> None:
    """``max|actual - expected| <= n`` ulps of float32 at the tensor's scale ``max|expected|``."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    bound = n * ulp_at(expected.abs().max().item(), expected.dtype)
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= bound, f"{name}: max abs error {err:.3g} > {n} ulps at scale ({bound:.3g})"


def golden_index(golden: Path) -> dict:
    return json.loads((golden / "index.json").read_text())


def load_golden(golden: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(golden / name))


@pytest.fixture(params=["fast", "reference", "winograd"])
def kernel_path(request):
    """Run a test on the fast kernels, on the plain reference path (``resshift.models.fast``), and on
    the fast kernels with every 3x3 convolution computed by Winograd F(4x4, 3x3) (the default shape
    rule would leave the small golden networks on the direct kernel)."""
    from resshift.models.fast import fast_kernels
    from resshift.models.winograd import winograd_policy

    with fast_kernels(request.param != "reference"), winograd_policy(
        "always" if request.param == "winograd" else "shape"
    ):
        yield request.param
