"""Rows for ``hftkit bench trading``: risk gate check cost, and signal manager costs.

The gate runs with every limit switched on (position, order size and notional, open orders
per instrument and overall, aggregate notional, order rate per instrument and overall, price
collar with a fresh mid, book health), so the pass path measured is the worst realistic one.
The baseline is the same set of checks written the straightforward way (Decimal prices and
quantities, dict-of-dicts limits), measured in the same run.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import TypedDict

from hftkit.bench.harness import BenchOptions, BenchResult, compare, time_per_call, time_per_item
from hftkit.core import REAL_CLOCK, Instrument, Order, OrderType, Side
from hftkit.storage.signals_sqlite import SqliteSignalStore
from hftkit.trading.risk import InstrumentLimits, RejectReason, RiskGate, RiskLimits
from hftkit.trading.signals import SignalManager, SignalUpdate

PEERS: tuple[str, ...] = ()

CHECK_TARGET_NS = 2_000.0
VENUE, SYMBOL = "binance", "BTCUSDT"
_BUY = Side.BUY
BID, ASK = 5_999_999, 6_000_001  # 60,000.00 USDT mid, in ticks


class _BenchExposure:
    """A small long position and a resting ladder, kept per venue then symbol (no key tuples),
    as an efficient state tracker would report it between fills."""

    __slots__ = ("_buys", "_positions", "_sells")

    def __init__(self) -> None:
        self._positions = {VENUE: {SYMBOL: 2_000}}
        self._buys = {VENUE: {SYMBOL: 3_000}}
        self._sells = {VENUE: {SYMBOL: 1_000}}

    def position(self, venue: str, symbol: str) -> int:
        return self._positions[venue].get(symbol, 0)

    def open_quantity(self, venue: str, symbol: str, side: Side) -> int:
        return (self._buys if side is _BUY else self._sells)[venue].get(symbol, 0)

    def open_order_count(self, venue: str, symbol: str) -> int:
        return 4

    def total_open_order_count(self) -> int:
        return 4


def build_gate(total_notional: bool = True) -> RiskGate:
    """A gate on the real clock with every limit on; rate windows wide enough never to fill."""
    limits = RiskLimits(
        max_total_notional="1000000" if total_notional else None,
        max_total_open_orders=100,
        max_orders_per_window=200_000,
        rate_window_ms=1,
    )
    gate = RiskGate(_BenchExposure(), limits, REAL_CLOCK)
    instrument = Instrument(VENUE, SYMBOL, "BTC", "USDT", "0.01", "0.00001")
    gate.add_instrument(
        instrument,
        InstrumentLimits(
            max_position="5",
            max_order_quantity="1",
            max_order_notional="100000",
            max_open_orders=50,
            max_orders_per_window=200_000,
            collar_bps=100,
            max_mid_age_ms=3_600_000,
            max_book_age_ms=3_600_000,
        ),
    )
    gate.update_mid(VENUE, SYMBOL, BID, ASK)
    gate.report_book(VENUE, SYMBOL, True, REAL_CLOCK.monotonic_ns())
    return gate


class _NaiveLimits(TypedDict):
    """One instrument's limits in the baseline: a plain dict (typed so its values keep their types)."""

    max_position: Decimal
    max_order_quantity: Decimal
    max_order_notional: Decimal
    max_open_orders: int
    collar: Decimal


class _NaiveGate:
    """The baseline: the same checks in Decimal with nested-dict limits, as first drafts do."""

    def __init__(self) -> None:
        self.limits: dict[tuple[str, str], _NaiveLimits] = {
            (VENUE, SYMBOL): {
                "max_position": Decimal("5"),
                "max_order_quantity": Decimal("1"),
                "max_order_notional": Decimal("100000"),
                "max_open_orders": 50,
                "collar": Decimal("0.01"),
            }
        }
        self.mid = {(VENUE, SYMBOL): (Decimal("59999.99") + Decimal("60000.01")) / 2}
        self.exposure = _BenchExposure()
        self.lot = Decimal("0.00001")
        self.tick = Decimal("0.01")

    def check(self, venue: str, symbol: str, side: Side, price: int, quantity: int) -> tuple[bool, str]:
        limits = self.limits[(venue, symbol)]
        price_value = price * self.tick
        quantity_value = quantity * self.lot
        if quantity_value > limits["max_order_quantity"]:
            return False, "size"
        mid = self.mid[(venue, symbol)]
        if abs(price_value - mid) / mid > limits["collar"]:
            return False, "collar"
        if price_value * quantity_value > limits["max_order_notional"]:
            return False, "notional"
        position = self.exposure.position(venue, symbol) * self.lot
        resting = self.exposure.open_quantity(venue, symbol, side) * self.lot
        if side is Side.BUY and position + resting + quantity_value > limits["max_position"]:
            return False, "position"
        if side is Side.SELL and position - resting - quantity_value < -limits["max_position"]:
            return False, "position"
        if self.exposure.open_order_count(venue, symbol) >= limits["max_open_orders"]:
            return False, "open orders"
        return True, ""


