"""Timing helpers: nearest-rank percentiles and a bounded, timed loop with a separate query count."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation): the value at rank ceil(pct/100 * n)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Timing:
    name: str
    size: int | str
    samples: list[float] = field(default_factory=list)  # seconds
    queries: int | None = None
    note: str = ""

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples, 50) * 1000

    @property
    def p95_ms(self) -> float:
        return percentile(self.samples, 95) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.samples) * 1000 if self.samples else float("nan")

    def as_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "n": len(self.samples), "queries": self.queries,
                "p50_ms": round(self.p50_ms, 2), "p95_ms": round(self.p95_ms, 2), "max_ms": round(self.max_ms, 2),
                "note": self.note}


def count_queries(fn: Callable[[], object]) -> int:
    """Run ``fn`` once and return how many SQL queries it sent (this run is not timed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def timed_loop(
    timing: Timing, fn: Callable[[], object], *, repeat: int, max_seconds: float,
    before: Callable[[], object] | None = None, after: Callable[[], object] | None = None,
) -> Timing:
    """Call ``fn`` ``repeat`` times (at least 3, stopping early once ``max_seconds`` are spent),
    timing only ``fn``; ``before`` / ``after`` run untimed around each call (setup, undo)."""
    started = time.monotonic()
    for i in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        timing.samples.append(time.perf_counter() - t0)
        if after:
            after()
        if i >= 2 and time.monotonic() - started > max_seconds:
            timing.note = (timing.note + " " if timing.note else "") + f"stopped after {i + 1} runs (time bound)"
            break
    return timing
