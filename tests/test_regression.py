"""CI regression check of the shipped small models against the committed baseline (and that it can fail)."""

from __future__ import annotations

import pytest
import torch

from resshift.runner import regression


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return regression.evaluate(tmp_path_factory.mktemp("regression"))


def test_small_models_match_the_committed_baseline(table):
    result = regression.check(table)
    assert not result.failed, result.to_markdown()
    assert set(table["method"]) == {label for _, _, label in regression.CHECKS}
    assert (table["n_ok"] == regression.IMAGES).all()


def test_a_perturbed_metric_value_fails_and_a_tiny_change_passes(table):
    moved = table.copy()
    row = moved["method"] == "small-resshift-15"
    moved.loc[row, "psnr"] += 0.2
    result = regression.check(moved)
    assert result.failed
    bad = result.table[result.table["status"] == "REGRESSED"]
    assert list(zip(bad["method"], bad["quantity"], strict=True)) == [("small-resshift-15", "psnr")]
    nudged = table.copy()
    nudged.loc[row, "psnr"] += 0.01
    assert not regression.check(nudged).failed


def test_a_perturbed_model_fails(tmp_path):
    from resshift.weights.formats import load_pixel_checkpoint as load_checkpoint
    from resshift.weights.formats import save_pixel_checkpoint as save_checkpoint
    from resshift.weights.shipped import small_model_path

    net, schedule, config = load_checkpoint(small_model_path("small-resshift"))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.05)  # a 5% weight drift, as a broken conversion or a bad merge might cause
    perturbed = save_checkpoint(tmp_path / "perturbed.safetensors", net, schedule)
    checks = tuple(c for c in regression.CHECKS if c[2] == "small-resshift-15")
    moved = regression.evaluate(tmp_path / "runs", {"small-resshift-15": {"checkpoint": str(perturbed)}}, checks)
    result = regression.check(moved, labels=["small-resshift-15"])
    assert result.failed, result.to_markdown()
    assert "REGRESSED" in set(result.table["status"])
