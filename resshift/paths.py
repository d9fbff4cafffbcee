"""Locations the suite reads and writes: project root, the shared test data, caches.

Each location has one environment variable that overrides it; every other module asks here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

SHARED_ENV = "RESSHIFT_SHARED"
CACHE_ENV = "RESSHIFT_CACHE"


def shared_dir() -> Path:
    """The folder of shared test material (golden tensors, data mirror, docs).

    ``$RESSHIFT_SHARED`` if set, else ``../shared`` beside the project root. The folder may be
    absent; callers check ``.is_dir()``.
    """
    env = os.environ.get(SHARED_ENV)
    return Path(env).expanduser().resolve() if env else (PROJECT_ROOT.parent / "shared").resolve()


def cache_dir() -> Path:
    """Root of the suite's download cache (weights, data archives).

    ``$RESSHIFT_CACHE`` if set, else ``$XDG_CACHE_HOME/resshift`` (``~/.cache/resshift``).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "resshift").resolve()
