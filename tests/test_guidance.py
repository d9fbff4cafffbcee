"""Known x4 operators (avg-pool, MATLAB bicubic), their SVDs, and the DDNM / DDRM samplers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from resshift.diffusion.gaussian import linear_betas, sampling_levels
from resshift.diffusion.guidance import (
    SeparableOperator,
    avgpool_matrix,
    bicubic_matrix,
    sample_ddnm,
    sample_ddrm,
)
from resshift.io import read_image

OPS = ["avgpool", "bicubic"]


def _gens(n: int, base: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(base + i) for i in range(n)]


def _eps(x: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """A non-trivial stand-in for a prior's noise prediction."""
    return 0.5 * torch.sin(3 * x) + 0.05 * ab.float().reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("kind", OPS)
def test_pseudo_inverse_identities(kind: str) -> None:
    op = SeparableOperator(kind)
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    y = op(x)
    assert y.shape == (2, 3, 8, 12)
    torch.testing.assert_close(op(op.pinv(y)), y, atol=2e-6, rtol=0)  # A A+ A = A
    xp = op.pinv(y)
    torch.testing.assert_close(op.pinv(op(xp)), xp, atol=2e-6, rtol=0)  # A+ A A+ = A+
    torch.testing.assert_close(op.from_spectral(op.to_spectral(x)), x, atol=2e-6, rtol=0)
    # A = U S V^T in the spectral layout.
    s = op.singular_values((32, 48), "cpu")
    ah, aw = op.axis(32, "cpu"), op.axis(48, "cpu")
    rebuilt = ah.u @ (s[:8, :12] * op.to_spectral(x)[..., :8, :12]) @ aw.u.T
    torch.testing.assert_close(rebuilt, y, atol=2e-6, rtol=0)


def test_avgpool_operator_is_block_mean_and_its_pinv_replicates() -> None:
    op = SeparableOperator("avgpool")
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(op(x), F.avg_pool2d(x, 4), atol=1e-6, rtol=0)
    y = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(
        op.pinv(y), F.interpolate(y, scale_factor=4, mode="nearest"), atol=1e-6, rtol=0
    )
    assert torch.equal(avgpool_matrix(8).sum(1), torch.ones(2, dtype=torch.float64))


def test_bicubic_matrix_rows_and_interior_weights() -> None:
    m = bicubic_matrix(64)
    torch.testing.assert_close(m.sum(1), torch.ones(16, dtype=torch.float64))
    # An interior row: 16 taps at 4i-6 .. 4i+9 (0-based), symmetric about 4i + 1.5.
    row = m[5]
    nz = row.nonzero().flatten().tolist()
    assert nz[0] >= 4 * 5 - 6 and nz[-1] <= 4 * 5 + 9
    assert row[21].item() == pytest.approx(row[22].item()) and row[18].item() == pytest.approx(row[25].item())


def test_bicubic_operator_reproduces_matlab_imresize(shared_datasets: Path) -> None:
    """The shared Bicubicx4 pairs were made with MATLAB imresize(gt, 1/4): uint8 results match exactly."""
    root = shared_datasets / "resshift-testdata" / "Bicubicx4"
    if not (root / "gt").is_dir():
        pytest.skip(f"{root} not in the data mirror")
    op = SeparableOperator("bicubic")
    for gt_path in sorted((root / "gt").iterdir())[:3]:
        lq_path = next((root / "lq_matlab").glob(gt_path.stem + ".*"))
        gt, lq = read_image(gt_path), read_image(lq_path)
        y = (op(gt[None])[0].clamp(0, 1) * 255).round()
        assert torch.equal(y, (lq * 255).round()), gt_path.name


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("eta", [0.0, 0.85])
def test_ddnm_output_is_consistent_with_the_measurement(kind: str, eta: float) -> None:
    op = SeparableOperator(kind)
    y = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    levels = sampling_levels(linear_betas(1000), 5, "stride")
    out = sample_ddnm(_eps, x, y, op, levels, _gens(2), eta=eta)
    torch.testing.assert_close(op(out), y, atol=1e-5, rtol=0)
    # ... and not just y upsampled: the prior fills the null space.
    assert (out - op.pinv(y)).abs().max() > 1e-2


def test_ddnm_plus_with_noise_runs_and_reduces_to_ddnm_at_full_guidance() -> None:
    op = SeparableOperator("avgpool")
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    levels = sampling_levels(linear_betas(1000), 4, "stride")
    noisy = sample_ddnm(_eps, x, y, op, levels, _gens(1), eta=0.85, sigma_y=0.1)
    assert torch.isfinite(noisy).all()
    # A vanishing sigma_y gives lambda = 1 at every noisy step: identical to noiseless DDNM except the
    # final step (sigma_t = 0 there, so DDNM+ leaves the last x0 unprojected).
    seen_a, seen_b = [], []
    sample_ddnm(
        _eps, x, y, op, levels, _gens(1), eta=0.85, sigma_y=1e-9, callback=lambda i, a, b: seen_a.append(a)
    )
    sample_ddnm(_eps, x, y, op, levels, _gens(1), eta=0.85, callback=lambda i, a, b: seen_b.append(a))
    for a, b in zip(seen_a[:-1], seen_b[:-1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", OPS)
def test_ddrm_range_space_tracks_the_measurement(kind: str) -> None:
    """Noiseless DDRM with eta_b = 1 sets the range-space part of x_t to y_bar + sigma_t z at every step."""
    op = SeparableOperator(kind)
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    levels = sampling_levels(linear_betas(1000), 6, "stride")
    states = []
    out = sample_ddrm(
        _eps, noise, y, op, levels, _gens(1), eta=0.85, eta_b=1.0, callback=lambda i, x, x0: states.append(x)
    )
    assert len(states) == 6
    s_r = op.singular_values((32, 32), "cpu")[:8, :8]
    y_bar = op.y_spectral(y) / s_r
    # Before the last step the state is x_t = sqrt(ab) V(y_bar + sigma z) in the range space, so
    # A(x_t / sqrt(ab)) differs from y only by noise of std sigma_t (times the singular values).
    ab = levels[-1].item()
    sigma = math.sqrt((1 - ab) / ab)
    ve = op.to_spectral(states[-2] / math.sqrt(ab))[..., :8, :8]
    assert (ve - y_bar).std().item() == pytest.approx(sigma, rel=0.35)
    # The final x0 prediction is close to consistent (off by about the last step's noise level).
    assert (op(out) - y).abs().mean().item() < 3 * sigma
