"""The timing harness: statistics from an injected clock, warm-up handling, sync order, memory."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

from resshift import timing
from resshift.timing import INCLUDED, Timer, time_batches


class FakeClock:
    """A clock that only moves when the timed function says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float):
        def fn(*_):
            self.now += seconds
            return seconds

        return fn


def test_statistics_from_known_durations():
    clock = FakeClock()
    timer = Timer(warmup=1, nfe=15, context={"dtype": "fp16", "tile": 64}, track_memory=False, clock=clock)
    out, sec = timer.run(clock.work(9.0), n_images=2)  # warm-up: used, not counted
    assert out == 9.0 and sec == 9.0
    timer.run(clock.work(2.0), n_images=2)  # 1.0 s per image, twice
    timer.run(clock.work(3.0), n_images=1)  # 3.0
    timer.run(clock.work(8.0), n_images=4)  # 2.0 x 4
    s = timer.summary()
    lat = np.array([1, 1, 3, 2, 2, 2, 2], dtype=float)
    assert s["n_images"] == 7 and s["n_batches"] == 3 and s["warmup_batches_excluded"] == 1
    assert s["median_s"] == pytest.approx(np.median(lat)) == pytest.approx(2.0)
    assert s["p90_s"] == pytest.approx(np.percentile(lat, 90))
    assert s["total_s"] == pytest.approx(13.0)
    assert s["throughput_images_per_s"] == pytest.approx(7 / 13)
    assert s["nfe"] == 15 and s["nfe_per_s"] == pytest.approx(15 * 7 / 13)
    assert s["included"] == INCLUDED and "excludes warm-up" in INCLUDED and "metrics" in INCLUDED
    assert s["context"]["dtype"] == "fp16" and s["context"]["tile"] == 64
    assert s["context"]["threads"] == torch.get_num_threads() and s["context"]["batch_sizes"] == [1, 2, 4]
    assert s["device"]  # a CPU model name


def test_warmup_calls_are_not_repeated():
    """A stochastic method must see each call once: warm-up never re-runs it."""
    calls = []
    timer = Timer(warmup=2, track_memory=False)
    for i in range(3):
        timer.run(lambda i=i: calls.append(i), n_images=1)
    assert calls == [0, 1, 2]
    assert timer.summary()["n_images"] == 1


def test_no_timed_calls_gives_empty_statistics():
    timer = Timer(warmup=1, track_memory=False)
    timer.run(lambda: None, n_images=3)
    s = timer.summary()
    assert s["n_images"] == 0 and s["median_s"] is None and s["throughput_images_per_s"] is None


def test_time_batches_warms_up_on_first_batch_and_times_each_batch():
    clock = FakeClock()
    seen = []

    def fn(batch):
        seen.append(int(batch[0]))
        clock.now += 0.5 * len(batch)

    batches = [torch.full((2,), 1.0), torch.full((3,), 2.0)]
    s = time_batches(fn, batches, warmup=2, nfe=4)
    assert seen == [1, 1, 1, 2]
    assert s["warmup_batches_excluded"] == 2 and s["n_images"] == 5 and s["n_batches"] == 2
    with pytest.raises(ValueError, match="at least one batch"):
        time_batches(fn, [])


def test_time_batches_statistics():
    clock = FakeClock()
    s = time_batches(lambda b: clock.work(0.25 * len(b))(), [torch.zeros(4)], warmup=0, clock=clock)
    assert s["median_s"] == pytest.approx(0.25) and s["throughput_images_per_s"] == pytest.approx(4.0)


def test_device_is_synchronised_around_the_call(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "synchronize", lambda device: events.append(("sync", device.type)))
    timer = Timer(device="cuda", warmup=0, track_memory=False)
    timer.run(lambda: events.append(("call", None)), n_images=1)
    assert events == [("sync", "cuda"), ("call", None), ("sync", "cuda")]


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_cpu_peak_memory_sees_an_allocation_inside_the_call():
    size = 64 * 2**20

    def touch_fresh_pages() -> None:
        # A fresh anonymous mapping: its pages cannot be recycled heap that is already resident.
        with mmap.mmap(-1, size) as buf:
            for offset in range(0, size, mmap.PAGESIZE):
                buf[offset] = 1

    timer = Timer(warmup=0)
    before = _rss_now()
    timer.run(touch_fresh_pages, n_images=1)
    s = timer.summary()
    assert s["peak_memory_kind"].startswith("cpu_peak_rss")
    assert s["peak_memory_bytes"] >= before + size - 4 * 2**20


def test_bad_arguments():
    with pytest.raises(ValueError, match="warmup"):
        Timer(warmup=-1)
    with pytest.raises(ValueError, match="n_images"):
        Timer().run(lambda: None, n_images=0)
