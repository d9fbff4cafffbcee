"""Every weights file of the suite: one table, one verified downloader, the checkpoint formats.

* :mod:`~resshift.weights.table`: :data:`FILES`, the one table (URL, SHA-256, licence, kind) of the
  ResShift releases, the VQ-f4 autoencoder, the ADM prior, the LDM-SR pipeline, every metric's files
  and the shipped small models;
* :mod:`~resshift.download`: :func:`download_verified`, the one downloader (atomic, hashed);
* :mod:`~resshift.weights.formats`: safe reading, state-dict normalisation and strict loading, and
  the suite's own safetensors checkpoint formats;
* :mod:`~resshift.weights.releases`: the download cache (lookup, offline rules, fetch) and the
  released networks (:func:`load_network`, :func:`load_unet`, :func:`load_autoencoder`);
* :mod:`~resshift.weights.metric_files`: the metric weight folder (``TORCH_HOME`` layout);
* :mod:`~resshift.weights.shipped`: the small models inside the package.

``resshift weights list`` shows the table and which files are present.
"""

from resshift.download import (
    ChecksumMismatchError,
    DownloadError,
    WeightsError,
    download_verified,
    verify_checksum,
)
from resshift.weights.formats import (
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    check_state_dict,
    load_into,
    load_state_dict,
    normalize_state_dict,
)
from resshift.weights.releases import (
    OFFLINE_ENV,
    WEIGHTS_DIR_ENV,
    CheckpointDownloadError,
    architecture_for,
    download_checkpoint,
    find_local,
    load_autoencoder,
    load_network,
    load_unet,
    resolve_checkpoint,
    search_dirs,
    source_url,
    weights_cache_dir,
)
from resshift.weights.table import (
    CACHE_FILES,
    CHECKPOINTS,
    FILES,
    LICENCE,
    METRIC_FILES,
    MIRROR_ENV,
    RELEASE_BASE_URL,
    SHIPPED,
    WeightFile,
    get_entry,
    with_hash,
)

__all__ = [
    "CACHE_FILES", "CHECKPOINTS", "FILES", "LICENCE", "METRIC_FILES", "MIRROR_ENV", "OFFLINE_ENV", "RELEASE_BASE_URL",
    "SHIPPED", "WEIGHTS_DIR_ENV", "CheckpointDownloadError", "CheckpointFormatError",
    "CheckpointMismatchError", "CheckpointNotFoundError", "ChecksumMismatchError", "DownloadError",
    "WeightFile", "WeightsError", "architecture_for", "check_state_dict", "download_checkpoint",
    "download_verified", "find_local", "get_entry", "load_autoencoder", "load_into", "load_network", "load_state_dict",
    "load_unet", "normalize_state_dict", "resolve_checkpoint", "search_dirs", "source_url",
    "verify_checksum", "weights_cache_dir", "with_hash",
]
