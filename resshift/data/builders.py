"""Builders that synthesise a benchmark set from source images, following a card's ``builder`` recipe.

``imagenet-heldout`` (the small models' held-out split, :func:`build_heldout`): the first
``builder.count`` held-out names of the split file are read from the source folder, the GT is made as
ImageNet-Test's (below) and the LR by the Real-ESRGAN *testing* degradation with one generator per
image (``image_generator(seed, stem)``), so the set is reproducible bit for bit on one platform.

``imagenet-test`` (ResShift protocol) from an ImageNet-val folder:

1. source files: ``builder.source_glob`` patterns under the folder (recursive), sorted by path;
2. selection: ``random.seed(selection_seed)``; the sorted list is shuffled once (a copy, unused, as in
   ResShift's script, which advances Python's RNG) and ``random.sample(sorted_list, count)`` picks the
   images; then they are processed in name order;
3. GT: shortest side resized to ``gt_size`` (``cv2.INTER_LINEAR``, as albumentations
   ``SmallestMaxSize``'s default; new side ``round(side * gt_size / min_side)``), centre crop
   ``gt_size`` (top/left offsets ``(side - gt_size) // 2``);
4. LR: the card's degradation preset (``testing``) with ``torch.Generator`` seeded by
   ``derive_seed(seed, file stem)``, so each image is deterministic whatever the order or subset;
5. written as ``gt/<stem>.png`` and ``lq/<stem>.png``.

The result is NOT bit-identical to the released ImageNet-Test: the original script does not seed
numpy/torch, uses DiffJPEG rather than libjpeg, and whether anything between its shuffle and its
sample draws from Python's RNG is unverified. The built set's card records protocol id
``builder.protocol_id`` (``resshift-imagenet-test-rebuilt``) so results are never confused with the
released set's.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from resshift.data.cards import CardError, DatasetCard, load_card
from resshift.data.degradations.realesrgan import degrade_one, get_params
from resshift.data.sources import COMPLETE_MARKER, cached_set_dir
from resshift.data.split import read_split
from resshift.io import array_to_tensor, decode_image, write_png
from resshift.paths import PROJECT_ROOT, shared_dir
from resshift.provenance import file_sha256
from resshift.seeding import image_generator


def list_sources(folder: Path, patterns: list[str]) -> list[Path]:
    """Files under ``folder`` matching any glob pattern, sorted by path, without duplicates."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: source folder not found")
    found = {p.resolve() for pat in patterns for p in folder.glob(pat) if p.is_file()}
    return sorted(found, key=lambda p: str(p))


def select_images(files: list[Path], count: int, seed: int) -> list[Path]:
    """ResShift's selection: seed Python's RNG, shuffle a copy (unused), sample ``count``."""
    if count > len(files):
        raise ValueError(f"cannot select {count} images from {len(files)} files (use a smaller count)")
    rng_state = random.getstate()
    try:
        random.seed(seed)
        shuffled = list(files)
        random.shuffle(shuffled)
        chosen = random.sample(files, count)
    finally:
        random.setstate(rng_state)
    return chosen


def center_gt(arr: np.ndarray, size: int) -> np.ndarray:
    """Shortest side to ``size`` (bilinear), then centre crop ``size x size``; HWC uint8 in and out."""
    h, w = arr.shape[:2]
    short = min(h, w)
    if short != size:
        nh, nw = int(round(h * size / short)), int(round(w * size / short))
        nh, nw = max(nh, size), max(nw, size)
        arr = cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(arr[top : top + size, left : left + size])


@dataclass
class BuildResult:
    """What :func:`build_imagenet_test` wrote."""

    root: Path
    count: int
    protocol_id: str


