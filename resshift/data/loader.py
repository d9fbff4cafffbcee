"""The one way every method reads a benchmark set: ``open_dataset(...)`` -> streaming samples.

Images are read lazily, one at a time, through :func:`resshift.io.read_image`, so a set is never
held in memory. Each :class:`Sample` carries ``name``, ``lr`` and ``hr`` as ``(3, H, W)`` float32
tensors in ``[0, 1]`` (``hr`` is ``None`` for LR-only sets) and a ``meta`` dict (file paths, set
name, protocol id, reader notes such as a dropped alpha channel).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resshift.data.cards import DatasetCard, load_card
from resshift.data.sources import DatasetNotAvailable, locate
from resshift.io import ImageReadError, image_key, list_images, read_image_with_info


class DatasetError(ValueError):
    """A set is inconsistent: missing partner file, corrupt image, wrong size. Names the file(s)."""


@dataclass(frozen=True)
class Sample:
    """One item of a set."""

    name: str
    lr: torch.Tensor
    hr: torch.Tensor | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """An item before reading: its name and where its LR and HR come from.

    ``lr``/``hr`` are file paths, or for in-memory sources an object with ``load() ->
    (tensor, notes)`` and a ``describe() -> str``.
    """

    name: str
    lr: Any
    hr: Any | None = None


def _stem_index(folder: Path, recursive: bool) -> dict[str, Path]:
    """Map of relative stem (posix, no suffix) -> file, erroring on two files with one stem."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    out: dict[str, Path] = {}
    for p in list_images(folder, recursive=recursive):
        key = image_key(p, folder)
        if key in out:
            raise DatasetError(f"{folder}: two images share the name {key!r} ({out[key].name}, {p.name})")
        out[key] = p
    return out


def scan_folder_items(card: DatasetCard, root: Path) -> tuple[list[Item], bool]:
    """List the items of a folder-based set; returns (items, has_hr).

    Pairs LR and HR by name (LR stem minus ``lr_suffix`` = HR stem minus ``hr_suffix``). A missing
    partner raises :class:`DatasetError` naming the file; an optional HR folder that is absent
    yields an LR-only set.
    """
    lay = card.layout
    lr_dir = (root / lay.lr).resolve()
    lr_files = _stem_index(lr_dir, lay.recursive)
    if not lr_files:
        raise DatasetError(f"{lr_dir}: no images found for data set {card.name!r}")
    hr_files: dict[str, Path] | None = None
    if lay.hr is not None:
        hr_dir = (root / lay.hr).resolve()
        if hr_dir.is_dir():
            hr_files = _stem_index(hr_dir, lay.recursive)
        elif not lay.hr_optional:
            raise DatasetError(f"{hr_dir}: HR folder of data set {card.name!r} not found")
    items: list[Item] = []
    used_hr: set[str] = set()
    for stem, lr_path in lr_files.items():
        if lay.lr_suffix:
            if not stem.endswith(lay.lr_suffix):
                raise DatasetError(f"{lr_path}: LR file name does not end with {lay.lr_suffix!r}")
            name = stem[: -len(lay.lr_suffix)]
        else:
            name = stem
        hr_path = None
        if hr_files is not None:
            key = name + lay.hr_suffix
            hr_path = hr_files.get(key)
            if hr_path is None:
                raise DatasetError(f"{lr_path}: no HR partner {key}.* in {(root / str(lay.hr)).resolve()}")
            used_hr.add(key)
        items.append(Item(name=name, lr=lr_path, hr=hr_path))
    if hr_files is not None:
        orphans = sorted(set(hr_files) - used_hr)
        if orphans:
            first = hr_files[orphans[0]]
            raise DatasetError(f"{first}: HR image without an LR partner ({len(orphans)} such)")
    items.sort(key=lambda it: it.name)
    return items, hr_files is not None


def _read(ref: Any) -> tuple[torch.Tensor, list[str], str]:
    if isinstance(ref, Path):
        try:
            tensor, info = read_image_with_info(ref)
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from exc
        return tensor, info.notes, str(ref)
    tensor, notes = ref.load()
    return tensor, notes, ref.describe()


