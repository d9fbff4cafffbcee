"""Super-resolve an image file or a folder with any registered SR method and write PNGs.

This is ``resshift sr`` without the command line. It runs the evaluation runner's SR loop
(:func:`resshift.runner.sr_loop.super_resolve`), so an image gives the same PNG here as in
``nox -s eval`` with the same method and seed: both name an image by its key (its path relative to
the input folder without the extension, :func:`resshift.io.image_key`) and seed its noise from
(seed, key). Reading and writing go through :mod:`resshift.io` (grayscale replicated, alpha dropped,
EXIF applied; 8-bit PNG output ``<out>/<key>.png``, sub-folders kept). A file that cannot be read or
processed, or whose output is not finite, is reported and nothing is written for it; the others still run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resshift.io import ImageReadError, image_key, list_images, read_image_with_info, write_png
from resshift.methods.base import SRMethod
from resshift.methods.registry import build_method
from resshift.runner.sr_loop import LoadFailure, LRImage, super_resolve


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
    """``(root, files)`` for an image file or a folder of images (sorted by name; hidden files left out)."""
    source = Path(source)
    if source.is_file():
        return source.parent, [source]
    if source.is_dir():
        return source, list_images(source, recursive=recursive)
    raise FileNotFoundError(f"{source}: no such file or folder")


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
    """Super-resolve ``files`` with ``method`` into ``out_dir/<key>.png``.

    ``key`` is the file's path relative to ``root`` (its folder when ``root`` is None) without the
    extension; it also seeds the image's noise. Two files with one key (``a.png``, ``a.jpg``): the
    second is a failure. Raises ``ValueError`` for ``bs < 1`` and, before anything is written, when an output
    would overwrite an input file (``-o`` the input folder).
    """
    from tqdm.auto import tqdm

    if bs < 1:
        raise ValueError(f"bs must be >= 1, got {bs}")
    out_dir = Path(out_dir)
    report = SRRunReport()
    paths: dict[str, Path] = {}
    for path in files:
        key = image_key(path, root if root is not None else path.parent)
        if key in paths:
            report.failures.append((path, f"output name {key}.png already used by {paths[key]}"))
            continue
        paths[key] = path
    inputs_by_path = {p.resolve(): p for p in paths.values()}
    clobbered = [inputs_by_path[(out_dir / f"{key}.png").resolve()] for key in paths
                 if (out_dir / f"{key}.png").resolve() in inputs_by_path]
    if clobbered:  # checked before anything is written: an output over an input would destroy it
        raise ValueError(f"{clobbered[0]}: an output would overwrite this input ({len(clobbered)} such); choose "
                         "another output folder")

    def inputs() -> Iterator[LRImage | LoadFailure]:
        for key, path in paths.items():
            try:
                image, info = read_image_with_info(path)
            except (ImageReadError, OSError) as err:
                yield LoadFailure(key, str(err))
                continue
            report.notes.extend((path, note) for note in info.notes)
            yield LRImage(key, image, list(info.notes))

    device = torch.device(getattr(method, "device", "cpu"))
    bar = tqdm(total=len(paths), desc=getattr(method, "name", "sr"), unit="img", disable=not progress)
    for out in super_resolve(inputs(), method, seed=seed, batch_size=bs, device=device, on_batch=bar.update):
        if out.ok:
            report.written.append(write_png(out_dir / f"{out.name}.png", out.sr))
        else:
            report.failures.append((paths[out.name], out.error))
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
