"""LatencyHistogram: bucket layout, error bound, exact extremes, merge/reset/snapshot laws."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.errors import OutOfRangeError
from hftkit.metrics import (
    BUCKET_COUNT,
    HIGHEST_NS,
    RELATIVE_ERROR_BOUND,
    STANDARD_PERCENTILES,
    HistogramSnapshot,
    IncompatibleSnapshotError,
    InvalidMeasurementError,
    LatencyHistogram,
)
from hftkit.metrics.histogram import BUCKET_LOWER, BUCKET_UPPER, bucket_bounds, bucket_index, nearest_rank

# durations spread evenly over every magnitude from 1 ns to 60 s
log_spread_ns = st.floats(min_value=0.0, max_value=math.log10(HIGHEST_NS)).map(
    lambda exponent: max(1, min(HIGHEST_NS, round(10**exponent)))
)
durations_ns = st.one_of(log_spread_ns, st.integers(min_value=1, max_value=400))


def histogram_of(values: list[int]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def test_every_bucket_bounds_map_back_to_the_bucket_and_buckets_tile_the_range() -> None:
    previous_upper = 0
    for index in range(1, BUCKET_COUNT):
        lower, upper = bucket_bounds(index)
        assert lower == previous_upper + 1, f"gap or overlap before bucket {index}"
        assert bucket_index(lower) == index
        assert bucket_index(upper) == index
        if index < 256:
            assert lower == upper == index  # one exact bucket per value below 256 ns
        else:
            assert (upper - lower + 1) / lower <= 1 / 128  # width never above 1/128 of the value
        previous_upper = upper
    assert bucket_bounds(BUCKET_COUNT - 1)[0] <= HIGHEST_NS <= bucket_bounds(BUCKET_COUNT - 1)[1]
    assert BUCKET_LOWER[300] == bucket_bounds(300)[0] and BUCKET_UPPER[300] == bucket_bounds(300)[1]


def test_values_below_256_are_exact() -> None:
    values = list(range(1, 256)) * 3
    snapshot = histogram_of(values).snapshot()
    for percent in (1.0, 10.0, 33.3, 50.0, 77.7, 99.0):
        exact = float(np.percentile(values, percent, method="inverted_cdf"))
        assert snapshot.percentile(percent) == exact


def test_worst_case_relative_error_bound_is_below_one_percent() -> None:
    assert RELATIVE_ERROR_BOUND <= 0.01
    # the worst value of each bucket is an end of it; check every bucket's ends alone
    for index in range(256, BUCKET_COUNT, 7):
        for value in bucket_bounds(index):
            reported = histogram_of([value, value]).percentile(50.0)
            assert abs(reported - value) / value <= RELATIVE_ERROR_BOUND


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(durations_ns, min_size=1, max_size=300),
    extra_percent=st.floats(min_value=0.0, max_value=100.0),
)
def test_percentiles_agree_with_exact_inverted_cdf_within_bound(
    values: list[int], extra_percent: float
) -> None:
    snapshot = histogram_of(values).snapshot()
    array = np.array(values, dtype=np.int64)
    for percent in (*STANDARD_PERCENTILES, 0.0, 100.0, extra_percent):
        exact = float(np.percentile(array, percent, method="inverted_cdf"))
        reported = snapshot.percentile(percent)
        assert abs(reported - exact) <= exact * RELATIVE_ERROR_BOUND, (percent, reported, exact)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(durations_ns, min_size=1, max_size=200))
def test_min_max_sum_and_count_are_exact(values: list[int]) -> None:
    histogram = histogram_of(values)
    assert histogram.count == len(values)
    assert histogram.minimum == min(values)
    assert histogram.maximum == max(values)
    assert histogram.total == sum(values)
    assert histogram.mean == sum(values) / len(values)
    snapshot = histogram.snapshot()
    assert snapshot.percentile(0.0) == min(values)
    assert snapshot.percentile(100.0) == max(values)


@settings(max_examples=100, deadline=None)
@given(
    first=st.lists(durations_ns, max_size=150),
    second=st.lists(durations_ns, max_size=150),
)
def test_merge_equals_recording_everything_in_one(first: list[int], second: list[int]) -> None:
    merged = histogram_of(first)
    merged.merge(histogram_of(second))
    together = histogram_of(first + second)
    left, right = merged.snapshot(), together.snapshot()
    assert np.array_equal(left.counts, right.counts)
    assert left.as_dict() == right.as_dict()
    from_snapshots = histogram_of(first).snapshot().merged(histogram_of(second).snapshot())
    assert from_snapshots.as_dict() == right.as_dict()


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(durations_ns, min_size=1, max_size=100),
    during=st.lists(durations_ns, min_size=1, max_size=100),
)
def test_since_gives_the_interval_counts_and_sum_exactly(before: list[int], during: list[int]) -> None:
    histogram = histogram_of(before)
    earlier = histogram.snapshot()
    histogram.record_many(during)
    interval = histogram.snapshot().since(earlier)
    alone = histogram_of(during).snapshot()
    assert np.array_equal(interval.counts, alone.counts)
    assert interval.count == len(during) and interval.total == sum(during)
    for value, exact in ((interval.minimum, min(during)), (interval.maximum, max(during))):
        assert abs(value - exact) <= exact * RELATIVE_ERROR_BOUND
    if max(during) > max(before):
        assert interval.maximum == max(during)
    if min(during) < min(before):
        assert interval.minimum == min(during)


def test_since_refuses_a_snapshot_from_before_a_reset() -> None:
    histogram = histogram_of([10, 20, 30])
    earlier = histogram.snapshot()
    histogram.reset()
    histogram.record(5)
    with pytest.raises(IncompatibleSnapshotError):
        histogram.snapshot().since(earlier)


def test_reset_and_snapshot_and_reset_start_afresh() -> None:
    histogram = histogram_of([5, 500, 5_000_000])
    histogram.record(-1)
    interval = histogram.snapshot_and_reset()
    assert interval.count == 4 and interval.maximum == 5_000_000 and interval.underflow_count == 1
    assert histogram.count == 0 and histogram.total == 0
    assert histogram.minimum == 0 and histogram.maximum == 0 and histogram.underflow_count == 0
    assert histogram.snapshot().as_dict()["p99"] is None
    histogram.record(42)
    assert histogram.minimum == 42 and histogram.maximum == 42 and histogram.percentile(50) == 42


def test_values_below_one_are_clamped_to_one_and_counted() -> None:
    histogram = histogram_of([0, -5, 7])
    assert histogram.underflow_count == 2
    assert histogram.count == 3
    assert histogram.minimum == 1 and histogram.total == 1 + 1 + 7


def test_values_above_sixty_seconds_go_to_the_top_bucket_and_stay_exact_in_max_and_sum() -> None:
    histogram = histogram_of([1_000, 120_000_000_000])
    assert histogram.overflow_count == 1
    assert histogram.maximum == 120_000_000_000
    assert histogram.total == 120_000_001_000
    snapshot = histogram.snapshot()
    assert snapshot.counts[BUCKET_COUNT - 1] == 1
    assert snapshot.percentile(100) == 120_000_000_000
    assert histogram_of([HIGHEST_NS]).overflow_count == 0


def test_floats_and_numpy_integers_are_converted_and_junk_is_rejected_and_counted() -> None:
    histogram = LatencyHistogram()
    histogram.record(1234.6)  # type: ignore[arg-type]
    histogram.record(np.int64(99))  # type: ignore[arg-type]
    histogram.record(np.float64(0.2))  # type: ignore[arg-type]
    assert histogram.count == 3 and histogram.total == 1235 + 99 + 1
    assert histogram.underflow_count == 1
    for junk in (math.nan, math.inf, -math.inf, "12", None):
        with pytest.raises(InvalidMeasurementError):
            histogram.record(junk)  # type: ignore[arg-type]
    assert histogram.rejected_count == 5
    assert histogram.count == 3


def test_percentile_outside_zero_to_hundred_is_rejected() -> None:
    snapshot = histogram_of([1, 2, 3]).snapshot()
    for bad in (-0.1, 100.01, math.nan):
        with pytest.raises(OutOfRangeError):
            snapshot.percentile(bad)


def test_empty_histogram_reports_zeros() -> None:
    snapshot = LatencyHistogram().snapshot()
    assert snapshot.count == 0
    assert snapshot.percentiles() == [0, 0, 0, 0, 0]
    assert snapshot.mean == 0.0 and snapshot.minimum == 0 and snapshot.maximum == 0
    assert HistogramSnapshot.empty().count == 0


def test_snapshot_is_immutable_and_independent_of_later_records() -> None:
    histogram = histogram_of([10, 20])
    snapshot = histogram.snapshot()
    histogram.record(30)
    assert snapshot.count == 2 and snapshot.maximum == 20
    with pytest.raises(AttributeError):
        snapshot.count = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        snapshot.counts[10] = 1


def test_named_percentile_properties_match_percentile() -> None:
    rng = random.Random(7)
    values = [rng.randint(1, 10_000_000) for _ in range(5_000)]
    snapshot = histogram_of(values).snapshot()
    assert [snapshot.p50, snapshot.p90, snapshot.p99, snapshot.p999, snapshot.p9999] == snapshot.percentiles()
    assert snapshot.percentiles((99.0, 50.0)) == [snapshot.p99, snapshot.p50]


def test_count_at_or_below_matches_an_exact_count_within_one_bucket() -> None:
    rng = random.Random(3)
    values = [rng.randint(1, 2_000_000) for _ in range(3_000)]
    snapshot = histogram_of(values).snapshot()
    for bound in (100, 1_000, 10_000, 250_000, 1_000_000):
        low = sum(value <= bound * (1 - 1 / 128) for value in values)
        high = sum(value <= bound * (1 + 1 / 128) for value in values)
        assert low <= snapshot.count_at_or_below(bound) <= high
    assert snapshot.count_at_or_below(0) == 0
    assert snapshot.count_at_or_below(HIGHEST_NS * 2) == len(values)


def test_nonzero_buckets_cover_every_event() -> None:
    values = [3, 3, 700, 700_000]
    buckets = histogram_of(values).snapshot().nonzero_buckets()
    assert sum(count for _, _, count in buckets) == 4
    assert buckets[0] == (3, 3, 2)
    assert all(lower <= upper for lower, upper, _ in buckets)


def test_nearest_rank_matches_numpy_inverted_cdf_rank() -> None:
    for count in (1, 2, 3, 10, 999, 1000, 1001, 12345):
        data = np.arange(1, count + 1)
        for percent in (0.0, 0.1, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0):
            assert nearest_rank(percent, count) == np.percentile(data, percent, method="inverted_cdf")


def test_snapshot_refuses_counts_of_another_layout() -> None:
    with pytest.raises(ValueError, match="bucket counts"):
        HistogramSnapshot([1, 2, 3], total=6, minimum=1, maximum=3)
