"""Signal manager: validation, ttl expiry, batch operations, SQLite persistence, async facade."""

from __future__ import annotations

import asyncio
import math
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core import SimulatedClock
from hftkit.storage.signals_sqlite import SignalStoreError, SqliteSignalStore
from hftkit.trading.signals import (
    AsyncSignalManager,
    InvalidSignalError,
    Signal,
    SignalManager,
    SignalStore,
    SignalUpdate,
)

SECOND = 1_000_000_000


def make_manager(store: SignalStore | None = None) -> tuple[SignalManager, SimulatedClock]:
    clock = SimulatedClock(10**12)
    return SignalManager(clock, store), clock


# create, update, query ---------------------------------------------------------------------------
def test_update_keeps_creation_time_and_restarts_the_ttl() -> None:
    manager, clock = make_manager()
    first = manager.upsert("BTCUSDT", "imbalance", 0.25, confidence=0.8, ttl_seconds=2, source="book")
    assert first.created_ns == first.updated_ns == clock.time_ns()
    clock.advance(SECOND)
    second = manager.upsert("BTCUSDT", "imbalance", -0.5, confidence=0.6, ttl_seconds=2, source="book")
    assert second.created_ns == first.created_ns and second.updated_ns == first.updated_ns + SECOND
    clock.advance(int(1.5 * SECOND))  # 2.5 s after creation, 1.5 s after the update
    assert manager.get("BTCUSDT", "imbalance", "book") == second
    assert manager.expire() == []
    clock.advance(SECOND // 2)
    assert manager.get("BTCUSDT", "imbalance", "book") is None  # invisible before cleanup
    assert manager.expire() == [second]
    assert len(manager) == 0 and manager.expired_count == 1


def test_an_expired_signal_updated_again_starts_a_new_life() -> None:
    manager, clock = make_manager()
    manager.upsert("ETHUSDT", "momentum", 1.0, ttl_seconds=1)
    clock.advance(2 * SECOND)
    again = manager.upsert("ETHUSDT", "momentum", 2.0, ttl_seconds=1)
    assert again.created_ns == clock.time_ns()


def test_sources_and_types_are_separate_signals_of_one_symbol() -> None:
    manager, _ = make_manager()
    manager.upsert("BTCUSDT", "alpha", 1.0, source="model_b")
    manager.upsert("BTCUSDT", "alpha", 2.0, source="model_a")
    manager.upsert("BTCUSDT", "volatility", 0.4)
    manager.upsert("ETHUSDT", "alpha", 3.0)
    assert [(s.signal_type, s.source, s.value) for s in manager.query("BTCUSDT")] == [
        ("alpha", "model_a", 2.0),
        ("alpha", "model_b", 1.0),
        ("volatility", "", 0.4),
    ]
    assert [s.value for s in manager.query("BTCUSDT", "volatility")] == [0.4]
    assert manager.query("XRPUSDT") == []
    assert manager.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert manager.remove("BTCUSDT", "alpha", "model_b")
    assert not manager.remove("BTCUSDT", "alpha", "model_b")
    assert len(manager.query("BTCUSDT")) == 2


def test_batch_upsert_and_query_many() -> None:
    manager, clock = make_manager()
    stored = manager.upsert_many(
        SignalUpdate(symbol=symbol, signal_type="fair_value", value=float(index), ttl_seconds=5)
        for index, symbol in enumerate(["A", "B", "C"])
    )
    assert [s.symbol for s in stored] == ["A", "B", "C"]
    assert all(s.updated_ns == clock.time_ns() for s in stored)
    found = manager.query_many(["C", "A", "Z"])
    assert list(found) == ["C", "A", "Z"]
    assert [s.value for s in found["C"]] == [2.0] and found["Z"] == []


# validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"value": math.nan}, "value"),
        ({"value": math.inf}, "value"),
        ({"value": "1.0"}, "value"),
        ({"confidence": 1.0000001}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": math.nan}, "confidence"),
        ({"ttl_seconds": -1.0}, "ttl_seconds"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": math.nan}, "ttl_seconds"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "   "}, "symbol"),
        ({"signal_type": ""}, "signal_type"),
    ],
)
def test_bad_input_raises_a_classified_value_error_and_is_counted(changes: dict, field: str) -> None:
    manager, _ = make_manager()
    arguments = {"symbol": "BTCUSDT", "signal_type": "alpha", "value": 0.5, "confidence": 0.5, **changes}
    with pytest.raises(InvalidSignalError) as caught:
        manager.upsert(**arguments)
    assert isinstance(caught.value, ValueError) and caught.value.field == field
    assert manager.invalid_count == 1 and manager.invalid_by_field == {field: 1}
    assert len(manager) == 0


def test_confidence_bounds_are_inclusive() -> None:
    manager, _ = make_manager()
    assert manager.upsert("X", "a", 1.0, confidence=0.0).confidence == 0.0
    assert manager.upsert("X", "b", 1.0, confidence=1.0).confidence == 1.0


def test_a_batch_with_bad_updates_applies_nothing_and_names_every_bad_position() -> None:
    manager, _ = make_manager()
    updates = [
        SignalUpdate(symbol="A", signal_type="x", value=1.0),
        SignalUpdate(symbol="", signal_type="x", value=1.0),
        SignalUpdate(symbol="C", signal_type="x", value=1.0),
        SignalUpdate(symbol="D", signal_type="x", value=1.0, confidence=2.0),
    ]
    with pytest.raises(InvalidSignalError, match=r"2 invalid update.*1, 3"):
        manager.upsert_many(updates)
    assert len(manager) == 0
    assert manager.invalid_by_field == {"symbol": 1, "confidence": 1}


def test_a_batch_item_that_is_not_an_update_is_a_classified_error() -> None:
    manager, _ = make_manager()
    with pytest.raises(InvalidSignalError) as caught:
        manager.upsert_many([("BTCUSDT", "alpha", 1.0)])  # type: ignore[list-item]
    assert caught.value.field == "update" and manager.invalid_count == 1


def test_frequent_updates_keep_the_expiry_heap_bounded_and_expiry_exact() -> None:
    manager, clock = make_manager()
    for step in range(5_000):
        manager.upsert("BTCUSDT", "microprice", float(step), ttl_seconds=60)
        clock.advance(1_000)  # 1 us apart: every update leaves a superseded heap entry
    assert len(manager._expiries) <= 4 * len(manager) + 1025
    last = manager.get("BTCUSDT", "microprice")
    assert last is not None and last.value == 4_999.0
    clock.advance(60 * SECOND - 1_001)
    assert manager.expire() == []
    clock.advance(1)
    assert manager.expire() == [last]


# expiry as a law -------------------------------------------------------------------------------------
event = st.one_of(
    st.tuples(
        st.just("upsert"),
        st.sampled_from(["A", "B", "C"]),
        st.sampled_from(["x", "y"]),
        st.none() | st.integers(1, 5_000),  # ttl in ms
    ),
    st.tuples(st.just("advance"), st.integers(0, 3_000)),
    st.tuples(st.just("expire")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(event, max_size=60))
def test_live_signals_are_exactly_those_whose_ttl_has_not_run_out(events: list) -> None:
    manager, clock = make_manager()
    expiries: dict[tuple[str, str], int | None] = {}  # model: key -> expiry (ns) or None
    for item in events:
        now = clock.time_ns()
        if item[0] == "upsert":
            _, symbol, kind, ttl_ms = item
            manager.upsert(symbol, kind, 1.0, ttl_seconds=None if ttl_ms is None else ttl_ms / 1000)
            expiries[(symbol, kind)] = None if ttl_ms is None else now + ttl_ms * 1_000_000
        elif item[0] == "advance":
            clock.advance(item[1] * 1_000_000)
        else:
            removed = manager.expire()
            for signal in removed:
                assert signal.expires_ns is not None and signal.expires_ns <= now
                del expiries[(signal.symbol, signal.signal_type)]
            assert all(e is None or e > now for e in expiries.values())
        now = clock.time_ns()
        live = {key for key, expiry in expiries.items() if expiry is None or expiry > now}
        visible = {(s.symbol, s.signal_type) for symbol in "ABC" for s in manager.query(symbol)}
        assert visible == live
        assert set(manager._signals) >= {(symbol, kind, "") for symbol, kind in live}


# sqlite store --------------------------------------------------------------------------------------
def signal(symbol: str, updated_ns: int, ttl_ns: int | None = None, value: float = 1.5) -> Signal:
    return Signal(
        symbol=symbol,
        signal_type="alpha",
        value=value,
        confidence=0.25,
        source="model",
        ttl_ns=ttl_ns,
        created_ns=updated_ns - 10,
        updated_ns=updated_ns,
    )


def test_sqlite_round_trip_in_wal_mode(tmp_path) -> None:
    path = tmp_path / "state" / "signals.db"
    signals = [signal("A", 100), signal("B", 200, ttl_ns=50, value=-0.125), signal("C", 300, value=1e-300)]
    with SqliteSignalStore(path) as store:
        assert isinstance(store, SignalStore)
        assert store.journal_mode == "wal"
        store.save_many(signals)
        assert store.load_all() == signals
    with SqliteSignalStore(path) as reopened:
        assert reopened.load_all() == signals
        assert reopened.delete_expired(250) == 1  # B expired at 250
        assert [s.symbol for s in reopened.load_all()] == ["A", "C"]
        reopened.delete_many([("A", "alpha", "model")])
        assert reopened.count() == 1


def test_sqlite_older_copy_never_overwrites_a_newer_row() -> None:
    with SqliteSignalStore(":memory:") as store:
        store.save_many([signal("A", 200, value=2.0)])
        store.save_many([signal("A", 100, value=1.0)])
        assert store.load_all()[0].value == 2.0
        store.save_many([signal("A", 300, value=3.0)])
        assert store.load_all()[0].value == 3.0


def test_malformed_rows_raise_a_store_error_and_a_closed_store_refuses_work(tmp_path) -> None:
    store = SqliteSignalStore(tmp_path / "s.db")
    store.save_many([signal("A", 1)])
    bad = [
        signal("B", 2),
        Signal(
            symbol="C",
            signal_type="alpha",
            value=1.0,
            confidence=0.5,
            created_ns=1,
            updated_ns="not a number",
        ),
    ]  # type: ignore[arg-type]
    store.save_many(bad)  # SQLite keeps the text as given: loading must notice
    with pytest.raises(SignalStoreError):
        store.load_all()
    store.close()
    with pytest.raises(SignalStoreError, match="closed"):
        store.load_all()


def test_sqlite_batch_failure_rolls_back_every_row(tmp_path) -> None:
    store = SqliteSignalStore(tmp_path / "s.db")
    unbindable = Signal(
        symbol="C", signal_type="alpha", value=1.0, confidence=0.5, created_ns=1, updated_ns=2**70
    )  # too large for an SQLite integer: fails mid-batch
    with pytest.raises(OverflowError):
        store.save_many([signal("A", 1), signal("B", 2), unbindable])
    assert store.count() == 0
    store.close()


# persistence through the manager --------------------------------------------------------------------
def test_restart_restores_unexpired_signals_only(tmp_path) -> None:
    path = tmp_path / "signals.db"
    store = SqliteSignalStore(path)
    manager, clock = make_manager(store)
    manager.upsert("BTCUSDT", "alpha", 0.7, confidence=0.9, ttl_seconds=10, source="m")
    manager.upsert("BTCUSDT", "short", 0.1, ttl_seconds=1)
    manager.upsert("ETHUSDT", "regime", 2.0)
    manager.upsert("ETHUSDT", "gone", 2.0)
    manager.remove("ETHUSDT", "gone")
    assert manager.persist() == 3
    store.close()

    clock.advance(5 * SECOND)  # "short" has expired while we were down
    restarted_store = SqliteSignalStore(path)
    restarted = SignalManager(clock, restarted_store)
    assert restarted.restore() == 2
    assert restarted.get("BTCUSDT", "alpha", "m") == manager.get("BTCUSDT", "alpha", "m")
    assert restarted.get("ETHUSDT", "regime") is not None
    assert restarted.get("BTCUSDT", "short") is None
    assert restarted_store.count() == 2  # the expired row was dropped from the store too
    clock.advance(6 * SECOND)
    assert [s.signal_type for s in restarted.expire()] == ["alpha"]
    restarted.persist()
    assert restarted_store.count() == 1


class FlakyStore:
    """A store that fails its next write, to prove changes survive a failed flush."""

    def __init__(self) -> None:
        self.inner = SqliteSignalStore(":memory:")
        self.fail_next = True

    def save_many(self, signals):
        if self.fail_next:
            self.fail_next = False
            raise sqlite3.OperationalError("database is locked")
        self.inner.save_many(signals)

    def load_all(self):
        return self.inner.load_all()

    def delete_expired(self, now_ns):
        return self.inner.delete_expired(now_ns)

    def delete_many(self, keys):
        self.inner.delete_many(keys)


def test_failed_persist_keeps_changes_for_the_next_attempt() -> None:
    store = FlakyStore()
    manager, _ = make_manager(store)
    manager.upsert("A", "x", 1.0)
    with pytest.raises(sqlite3.OperationalError):
        manager.persist()
    manager.upsert("B", "x", 1.0)
    assert manager.persist() == 2
    assert sorted(s.symbol for s in store.load_all()) == ["A", "B"]


# async facade ------------------------------------------------------------------------------------------
async def test_concurrent_multi_symbol_queries_gather_per_symbol_lookups() -> None:
    manager, _ = make_manager()
    facade = AsyncSignalManager(manager)
    symbols = [f"S{index}" for index in range(50)]
    await facade.upsert_many(
        SignalUpdate(symbol=s, signal_type="alpha", value=float(i)) for i, s in enumerate(symbols)
    )
    results = await asyncio.gather(facade.query_many(symbols[:25]), facade.query_many([*symbols[25:], "S0"]))
    assert [results[0][s][0].value for s in symbols[:25]] == [float(i) for i in range(25)]
    assert results[1]["S0"][0].value == 0.0 and len(results[1]) == 26
    assert (await facade.get("S7", "alpha")).value == 7.0


async def test_periodic_cleanup_expires_and_flushes_to_the_store(tmp_path) -> None:
    store = SqliteSignalStore(tmp_path / "signals.db")
    manager, clock = make_manager(store)
    facade = AsyncSignalManager(manager)
    await facade.upsert("A", "x", 1.0, ttl_seconds=1)
    await facade.upsert("B", "x", 1.0)
    task = facade.start_cleanup(interval_seconds=0.005)
    with pytest.raises(RuntimeError):
        facade.start_cleanup(interval_seconds=0.005)
    await wait_for(lambda: store.count() == 2)
    clock.advance(2 * SECOND)
    await wait_for(lambda: len(manager) == 1 and store.count() == 1)
    await facade.aclose()
    assert task.done() and facade.cleanup_errors == 0

    reloaded = AsyncSignalManager(SignalManager(clock, store))
    assert await reloaded.restore() == 1
    assert (await reloaded.query("B"))[0].value == 1.0
    store.close()


async def test_cleanup_survives_a_failing_store_and_counts_the_failure() -> None:
    store = FlakyStore()
    manager, _ = make_manager(store)
    facade = AsyncSignalManager(manager)
    await facade.upsert("A", "x", 1.0)
    facade.start_cleanup(interval_seconds=0.005)
    await wait_for(lambda: facade.cleanup_errors == 1 and store.inner.count() == 1)
    await facade.aclose()


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)