class SRDataset:
    """A benchmark set: a sorted list of items read lazily.

    Attributes:
        card: the effective card (overrides applied; ``has_hr`` reflects what was found).
        root: the folder the files were found in (``None`` for hub sources).
    """

    def __init__(self, card: DatasetCard, items: Sequence[Item], root: Path | None = None) -> None:
        self.card = card
        self.root = root
        self._items = list(items)
        self._index = {it.name: it for it in self._items}
        if len(self._index) != len(self._items):
            raise DatasetError(f"data set {card.name!r}: duplicate item names")

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"SRDataset({self.card.name!r}, {len(self)} items, root={self.root})"

    @property
    def has_hr(self) -> bool:
        return self.card.has_hr

    @property
    def items(self) -> list[Item]:
        return list(self._items)

    def names(self) -> list[str]:
        """Item names, sorted (the order of iteration)."""
        return [it.name for it in self._items]

    def select(self, names: Iterable[str | int]) -> SRDataset:
        """A subset with the given names (kept in the set's sorted order); unknown names raise.

        Names are compared as strings. A config parser reads ``select=[100007]`` as a number and
        ``select=[0014]`` as 14: a number that names no item matches the one item whose name is that
        number with leading zeros, if there is exactly one.
        """
        wanted: set[str] = set()
        missing: list[str] = []
        for value in names:
            name = str(value)
            if name not in self._index and isinstance(value, int):
                padded = [n for n in self._index if n.isdigit() and int(n) == value]
                name = padded[0] if len(padded) == 1 else name
            if name in self._index:
                wanted.add(name)
            else:
                missing.append(name)
        if missing:
            raise KeyError(f"data set {self.card.name!r} has no item(s) {', '.join(sorted(missing)[:5])}")
        return SRDataset(self.card, [it for it in self._items if it.name in wanted], self.root)

    def input_digests(self) -> dict[str, dict[str, str]]:
        """What each item's inputs hold: ``{name: {"lr": d, "hr": d}}`` (``hr`` absent without HR), ``d`` the first
        16 hex digits of the file's SHA-256 (:func:`resshift.provenance.file_sha256`, cached per path, size and
        modification time), of an in-memory source's image bytes (``content_sha256()``, Hugging Face cells), or
        else of its ``describe()``. A file replaced on disk changes its
        digest; part of a run's identity, so rows made from the old file are never mixed with the new one's."""
        from resshift.provenance import file_sha256

        def digest(ref: Any) -> str:
            if isinstance(ref, Path):
                return file_sha256(ref)[:16]
            if hasattr(ref, "content_sha256"):  # in-memory sources that can hash their bytes (Hugging Face cells)
                return str(ref.content_sha256())[:16]
            return hashlib.sha256(ref.describe().encode("utf-8")).hexdigest()[:16]

        return {it.name: {"lr": digest(it.lr), **({"hr": digest(it.hr)} if it.hr is not None else {})}
                for it in self._items}

    def manifest_mismatches(self) -> list[str]:
        """The files of this selection that contradict the card's manifest (``path: why`` lines): listed under another
        SHA-256, or absent from it on a side (LR or HR folder) the manifest covers. Empty when the card has no
        manifest, or for in-memory sources. Paths are matched inside the layout's folders, so a folder or files that
        are symbolic links are checked like copies. A copy of a protocol's data that differs is not that protocol's
        data, whatever its folder is called."""
        from resshift.provenance import file_sha256

        if not self.card.manifest or self.root is None:
            return []
        root = Path(self.root)
        sides = {"lr": self.card.layout.lr, "hr": self.card.layout.hr}
        prefix = {side: "" if folder in (None, ".", "") else folder.strip("/") + "/" for side, folder in sides.items()}
        covered = {side for side, folder in sides.items() if folder is not None
                   and any(k.startswith(prefix[side]) for k in self.card.manifest)}
        out = []
        for it in self._items:
            for side, ref in (("lr", it.lr), ("hr", it.hr)):
                if not isinstance(ref, Path) or sides[side] is None:
                    continue
                base = (root / sides[side]).resolve()
                try:
                    rel = ref.relative_to(base).as_posix()
                except ValueError:
                    rel = ref.name
                want = self.card.manifest.get(prefix[side] + rel)
                if want is not None:
                    got = file_sha256(ref)
                    if got != want:
                        out.append(f"{ref}: SHA-256 {got[:16]}... differs from the card's {want[:16]}...")
                elif side in covered:
                    out.append(f"{ref}: not in the card's manifest ({prefix[side] + rel})")
        return out

    def shard(self, rank: int, world: int) -> SRDataset:
        """Items ``rank, rank + world, ...`` of the sorted list; shards are disjoint and cover the set."""
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"shard needs 0 <= rank < world, got rank={rank}, world={world}")
        return SRDataset(self.card, self._items[rank::world], self.root)

    def read(self, item: Item | str | int) -> Sample:
        """Read one item (by :class:`Item`, name or index) and check its sizes against the card."""
        if isinstance(item, int):
            item = self._items[item]
        elif isinstance(item, str):
            if item not in self._index:
                raise KeyError(f"data set {self.card.name!r} has no item {item!r}")
            item = self._index[item]
        card = self.card
        lr, lr_notes, lr_where = _read(item.lr)
        hr = None
        meta: dict[str, Any] = {
            "dataset": card.name,
            "protocol_id": card.protocol_id,
            "card_sha256": card.card_sha256,
            "lr_path": lr_where,
            "lr_notes": lr_notes,
        }
        if card.lr_size is not None and tuple(lr.shape[-2:]) != card.lr_size:
            raise DatasetError(
                f"{lr_where}: LR is {lr.shape[-2]}x{lr.shape[-1]}, the {card.name!r} card says "
                f"{card.lr_size[0]}x{card.lr_size[1]}"
            )
        if item.hr is not None:
            hr, hr_notes, hr_where = _read(item.hr)
            meta["hr_path"] = hr_where
            meta["hr_notes"] = hr_notes
            s = card.scale
            want = (lr.shape[-2] * s, lr.shape[-1] * s)
            if tuple(hr.shape[-2:]) != want:
                raise DatasetError(
                    f"{hr_where}: HR is {hr.shape[-2]}x{hr.shape[-1]} but LR {lr_where} is "
                    f"{lr.shape[-2]}x{lr.shape[-1]}; scale {s} needs HR {want[0]}x{want[1]}"
                )
        return Sample(name=item.name, lr=lr, hr=hr, meta=meta)

    def __iter__(self) -> Iterator[Sample]:
        for item in self._items:
            yield self.read(item)

    def batches(self, batch_size: int) -> Iterator[list[Sample]]:
        """Consecutive groups of at most ``batch_size`` samples (streamed)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        group: list[Sample] = []
        for sample in self:
            group.append(sample)
            if len(group) == batch_size:
                yield group
                group = []
        if group:
            yield group


def _auto_build(card: DatasetCard, not_found: DatasetNotAvailable) -> Path:
    """Build a set whose card says ``builder.auto`` (cheap, deterministic, from the shared folder)
    into the data cache; a :class:`DatasetNotAvailable` naming both failures when that is impossible."""
    from resshift.data.builders import build_heldout

    if "split" not in card.builder:
        raise DatasetNotAvailable(f"{not_found}; card {card.name!r} has no automatic builder recipe")
    try:
        return build_heldout(card)
    except FileNotFoundError as err:
        raise DatasetNotAvailable(f"{not_found}; building it failed: {err}") from err


def _apply_build_record(card: DatasetCard, root: Path) -> DatasetCard:
    """A set made by a builder carries ``build.json``: its protocol id and count replace the card's."""
    record_path = root / "build.json"
    if not record_path.is_file():
        return card
    try:
        record = json.loads(record_path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{record_path}: unreadable build record ({exc})") from exc
    return card.with_overrides(protocol_id=str(record["protocol_id"]), count=int(record["count"]))


def open_dataset(
    name_or_card: str | Path | DatasetCard,
    root: str | Path | None = None,
    mirror: str | Path | None = None,
    **overrides: Any,
) -> SRDataset:
    """Open a set by card name, card file, :class:`DatasetCard`, or ``hf://owner/name``.

    Args:
        name_or_card: a card name in ``datasets/`` (``"val-sr"``), a card path, a parsed card, or
            ``"hf://owner/name"`` for a Hugging Face ``datasets`` source (column names as overrides:
            ``lr_column``, ``hr_column``, ``name_column``, ``split``).
        root: the set's folder (or a local copy of its archive, or for ``hf://`` a folder written
            by ``Dataset.save_to_disk``); default: mirror, then cache.
        mirror: data mirror root; default ``$RESSHIFT_DATA_MIRROR``.
        **overrides: card fields to replace (``scale``, ``lr``, ``hr``, ``lr_suffix``, ...).
    """
    if isinstance(name_or_card, str) and name_or_card.startswith("hf://"):
        from resshift.data.hub import hub_card

        card = hub_card(name_or_card, **overrides)
        overrides = {}
    elif isinstance(name_or_card, DatasetCard):
        card = name_or_card
    else:
        card = load_card(name_or_card)
    hub_keys = {"lr_column", "hr_column", "name_column", "split", "repo", "revision"}
    hub_over = {k: overrides.pop(k) for k in list(overrides) if k in hub_keys}
    if hub_over:
        if card.kind != "huggingface":
            raise TypeError(f"{', '.join(hub_over)} only apply to huggingface sets, not {card.name!r}")
        card = card.with_overrides(huggingface={**card.huggingface, **hub_over})
    card = card.with_overrides(**overrides)
    if card.kind == "huggingface":
        from resshift.data.hub import open_hub

        return open_hub(card, root=root)
    if card.kind == "embedded":
        from resshift.data.embedded import build_embedded

        set_root = Path(root).resolve() if root is not None else build_embedded(card)
    else:
        try:
            set_root = locate(card, root=root, mirror=mirror)
        except DatasetNotAvailable as err:
            if root is not None or not (card.builder or {}).get("auto"):
                raise
            set_root = _auto_build(card, err)
    card = _apply_build_record(card, set_root)
    items, found_hr = scan_folder_items(card, set_root)
    if found_hr != card.has_hr:
        card = dataclasses.replace(card, has_hr=found_hr)
    if card.count is not None and len(items) != card.count and root is None:
        raise DatasetError(
            f"{set_root}: data set {card.name!r} has {len(items)} items, the card says {card.count}"
        )
    return SRDataset(card, items, set_root)
