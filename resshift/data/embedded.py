"""The embedded default set: colour sample images bundled with scikit-image, no download needed.

The card (``datasets/embedded.yaml``) lists each source file, its SHA-256 and the ``[top, left]``
of a fixed HR crop. :func:`build_embedded` reads the files with :func:`resshift.io.read_image`,
checks their digests, crops, makes the LR with MATLAB-bicubic x1/scale rounded to 8 bits, and
writes ``hr/<name>.png`` and ``lr/<name>.png`` into a cache folder keyed by the card's hash, so a
changed card never reuses stale images.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from resshift.atomic import atomic_dir
from resshift.data.cards import CardError, DatasetCard
from resshift.data.degradations.matlab_resize import bicubic_downscale_8bit
from resshift.data.sources import COMPLETE_MARKER, ChecksumError, data_root
from resshift.io import read_image, write_png
from resshift.provenance import file_sha256


def source_folder(card: DatasetCard) -> Path:
    """The folder of the package that ships the images (``embedded.package``)."""
    package = str(card.embedded.get("package") or "")
    if not package:
        raise CardError(f"{card.path}: embedded.package is missing")
    module = importlib.import_module(package)
    return Path(module.__file__).resolve().parent  # type: ignore[arg-type]


def build_embedded(card: DatasetCard, cache: Path | None = None, force: bool = False) -> Path:
    """Build (once) and return the folder holding ``hr/`` and ``lr/`` PNGs of an embedded set."""
    images = card.embedded.get("images") or []
    if not images:
        raise CardError(f"{card.path}: embedded.images is empty")
    if card.hr_size is None:
        raise CardError(f"{card.path}: an embedded set needs hr_size")
    dest = (cache or data_root()) / card.name / card.card_sha256[:16]
    if (dest / COMPLETE_MARKER).is_file() and not force:
        return dest
    folder = source_folder(card)
    hh, ww = card.hr_size
    with atomic_dir(dest) as tmp:
        _write_images(card, images, folder, tmp, hh, ww)
    return dest


def _write_images(card: DatasetCard, images: list, folder: Path, tmp: Path, hh: int, ww: int) -> None:
    """Cut, downscale and write every image of the set into ``tmp``, then the completion marker."""
    for entry in images:
        name, fname, digest = entry["name"], entry["file"], entry.get("sha256")
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path}: sample image of the embedded set is not installed")
        if digest and file_sha256(path) != digest:
            raise ChecksumError(
                f"{path}: SHA-256 {file_sha256(path)} differs from the card's {digest} "
                "(a different scikit-image release?)"
            )
        img = read_image(path)
        top, left = (int(v) for v in entry["crop"])
        if top < 0 or left < 0 or top + hh > img.shape[1] or left + ww > img.shape[2]:
            raise CardError(
                f"{card.path}: crop {top},{left} of {hh}x{ww} falls outside {fname} "
                f"({img.shape[1]}x{img.shape[2]})"
            )
        hr = img[:, top : top + hh, left : left + ww]
        lr = bicubic_downscale_8bit(hr, card.scale)
        write_png(tmp / card.layout.hr / f"{name}.png", hr)  # type: ignore[operator]
        write_png(tmp / card.layout.lr / f"{name}.png", lr)
    (tmp / COMPLETE_MARKER).write_text(card.card_sha256 + "\n")
