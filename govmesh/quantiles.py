"""Nearest-rank percentiles: crowd's forecasts and the benchmarks' tables read them one way.

The p-th percentile of n ascending values is the ceil(p/100 * n)-th of them: always a value that was
seen, exact in integers, and p99 is never below p50 however few the values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T", int, float)


def percentile(sorted_values: Sequence[T], p: int) -> T:
    """The nearest-rank p-th percentile (1 <= p <= 100) of non-empty ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 1 <= p <= 100:
        raise ValueError(f"p must be from 1 to 100 (got {p})")
    rank = -(-p * len(sorted_values) // 100)  # ceil(p/100 * n), at least 1 since p >= 1
    return sorted_values[rank - 1]
