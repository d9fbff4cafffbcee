"""Finding run folders in tests: their names end with a configuration fingerprint."""

from __future__ import annotations

from pathlib import Path


def run_folder(root: Path, label: str, dataset: str) -> Path:
    """The one run folder ``<label>__<dataset>__<config fingerprint>`` under ``root`` (fails if not one)."""
    found = sorted(root.glob(f"{label}__{dataset}__*"))
    assert len(found) == 1, f"expected one {label}__{dataset}__* folder in {root}, found {found}"
    return found[0]
