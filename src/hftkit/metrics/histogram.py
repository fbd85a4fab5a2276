"""Log-linear latency histogram: O(1) record (in C where built), exact min/max/mean, ~0.4% quantiles.

Layout (HdrHistogram's idea, our own code): values below 256 ns get one bucket each; above
that every power of two is split into 128 equal sub-buckets, so a bucket is never wider than
1/128 of its lower bound. A percentile is reported as the middle of its bucket, clamped to the
exact min and max, which bounds its relative error by 1/256 (0.39%). ``record`` is a
bit_length, a shift and one list increment (one C call with no Python frame where the
accelerator is built): no numpy scalars (slow) and no call layers on the hot path; numpy is
used only when figures are computed.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from hftkit.core.errors import OutOfRangeError
from hftkit.core.native import NATIVE
from hftkit.metrics.errors import IncompatibleSnapshotError, InvalidMeasurementError

SUB_BUCKET_BITS = 7
"""2**7 = 128 linear sub-buckets per power of two."""

_LINEAR_BITS = SUB_BUCKET_BITS + 1  # values with at most 8 bits (< 256) are stored exactly

LOWEST_NS = 1
"""Values below this are recorded as 1 ns and counted as underflows (clock steps, bugs)."""

HIGHEST_NS = 60_000_000_000
"""60 s. Larger values land in the top bucket, are counted as overflows and kept exact in max/sum."""

RELATIVE_ERROR_BOUND = 1.0 / (1 << (SUB_BUCKET_BITS + 1))
"""Worst-case relative error of a reported percentile: half a bucket over its lower bound."""

STANDARD_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9, 99.99)

_EMPTY_MINIMUM = 1 << 126  # above any duration; replaced by the first record


def bucket_index(value: int) -> int:
    """Bucket of a value in [1, HIGHEST_NS] (the same arithmetic ``record`` inlines)."""
    shift = value.bit_length() - _LINEAR_BITS
    if shift > 0:
        return (shift << SUB_BUCKET_BITS) + (value >> shift)
    return value


def bucket_bounds(index: int) -> tuple[int, int]:
    """Smallest and largest value (inclusive) that fall into bucket ``index``."""
    if index < (1 << _LINEAR_BITS):
        return index, index
    shift = (index >> SUB_BUCKET_BITS) - 1
    lower = ((index & ((1 << SUB_BUCKET_BITS) - 1)) + (1 << SUB_BUCKET_BITS)) << shift
    return lower, lower + (1 << shift) - 1


BUCKET_COUNT = bucket_index(HIGHEST_NS) + 1
_TOP_INDEX = BUCKET_COUNT - 1

BUCKET_LOWER: npt.NDArray[np.int64] = np.array(
    [bucket_bounds(index)[0] for index in range(BUCKET_COUNT)], dtype=np.int64
)
BUCKET_UPPER: npt.NDArray[np.int64] = np.array(
    [bucket_bounds(index)[1] for index in range(BUCKET_COUNT)], dtype=np.int64
)
_BUCKET_MIDDLE: npt.NDArray[np.int64] = (BUCKET_LOWER + BUCKET_UPPER) // 2
for _array in (BUCKET_LOWER, BUCKET_UPPER, _BUCKET_MIDDLE):
    _array.flags.writeable = False


def nearest_rank(percent: float, count: int) -> int:
    """1-based rank of the ``percent`` percentile among ``count`` values (inverted CDF).

    Computed with the same float steps as ``numpy.percentile(method="inverted_cdf")`` so both
    pick the same element.
    """
    return min(count, max(1, math.ceil(count * (percent / 100.0))))


def _check_percent(percent: float) -> float:
    if not 0.0 <= percent <= 100.0:  # also rejects NaN
        raise OutOfRangeError(f"percentile must be within [0, 100], got {percent!r}")
    return float(percent)


class HistogramSnapshot:
    """Immutable figures of a histogram at one moment (or over one interval).

    An empty snapshot reports 0 for percentiles, min and max and 0.0 for the mean: check
    ``count`` first.
    """

    __slots__ = (
        "_counts",
        "_cumulative",
        "count",
        "extremes_exact",
        "maximum",
        "minimum",
        "overflow_count",
        "rejected_count",
        "total",
        "underflow_count",
    )

    _counts: npt.NDArray[np.int64]
    _cumulative: npt.NDArray[np.int64]
    count: int
    total: int
    minimum: int
    maximum: int
    underflow_count: int
    overflow_count: int
    rejected_count: int
    extremes_exact: bool

    def __init__(
        self,
        counts: npt.NDArray[np.int64] | Sequence[int],
        total: int,
        minimum: int,
        maximum: int,
        underflow_count: int = 0,
        overflow_count: int = 0,
        rejected_count: int = 0,
        extremes_exact: bool = True,
    ) -> None:
        if isinstance(counts, np.ndarray):
            array = counts.astype(np.int64, copy=True)
        else:  # fromiter: ~20% faster than np.array on a list of Python ints
            array = np.fromiter(counts, dtype=np.int64, count=len(counts))
        if array.shape != (BUCKET_COUNT,):
            raise ValueError(f"a snapshot needs {BUCKET_COUNT} bucket counts, got shape {array.shape}")
        array.flags.writeable = False
        cumulative = np.cumsum(array)
        cumulative.flags.writeable = False
        count = int(cumulative[-1])
        set_ = object.__setattr__
        set_(self, "_counts", array)
        set_(self, "_cumulative", cumulative)
        set_(self, "count", count)
        set_(self, "total", int(total) if count else 0)
        set_(self, "minimum", int(minimum) if count else 0)
        set_(self, "maximum", int(maximum) if count else 0)
        set_(self, "underflow_count", int(underflow_count))
        set_(self, "overflow_count", int(overflow_count))
        set_(self, "rejected_count", int(rejected_count))
        set_(self, "extremes_exact", bool(extremes_exact))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"HistogramSnapshot is immutable (tried to set {name!r})")

    @classmethod
    def empty(cls) -> HistogramSnapshot:
        return cls(np.zeros(BUCKET_COUNT, dtype=np.int64), 0, 0, 0)

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """Per-bucket counts (read-only array; see BUCKET_LOWER / BUCKET_UPPER for the bounds)."""
        return self._counts

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, percent: float) -> int:
        """The ``percent`` percentile (0..100) in ns, within RELATIVE_ERROR_BOUND of the exact one."""
        return self.percentiles((percent,))[0]

    def percentiles(self, percents: Iterable[float] = STANDARD_PERCENTILES) -> list[int]:
        """Several percentiles in one pass over the cumulative counts."""
        checked = [_check_percent(percent) for percent in percents]
        count = self.count
        if not count:
            return [0 for _ in checked]
        ranks = np.array([nearest_rank(percent, count) for percent in checked], dtype=np.int64)
        indexes = np.searchsorted(self._cumulative, ranks, side="left")
        values = np.clip(_BUCKET_MIDDLE[indexes], self.minimum, self.maximum)
        result = [int(value) for value in values]
        for position, rank in enumerate(ranks.tolist()):
            if rank == 1 and self.extremes_exact:
                result[position] = self.minimum
            elif rank == count and self.extremes_exact:
                result[position] = self.maximum
        return result

    @property
    def p50(self) -> int:
        return self.percentile(50.0)

    @property
    def p90(self) -> int:
        return self.percentile(90.0)

    @property
    def p99(self) -> int:
        return self.percentile(99.0)

    @property
    def p999(self) -> int:
        return self.percentile(99.9)

    @property
    def p9999(self) -> int:
        return self.percentile(99.99)

    def count_at_or_below(self, bound_ns: float) -> int:
        """Events whose bucket middle is <= bound (Prometheus ``le`` buckets); exact below 256 ns."""
        position = int(np.searchsorted(_BUCKET_MIDDLE, bound_ns, side="right"))
        return int(self._cumulative[position - 1]) if position else 0

    def nonzero_buckets(self) -> list[tuple[int, int, int]]:
        """(lower_ns, upper_ns, count) of every bucket that holds events, lowest first."""
        indexes = np.flatnonzero(self._counts)
        return [
            (int(BUCKET_LOWER[index]), int(BUCKET_UPPER[index]), int(self._counts[index]))
            for index in indexes
        ]

    def merged(self, other: HistogramSnapshot) -> HistogramSnapshot:
        """The snapshot of both sets of events together."""
        if not other.count:
            return self
        if not self.count:
            return other
        return HistogramSnapshot(
            self._counts + other._counts,
            self.total + other.total,
            min(self.minimum, other.minimum),
            max(self.maximum, other.maximum),
            self.underflow_count + other.underflow_count,
            self.overflow_count + other.overflow_count,
            self.rejected_count + other.rejected_count,
            self.extremes_exact and other.extremes_exact,
        )

    def since(self, earlier: HistogramSnapshot) -> HistogramSnapshot:
        """The events recorded between ``earlier`` and this later snapshot of the same histogram.

        Counts and sum are exact. The interval's max is exact when it raised the lifetime max
        (likewise min); otherwise it is the middle of its bucket (``extremes_exact`` is False).
        """
        delta = self._counts - earlier._counts
        if (delta < 0).any():
            raise IncompatibleSnapshotError(
                "the later snapshot has fewer events in some bucket: was the histogram reset in between?"
            )
        nonzero = np.flatnonzero(delta)
        underflow = self.underflow_count - earlier.underflow_count
        overflow = self.overflow_count - earlier.overflow_count
        rejected = self.rejected_count - earlier.rejected_count
        if not nonzero.size:
            return HistogramSnapshot(delta, 0, 0, 0, underflow, overflow, rejected)
        minimum_exact = earlier.count == 0 or self.minimum < earlier.minimum
        maximum_exact = earlier.count == 0 or self.maximum > earlier.maximum
        minimum = self.minimum if minimum_exact else max(int(_BUCKET_MIDDLE[nonzero[0]]), self.minimum)
        maximum = self.maximum if maximum_exact else min(int(_BUCKET_MIDDLE[nonzero[-1]]), self.maximum)
        if not minimum_exact:  # an estimate never crosses the other extreme
            minimum = min(minimum, maximum)
        if not maximum_exact:
            maximum = max(maximum, minimum)
        exact = minimum_exact and maximum_exact
        return HistogramSnapshot(
            delta, self.total - earlier.total, minimum, maximum, underflow, overflow, rejected, exact
        )

    def as_dict(self) -> dict[str, Any]:
        """Summary figures as plain numbers (None where an empty snapshot has no value)."""
        empty = not self.count
        p50, p90, p99, p999, p9999 = self.percentiles()
        return {
            "count": self.count,
            "sum": self.total,
            "mean": None if empty else self.mean,
            "min": None if empty else self.minimum,
            "max": None if empty else self.maximum,
            "p50": None if empty else p50,
            "p90": None if empty else p90,
            "p99": None if empty else p99,
            "p99_9": None if empty else p999,
            "p99_99": None if empty else p9999,
            "underflow": self.underflow_count,
            "overflow": self.overflow_count,
            "rejected": self.rejected_count,
        }

    def __repr__(self) -> str:
        if not self.count:
            return "HistogramSnapshot(count=0)"
        p50, p99, p999 = self.percentiles((50.0, 99.0, 99.9))
        return (
            f"HistogramSnapshot(count={self.count}, min={self.minimum}, p50={p50}, p99={p99}, "
            f"p99.9={p999}, max={self.maximum}, mean={self.mean:.1f})"
        )


class LatencyHistogram:
    """Durations in integer nanoseconds, 1 ns .. 60 s, recorded in O(1).

    Not thread-safe: one event loop records into it (the hftkit process model). Figures come
    from ``snapshot()``; reading them costs O(buckets) (~3,800), recording costs one increment.
    ``record`` is the C accelerator's (``hftkit._native.histogram_record`` bound to this
    histogram's lists: no Python frame per duration) where it is built, else the pure-Python
    twin; the counts and ``[total, minimum, maximum]`` lists keep their identity for life.
    """

    __slots__ = ("_counts", "_extremes", "_overflow", "_rejected", "_underflow", "record")

    record: Callable[[int], None]
    """Add one duration in ns. Below 1 counts as 1 (underflow); above 60 s as overflow."""

    def __init__(self) -> None:
        self._counts: list[int] = [0] * BUCKET_COUNT
        self._extremes: list[int] = [0, _EMPTY_MINIMUM, 0]  # total, minimum, maximum
        self._underflow = 0
        self._overflow = 0
        self._rejected = 0
        native = NATIVE
        if native is None:
            self.record = self.record_python
        else:
            self.record = partial(native.histogram_record, self._counts, self._extremes, self.record_python)

    def record_python(self, value: int) -> None:
        """The pure-Python ``record`` (the C path's twin, and its slow path for any value it
        does not take)."""
        try:
            if 0 < value <= HIGHEST_NS:
                shift = value.bit_length() - 8  # _LINEAR_BITS, inlined; a float raises here
                if type(value) is not int:
                    value = int(value)  # a bool or int subclass: kept as a plain int, as in C
                if shift > 0:
                    self._counts[(shift << 7) + (value >> shift)] += 1  # SUB_BUCKET_BITS
                else:
                    self._counts[value] += 1
                extremes = self._extremes
                extremes[0] += value
                if value < extremes[1]:
                    extremes[1] = value
                if value > extremes[2]:
                    extremes[2] = value
            else:
                self._record_out_of_range(value)
        except (AttributeError, TypeError):  # not an int (float, numpy scalar, junk): slow path
            self._record_converted(value)

    def record_many(self, values: Iterable[int]) -> None:
        record = self.record
        for value in values:
            record(value)

    def _record_out_of_range(self, value: int) -> None:
        if not isinstance(value, int):  # NaN, infinities and out-of-range floats
            self._record_converted(value)
            return
        if value > HIGHEST_NS:
            self._counts[_TOP_INDEX] += 1
            self._overflow += 1
            recorded = value  # exact in sum and max: an overflow's size matters
        else:
            self._counts[LOWEST_NS] += 1
            self._underflow += 1
            recorded = LOWEST_NS
        extremes = self._extremes
        extremes[0] += recorded
        if recorded < extremes[1]:
            extremes[1] = recorded
        if recorded > extremes[2]:
            extremes[2] = recorded

    def _record_converted(self, value: Any) -> None:
        if isinstance(value, numbers.Integral):
            self.record_python(operator.index(value))
            return
        if isinstance(value, numbers.Real) and math.isfinite(value):
            self.record_python(cast(int, round(value)))  # round() of a Real is an int
            return
        self._rejected += 1
        raise InvalidMeasurementError(f"a latency must be a finite number of nanoseconds, got {value!r}")

    @property
    def count(self) -> int:
        """Events recorded (O(buckets): the hot path keeps no separate count)."""
        return sum(self._counts)

    @property
    def total(self) -> int:
        """Exact sum of recorded values in ns."""
        return self._extremes[0]

    @property
    def minimum(self) -> int:
        return self._extremes[1] if self._extremes[2] else 0

    @property
    def maximum(self) -> int:
        return self._extremes[2]

    @property
    def mean(self) -> float:
        count = self.count
        return self._extremes[0] / count if count else 0.0

    @property
    def underflow_count(self) -> int:
        return self._underflow

    @property
    def overflow_count(self) -> int:
        return self._overflow

    @property
    def rejected_count(self) -> int:
        return self._rejected

    def percentile(self, percent: float) -> int:
        return self.snapshot().percentile(percent)

    def percentiles(self, percents: Iterable[float] = STANDARD_PERCENTILES) -> list[int]:
        return self.snapshot().percentiles(percents)

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(
            self._counts,
            self._extremes[0],
            self.minimum,
            self._extremes[2],
            self._underflow,
            self._overflow,
            self._rejected,
        )

    def snapshot_and_reset(self) -> HistogramSnapshot:
        """The figures since the last reset, then start afresh (one interval of a periodic report)."""
        snapshot = self.snapshot()
        self.reset()
        return snapshot

    def reset(self) -> None:
        self._counts[:] = [0] * BUCKET_COUNT  # in place: ``record`` holds these lists
        self._extremes[:] = [0, _EMPTY_MINIMUM, 0]
        self._underflow = 0
        self._overflow = 0
        self._rejected = 0

    def merge(self, other: LatencyHistogram | HistogramSnapshot) -> None:
        """Add another histogram's events to this one (as if they had been recorded here)."""
        snapshot = other.snapshot() if isinstance(other, LatencyHistogram) else other
        if not snapshot.count and not snapshot.rejected_count:
            return
        self._counts[:] = [  # in place: ``record`` holds this list
            mine + theirs for mine, theirs in zip(self._counts, snapshot.counts.tolist(), strict=True)
        ]
        self._underflow += snapshot.underflow_count
        self._overflow += snapshot.overflow_count
        self._rejected += snapshot.rejected_count
        if snapshot.count:
            extremes = self._extremes
            extremes[0] += snapshot.total
            extremes[1] = min(extremes[1], snapshot.minimum)
            extremes[2] = max(extremes[2], snapshot.maximum)

    def __repr__(self) -> str:
        return f"LatencyHistogram({self.snapshot()!r})"
