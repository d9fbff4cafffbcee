"""Images of the report: the per-image comparison assets of the HTML view and the panels of the PNG grid.

For every image some run of a data set saved (``<run>/sr/<name>.png``) the report writes, under
``images/<dataset>/<name>/``: one crop per source (LR nearest-upsampled, each method's SR, GT) of the
same HR box (:data:`CROP` pixels, chosen where the reference has most detail) as lossless PNG, and a
small JPEG thumbnail of the whole reference image (GT, else the upsampled LR) to show where the crop
lies. A 3000-image run thus costs a few small files per image, never full-size images in the page.

The run folders hold only the SR outputs, so LR and GT are read again from the data set (the dataset
name and parameters the run recorded in its manifest); where the data set cannot be opened, the
view shows the methods only.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

CROP = 128  # HR pixels per side of the comparison crop
THUMB = 320  # longest side of the context thumbnail, pixels
LR_KEY, GT_KEY = "lr", "gt"


@dataclass
class Source:
    """One image of the comparison: a key (``lr``, ``gt``, ``m0``, ...), a label and the (3, H, W) image."""

    key: str
    label: str
    image: torch.Tensor


def _dataset_params(run: str) -> dict[str, Any]:
    for manifest in sorted(Path(run).glob("run-*.json")):
        try:
            cfg = json.loads(manifest.read_text(encoding="utf-8")).get("config") or {}
        except (OSError, json.JSONDecodeError):
            continue
        return (cfg.get("dataset") or {}).get("params") or {}
    return {}


class _DataSets:
    """Opens each data set once (LR and GT of the comparison); remembers the ones that cannot be opened."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}

    def read(self, dataset: str, run: str, name: str) -> Any | None:
        if dataset not in self._open:
            from resshift.data import open_dataset

            try:
                self._open[dataset] = open_dataset(dataset, **_dataset_params(run))
            except Exception as err:  # noqa: BLE001 - the methods' images are still worth showing
                log.warning("LR/GT of data set %s not shown: %s", dataset, err)
                self._open[dataset] = None
        ds = self._open[dataset]
        if ds is None:
            return None
        try:
            return ds.read(name)
        except Exception as err:  # noqa: BLE001
            log.warning("LR/GT of %s/%s not shown: %s", dataset, name, err)
            return None


def shared_names(runs: pd.DataFrame) -> list[str]:
    """Names of the images every run in ``runs`` saved an SR output for, sorted."""
    names: set[str] | None = None
    for run in runs["run"]:
        have = {p.stem for p in (Path(run) / "sr").glob("*.png")}
        names = have if names is None else names & have
    return sorted(names or ())


def sources(runs: pd.DataFrame, dataset: str, name: str, data: _DataSets | None = None) -> list[Source]:
    """LR (nearest-upsampled to the SR size), each run's SR output and GT for image ``name``.

    ``runs``: rows of the runs table on ``dataset`` (columns ``run``, ``method``); runs without this
    image are left out.
    """
    from resshift.io import read_image

    out: list[Source] = []
    for i, (_, r) in enumerate(runs.iterrows()):
        path = Path(r["run"]) / "sr" / f"{name}.png"
        if path.is_file():
            out.append(Source(f"m{i}", str(r["method"]), read_image(path)))
    if not out:
        return out
    sample = (data or _DataSets()).read(dataset, str(runs["run"].iloc[0]), name)
    if sample is not None:
        size = out[0].image.shape[-2:]
        lr_up = F.interpolate(sample.lr[None].float(), size=tuple(size), mode="nearest")[0]
        out.insert(0, Source(LR_KEY, "LR (nearest-upsampled)", lr_up))
        if sample.hr is not None and tuple(sample.hr.shape[-2:]) == tuple(size):
            out.append(Source(GT_KEY, "GT", sample.hr))
    return out


def choose_crop(image: torch.Tensor, size: int = CROP) -> tuple[int, int, int]:
    """``(top, left, size)`` of the square with the most detail (sum of squared luma gradients) among a
    4 x 4 grid of candidate positions; the whole image side when it is smaller than ``size``."""
    h, w = image.shape[-2:]
    size = min(size, h, w)
    luma = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).double()
    energy = torch.zeros_like(luma)
    energy[:, 1:] += (luma[:, 1:] - luma[:, :-1]) ** 2
    energy[1:, :] += (luma[1:, :] - luma[:-1, :]) ** 2
    integral = F.pad(energy.cumsum(0).cumsum(1), (1, 0, 1, 0))
    best, where = -1.0, (0, 0)
    for top in np.linspace(0, h - size, 4).astype(int):
        for left in np.linspace(0, w - size, 4).astype(int):
            t, left_ = int(top), int(left)
            s = float(integral[t + size, left_ + size] - integral[t, left_ + size] - integral[t + size, left_]
                      + integral[t, left_])
            if s > best:
                best, where = s, (t, left_)
    return where[0], where[1], size


def _to_pil(image: torch.Tensor) -> Image.Image:
    # numpy, not torch: on small images torch's per-op thread start-up costs more than the work
    arr = np.rint(np.clip(image.detach().cpu().numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))


def slug(text: str) -> str:
    """A file-name-safe form of an image or data set name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def write_view_assets(df: pd.DataFrame, out_dir: Path, crop: int = CROP, thumb: int = THUMB,
                      limit: int | None = None) -> dict[str, Any]:
    """Write crops and thumbnails of every image of every data set; return the index the page reads.

    Index: ``{"datasets": {dataset: {"runs": {run key: method}, "images": {name: {"crop": [top, left,
    size], "size": [H, W], "thumb": path, "files": {source key: path}}}}}, "labels": {lr/gt: label}}``;
    paths are relative to ``out_dir``. ``limit``: at most this many images per data set (by name).
    """
    index: dict[str, Any] = {"datasets": {}, "labels": {LR_KEY: "LR (nearest-upsampled)", GT_KEY: "GT"},
                             "crop": crop}
    data = _DataSets()
    for dataset, runs in df.groupby("dataset", sort=True):
        runs = runs.reset_index(drop=True)
        names: set[str] = set()
        for run in runs["run"]:
            names |= {p.stem for p in (Path(run) / "sr").glob("*.png")}
        entry: dict[str, Any] = {"runs": {f"m{i}": str(m) for i, m in enumerate(runs["method"])}, "images": {}}
        for name in sorted(names)[:limit]:
            srcs = sources(runs, str(dataset), name, data)
            if not srcs:
                continue
            ref = next((s for s in srcs if s.key == GT_KEY), srcs[0])
            top, left, size = choose_crop(ref.image, crop)
            folder = Path("images") / slug(str(dataset)) / slug(name)
            (out_dir / folder).mkdir(parents=True, exist_ok=True)
            files = {}
            for s in srcs:
                rel = folder / f"{s.key}.png"
                _to_pil(s.image[:, top: top + size, left: left + size]).save(out_dir / rel, optimize=True)
                files[s.key] = rel.as_posix()
            thumb_img = _to_pil(ref.image)
            thumb_img.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
            rel = folder / "thumb.jpg"
            thumb_img.save(out_dir / rel, quality=85)
            entry["images"][name] = {"crop": [top, left, size], "size": list(ref.image.shape[-2:]),
                                     "thumb": rel.as_posix(), "files": files}
        index["datasets"][str(dataset)] = entry
    return index
