"""Nearest-rank percentiles, as crowd's forecasts and the benchmarks' tables read them."""

from __future__ import annotations

import pytest

from govmesh.quantiles import percentile


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 11))
    assert [percentile(values, p) for p in (1, 10, 11, 50, 90, 91, 100)] == [1, 1, 2, 5, 9, 10, 10]
    assert percentile([7], 10) == percentile([7], 90) == 7
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8], 50) == 4
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="p must be from 1 to 100"):
        percentile([1], 0)
    # Few samples: p99 is the largest, never below the median (an earlier bench took the smaller of two).
    assert percentile([0.010, 0.012], 99) == 0.012 and percentile([0.010, 0.012], 50) == 0.010
