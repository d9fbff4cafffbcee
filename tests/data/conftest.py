"""Fixtures for the data tests: an isolated cache and the shared data mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from resshift.data.sources import DATA_ROOT_ENV, MIRROR_ENV


@pytest.fixture(autouse=True)
def _isolated_data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data cache per test (never the user's); the mirror is opted into per test."""
    root = tmp_path / "data-cache"
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return root


@pytest.fixture
def mirror(shared_datasets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``RESSHIFT_DATA_MIRROR`` at the shared data folder."""
    monkeypatch.setenv(MIRROR_ENV, str(shared_datasets))
    return shared_datasets
