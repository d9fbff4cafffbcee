"""Dataset cards: one YAML file per benchmark set in ``datasets/`` at the project root.

A card is the single home of everything about a set: its protocol id, sizes, scale, degradation,
where its files live inside a data mirror, where they are downloaded from, their checksums, licence
and citation. The loader, fetcher, builder and CLI read cards; nothing about a set is hard-coded
elsewhere.

Card fields (``name``, ``protocol_id``, ``kind`` and ``scale`` are required)::

    name: val-sr                      # the handle used everywhere (CLI, runner, results)
    protocol_id: resshift-val-sr      # identifies the evaluation protocol in result rows
    title: / description: / degradation: / licence: / citation: / notes:   (free text)
    kind: paired | lr-only | embedded | huggingface
    scale: 4
    lr_size: [64, 64]                 # fixed LR size [H, W], or null when sizes vary
    hr_size: [256, 256]
    count: 32                         # expected number of items (null when open-ended)
    layout:                           # folders inside the set's root
      lr: lq                          # "." for the root itself
      hr: gt                          # null for LR-only sets
      hr_optional: false              # true: HR is used when present (e.g. RealSR HR)
      lr_suffix: ""                   # stripped from LR file stems to form item names
      hr_suffix: ""                   # appended to an item name to find its HR file
      recursive: false
    mirror: resshift-testdata/Val_SR  # the set's folder relative to a data mirror root
    sources: [...]                    # see resshift.data.sources
    manifest: {lq/a.png: <sha256>}    # relative path -> SHA-256 of every file in the set
    huggingface: {repo, split, lr_column, hr_column, name_column}
    embedded: {...}                   # see resshift.data.embedded
    builder: {...}                    # see resshift.data.builders
    subset_of:                        # the set is part of a larger protocol's set (reports then show
      protocol_id: resshift-imagenet-test   # that protocol's published numbers against this set's
      note: how certain that is         # sampling interval, never as the same protocol)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resshift.paths import PROJECT_ROOT

CARDS_ENV = "RESSHIFT_DATASET_CARDS"
KINDS = ("paired", "lr-only", "embedded", "huggingface")


class CardError(ValueError):
    """A dataset card is missing or malformed. The message names the card file."""


@dataclass(frozen=True)
class Layout:
    """Where LR and HR files sit inside a set's root and how their names pair up."""

    lr: str = "."
    hr: str | None = None
    hr_optional: bool = False
    lr_suffix: str = ""
    hr_suffix: str = ""
    recursive: bool = False


@dataclass(frozen=True)
class DatasetCard:
    """A parsed dataset card. ``raw`` keeps the YAML mapping; ``card_sha256`` hashes the file."""

    name: str
    protocol_id: str
    kind: str
    scale: int
    title: str = ""
    description: str = ""
    degradation: str = ""
    lr_size: tuple[int, int] | None = None
    hr_size: tuple[int, int] | None = None
    count: int | None = None
    layout: Layout = field(default_factory=Layout)
    mirror: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    manifest: dict[str, str] = field(default_factory=dict)
    huggingface: dict[str, Any] = field(default_factory=dict)
    embedded: dict[str, Any] = field(default_factory=dict)
    builder: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    citation: str = ""
    notes: str = ""
    subset_of: dict[str, str] = field(default_factory=dict)
    has_hr: bool = False
    path: Path | None = None
    card_sha256: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def generic(self) -> bool:
        """True for a card that names no data of its own (no mirror, sources, manifest, Hugging Face, embedded or
        builder entry, e.g. ``paired-folder``): its protocol id alone does not tell two users' folders apart."""
        return not (self.mirror or self.sources or self.manifest or self.huggingface or self.embedded or self.builder)

    def with_overrides(self, **overrides: Any) -> DatasetCard:
        """A copy with top-level fields or layout fields (``lr``, ``hr``, ``lr_suffix``...) replaced.

        ``card_sha256`` is kept and the overrides are recorded in ``raw["overrides"]`` so that the
        provenance of a modified set is visible. Unknown keys raise ``TypeError``.
        """
        if not overrides:
            return self
        top = {f.name for f in dataclasses.fields(self)} - {"path", "card_sha256", "raw", "layout"}
        lay = {f.name for f in dataclasses.fields(Layout)}
        new_top: dict[str, Any] = {}
        new_lay: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in lay:
                new_lay[key] = value
            elif key in top:
                new_top[key] = value
            else:
                known = ", ".join(sorted(top | lay))
                raise TypeError(f"unknown dataset override {key!r}; known: {known}")
        for key in ("lr_size", "hr_size"):
            if key in new_top and new_top[key] is not None:
                new_top[key] = _size(new_top[key], key, self.path)
        layout = dataclasses.replace(self.layout, **new_lay)
        raw = dict(self.raw)
        raw["overrides"] = {**raw.get("overrides", {}), **{k: _plain(v) for k, v in overrides.items()}}
        card = dataclasses.replace(self, layout=layout, raw=raw, **new_top)
        if "has_hr" not in new_top:
            card = dataclasses.replace(card, has_hr=_default_has_hr(card))
        return card


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _default_has_hr(card: DatasetCard) -> bool:
    if card.kind == "embedded":
        return True
    if card.kind == "huggingface":
        return bool(card.huggingface.get("hr_column"))
    return card.layout.hr is not None and not card.layout.hr_optional


