"""Image reading and writing: the only module that turns files into pixels and back.

Decoding uses OpenCV (as the official ResShift code does, so JPEG decoding is bit-identical to it),
with EXIF orientation applied from the file's metadata (read with Pillow). Every reader returns an
RGB float32 tensor of shape ``(3, H, W)`` in ``[0, 1]``:

* grayscale files are replicated to three channels;
* an alpha channel is dropped (recorded in :class:`ImageInfo.notes`);
* 16-bit files are scaled by 1/65535, 8-bit files by 1/255 (float32, as the official CLI does).

Writers take ``(3, H, W)`` or ``(1, 3, H, W)`` tensors in ``[0, 1]`` and write 8-bit PNGs with
``round(clamp(x, 0, 1) * 255)``, the official ``tensor2img`` rule; :func:`write_jpeg` writes small
previews (the run folder's thumbnails) from ``uint8`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from resshift.atomic import write_bytes

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

_EXIF_ORIENTATION_TAG = 0x0112

# OpenCV's own log lines (decoder warnings about files we report ourselves) stay off the terminal.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ImageReadError(ValueError):
    """A file could not be decoded as an image. The message names the file and the reason."""


@dataclass
class ImageInfo:
    """What the reader found out about a file besides its pixels."""

    path: Path
    height: int
    width: int
    channels_in_file: int
    bit_depth: int
    exif_orientation: int = 1
    notes: list[str] = field(default_factory=list)


def _exif_orientation(path: Path) -> int:
    """Return the EXIF orientation (1..8) of an image file, 1 where there is none."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - no readable EXIF means upright
        return 1
    return int(value) if value in range(1, 9) else 1


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an HWC array so that it displays upright (EXIF orientation 1..8)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1, :]
    if orientation == 5:
        return np.swapaxes(arr, 0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:  # transverse: mirror along the anti-diagonal
        return np.rot90(arr, k=-1)[::-1, :]
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


def decode_image(path: str | Path, *, apply_exif: bool = True) -> tuple[np.ndarray, ImageInfo]:
    """Decode a file into an RGB ``uint8`` or ``uint16`` HWC array and its :class:`ImageInfo`.

    Raises :class:`ImageReadError` naming the file when it is missing, empty or not decodable.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: file is empty")
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype} (8- or 16-bit expected)")
    notes: list[str] = []
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
        notes.append("grayscale replicated to RGB")
    elif channels == 1:
        arr = np.repeat(arr, 3, axis=2)
        notes.append("grayscale replicated to RGB")
    elif channels == 4:
        alpha = arr[:, :, 3]
        full = np.iinfo(arr.dtype).max
        opaque = bool((alpha == full).all())
        notes.append("alpha channel dropped" + (" (fully opaque)" if opaque else " (NOT fully opaque)"))
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif channels == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    else:
        raise ImageReadError(f"{path}: unsupported channel count {channels}")
    orientation = _exif_orientation(path) if apply_exif else 1
    if orientation != 1:
        arr = np.ascontiguousarray(_apply_orientation(arr, orientation))
        notes.append(f"EXIF orientation {orientation} applied")
    info = ImageInfo(
        path=path,
        height=arr.shape[0],
        width=arr.shape[1],
        channels_in_file=channels,
        bit_depth=16 if arr.dtype == np.uint16 else 8,
        exif_orientation=orientation,
        notes=notes,
    )
    return arr, info


def read_image(path: str | Path, *, apply_exif: bool = True) -> torch.Tensor:
    """Read an image file as an RGB float32 tensor ``(3, H, W)`` in ``[0, 1]``."""
    return read_image_with_info(path, apply_exif=apply_exif)[0]


def read_image_with_info(path: str | Path, *, apply_exif: bool = True) -> tuple[torch.Tensor, ImageInfo]:
    """Like :func:`read_image`, also returning the :class:`ImageInfo` (alpha, EXIF, bit depth notes)."""
    arr, info = decode_image(path, apply_exif=apply_exif)
    return array_to_tensor(arr), info


def array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HWC ``uint8``/``uint16`` RGB array -> ``(3, H, W)`` float32 in ``[0, 1]`` (division in float32).

    One float32 buffer is allocated (filled by a channel-first copy, divided in place), so a large
    image costs 12 bytes a pixel here, not 36.
    """
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    src = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    x = torch.empty(src.shape, dtype=torch.float32)
    return x.copy_(src).div_(scale)


# Rows converted at a time by tensor_to_uint8 (bounds its float temporaries on large images).
_UINT8_ROWS = 256


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor in ``[0, 1]`` -> HWC RGB ``uint8`` (clamp, x255, round),
    converted by blocks of rows into one output array."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(x.shape)}")
    x = x.detach()
    _, height, width = x.shape
    out = np.empty((height, width, 3), dtype=np.uint8)
    for r0 in range(0, height, _UINT8_ROWS):
        rows = x[:, r0 : r0 + _UINT8_ROWS].float().clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        out[r0 : r0 + rows.shape[1]] = rows.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
    return out


def write_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    """Write an RGB image (tensor in ``[0, 1]`` or HWC ``uint8`` array) as an 8-bit PNG.

    The file is written through :func:`resshift.atomic.write_bytes`, so an interrupted write never leaves a
    truncated PNG behind and concurrent writers never collide. Returns the path written.
    """
    path = Path(path)
    arr = tensor_to_uint8(image) if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: expected an HWC RGB uint8 array, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    return write_bytes(path, buf.tobytes())


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 85) -> Path:
    """Write an HWC RGB ``uint8`` array as a JPEG (``quality`` 0-100), atomically as :func:`write_png`."""
    path = Path(path)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: expected an HWC RGB uint8 array, got {arr.dtype} {arr.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    return write_bytes(path, buf.tobytes())


def is_hidden(path: Path, root: Path) -> bool:
    """True for a file or folder below ``root`` whose name (or a parent's) starts with a dot: macOS
    ``._*`` resource forks, ``.DS_Store``, ``.ipynb_checkpoints`` and the like are not images."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def image_key(path: str | Path, root: str | Path) -> str:
    """An image's key in a set: its path relative to ``root`` without the extension, POSIX form
    (``Canon/001`` for ``root/Canon/001.png``). Results, seeds and output files are named by it."""
    return Path(path).relative_to(root).with_suffix("").as_posix()


def list_images(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by name (case-sensitive), with suffixes in :data:`IMAGE_SUFFIXES`;
    hidden files and folders (:func:`is_hidden`) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p, folder) and p.is_file()
    )