def risk_rows(options: BenchOptions) -> list[BenchResult]:
    gate = build_gate()
    check = gate.check
    buy, sell = Side.BUY, Side.SELL
    if not check(VENUE, SYMBOL, buy, 6_000_000, 100):
        raise AssertionError("risk benchmark pass case is rejected")
    collared = check(VENUE, SYMBOL, sell, 5_000_000, 100)
    if collared.reason is not RejectReason.PRICE_COLLAR:
        raise AssertionError(f"risk benchmark reject case broken: {collared}")
    naive = _NaiveGate()
    if naive.check(VENUE, SYMBOL, buy, 6_000_000, 100) != (True, ""):
        raise AssertionError("baseline pass case is rejected")

    pass_ns = time_per_call(lambda: check(VENUE, SYMBOL, buy, 6_000_000, 100), options)
    naive_ns = time_per_call(lambda: naive.check(VENUE, SYMBOL, buy, 6_000_000, 100), options)
    reject_ns = time_per_call(lambda: check(VENUE, SYMBOL, sell, 5_000_000, 100), options)
    order = Order(
        client_order_id="bench-1",
        venue=VENUE,
        symbol=SYMBOL,
        side=buy,
        order_type=OrderType.LIMIT_MAKER,
        price=5_999_990,
        quantity=100,
    )
    check_order = gate.check_order
    order_ns = time_per_call(lambda: check_order(order), options)

    lean = build_gate(total_notional=False)
    lean_check = lean.check
    lean_ns = time_per_call(lambda: lean_check(VENUE, SYMBOL, buy, 6_000_000, 100), options)

    tripped = build_gate()
    tripped.trip(detail="benchmark")
    tripped_check = tripped.check
    tripped_ns = time_per_call(lambda: tripped_check(VENUE, SYMBOL, buy, 6_000_000, 100), options)
    if gate.rejection_counts.get(RejectReason.PRICE_COLLAR, 0) < 2:
        raise AssertionError("reject path was not exercised")
    baseline = "same checks in Decimal, nested-dict limits (inline)"
    return [
        compare(
            "risk gate check, pass path (all limits on)",
            pass_ns,
            "ns",
            baseline=baseline,
            baseline_value=naive_ns,
            target="<= 2 us",
            met=pass_ns <= CHECK_TARGET_NS,
            exposure_reads=5,
        ),
        compare(
            "risk gate check, reject path (price collar)",
            reject_ns,
            "ns",
            target="<= 2 us",
            met=reject_ns <= CHECK_TARGET_NS,
        ),
        compare(
            "risk gate check_order(Order), pass path",
            order_ns,
            "ns",
            target="<= 2 us",
            met=order_ns <= CHECK_TARGET_NS,
        ),
        compare("risk gate check, pass path without aggregate notional", lean_ns, "ns"),
        compare("risk gate check, kill switch tripped", tripped_ns, "ns"),
    ]


def signal_rows(options: BenchOptions) -> list[BenchResult]:
    manager = SignalManager(REAL_CLOCK)
    symbols = [f"SYM{index:03d}USDT" for index in range(200)]
    for symbol in symbols:
        for kind in ("alpha", "imbalance", "volatility", "regime"):
            manager.upsert(symbol, kind, 0.5, confidence=0.9, ttl_seconds=3600, source="bench")
    upsert = manager.upsert
    upsert_ns = time_per_call(lambda: upsert("SYM007USDT", "alpha", 0.25, 0.8, 3600, "bench"), options)
    batch = [
        SignalUpdate(symbol=symbol, signal_type="alpha", value=0.1, confidence=0.5, ttl_seconds=60)
        for symbol in symbols[:100]
    ]

    def upsert_batch() -> int:
        manager.upsert_many(batch)
        return len(batch)

    batch_ns = time_per_item(upsert_batch, options)
    manager.expire()  # the batches pushed lazy heap entries; keep the heap from skewing reads
    get = manager.get
    get_ns = time_per_call(lambda: get("SYM042USDT", "imbalance", "bench"), options)
    query = manager.query
    query_ns = time_per_call(lambda: query("SYM042USDT"), options)
    wanted = symbols[:50]

    def query_many() -> int:
        manager.query_many(wanted)
        return len(wanted)

    query_many_ns = time_per_item(query_many, options)
    rows = [
        compare("signal upsert (one, validated)", upsert_ns, "ns"),
        compare("signal upsert_many (batch of 100), per signal", batch_ns, "ns"),
        compare("signal get (one key)", get_ns, "ns"),
        compare("signal query (symbol with 4 signals)", query_ns, "ns"),
        compare("signal query_many (50 symbols), per symbol", query_many_ns, "ns"),
    ]
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteSignalStore(Path(directory) / "signals.db")
        snapshot = [manager.get(symbol, "alpha", "") or manager.query(symbol)[0] for symbol in symbols]

        def save_batch() -> int:
            store.save_many(snapshot)
            return len(snapshot)

        save_ns = time_per_item(save_batch, options)
        store.close()
    rows.append(compare("sqlite save_many (200 signals, one WAL transaction), per signal", save_ns, "ns"))
    return rows


def run(options: BenchOptions) -> list[BenchResult]:
    return [*risk_rows(options), *signal_rows(options)]
