"""The one verified downloader: stream a URL into place atomically, hashing as it goes.

A base module (no dependency on the rest of the package), re-exported by :mod:`resshift.weights`.

Used for every file the suite fetches (released checkpoints, metric weights, data-set archives and
files). ``urllib`` serves ``http(s)://`` and ``file://`` URLs (the tests use loopback servers and
``file://``). A download goes to a unique temporary file beside the target
(:func:`resshift.atomic.atomic_path`) and is renamed into place only after its SHA-256 matched the
pin; any failure leaves no file behind.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path

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
