"""The timing harness every method is measured with.

What a timed call includes: the method call alone, on inputs already on the device, with the device
synchronised before the clock starts and before it stops. Not included: warm-up calls, data loading
and decoding, host<->device copies, PNG writing and metric computation (the runner does those outside
the timed call, and metrics run in a later phase).

Two ways to use it:

* :class:`Timer` wraps calls one at a time (the runner's streaming SR phase). The first ``warmup``
  calls are *real* calls whose outputs are used, but their times are excluded from the statistics, so
  warm-up never re-runs a stochastic method with already-advanced random generators.
* :func:`time_batches` times a function over a list of batches after ``warmup`` extra, discarded
  calls on the first batch (benchmark mode; ``fn`` must not depend on state it changes).

Statistics: per-image latency = batch time / batch size (every image of a batch gets that value);
median and p90 (linear interpolation) over images; throughput = timed images / timed seconds; NFE per
image from the method; peak memory = CUDA max allocated during timed calls, or on CPU the peak RSS of
the process during timed calls (reset through ``/proc/self/clear_refs`` where the kernel allows it,
else the lifetime peak, and the summary says which).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.provenance import device_info

INCLUDED = (
    "method call only, inputs already on the device, device synchronised before and after; "
    "excludes warm-up calls, data loading/decoding, host-device copies, PNG writing and metrics"
)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _CpuPeakRss:
    """Peak resident set size of this process, resettable on Linux via ``/proc/self/clear_refs``."""

    def __init__(self) -> None:
        self.resettable = self._try_reset()

    @staticmethod
    def _try_reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.resettable:
            self._try_reset()

    def peak_bytes(self) -> int:
        if self.resettable:
            try:
                for line in Path("/proc/self/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
            except OSError:
                pass
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(ru) if sys.platform == "darwin" else int(ru) * 1024

    @property
    def kind(self) -> str:
        return "cpu_peak_rss_during_timed_calls" if self.resettable else "cpu_peak_rss_process_lifetime"


class Timer:
    """Times calls of a method one batch at a time; see the module docstring for what is included.

    Args:
        device: where the method runs (synchronised around each call).
        warmup: how many first calls are excluded from the statistics (their outputs are still used).
        nfe: network function evaluations per image of the method (recorded, not measured).
        context: extra facts for the summary (precision, batch size, tile size ...).
        track_memory: record peak memory of the timed calls.
        clock: the time source (seconds); ``time.perf_counter`` unless a test injects one.
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        warmup: int = 1,
        nfe: int | None = None,
        context: dict[str, Any] | None = None,
        track_memory: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self.device = torch.device(device)
        self.warmup = int(warmup)
        self.nfe = nfe
        self.context = dict(context or {})
        self.track_memory = track_memory
        self.clock = clock
        self.calls = 0
        self.warmup_seconds: list[float] = []
        self.batch_seconds: list[float] = []
        self.batch_sizes: list[int] = []
        self.peak_memory_bytes: int | None = None
        self._rss = _CpuPeakRss() if (track_memory and self.device.type == "cpu") else None

    def _reset_memory(self) -> None:
        if not self.track_memory:
            return
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss is not None:
            self._rss.reset()

    def _read_memory(self) -> int | None:
        if not self.track_memory:
            return None
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self._rss is not None:
            return self._rss.peak_bytes()
        return None

    @property
    def memory_kind(self) -> str | None:
        if not self.track_memory:
            return None
        if self.device.type == "cuda":
            return "cuda_max_memory_allocated_during_timed_calls"
        return self._rss.kind if self._rss is not None else None

    def run(self, fn: Callable[[], Any], n_images: int) -> tuple[Any, float]:
        """Call ``fn()`` (one batch of ``n_images``), timed; returns ``(output, seconds)``."""
        if n_images <= 0:
            raise ValueError(f"n_images must be positive, got {n_images}")
        timed = self.calls >= self.warmup
        synchronize(self.device)
        if timed:
            self._reset_memory()
        start = self.clock()
        out = fn()
        synchronize(self.device)
        seconds = self.clock() - start
        self.calls += 1
        if timed:
            self.batch_seconds.append(seconds)
            self.batch_sizes.append(int(n_images))
            peak = self._read_memory()
            if peak is not None:
                self.peak_memory_bytes = max(peak, self.peak_memory_bytes or 0)
        else:
            self.warmup_seconds.append(seconds)
        return out, seconds

    def per_image_latencies(self) -> np.ndarray:
        """One latency per timed image (its batch time divided by the batch size)."""
        if not self.batch_seconds:
            return np.zeros(0)
        return np.concatenate(
            [np.full(n, s / n) for s, n in zip(self.batch_seconds, self.batch_sizes, strict=True)]
        )

    def summary(self) -> dict[str, Any]:
        """JSON-friendly statistics and context (``None`` for statistics without timed calls)."""
        lat = self.per_image_latencies()
        total = float(sum(self.batch_seconds))
        n = int(lat.size)
        dev = device_info(self.device)

        def stat(value: float) -> float | None:
            return float(value) if n else None

        throughput = n / total if n and total > 0 else None
        return {
            "included": INCLUDED,
            "n_images": n,
            "n_batches": len(self.batch_seconds),
            "warmup_batches_excluded": len(self.warmup_seconds),
            "median_s": stat(np.median(lat)) if n else None,
            "p90_s": stat(np.percentile(lat, 90)) if n else None,
            "mean_s": stat(lat.mean()) if n else None,
            "min_s": stat(lat.min()) if n else None,
            "max_s": stat(lat.max()) if n else None,
            "total_s": total,
            "throughput_images_per_s": throughput,
            "nfe": self.nfe,
            "nfe_per_s": throughput * self.nfe if (throughput is not None and self.nfe) else None,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.memory_kind,
            "device": dev.get("name"),
            "context": {
                "device": str(self.device),
                "device_name": dev.get("name"),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(),
                "cudnn_benchmark": torch.backends.cudnn.benchmark,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "batch_sizes": sorted(set(self.batch_sizes)),
                **self.context,
            },
        }


def time_batches(
    fn: Callable[[Any], Any],
    batches: Sequence[Any],
    *,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    nfe: int | None = None,
    context: dict[str, Any] | None = None,
    batch_size: Callable[[Any], int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Benchmark ``fn`` over ``batches``: ``warmup`` discarded calls on the first batch, then each batch
    timed once. Returns :meth:`Timer.summary` (``warmup_batches_excluded`` counts the extra calls).

    ``batch_size(batch)`` gives the number of images in a batch (default: ``len(batch)``, i.e. the
    leading dimension of a tensor).
    """
    if not batches:
        raise ValueError("time_batches needs at least one batch")
    size = batch_size or len
    timer = Timer(device=device, warmup=warmup, nfe=nfe, context=context, clock=clock)
    for _ in range(warmup):
        timer.run(lambda: fn(batches[0]), n_images=size(batches[0]))
    for batch in batches:
        timer.run(lambda batch=batch: fn(batch), n_images=size(batch))
    return timer.summary()
