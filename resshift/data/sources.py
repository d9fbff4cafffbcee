"""Where a set's files come from: an explicit folder, a local data mirror, or the download cache.

Resolution order for a set's root folder (:func:`locate`):

1. an explicit ``root`` (a folder, or for archive sets a ``.zip`` that is unpacked into the cache);
2. a data mirror: ``mirror`` argument, else ``$RESSHIFT_DATA_MIRROR``; the card's ``mirror`` field is
   the set's folder relative to the mirror root (the mirror uses the shared folder's layout);
3. the download cache: ``$RESSHIFT_DATA_ROOT`` if set, else ``<cache_dir()>/datasets``; a set is
   cached in ``<cache>/<name>/`` once :func:`fetch` completed (marker file ``.complete``).

Source entries in a card (``sources:``), tried in order by :func:`fetch`:

* ``{type: files, base_url: URL/, strip: PREFIX/}`` - one download per manifest entry
  (``base_url`` + relative path minus ``strip``), each checked against the manifest's SHA-256;
* ``{type: archive, url: URL, sha256: HEX|null, archive: FILE.zip, strip: PREFIX}`` - one zip,
  checked, then unpacked; ``strip`` is the folder inside the zip that becomes the set's root;
* ``{type: gdrive, file_id: ID, sha256: ..., archive: ..., strip: ...}`` - the same for a Google-Drive
  file (downloaded with the ``drive.usercontent.google.com`` endpoint);
* ``{type: manual, ...}`` - documentation only (where a user can get the files by hand).

``sha256: null`` means the digest has not been recorded yet: the archive is accepted and its digest
printed so it can be pinned in the card. Downloads use the suite's one verified downloader
(:mod:`resshift.download`: ``urllib``, so ``file://`` URLs work, which the
tests use).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resshift.data.cards import DatasetCard
from resshift.download import ChecksumMismatchError, download_verified, safe_member_path
from resshift.paths import cache_dir
from resshift.provenance import file_sha256

MIRROR_ENV = "RESSHIFT_DATA_MIRROR"
DATA_ROOT_ENV = "RESSHIFT_DATA_ROOT"
COMPLETE_MARKER = ".complete"
GDRIVE_URL = "https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
#: Source types :func:`fetch` can download from (``manual`` entries only document where files are).
DOWNLOAD_SOURCE_TYPES = ("files", "archive", "gdrive")


class DatasetNotAvailable(FileNotFoundError):
    """A set's files are in none of the places looked at. The message lists them."""


#: A file's SHA-256 differs from the card's (the message names the file and both digests).
ChecksumError = ChecksumMismatchError


def data_root() -> Path:
    """Root of the data cache: ``$RESSHIFT_DATA_ROOT`` or ``<cache_dir()>/datasets``."""
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser().resolve() if env else cache_dir() / "datasets"


def mirror_root(mirror: str | Path | None = None) -> Path | None:
    """The data mirror root: the argument, else ``$RESSHIFT_DATA_MIRROR``, else ``None``."""
    if mirror is not None:
        return Path(mirror).expanduser().resolve()
    env = os.environ.get(MIRROR_ENV)
    return Path(env).expanduser().resolve() if env else None


def has_download_source(card: DatasetCard) -> bool:
    """True when :func:`fetch` can download the set (a ``files``, ``archive`` or ``gdrive`` source)."""
    return any(src["type"] in DOWNLOAD_SOURCE_TYPES for src in card.sources)


def cached_set_dir(card: DatasetCard, cache: Path | None = None) -> Path:
    """The folder a fetched set lives in: ``<data_root>/<name>``."""
    return (cache or data_root()) / card.name


def locate(
    card: DatasetCard,
    root: str | Path | None = None,
    mirror: str | Path | None = None,
    cache: Path | None = None,
) -> Path:
    """The folder holding the set's files (see the module docstring for the order).

    Raises :class:`DatasetNotAvailable` listing every place looked at.
    """
    looked: list[str] = []
    if root is not None:
        path = Path(root).expanduser().resolve()
        if path.is_file() and path.suffix.lower() == ".zip":
            return unpack_local_archive(card, path, cache=cache)
        if path.is_dir():
            return path
        raise DatasetNotAvailable(f"{path}: dataset root for {card.name!r} does not exist")
    mroot = mirror_root(mirror)
    if card.mirror:
        if mroot is not None:
            candidate = mroot / card.mirror
            if candidate.is_dir():
                return candidate
            looked.append(f"mirror {candidate}")
        else:
            looked.append(f"no mirror set (${MIRROR_ENV})")
    cached = cached_set_dir(card, cache)
    if (cached / COMPLETE_MARKER).is_file():
        return cached
    looked.append(f"cache {cached}")
    hint = (f"run `resshift data fetch {card.name}`" if has_download_source(card)
            else "it has no download source: pass its folder as root (see the card's sources)")
    raise DatasetNotAvailable(f"data set {card.name!r} not found ({'; '.join(looked)}); {hint}")


def download(
    url: str, dest: Path, sha256: str | None = None, progress: Callable[[str], None] | None = None
) -> str:
    """Download ``url`` to ``dest`` with :func:`resshift.download.download_verified`, return
    the digest. An existing ``dest`` with the right digest is kept; a wrong digest raises
    :class:`ChecksumError` and leaves no file behind."""
    return download_verified(url, dest, sha256, progress=progress or False)


