"""Where a number came from: package versions, git commit, device, file hashes.

Every result row carries :func:`row_provenance` (protocol id, dataset card hash, method and checkpoint
hash, package versions, git commit, device); :func:`collect_provenance` gathers the environment part
once per run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from resshift.paths import PROJECT_ROOT

# Distributions whose versions change numbers (metrics, decoding, kernels).
TRACKED_PACKAGES: tuple[str, ...] = (
    "resshift-bench",
    "torch",
    "torchvision",
    "numpy",
    "pyiqa",
    "lpips",
    "opencv-python-headless",
    "pillow",
    "scikit-image",
    "scipy",
    "safetensors",
)

_CHUNK = 1 << 20
_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks.

    Cached per (resolved path, size, modification time), so hashing a multi-GB checkpoint costs once
    per process unless the file changes. Raises ``FileNotFoundError`` naming the file.
    """
    p = Path(path).resolve()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such file to hash") from None
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


def card_hash(path: str | Path) -> str:
    """Hash of a dataset card: SHA-256 of its bytes with line endings normalised to ``\\n``.

    So a card checked out on Windows (CRLF) hashes the same as on Linux.
    """
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def package_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` where not installed), plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(root: str | Path = PROJECT_ROOT) -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` of the checkout at ``root``; tolerates no git."""

    def _git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


_code_hash: list[str] = []


def code_sha256() -> str:
    """SHA-256 of this package's Python sources (every readable ``resshift/**/*.py`` whose name does not start with a
    dot, by relative path and bytes, in path order), computed once per process: the code that made a run's numbers,
    whether or not it is a git checkout and whether or not the checkout has uncommitted changes."""
    with _hash_lock:
        if not _code_hash:
            package = Path(__file__).resolve().parent
            h = hashlib.sha256()
            for path in sorted(package.rglob("*.py")):
                if path.name.startswith(".") or not path.is_file():  # editor lock files, broken links
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                h.update(path.relative_to(package).as_posix().encode() + b"\0" + data + b"\0")
            _code_hash.append(h.hexdigest())
        return _code_hash[0]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Name and facts of the compute device (GPU name, memory, capability; or the CPU model)."""
    dev = torch.device(device)
    info: dict[str, Any] = {"device": str(dev), "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda" and torch.cuda.is_available():
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            name=props.name,
            total_memory_bytes=int(props.total_memory),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    else:
        info.update(name=_cpu_name(), cpu_count=os.cpu_count())
    return info


def collect_provenance(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Environment provenance for a run: packages, git, device, platform."""
    return {
        "packages": package_versions(),
        "git": git_commit(),
        "device": device_info(device),
        "platform": platform.platform(),
    }


def row_provenance(
    *,
    protocol_id: str,
    card_sha256: str,
    method: str,
    checkpoint_sha256: str | None,
    environment: dict[str, Any],
) -> dict[str, Any]:
    """The provenance fields every result row carries (``environment`` from :func:`collect_provenance`).

    Flat keys so rows stay easy to filter in pandas: protocol id, dataset card hash, method and its
    checkpoint hash (``None`` for weight-free methods), git commit, device name and package versions.
    """
    git = environment.get("git", {})
    dev = environment.get("device", {})
    return {
        "protocol_id": protocol_id,
        "card_sha256": card_sha256,
        "method": method,
        "checkpoint_sha256": checkpoint_sha256,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "device": dev.get("name"),
        "packages": dict(environment.get("packages", {})),
    }
