"""Hugging Face ``datasets`` as a source: ``hf://owner/name`` with column names.

``open_dataset("hf://owner/name", lr_column="lr", hr_column="hr", name_column="name", split="test")``
loads with :func:`datasets.load_dataset` (hub access needed; the hub's own cache and ``HF_ENDPOINT``
apply). With ``root=DIR`` it loads a dataset saved locally by ``Dataset.save_to_disk`` instead,
which is how the tests run offline. Image columns may be ``datasets.Image`` features or file paths.
Images are decoded by :func:`resshift.io.read_image` (bytes are written to a temporary file first),
so hub sets decode exactly like folder sets. Rows are read one at a time.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import torch

from resshift.data.cards import DatasetCard, parse_card
from resshift.io import ImageReadError, read_image_with_info


def hub_card(uri: str, **overrides: Any) -> DatasetCard:
    """An ad-hoc card for ``hf://owner/name``; overrides: columns, split, revision, scale, ..."""
    repo = uri[len("hf://") :].strip("/")
    if repo.count("/") != 1:
        raise ValueError(f"{uri}: expected hf://owner/name")
    hub = {"repo": repo, "split": "test", "lr_column": "lr", "hr_column": None, "name_column": None}
    for key in ("split", "lr_column", "hr_column", "name_column", "revision"):
        if key in overrides:
            hub[key] = overrides.pop(key)
    text = (
        f"name: hf-{repo.replace('/', '-')}\nprotocol_id: hf-{repo.replace('/', '-')}\n"
        f"kind: huggingface\nscale: {int(overrides.pop('scale', 4))}\n"
    )
    card = parse_card(text)
    card = card.with_overrides(huggingface=hub, **overrides)
    return card


class _HubImage:
    """One image cell of a hub row, decoded on demand through the file reader."""

    def __init__(self, table: Any, row: int, column: str, where: str) -> None:
        self.table, self.row, self.column, self.where = table, row, column, where

    def describe(self) -> str:
        return f"{self.where}[{self.row}].{self.column}"

    def content_sha256(self) -> str:
        """SHA-256 of the cell's image bytes (or of the file it names), not decoded: what the run identity records
        of this input, so data replaced under the same location is told apart (the location alone is not)."""
        from resshift.provenance import file_sha256

        cell = self.table[self.row][self.column]
        data = cell.get("bytes") if isinstance(cell, dict) else bytes(cell) if isinstance(cell, (bytes, bytearray)) \
            else None
        path = cell.get("path") if isinstance(cell, dict) else cell if isinstance(cell, str) else None
        if data is not None:
            return hashlib.sha256(data).hexdigest()
        if path and Path(path).is_file():
            return file_sha256(path)
        return hashlib.sha256(self.describe().encode("utf-8")).hexdigest()

    def load(self) -> tuple[torch.Tensor, list[str]]:
        cell = self.table[self.row][self.column]
        path: str | None = None
        data: bytes | None = None
        if isinstance(cell, dict):
            data, path = cell.get("bytes"), cell.get("path")
        elif isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        elif isinstance(cell, str):
            path = cell
        else:
            raise ImageReadError(f"{self.describe()}: unsupported cell type {type(cell).__name__}")
        try:
            if data is None:
                if not path or not Path(path).is_file():
                    raise ImageReadError(f"{self.describe()}: no image bytes and no readable path {path!r}")
                tensor, info = read_image_with_info(path)
                return tensor, info.notes
            suffix = Path(path).suffix if path else ".img"
            with tempfile.TemporaryDirectory(prefix="resshift-hf-") as tmp:
                f = Path(tmp) / f"cell{suffix}"
                f.write_bytes(data)
                tensor, info = read_image_with_info(f)
            return tensor, info.notes
        except ImageReadError as exc:
            from resshift.data.loader import DatasetError

            raise DatasetError(f"{self.describe()}: {exc}") from exc


def _load_table(card: DatasetCard, root: str | Path | None) -> tuple[Any, str]:
    import datasets

    hub = card.huggingface
    if root is not None:
        loaded = datasets.load_from_disk(str(root))
        where = str(root)
        if isinstance(loaded, datasets.DatasetDict):
            split = hub.get("split") or "test"
            if split not in loaded:
                raise KeyError(f"{root}: no split {split!r}; splits: {', '.join(loaded)}")
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(
            hub["repo"], split=hub.get("split") or "test", revision=hub.get("revision")
        )
        where = f"hf://{hub['repo']}"
    return loaded, where


def _is_image(table: Any, column: str) -> bool:
    import datasets

    return isinstance(table.features.get(column), datasets.Image)


def open_hub(card: DatasetCard, root: str | Path | None = None):
    """Open a ``huggingface`` card as an :class:`~resshift.data.loader.SRDataset`."""
    import datasets
    from resshift.data.loader import DatasetError, Item, SRDataset

    hub = card.huggingface
    table, where = _load_table(card, root)
    for col in (hub.get("lr_column"), hub.get("hr_column"), hub.get("name_column")):
        if col and col not in table.column_names:
            raise DatasetError(f"{where}: no column {col!r}; columns: {', '.join(table.column_names)}")
    hr_col = hub.get("hr_column")
    for col in (hub["lr_column"], hr_col):
        if col and _is_image(table, col):  # keep the bytes; decoding goes through resshift.io
            table = table.cast_column(col, datasets.Image(decode=False))
    name_col = hub.get("name_column")
    names = [str(n) for n in table[name_col]] if name_col else [f"{i:06d}" for i in range(len(table))]
    items = [
        Item(
            name=n,
            lr=_HubImage(table, i, hub["lr_column"], where),
            hr=_HubImage(table, i, hr_col, where) if hr_col else None,
        )
        for i, n in enumerate(names)
    ]
    items.sort(key=lambda it: it.name)
    fingerprint = getattr(table, "_fingerprint", "") or hashlib.sha256(where.encode()).hexdigest()
    card = card.with_overrides(notes=f"source {where}, fingerprint {fingerprint}")
    return SRDataset(card, items, Path(root).resolve() if root is not None else None)
