"""Atomic file and folder writes: the one temp-file-and-rename helper of the package.

A writer fills a temporary sibling of the target (a unique name from :mod:`tempfile`, in the same
folder, so the final :func:`os.replace` is a rename on one file system) and the target appears only
when the write completed; an exception deletes the temporary and leaves any earlier target as it was.
Concurrent writers of one target each get their own temporary; the last rename wins.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644  # files written here: readable by all, as a plain write under the usual umask
DIR_MODE = 0o755


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary file path beside ``target``; rename it onto ``target`` when the block succeeds.

    The temporary exists (empty) on entry; the caller writes it by name. The file is made ``0644``
    (:func:`tempfile.mkstemp` creates ``0600``; results and downloads are meant to be shared).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, FILE_MODE)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` (removed first) on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        os.chmod(tmp, DIR_MODE)
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))