def _size(value: Any, key: str, path: Path | None) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise CardError(f"{path or '<card>'}: {key} must be an int or [H, W], got {value!r}")


def cards_dir() -> Path:
    """The folder of dataset cards.

    ``$RESSHIFT_DATASET_CARDS`` if set, else ``datasets/`` at the project root (a source checkout or
    an editable install). Raises :class:`CardError` when the folder does not exist.
    """
    env = os.environ.get(CARDS_ENV)
    folder = Path(env).expanduser().resolve() if env else PROJECT_ROOT / "datasets"
    if not folder.is_dir():
        raise CardError(
            f"{folder}: dataset card folder not found (set {CARDS_ENV} to the project's datasets/ folder)"
        )
    return folder


def list_cards() -> list[str]:
    """Names of all cards in :func:`cards_dir`, sorted."""
    return sorted(p.stem for p in cards_dir().glob("*.yaml"))


def parse_card(text: str, path: Path | None = None) -> DatasetCard:
    """Parse card YAML text; ``path`` is used in error messages and kept on the card."""
    where = str(path) if path else "<card>"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CardError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise CardError(f"{where}: a card must be a YAML mapping")
    missing = [k for k in ("name", "protocol_id", "kind", "scale") if data.get(k) in (None, "")]
    if missing:
        raise CardError(f"{where}: missing required field(s): {', '.join(missing)}")
    kind = str(data["kind"])
    if kind not in KINDS:
        raise CardError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    scale = data["scale"]
    if not isinstance(scale, int) or scale < 1:
        raise CardError(f"{where}: scale must be a positive integer, got {scale!r}")
    layout_raw = data.get("layout") or {}
    if not isinstance(layout_raw, dict):
        raise CardError(f"{where}: layout must be a mapping")
    known_layout = {f.name for f in dataclasses.fields(Layout)}
    unknown = set(layout_raw) - known_layout
    if unknown:
        raise CardError(f"{where}: unknown layout field(s): {', '.join(sorted(unknown))}")
    manifest = data.get("manifest") or {}
    if not isinstance(manifest, dict) or not all(
        isinstance(v, str) and len(v) == 64 for v in manifest.values()
    ):
        raise CardError(f"{where}: manifest must map relative paths to 64-hex SHA-256 digests")
    sources = data.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(s, dict) and "type" in s for s in sources):
        raise CardError(f"{where}: sources must be a list of mappings with a 'type'")
    subset = data.get("subset_of") or {}
    if not isinstance(subset, dict) or (subset and not subset.get("protocol_id")) or (
            set(subset) - {"protocol_id", "note"}):
        raise CardError(f"{where}: subset_of must be a mapping with protocol_id (and an optional note)")
    card = DatasetCard(
        name=str(data["name"]),
        protocol_id=str(data["protocol_id"]),
        kind=kind,
        scale=scale,
        title=str(data.get("title") or ""),
        description=str(data.get("description") or "").strip(),
        degradation=str(data.get("degradation") or "").strip(),
        lr_size=_size(data["lr_size"], "lr_size", path) if data.get("lr_size") is not None else None,
        hr_size=_size(data["hr_size"], "hr_size", path) if data.get("hr_size") is not None else None,
        count=int(data["count"]) if data.get("count") is not None else None,
        layout=Layout(**layout_raw),
        mirror=data.get("mirror"),
        sources=tuple(sources),
        manifest={str(k): str(v).lower() for k, v in manifest.items()},
        huggingface=dict(data.get("huggingface") or {}),
        embedded=dict(data.get("embedded") or {}),
        builder=dict(data.get("builder") or {}),
        licence=str(data.get("licence") or "").strip(),
        citation=str(data.get("citation") or "").strip(),
        notes=str(data.get("notes") or "").strip(),
        subset_of={str(k): str(v).strip() for k, v in subset.items()},
        path=path,
        card_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        raw=data,
    )
    return dataclasses.replace(card, has_hr=_default_has_hr(card))


def load_card(name_or_path: str | Path) -> DatasetCard:
    """Load a card by set name (looked up in :func:`cards_dir`) or by the path of a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        path = candidate
    else:
        path = cards_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(list_cards())
            raise CardError(f"no dataset card named {str(name_or_path)!r} in {cards_dir()}; known: {known}")
    if not path.is_file():
        raise CardError(f"{path}: no such card file")
    card = parse_card(path.read_text(encoding="utf-8"), path=path.resolve())
    if path.stem != card.name and candidate.suffix not in (".yaml", ".yml"):
        raise CardError(f"{path}: card name {card.name!r} does not match its file name")
    return card