def build_imagenet_test(
    card: DatasetCard,
    source: Path,
    dest: Path | None = None,
    count: int | None = None,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Build an ImageNet-Test-style set from ``source`` into ``dest`` (default: the data cache).

    ``count``/``seed`` default to the card's ``builder`` values. Existing files are overwritten; a
    ``build.json`` records the recipe, the source folder and the chosen files.
    """
    b = card.builder
    if not b:
        raise CardError(f"{card.path}: card {card.name!r} has no builder recipe")
    count = int(count if count is not None else b["count"])
    seed = int(seed if seed is not None else b.get("seed", 0))
    gt_size = int(b["gt_size"])
    params = get_params(str(b.get("degradation", "testing")))
    if params.scale != card.scale:
        raise CardError(f"{card.path}: degradation scale {params.scale} != card scale {card.scale}")
    files = list_sources(Path(source), list(b["source_glob"]))
    chosen = sorted(select_images(files, count, int(b["selection_seed"])), key=lambda p: p.stem)
    stems = [p.stem for p in chosen]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{source}: two selected files share a name; names must be unique")
    dest = Path(dest) if dest is not None else cached_set_dir(card)
    if dest.exists():
        shutil.rmtree(dest)
    lay = card.layout
    for i, path in enumerate(chosen):
        arr, _ = decode_image(path)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
        gt = array_to_tensor(center_gt(arr, gt_size)).to(device)
        gen = image_generator(seed, path.stem, device=device)
        lr, _ = degrade_one(gt, gen, params)
        write_png(dest / str(lay.hr) / f"{path.stem}.png", gt.cpu())
        write_png(dest / lay.lr / f"{path.stem}.png", lr.cpu())
        if progress:
            progress(i + 1, len(chosen))
    protocol = str(b.get("protocol_id") or f"{card.protocol_id}-rebuilt")
    record = {
        "card": card.name,
        "card_sha256": card.card_sha256,
        "protocol_id": protocol,
        "source": str(Path(source).resolve()),
        "count": count,
        "seed": seed,
        "selection_seed": int(b["selection_seed"]),
        "degradation": params.name,
        "files": [str(p.relative_to(Path(source).resolve())) for p in chosen],
        "note": "synthesised; not bit-identical to the released ImageNet-Test",
    }
    (dest / "build.json").write_text(json.dumps(record, indent=1) + "\n")
    (dest / COMPLETE_MARKER).write_text("built\n")
    return BuildResult(dest, len(chosen), protocol)


HELDOUT_CARD = "imagenet-heldout"
HELDOUT_SOURCE = Path("datasets") / "imagenet-samples"  #: under the shared folder


def build_heldout(card: DatasetCard | str = HELDOUT_CARD, source: str | Path | None = None,
                  dest: str | Path | None = None, force: bool = False) -> Path:
    """Write the held-out pairs (``gt/``, ``lq/``, ``build.json``); returns the set's folder.

    An existing complete build made from the same split file is kept unless ``force``.
    """
    card = load_card(card) if isinstance(card, str) else card
    b = card.builder
    if not b or "split" not in b:
        raise ValueError(f"{card.path}: card {card.name!r} has no held-out builder recipe")
    split_path = Path(b["split"])
    split_path = split_path if split_path.is_absolute() else PROJECT_ROOT / split_path
    split = read_split(split_path)
    names = split.eval_names(int(b["count"]))
    source = Path(source) if source is not None else shared_dir() / HELDOUT_SOURCE
    dest = Path(dest) if dest is not None else cached_set_dir(card)
    split_sha = file_sha256(split_path)
    record_path = dest / "build.json"
    if not force and (dest / COMPLETE_MARKER).is_file() and record_path.is_file():
        if json.loads(record_path.read_text()).get("split_sha256") == split_sha:
            return dest
    missing = [n for n in names if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: {len(missing)} held-out image(s) missing, e.g. {missing[:3]}")
    params = get_params(str(b.get("degradation", "testing")))
    seed, size = int(b.get("seed", 0)), int(b["gt_size"])
    for name in names:
        arr, _ = decode_image(source / name)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        gt = array_to_tensor(center_gt(arr, size))
        stem = Path(name).stem
        lr, _ = degrade_one(gt, image_generator(seed, stem), params)
        write_png(dest / str(card.layout.hr) / f"{stem}.png", gt)
        write_png(dest / card.layout.lr / f"{stem}.png", lr)
    record = {"card": card.name, "card_sha256": card.card_sha256, "protocol_id": card.protocol_id,
              "source": str(source.resolve()), "count": len(names), "seed": seed, "degradation": params.name,
              "split_sha256": split_sha, "files": names}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    (dest / COMPLETE_MARKER).write_text("built\n")
    return dest
