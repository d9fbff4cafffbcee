"""Per-shard array files of a run folder (``records/<kind>-<rank>-of-<world>.npz``): the one writer and
reader of the vector records that sit beside the scalar metric rows (radial spectra, Inception
features). Each file is written whole and atomically (a reader sees the old file or the new one) and
read without unpickling; what the arrays mean is the business of :mod:`resshift.runfolder.spectra` and
:mod:`resshift.runfolder.features`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from resshift.atomic import atomic_path


def write_arrays(path: Path, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically (its folder is created)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def read_arrays(path: Path, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` file ``path`` (loaded into memory, never unpickled).

    Raises ``ValueError`` naming the file and ``what`` it should hold when it cannot be read, is not an
    ``.npz`` archive, or lacks one of ``keys``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in keys}
    except (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from err
