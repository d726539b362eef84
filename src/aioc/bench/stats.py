"""Small statistics helpers shared by the load generator and the summary."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of already sorted values (``fraction`` in 0..1)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(fraction * n))
    return sorted_values[min(rank, n) - 1]


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (mean of the middle two for an even count)."""
    clean = sorted(v for v in values if v is not None)
    n = len(clean)
    if n == 0:
        return None
    mid = n // 2
    return clean[mid] if n % 2 else (clean[mid - 1] + clean[mid]) / 2


def spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    clean = [v for v in values if v is not None]
    if not clean:
        return None, None
    return min(clean), max(clean)


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def latency_summary(latencies_s: list[float]) -> dict:
    """p50/p90/p99/max/mean in milliseconds of latencies given in seconds."""
    values = sorted(latencies_s)
    ms = 1000.0

    def scaled(v: float | None) -> float | None:
        return None if v is None else v * ms

    return {
        "samples": len(values),
        "p50_ms": scaled(percentile(values, 0.50)),
        "p90_ms": scaled(percentile(values, 0.90)),
        "p99_ms": scaled(percentile(values, 0.99)),
        "max_ms": scaled(values[-1] if values else None),
        "mean_ms": scaled(sum(values) / len(values) if values else None),
    }
