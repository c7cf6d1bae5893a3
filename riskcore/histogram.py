"""Duration statistics: a fixed-bucket histogram kept where durations are measured (an account shard), and
the percentiles a benchmark reports.

Plain code, no Ray and no metrics library: a shard records into it and reports it through ``stats()``; the
Prometheus exporter (``driver.metrics``) turns it into a histogram family. Buckets are reported
cumulatively, as Prometheus expects (each count is of observations less than or equal to its bound).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Seconds: from 50 µs (a small batch on a warm shard) to 10 s (a journal replay or a stalled disk).
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
)


class DurationHistogram:
    """Counts of observed durations per bucket, their sum and their number; in memory only (a restarted
    process starts again from zero, and the exporter keeps its counters monotonic across that)."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"histogram bounds must be finite and strictly increasing, got {bounds!r}")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def to_dict(self) -> dict[str, Any]:
        """``{"le": bounds, "buckets": cumulative counts, "sum", "count"}``; ``buckets`` has one more entry
        than ``le``, the last for +Inf."""
        cumulative, running = [], 0
        for n in self._counts:
            running += n
            cumulative.append(running)
        return {"le": list(self.bounds), "buckets": cumulative, "sum": self.sum, "count": self.count}


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of ``values`` (None without any), rounded to 3 places."""
    if not values:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    array = np.asarray(values)
    return {"count": len(values), "p50": round(float(np.percentile(array, 50)), 3),
            "p99": round(float(np.percentile(array, 99)), 3), "max": round(float(array.max()), 3)}
