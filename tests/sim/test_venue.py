"""SimVenue publishes what a real venue would, in the order it would."""

from __future__ import annotations

from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.matching import BookUpdate, Execution, MatchingEngine, TradePrint
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimEvent, SimVenue

SYMBOL = "BTCUSDT"


def venue_with_log(engine: MatchingEngine) -> tuple[SimVenue, list[SimEvent]]:
    venue = SimVenue("binance", engine)
    log: list[SimEvent] = []
    venue.add_listener(log.append)
    return venue, log


def kinds(events: list[SimEvent]) -> list[str]:
    names = []
    for event in events:
        if isinstance(event, OrderEvent):
            names.append(f"{event.kind.value}:{event.order.client_order_id}")
        elif isinstance(event, Execution):
            names.append(f"execution:{event.order.client_order_id}")
        else:
            names.append(type(event).__name__)
    return names


def test_resting_order_publishes_acceptance_then_its_book_batch(engine):
    venue, log = venue_with_log(engine)
    result = venue.place("alice", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 6_000_000, client_order_id="a1")
    assert result.accepted
    assert kinds(log) == ["accepted:a1", "BookUpdate"]
    batch = log[-1]
    assert isinstance(batch, BookUpdate) and batch.bids == [(6_000_000, 1000)]


def test_crossing_order_publishes_executions_fills_trade_and_book(engine):
    venue, log = venue_with_log(engine)
    venue.place("alice", SYMBOL, Side.SELL, OrderType.LIMIT, 1000, 6_000_000, client_order_id="maker")
    log.clear()
    venue.place(
        "bob", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 6_000_100, TimeInForce.IOC, client_order_id="taker"
    )
    assert kinds(log) == [
        "accepted:taker",
        "execution:taker",
        "execution:maker",
        "filled:maker",
        "filled:taker",
        "TradePrint",
        "BookUpdate",
    ]
    trade = next(event for event in log if isinstance(event, TradePrint))
    assert (trade.price, trade.quantity, trade.aggressor) == (6_000_000, 1000, Side.BUY)
    assert venue.recent_trades(SYMBOL) == [trade]


def test_ioc_remainder_closes_after_its_executions(engine):
    venue, log = venue_with_log(engine)
    venue.place("alice", SYMBOL, Side.SELL, OrderType.LIMIT, 500, 6_000_000, client_order_id="maker")
    log.clear()
    venue.place(
        "bob", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 6_000_000, TimeInForce.IOC, client_order_id="ioc"
    )
    closed = [
        event for event in log if isinstance(event, OrderEvent) and event.order.client_order_id == "ioc"
    ]
    assert [(event.kind, event.status) for event in closed] == [
        (OrderEventKind.ACCEPTED, OrderStatus.NEW),
        (OrderEventKind.CLOSED, OrderStatus.EXPIRED),
    ]


def test_cancel_cancel_all_and_amend_publish_order_events(engine):
    venue, log = venue_with_log(engine)
    venue.place("alice", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 5_000_000, client_order_id="x")
    venue.place("alice", SYMBOL, Side.BUY, OrderType.LIMIT, 1000, 5_000_001, client_order_id="y")
    log.clear()
    venue.amend("alice", SYMBOL, price=5_000_000, quantity=500, client_order_id="x")
    assert kinds(log) == ["amended:x", "BookUpdate"]
    log.clear()
    venue.cancel("alice", SYMBOL, client_order_id="x")
    assert kinds(log) == ["closed:x", "BookUpdate"]
    log.clear()
    result = venue.cancel_all("alice")
    assert [order.client_order_id for order in result.orders] == ["y"]
    assert kinds(log) == ["closed:y", "BookUpdate"]
    assert venue.cancel("alice", SYMBOL, client_order_id="x").accepted is False


def test_replayed_trade_through_our_order_fills_it_and_updates_statistics(engine):
    venue, log = venue_with_log(engine)
    venue.place("alice", SYMBOL, Side.SELL, OrderType.LIMIT, 1000, 6_000_000, client_order_id="ask")
    log.clear()
    venue.apply_market_trade(SYMBOL, 6_000_100, 2000, Side.BUY)
    assert kinds(log)[:2] == ["execution:ask", "filled:ask"]
    now = engine.clock.time_ns()
    statistics = venue.ticker(SYMBOL, now)
    assert statistics.count == len(venue.recent_trades(SYMBOL)) >= 1
    assert statistics.high_price >= statistics.low_price > 0
    candles = venue.candles(SYMBOL)
    assert candles and candles[-1].trades == statistics.count


def test_a_failing_listener_is_counted_and_others_still_hear(engine):
    venue, log = venue_with_log(engine)

    def broken(event: SimEvent) -> None:
        raise RuntimeError("boom")

    venue.add_listener(broken)
    venue.apply_depth(SYMBOL, [(5_999_000, 3000)], [])
    assert venue.listener_errors == 1
    assert kinds(log) == ["BookUpdate"]
    venue.remove_listener(broken)
    venue.apply_depth(SYMBOL, [(5_999_000, 0)], [])
    assert venue.listener_errors == 1
