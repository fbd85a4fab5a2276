"""Ring buffers: wraparound against a reference list, views vs copies, since(), thread handoff."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book.ring import Column, LockedRingBuffer, OutOfOrderError, RingBuffer, SchemaError

TRADE_SCHEMA = (
    Column("timestamp", np.int64),
    Column("price", np.int64),
    Column("size", np.int64),
    Column("side", np.int8),
)


def trade_ring(capacity: int) -> RingBuffer:
    return RingBuffer(capacity, TRADE_SCHEMA, time_column="timestamp")


def row(index: int) -> tuple[int, int, int, int]:
    """A distinct, time-ordered row per index (timestamps repeat in pairs to test ties)."""
    return (index // 2 * 10, 1_000_000 + index, index % 7 + 1, 1 if index % 3 else -1)


# --- a reference model, driven by hypothesis ----------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 1)),
        st.tuples(st.just("extend"), st.integers(0, 25)),
        st.tuples(st.just("clear"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 12), ops=operations, probe=st.integers(0, 200))
def test_ring_matches_a_reference_list_through_any_wraparound(capacity: int, ops, probe: int) -> None:
    ring = trade_ring(capacity)
    reference: list[tuple[int, int, int, int]] = []  # every accepted row, in order
    floor = 0  # reference index of the first row not cleared
    cleared = 0
    for kind, count in ops:
        if kind == "append":
            ring.append(*row(len(reference)))
            reference.append(row(len(reference)))
        elif kind == "extend":
            rows = [row(len(reference) + offset) for offset in range(count)]
            columns = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
            assert ring.extend(*(np.asarray(column, dtype=np.int64) for column in columns)) == count
            reference.extend(rows)
        else:
            cleared += min(len(reference) - floor, capacity)
            ring.clear()
            floor = len(reference)
        held = reference[max(floor, len(reference) - capacity) :]
        assert len(ring) == len(held)
        assert list(ring.latest().rows()) == held
        assert ring.total_appended == len(reference)
        assert ring.dropped + ring.cleared + len(ring) == len(reference)
        assert ring.cleared == cleared

    held = reference[max(floor, len(reference) - capacity) :]
    count = probe % (len(held) + 2)
    expected_tail = held[len(held) - min(count, len(held)) :]
    assert list(ring.latest(count).rows()) == expected_tail
    assert ring.last() == (held[-1] if held else None)

    timestamp = (probe // 2) * 10 + (probe % 2) * 5  # half the probes equal a stored timestamp
    assert list(ring.since(timestamp).rows()) == [item for item in held if item[0] >= timestamp]

    sequence = probe % (len(reference) + 3)
    window, missed = ring.read_from(sequence)
    oldest = len(reference) - len(held)
    assert missed == max(oldest - sequence, 0)
    assert list(window.rows()) == reference[max(sequence, oldest) :]
    assert window.next_sequence == len(reference)


# --- views and copies ---------------------------------------------------------------------------


def test_latest_is_a_read_only_view_until_it_wraps_then_a_copy() -> None:
    ring = trade_ring(4)
    for index in range(3):
        ring.append(*row(index))
    window = ring.latest(2)
    assert not window.copied
    assert np.shares_memory(window["price"], ring.latest()["price"])
    with pytest.raises(ValueError):
        window["price"][0] = 0  # read-only: a view must not corrupt the ring

    ring.append(*row(3))
    ring.append(*row(4))  # overwrites slot 0: the newest rows now straddle the physical end
    wrapped = ring.latest(3)
    assert wrapped.copied
    assert wrapped.price.tolist() == [1_000_002, 1_000_003, 1_000_004]
    ring.append(*row(5))
    assert wrapped.price.tolist() == [1_000_002, 1_000_003, 1_000_004]  # a copy does not move


def test_a_view_sees_later_overwrites_and_copy_detaches_it() -> None:
    ring = trade_ring(3)
    for index in range(3):
        ring.append(*row(index))
    view = ring.latest(3)
    detached = view.copy()
    assert not view.copied and detached.copied
    for index in range(3, 6):
        ring.append(*row(index))
    assert view.price.tolist() == [1_000_003, 1_000_004, 1_000_005]
    assert detached.price.tolist() == [1_000_000, 1_000_001, 1_000_002]


def test_oversize_extend_keeps_the_last_capacity_rows_and_counts_the_rest_dropped() -> None:
    ring = trade_ring(5)
    count = 12
    ring.extend(
        timestamp=np.arange(count) * 10,
        price=np.arange(count) + 100,
        size=np.ones(count, dtype=np.int64),
        side=np.ones(count, dtype=np.int8),
    )
    assert ring.latest().price.tolist() == [107, 108, 109, 110, 111]
    assert (len(ring), ring.total_appended, ring.dropped) == (5, 12, 7)


def test_since_finds_rows_on_both_sides_of_the_physical_end() -> None:
    ring = trade_ring(6)
    for index in range(9):  # timestamps 0,0,10,10,20,20,30,30,40 -> holds indices 3..8
        ring.append(*row(index))
    assert ring.since(10).timestamp.tolist() == [10, 20, 20, 30, 30, 40]
    assert ring.since(25).timestamp.tolist() == [30, 30, 40]
    assert ring.since(41).timestamp.tolist() == []
    assert ring.since(-5).timestamp.tolist() == [10, 20, 20, 30, 30, 40]


# --- validation ---------------------------------------------------------------------------------


def test_timestamp_going_backwards_is_refused_and_counted() -> None:
    ring = trade_ring(4)
    ring.append(100, 1, 1, 1)
    with pytest.raises(OutOfOrderError):
        ring.append(99, 1, 1, 1)
    with pytest.raises(OutOfOrderError):
        ring.extend([150, 120], [1, 1], [1, 1], [1, 1])
    assert ring.rejected == 3
    assert len(ring) == 1
    ring.append(100, 2, 2, -1)  # equal timestamps are fine
    assert ring.last() == (100, 2, 2, -1)


def test_keyword_append_and_named_extend_follow_the_schema() -> None:
    ring = trade_ring(4)
    ring.append(timestamp=5, price=7, size=9, side=-1)
    ring.extend(side=[1], size=[2], price=[3], timestamp=[6])
    assert list(ring.latest().rows()) == [(5, 7, 9, -1), (6, 3, 2, 1)]


@pytest.mark.parametrize(
    "columns",
    [
        [],
        [("price", np.int64), ("price", np.int64)],
        [("not a name", np.int64)],
        [("_private", np.int64)],
        [("class", np.int64)],
        [("payload", object)],
    ],
)
def test_bad_schemas_are_refused(columns) -> None:
    with pytest.raises(SchemaError):
        RingBuffer(4, columns)


def test_time_column_must_exist_and_be_integer() -> None:
    with pytest.raises(SchemaError):
        RingBuffer(4, [("price", np.int64)], time_column="timestamp")
    with pytest.raises(SchemaError):
        RingBuffer(4, [("timestamp", np.float64)], time_column="timestamp")
    with pytest.raises(SchemaError):
        RingBuffer(4, [("price", np.int64)]).since(0)


def test_bulk_inputs_that_do_not_fit_the_schema_are_refused() -> None:
    ring = trade_ring(4)
    with pytest.raises(SchemaError):
        ring.extend([1, 2], [1], [1, 1], [1, 1])  # ragged
    with pytest.raises(SchemaError):
        ring.extend([1], [1.5], [1], [1])  # float into an int column
    with pytest.raises(SchemaError):
        ring.extend([1], [1], [1], [300])  # out of int8 range
    with pytest.raises(SchemaError):
        ring.extend([1], [1], [1])  # a column short
    assert len(ring) == 0


def test_scalar_append_refuses_values_its_column_cannot_hold() -> None:
    ring = trade_ring(4)
    with pytest.raises((TypeError, ValueError)):
        ring.append(1, 1.5, 1, 1)
    with pytest.raises((TypeError, ValueError, OverflowError)):
        ring.append(1, 1, 1, 200)


def test_float_and_bool_columns_accept_python_values() -> None:
    ring = RingBuffer(3, [("timestamp", np.int64), ("mid", np.float64), ("crossed", np.bool_)])
    ring.append(1, 100.5, False)
    ring.append(2, 101, True)
    assert list(ring.latest().rows()) == [(1, 100.5, False), (2, 101.0, True)]


# --- cross-thread handoff -----------------------------------------------------------------------


def test_locked_ring_hands_rows_from_a_producer_thread_with_exact_loss_accounting() -> None:
    total = 20_000
    ring = LockedRingBuffer(64, TRADE_SCHEMA, time_column="timestamp")
    done = threading.Event()

    def produce() -> None:
        for index in range(total):
            ring.append(index, index * 2, 1, 1)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    received: list[int] = []
    missed_total = 0
    sequence = 0
    while True:
        finished = done.is_set()
        window, missed = ring.read_from(sequence)
        assert window.copied
        missed_total += missed
        timestamps = window.timestamp.tolist()
        assert window.price.tolist() == [value * 2 for value in timestamps]
        assert timestamps == list(range(window.first_sequence, window.next_sequence))
        received.extend(timestamps)
        sequence = window.next_sequence
        if finished and sequence == total:
            break
    producer.join()
    assert received == sorted(received)
    assert len(received) + missed_total == total
    assert received[-1] == total - 1


def test_column_names_that_look_like_locals_do_not_clash_with_the_generated_append() -> None:
    ring = RingBuffer(2, [("i", np.int64), ("capacity", np.int64), ("append", np.int64)])
    ring.append(1, 2, 3)
    ring.append(i=4, capacity=5, append=6)
    ring.append(7, 8, 9)
    assert list(ring.latest().rows()) == [(4, 5, 6), (7, 8, 9)]
    assert ring.capacity == 2
