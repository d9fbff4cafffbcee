"""The one SR loop: batch images, give each its own noise, run the method, keep only finite outputs.

Both the evaluation runner (``nox -s eval``) and ``resshift sr`` go through :func:`super_resolve`, so
the same image, seed and method give the same output through either. An image is known by its *key*:
its path relative to the set's root without the extension, in POSIX form (``Canon/001`` for
``Canon/001.png``; :func:`resshift.io.image_key`); its noise comes from
``image_generator(seed, key)`` (:mod:`resshift.seeding`), so outputs do not depend on batch, order or
shard.

A batch is a run of consecutive images of one LR size, at most ``batch_size`` long. If the method
raises, every image of the batch fails with the error; if it returns non-finite values (the usual
fp16 overflow), only the affected images fail, with the count of NaN and Inf values, and nothing is
written for them.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from resshift.seeding import image_generator

T = TypeVar("T")


@dataclass
class LRImage:
    """One input: its key, the LR tensor ``(3, h, w)`` in ``[0, 1]``, and the reader's notes."""

    name: str
    lr: torch.Tensor
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadFailure:
    """An input that could not be read (``reason`` names the file and the problem)."""

    name: str
    reason: str


@dataclass
class SROutcome:
    """What happened to one image. ``sr`` is ``(3, H, W)`` float32 on the CPU when ``ok``."""

    name: str
    ok: bool
    sr: torch.Tensor | None = None
    error: str = ""
    phase: str = "sr"  # "load" or "sr"
    notes: list[str] = field(default_factory=list)
    lr_hw: tuple[int, int] | None = None
    batch: int = 0
    seconds: float | None = None  # the batch's time divided by its size; None when not timed
    batch_seconds: float | None = None
    timed: bool = False
    traceback: str = ""


def non_finite_reason(image: torch.Tensor) -> str | None:
    """``None`` for an all-finite tensor, else e.g. ``"non-finite output: 12 NaN and 0 Inf values of
    49152"``."""
    finite = torch.isfinite(image)
    if bool(finite.all()):
        return None
    nan = int(torch.isnan(image).sum())
    inf = int(image.numel() - int(finite.sum()) - nan)
    return f"non-finite output: {nan} NaN and {inf} Inf values of {image.numel()}"


def batches(items: Iterable[T], batch_size: int, key: Callable[[T], Any],
            alone: Callable[[T], bool] = lambda item: False) -> Iterator[list[T] | T]:
    """Group consecutive items with equal ``key`` into lists of at most ``batch_size``, in order.

    An item for which ``alone`` is true is yielded by itself (not in a list) as soon as it arrives,
    without closing the batch being gathered (load failures pass through this way).
    """
    batch: list[T] = []
    for item in items:
        if alone(item):
            yield item
            continue
        if batch and (len(batch) >= batch_size or key(batch[0]) != key(item)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def super_resolve(
    items: Iterable[LRImage | LoadFailure],
    method: Any,
    *,
    seed: int,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    timer: Any | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[SROutcome]:
    """Super-resolve ``items`` in order and yield one :class:`SROutcome` per item.

    Args:
        items: inputs (or load failures, passed through as failed outcomes) in the order to process.
        method: an :class:`resshift.methods.SRMethod` (``upscale_named(names, lr[B,3,h,w], generators)``,
            by default ``upscale(lr, generators)``, ``-> [B,3,H,W]``).
        seed: the run seed; image ``k`` gets ``image_generator(seed, k.name)`` on ``device``.
        batch_size: most images per ``upscale`` call (only consecutive images of one size share a call).
        timer: a :class:`resshift.timing.Timer`; when given, calls run under it and carry their time.
        on_batch: called with the number of items each step finished (progress bars).

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    for run in batches(items, batch_size, key=lambda s: s.lr.shape, alone=lambda s: isinstance(s, LoadFailure)):
        if isinstance(run, LoadFailure):
            yield SROutcome(name=run.name, ok=False, error=run.reason, phase="load")
            if on_batch:
                on_batch(1)
            continue
        lr = torch.stack([s.lr for s in run]).to(device)
        gens = [image_generator(seed, s.name, device=device) for s in run]
        # the names go along for methods that read per-image resources (outputs made elsewhere)
        names = [s.name for s in run]
        if hasattr(method, "upscale_named"):
            call = functools.partial(method.upscale_named, names, lr, gens)
        else:
            call = functools.partial(method.upscale, lr, gens)
        try:
            if timer is not None:
                timed = timer.calls >= timer.warmup
                sr, seconds = timer.run(call, n_images=len(run))
            else:
                timed, seconds = False, None
                sr = call()
        except Exception as err:  # noqa: BLE001 - recorded per image; the loop goes on
            tb = traceback.format_exc(limit=5)
            for s in run:
                yield SROutcome(name=s.name, ok=False, error=f"{type(err).__name__}: {err}", notes=s.notes,
                                lr_hw=tuple(s.lr.shape[-2:]), batch=len(run), traceback=tb)
            if on_batch:
                on_batch(len(run))
            continue
        sr = sr.detach().float().cpu()
        for s, img in zip(run, sr, strict=True):
            common = dict(name=s.name, notes=s.notes, lr_hw=tuple(s.lr.shape[-2:]), batch=len(run),
                          seconds=None if seconds is None else seconds / len(run), batch_seconds=seconds,
                          timed=timed)
            reason = non_finite_reason(img)
            if reason:
                yield SROutcome(ok=False, error=reason, **common)
            else:
                yield SROutcome(ok=True, sr=img, **common)
        if on_batch:
            on_batch(len(run))
