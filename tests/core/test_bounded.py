"""Venue-keyed structures stay within their bound under a flood (issue 17, item 15)."""

from __future__ import annotations

import orjson

from hftkit.core.bounded import MAX_KEY_LENGTH, OTHER, BoundedCounter, LruMap
from hftkit.core.clock import SimulatedClock
from hftkit.core.types import Instrument, OrderType, Side
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import DAY_TRADES_KEPT, SimVenue
from hftkit.venues.binance.rest import RestStats
from hftkit.venues.binance.user_data import MAX_UNKNOWN_EVENT_TYPES, UserDataParser

SYMBOL = "BTCUSDT"


def test_bounded_counter_keeps_its_bound_and_every_count_under_a_flood():
    counter: BoundedCounter[str] = BoundedCounter(8)
    for index in range(100_000):
        counter.add(f"kind-{index % 50_000}")
    counter.add("x" * 1_000_000)
    assert len(counter) == 8 and OTHER in counter
    assert sum(counter.values()) == 100_001  # nothing lost: the overflow is in the bucket
    assert counter.folded == counter[OTHER] > 0
    assert all(len(key) <= MAX_KEY_LENGTH for key in counter)
    assert counter["kind-0"] == 2  # the first keys stay exact


def test_lru_map_evicts_the_least_recently_used_and_counts():
    lru: LruMap[str, int] = LruMap(3)
    for index in range(10_000):
        lru[f"order-{index}"] = index
        lru.touch("order-0")
    assert len(lru) == 3 and "order-0" in lru and lru.evicted == 10_000 - 3


def test_user_data_unknown_event_types_from_the_venue_stay_bounded():
    parser = UserDataParser("binance", {})
    for index in range(5_000):
        frame = orjson.dumps({"e": f"surprise{index}", "E": 1})
        assert parser.parse(frame) == []
    assert len(parser.unknown_events) <= MAX_UNKNOWN_EVENT_TYPES
    assert sum(parser.unknown_events.values()) == 5_000


def test_rest_error_codes_from_the_venue_are_a_bounded_counter():
    stats = RestStats()
    for code in range(-100_000, 0):
        stats.errors_by_code.add(code)
    assert len(stats.errors_by_code) <= 64 and sum(stats.errors_by_code.values()) == 100_000


def _venue() -> tuple[SimVenue, MatchingEngine, SimulatedClock]:
    clock = SimulatedClock()
    accounts = Accounts()
    engine = MatchingEngine(accounts, clock=clock)
    engine.add_instrument(Instrument("sim", SYMBOL, "BTC", "USDT", "0.01", "0.001", "5"))
    accounts.deposit("alice", "USDT", accounts.to_units("USDT", "1000000000"))
    return SimVenue("binance", engine), engine, clock


def test_simulator_trade_window_is_bounded_and_the_24h_ticker_still_counts_every_trade():
    venue, _, clock = _venue()
    trades = DAY_TRADES_KEPT + 5_000
    for index in range(trades):
        clock.advance(10_000_000)  # 100 trades a second: ~4 minutes of candles
        venue.apply_market_trade(SYMBOL, 5_000_000 + index % 7, 1000, Side.BUY if index % 2 else Side.SELL)
    state = venue._state(SYMBOL)
    assert len(state.day) <= DAY_TRADES_KEPT
    statistics = venue.ticker(SYMBOL, clock.time_ns())
    # whole minutes older than the trades kept come from candles; only the one minute the cut
    # falls into can be partly missing
    assert trades - 6_000 <= statistics.count <= trades
    assert statistics.high_price == 5_000_006 and statistics.low_price == 5_000_000


def test_simulator_keeps_a_bounded_window_of_closed_orders():
    _, engine, _ = _venue()
    for index in range(engine.order_history_limit + 2_000):
        client_order_id = f"o{index}"
        assert engine.place(
            "alice", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 4_000_000, client_order_id=client_order_id
        ).accepted
        assert engine.cancel("alice", SYMBOL, client_order_id=client_order_id).accepted
    assert engine.order_history_limit <= 20_000
    assert len(engine._closed) <= engine.order_history_limit
    assert len(engine._closed_by_client_id) <= engine.order_history_limit
    assert len(engine._orders) <= engine.order_history_limit


def test_thalex_mm_protection_products_pushed_by_the_venue_stay_bounded():
    import msgspec

    from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig

    adapter = ThalexAdapter(ThalexConfig(url="ws://127.0.0.1:9/ws/api/v2"))
    for batch in range(20):
        updates = [{"product": f"F{batch}-{index}", "remaining_amount": 1.0} for index in range(500)]
        adapter._on_mm_protection("mm_protection", msgspec.Raw(orjson.dumps(updates)), 0)
    remaining = adapter.mm_protection_remaining
    assert 0 < len(remaining) <= 256 and remaining["F19-499"] == 1.0
