"""One timing helper for the book and ``make bench``: median wall time per call after a warm-up.

GPU work is asynchronous, so the clock is read only after the device has finished. The chapters'
speed tables and the benchmarks all call :func:`seconds_per_call`; tests never assert on time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """torch's intra-op thread count set to ``n`` inside the block and the previous count restored after
    (also on an error), so that a table can say on how many threads it timed."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def seconds_per_call(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 5,
                     warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` timed calls, after ``warmup`` untimed ones."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def aligner_speed(predict, photo, box, batch: int, device: torch.device | str = "cpu",
                  repeats: int = 5) -> tuple[float, float]:
    """(ms per face at batch 1, faces/s at ``batch``) of ``predict(photo, boxes)``, end to end: the
    book's aligners, the peer and the comparison chapter's baselines are all timed by this one call."""
    import numpy as np

    boxes = np.tile(np.asarray(box, np.float32).reshape(1, 4), (batch, 1))
    latency = seconds_per_call(lambda: predict(photo, boxes[:1]), device, repeats=repeats)
    bulk = seconds_per_call(lambda: predict(photo, boxes), device, repeats=max(1, min(3, repeats)))
    return 1000 * latency, batch / bulk