def extract_zip(archive: Path, dest: Path, strip: str | None = None) -> int:
    """Unpack ``archive`` into ``dest`` (members under ``strip`` only, with it removed); return the count."""
    count = 0
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{archive}: not a valid zip archive ({exc})") from exc
    with zf:
        for info in zf.infolist():
            rel = safe_member_path(info.filename, strip)
            if rel is None or info.is_dir():
                continue
            target = dest / Path(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            count += 1
    if count == 0:
        raise ValueError(f"{archive}: no files under {strip!r} in the archive")
    return count


def _archive_source(card: DatasetCard) -> dict | None:
    for src in card.sources:
        if src["type"] in ("archive", "gdrive"):
            return src
    return None


def unpack_local_archive(card: DatasetCard, archive: Path, cache: Path | None = None) -> Path:
    """Check a local copy of the set's archive against the card and unpack it into the cache."""
    src = _archive_source(card) or {}
    expected = src.get("sha256")
    digest = file_sha256(archive)
    if expected and digest != str(expected).lower():
        raise ChecksumError(f"{archive}: SHA-256 {digest} does not match the card's {expected}")
    dest = cached_set_dir(card, cache)
    if (dest / COMPLETE_MARKER).is_file() and (dest / COMPLETE_MARKER).read_text().strip() == digest:
        return dest
    _fresh_dir(dest)
    extract_zip(archive, dest, src.get("strip"))
    (dest / COMPLETE_MARKER).write_text(digest + "\n")
    return dest


def _fresh_dir(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


@dataclass
class FetchResult:
    """What :func:`fetch` did."""

    root: Path
    source: str
    files: int
    messages: list[str] = field(default_factory=list)


def fetch(
    card: DatasetCard,
    mirror: str | Path | None = None,
    cache: Path | None = None,
    archive: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> FetchResult:
    """Put the set into the cache: from a local ``archive``, a mirror, or the card's sources.

    Every file is checked against the card's manifest or archive digest. A set already cached is
    left as it is.
    """
    dest = cached_set_dir(card, cache)
    if archive is not None:
        root = unpack_local_archive(card, Path(archive), cache)
        return FetchResult(root, f"archive {archive}", sum(1 for p in root.rglob("*") if p.is_file()) - 1)
    if (dest / COMPLETE_MARKER).is_file():
        return FetchResult(dest, "cache", len(card.manifest), ["already cached"])
    mroot = mirror_root(mirror)
    if mroot is not None and card.mirror and (mroot / card.mirror).is_dir() and card.manifest:
        src_dir = mroot / card.mirror
        _fresh_dir(dest)
        for rel, digest in sorted(card.manifest.items()):
            src = src_dir / rel
            if not src.is_file():
                raise DatasetNotAvailable(f"{src}: in the {card.name!r} card but missing in the mirror")
            got = file_sha256(src)
            if got != digest:
                raise ChecksumError(f"{src}: SHA-256 {got} does not match the card's {digest}")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)
        (dest / COMPLETE_MARKER).write_text("mirror\n")
        return FetchResult(dest, f"mirror {src_dir}", len(card.manifest))
    errors: list[str] = []
    for src in card.sources:
        kind = src["type"]
        try:
            if kind == "files":
                if not card.manifest:
                    raise ValueError("a 'files' source needs a manifest in the card")
                _fresh_dir(dest)
                base, strip = str(src["base_url"]), str(src.get("strip") or "")
                for rel, digest in sorted(card.manifest.items()):
                    remote = rel[len(strip):] if strip and rel.startswith(strip) else rel
                    download(base + remote, dest / rel, digest, progress)
                (dest / COMPLETE_MARKER).write_text("files\n")
                return FetchResult(dest, base, len(card.manifest))
            if kind in ("archive", "gdrive"):
                url = src["url"] if kind == "archive" else GDRIVE_URL.format(file_id=src["file_id"])
                arc = (cache or data_root()) / "_archives" / str(src.get("archive") or f"{card.name}.zip")
                digest = download(url, arc, src.get("sha256"), progress)
                msgs = [] if src.get("sha256") else [
                    f"archive SHA-256 {digest} (not pinned in the card; record it under sources[].sha256)"
                ]
                root = unpack_local_archive(card, arc, cache)
                n = sum(1 for p in root.rglob("*") if p.is_file()) - 1
                return FetchResult(root, url, n, msgs)
        except Exception as exc:  # noqa: BLE001 - try the next source, report all failures
            errors.append(f"{kind}: {exc}")
    if not errors:
        raise DatasetNotAvailable(
            f"data set {card.name!r} has no downloadable source; pass its folder as root"
        )
    raise DatasetNotAvailable(f"could not fetch {card.name!r}: " + " | ".join(errors))


@dataclass
class VerifyReport:
    """The outcome of :func:`verify_files`: problems are empty when the set matches its card."""

    root: Path
    checked: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_files(card: DatasetCard, root: Path) -> VerifyReport:
    """Check every manifest entry under ``root`` (present, right SHA-256)."""
    report = VerifyReport(root=root, checked=0)
    for rel, digest in sorted(card.manifest.items()):
        path = root / rel
        if not path.is_file():
            report.problems.append(f"{path}: missing")
            continue
        got = file_sha256(path)
        report.checked += 1
        if got != digest:
            report.problems.append(f"{path}: SHA-256 {got} != card {digest}")
    return report

