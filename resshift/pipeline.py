"""Super-resolve an image file or a folder with any registered SR method and write PNGs.

Reading and writing go through :mod:`resshift.io` (grayscale replicated, alpha dropped, EXIF applied;
8-bit PNG output named ``<stem>.png``). Images of the same size are grouped into batches of ``bs``;
every image gets its own generator from (seed, name), so outputs do not depend on batching or order.
A file that cannot be read or processed is reported and skipped; the others still run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resshift.io import ImageReadError, list_images, read_image_with_info, write_png
from resshift.methods.base import SRMethod
from resshift.methods.registry import build_method
from resshift.seeding import image_generator


@dataclass
class SRRunReport:
    """What a run wrote and what failed (``(input path, reason)``)."""

    written: list[Path] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def collect_inputs(source: str | Path, *, recursive: bool = False) -> tuple[Path, list[Path]]:
    """``(root, files)`` for an image file or a folder of images (sorted by name)."""
    source = Path(source)
    if source.is_file():
        return source.parent, [source]
    if source.is_dir():
        return source, list_images(source, recursive=recursive)
    raise FileNotFoundError(f"{source}: no such file or folder")


def _method_device(method: SRMethod) -> torch.device:
    return torch.device(getattr(method, "device", "cpu"))


def _batches(
    files: Iterable[Path], bs: int, report: SRRunReport
) -> Iterator[list[tuple[Path, torch.Tensor]]]:
    """Read files in order and yield batches of up to ``bs`` same-size images."""
    buckets: dict[tuple[int, int], list[tuple[Path, torch.Tensor]]] = {}
    for path in files:
        try:
            image, info = read_image_with_info(path)
        except (ImageReadError, OSError) as err:
            report.failures.append((path, str(err)))
            continue
        for note in info.notes:
            report.notes.append((path, note))
        key = (image.shape[1], image.shape[2])
        bucket = buckets.setdefault(key, [])
        bucket.append((path, image))
        if len(bucket) >= bs:
            yield buckets.pop(key)
    yield from buckets.values()


def super_resolve_files(
    files: list[Path],
    out_dir: str | Path,
    method: SRMethod,
    *,
    root: Path | None = None,
    seed: int = 12345,
    bs: int = 1,
    progress: bool = True,
) -> SRRunReport:
    """Super-resolve ``files`` with ``method`` into ``out_dir/<stem>.png``.

    The per-image generator is ``image_generator(seed, name)`` with ``name`` the path relative to
    ``root`` (the file name when ``root`` is None), on the method's device.
    """
    from tqdm.auto import tqdm

    if bs < 1:
        raise ValueError(f"bs must be >= 1, got {bs}")
    out_dir = Path(out_dir)
    report = SRRunReport()
    seen: dict[str, Path] = {}
    unique: list[Path] = []
    for path in files:
        stem = path.stem
        if stem in seen:
            report.failures.append((path, f"output name {stem}.png already used by {seen[stem]}"))
            continue
        seen[stem] = path
        unique.append(path)
    device = _method_device(method)
    bar = tqdm(total=len(unique), desc=getattr(method, "name", "sr"), unit="img", disable=not progress)
    for batch in _batches(unique, bs, report):
        paths = [p for p, _ in batch]
        names = [str(p.relative_to(root)) if root is not None else p.name for p in paths]
        try:
            lr = torch.stack([img for _, img in batch]).to(device)
            generators = [image_generator(seed, name, device=device) for name in names]
            sr = method.upscale(lr, generators)
            for path, image in zip(paths, sr, strict=True):
                report.written.append(write_png(out_dir / f"{path.stem}.png", image))
        except (RuntimeError, ValueError, OSError) as err:
            for path in paths:
                report.failures.append((path, f"{type(err).__name__}: {err}"))
        bar.update(len(batch))
    bar.close()
    return report


def super_resolve_folder(
    source: str | Path,
    out_dir: str | Path,
    method: SRMethod | str = "resshift-v3",
    *,
    seed: int = 12345,
    bs: int = 1,
    recursive: bool = False,
    progress: bool = True,
    **method_config: object,
) -> SRRunReport:
    """Super-resolve an image file or every image in a folder; write ``out_dir/<stem>.png``.

    Args:
        source: an image file or a folder of images.
        out_dir: output folder (created).
        method: an :class:`SRMethod`, or a registered name built with ``method_config``
            (e.g. ``"resshift-v3"`` with ``chop_size=512, chop_stride=448, device="cuda", dtype="fp16"``).
        seed: run seed; each image's noise comes from (seed, its name).
        bs: images per batch (same-size images only).
        recursive: also read sub-folders.
        progress: show a progress bar over images.
    """
    if isinstance(method, str):
        method = build_method(method, **method_config)
    elif method_config:
        raise ValueError("method options are only accepted with a method name")
    root, files = collect_inputs(source, recursive=recursive)
    return super_resolve_files(files, out_dir, method, root=root, seed=seed, bs=bs, progress=progress)
