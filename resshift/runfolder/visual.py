"""The visual record of one image: what the report's comparison view and grid need of the inputs.

The SR phase writes, for every image it super-resolves, ``visual/<name>/`` in the run folder:

- ``lr.png``: the LR input nearest-upsampled to the SR size, cropped to the box (``size`` x ``size``);
- ``gt.png``: the GT cropped to the box (absent on sets without GT, or when GT and SR sizes differ);
- ``thumb.jpg``: the whole reference image (GT, else the LR input) downscaled at least 2x, longest
  side at most :data:`THUMB`;
- ``box.json``: ``box`` ``[top, left, size]`` in SR pixels, ``size`` ``[H, W]`` of the SR image,
  ``reference`` (``gt`` or ``lr``: what the box was chosen on), ``version``; written last, so its
  presence marks a complete record.

The box is the :data:`CROP`-pixel square with the most detail in the reference (GT, else the LR input
nearest-upsampled to the SR size; :func:`choose_crop`), so it does not depend on the method and every
run of a set shows the same place. The report reads these files and the SR images and never opens the
data set; nothing here is a full-size input image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.atomic import write_text
from resshift.io import tensor_to_uint8, write_jpeg, write_png

CROP = 128  # SR pixels per side of the comparison crop
THUMB = 320  # longest side of the context thumbnail at most, pixels
VISUAL_VERSION = 1
BOX_FILE, LR_FILE, GT_FILE, THUMB_FILE = "box.json", "lr.png", "gt.png", "thumb.jpg"


def nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    """Source index of each of ``n_out`` positions under PyTorch's ``nearest`` resize from ``n_in``
    (``F.interpolate(mode="nearest", size=...)``: ``floor(i * (n_in / n_out))`` in float32)."""
    if n_in == n_out:
        return torch.arange(n_out)
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    return (torch.arange(n_out, dtype=torch.float32) * scale).floor().long().clamp_(max=n_in - 1)


def _region(image: torch.Tensor, rows: torch.Tensor | None, cols: torch.Tensor | None, top: int, left: int,
            height: int, width: int) -> torch.Tensor:
    """``image[:, top:top+height, left:left+width]``, of the nearest-upsampled image when ``rows``/``cols``
    (the upsampling's source indices) are given; only the region is built."""
    if rows is None or cols is None:
        return image[:, top: top + height, left: left + width]
    return image[:, rows[top: top + height]][:, :, cols[left: left + width]]


def choose_crop(image: torch.Tensor, size: int = CROP,
                upsampled_to: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """``(top, left, size)`` of the square with the most detail (sum of squared luma differences with the
    left and upper neighbours) among a 4 x 4 grid of candidate positions; the whole side when the image
    is smaller than ``size``. The first candidate wins a tie.

    ``upsampled_to=(H, W)``: choose on ``image`` nearest-upsampled to that size, building only the
    candidate squares (never the whole upsampled image).
    """
    h, w = upsampled_to or tuple(image.shape[-2:])
    rows = nearest_index(int(image.shape[-2]), h) if upsampled_to else None
    cols = nearest_index(int(image.shape[-1]), w) if upsampled_to else None
    size = min(size, h, w)
    best, where = -1.0, (0, 0)
    for top in np.linspace(0, h - size, 4).astype(int):
        for left in np.linspace(0, w - size, 4).astype(int):
            t, left_ = int(top), int(left)
            t0, l0 = max(t - 1, 0), max(left_ - 1, 0)  # one more row/column above and left: their differences
            patch = _region(image, rows, cols, t0, l0, t + size - t0, left_ + size - l0).float()
            luma = (0.299 * patch[0] + 0.587 * patch[1] + 0.114 * patch[2]).double()
            across = (luma[t - t0:, 1:] - luma[t - t0:, :-1]) ** 2
            down = (luma[1:, left_ - l0:] - luma[:-1, left_ - l0:]) ** 2
            s = float(across.sum() + down.sum())
            if s > best:
                best, where = s, (t, left_)
    return where[0], where[1], size


def thumbnail(image: torch.Tensor) -> np.ndarray:
    """The whole image downscaled (Lanczos) at least 2x, longest side at most :data:`THUMB`: HWC uint8."""
    from PIL import Image

    h, w = image.shape[-2:]
    side = max(1, min(THUMB, max(h, w) // 2))
    pil = Image.fromarray(tensor_to_uint8(image))
    pil.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(pil)


@dataclass
class VisualCrops:
    """One image's visual record in memory (what :func:`write_visual` writes)."""

    box: tuple[int, int, int]
    size: tuple[int, int]
    reference: str
    lr: torch.Tensor
    gt: torch.Tensor | None
    thumb: np.ndarray


def visual_crops(lr: torch.Tensor, hr: torch.Tensor | None, size: tuple[int, int]) -> VisualCrops:
    """The visual record of an image whose SR output is ``size`` ``(H, W)``: box chosen on the GT when it
    has that size, else on the LR input nearest-upsampled to it; LR and GT crops; the thumbnail."""
    size = (int(size[0]), int(size[1]))
    gt = hr if hr is not None and tuple(hr.shape[-2:]) == size else None
    if gt is not None:
        box = choose_crop(gt)
    else:
        box = choose_crop(lr, upsampled_to=size)
    top, left, side = box
    rows, cols = nearest_index(int(lr.shape[-2]), size[0]), nearest_index(int(lr.shape[-1]), size[1])
    lr_crop = _region(lr, rows, cols, top, left, side, side)
    gt_crop = None if gt is None else gt[:, top: top + side, left: left + side]
    return VisualCrops(box=box, size=size, reference="lr" if gt is None else "gt", lr=lr_crop, gt=gt_crop,
                       thumb=thumbnail(lr if gt is None else gt))


@dataclass(frozen=True)
class VisualRecord:
    """One image's visual record on disk: the box, the SR size, what the box was chosen on, the files."""

    box: tuple[int, int, int]
    size: tuple[int, int]
    reference: str
    lr: Path
    gt: Path | None
    thumb: Path


def write_visual(folder: Path, crops: VisualCrops) -> Path:
    """Write one image's record into ``folder`` (``visual/<name>/``); ``box.json`` last. Returns its path."""
    write_png(folder / LR_FILE, crops.lr)
    if crops.gt is not None:
        write_png(folder / GT_FILE, crops.gt)
    write_jpeg(folder / THUMB_FILE, crops.thumb)
    box = {"box": list(crops.box), "size": list(crops.size), "reference": crops.reference,
           "version": VISUAL_VERSION}
    return write_text(folder / BOX_FILE, json.dumps(box, sort_keys=True) + "\n")


def read_visual(folder: Path) -> VisualRecord | None:
    """The record in ``folder``, or None when it has none (no ``box.json``). A record that cannot be read
    or lacks a file raises ``ValueError`` naming the file."""
    path = folder / BOX_FILE
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        top, left, side = (int(v) for v in data["box"])
        height, width = (int(v) for v in data["size"])
        reference = str(data["reference"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: cannot read the visual record ({type(err).__name__}: {err})") from err
    for name in (LR_FILE, THUMB_FILE, *((GT_FILE,) if reference == "gt" else ())):
        if not (folder / name).is_file():
            raise ValueError(f"{path}: the record's {name} is missing")
    return VisualRecord(box=(top, left, side), size=(height, width), reference=reference, lr=folder / LR_FILE,
                        gt=folder / GT_FILE if reference == "gt" else None, thumb=folder / THUMB_FILE)
