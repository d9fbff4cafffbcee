"""Images of the report: the per-image comparison assets of the HTML view and the panels of the PNG grid.

For every image some run of a data set saved (``<run>/sr/<name>.png``) the report writes, under
``images/<dataset>/<name>/``: one crop per source (LR nearest-upsampled, each method's SR, GT) of the
same box as lossless PNG, and a small JPEG thumbnail of the whole reference image to show where the
crop lies. A 3000-image run thus costs a few small files per image, never full-size images.

Everything comes from the run folders (:class:`resshift.runfolder.RunFolder`), never from the data set:
the SR images, and the visual record the SR phase saved for each image (box, LR and GT crops,
thumbnail; :mod:`resshift.runfolder.visual`), taken from the first run of the set that has one. A run
folder without visual records (written before the SR phase saved them) gives the methods only: the
box is chosen on the first run's SR image, the thumbnail made from it, and the view says so.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from resshift.io import read_image
from resshift.runfolder import RunFolder
from resshift.runfolder.visual import CROP, VisualRecord, choose_crop, thumbnail

LR_KEY, GT_KEY = "lr", "gt"
LR_LABEL = "LR (nearest-upsampled)"
NO_INPUTS = ("LR and GT not shown: the run folders hold no visual record of this image (written before the "
             "SR phase saved LR and GT crops); the box was chosen on the first method's output")

log = logging.getLogger(__name__)


@dataclass
class Source:
    """One crop of the comparison: a key (``lr``, ``gt``, ``m0``, ...), a label and the (3, s, s) crop."""

    key: str
    label: str
    image: torch.Tensor


@dataclass
class ImageView:
    """What the comparison shows of one image: the box ``(top, left, size)`` in SR pixels, the SR size,
    the crops in display order (LR, each method, GT), the thumbnail (a recorded file, or an HWC uint8
    array made from an SR image) and, when LR and GT are missing, why."""

    name: str
    box: tuple[int, int, int]
    size: tuple[int, int]
    sources: list[Source]
    thumb: Path | np.ndarray
    note: str = ""


def shared_names(runs: pd.DataFrame) -> list[str]:
    """Names of the images every run in ``runs`` saved an SR output for, sorted."""
    names: set[str] | None = None
    for run in runs["run"]:
        have = set(RunFolder(run).sr_names())
        names = have if names is None else names & have
    return sorted(names or ())


def _record(runs: pd.DataFrame, name: str) -> VisualRecord | None:
    """The visual record of ``name`` from the first run that has one."""
    for run in runs["run"]:
        record = RunFolder(run).visual(name)
        if record is not None:
            return record
    return None


def image_view(runs: pd.DataFrame, name: str, crop: int = CROP) -> ImageView | None:
    """The comparison of image ``name`` over ``runs`` (rows of the runs table of one data set: columns
    ``run``, ``method``; runs without this image are left out), or None when no run has it.

    ``crop`` is the box side used when no run recorded a box (the recorded box wins otherwise).
    """
    outputs = [(f"m{i}", str(r["method"]), RunFolder(r["run"]).sr_image(name)) for i, (_, r) in
               enumerate(runs.iterrows())]
    outputs = [o for o in outputs if o[2].is_file()]
    if not outputs:
        return None
    record = _record(runs, name)
    if record is not None:
        box, size, thumb, note = record.box, record.size, record.thumb, ""
        first = None
    else:
        first = read_image(outputs[0][2])
        box, size = choose_crop(first, crop), (int(first.shape[-2]), int(first.shape[-1]))
        thumb, note = thumbnail(first), NO_INPUTS
    top, left, side = box
    sources = []
    for key, label, path in outputs:
        image = first if first is not None and key == outputs[0][0] else read_image(path)
        sources.append(Source(key, label, image[:, top: top + side, left: left + side]))
    if record is not None:
        sources.insert(0, Source(LR_KEY, LR_LABEL, read_image(record.lr)))
        if record.gt is not None:
            sources.append(Source(GT_KEY, "GT", read_image(record.gt)))
    return ImageView(name=name, box=box, size=size, sources=sources, thumb=thumb, note=note)


def _to_pil(image: torch.Tensor) -> Image.Image:
    # numpy, not torch: on small images torch's per-op thread start-up costs more than the work
    arr = np.rint(np.clip(image.detach().cpu().numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))


def slug(text: str) -> str:
    """A file-name-safe form of an image or data set name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def write_view_assets(df: pd.DataFrame, out_dir: Path, crop: int = CROP, limit: int | None = None) -> dict[str, Any]:
    """Write crops and thumbnails of every image of every data set; return the index the page reads.

    Index: ``{"datasets": {dataset: {"runs": {run key: method}, "images": {name: {"crop": [top, left,
    size], "size": [H, W], "thumb": path, "files": {source key: path}, "note": why LR/GT are missing
    (only then)}}, "missing_inputs": images without LR/GT}}, "labels": {lr/gt: label}}``; paths are
    relative to ``out_dir``. ``limit``: at most this many images per data set (by name).
    """
    index: dict[str, Any] = {"datasets": {}, "labels": {LR_KEY: LR_LABEL, GT_KEY: "GT"}, "crop": crop}
    for dataset, runs in df.groupby("dataset", sort=True):
        runs = runs.reset_index(drop=True)
        names: set[str] = set()
        for run in runs["run"]:
            names |= set(RunFolder(run).sr_names())
        entry: dict[str, Any] = {"runs": {f"m{i}": str(m) for i, m in enumerate(runs["method"])}, "images": {},
                                 "missing_inputs": 0}
        for name in sorted(names)[:limit]:
            try:
                view = image_view(runs, name, crop)
            except (OSError, ValueError) as err:  # an unreadable SR file (a failed image) costs only its own view
                log.warning("comparison view of %s on %s left out: %s", name, dataset, err)
                entry.setdefault("unreadable", {})[name] = str(err)
                continue
            if view is None:
                continue
            folder = Path("images") / slug(str(dataset)) / slug(name)
            (out_dir / folder).mkdir(parents=True, exist_ok=True)
            files = {}
            for s in view.sources:
                rel = folder / f"{s.key}.png"
                _to_pil(s.image).save(out_dir / rel, optimize=True)
                files[s.key] = rel.as_posix()
            rel = folder / "thumb.jpg"
            if isinstance(view.thumb, Path):
                shutil.copyfile(view.thumb, out_dir / rel)
            else:
                Image.fromarray(view.thumb).save(out_dir / rel, quality=85)
            entry["images"][name] = {"crop": list(view.box), "size": list(view.size), "thumb": rel.as_posix(),
                                     "files": files}
            if view.note:
                entry["images"][name]["note"] = view.note
                entry["missing_inputs"] += 1
        index["datasets"][str(dataset)] = entry
    return index
