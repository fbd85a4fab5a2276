"""Market makers on two FakeVenues with a cross-venue hedger: fills, a hedge, a kill-switch trip
(orders cancelled, trading blocked) and recovery after the reset, all within a bounded time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from hftkit.core.types import Instrument, Side
from hftkit.strategies import CrossVenueHedger, HedgerConfig, MarketMaker, MarketMakerConfig
from hftkit.testing import FakeVenue, RequestKind
from hftkit.trading.engine import TradingEngine
from hftkit.trading.execution import ExecutionConfig

SYMBOL = "BTCUSDT"


def fake(name: str, best_bid: int) -> FakeVenue:
    venue = FakeVenue(name, [Instrument(name, SYMBOL, "BTC", "USDT", "0.01", "0.001")])
    venue.set_book(
        SYMBOL,
        [(best_bid - offset, 200) for offset in range(0, 100, 10)],
        [(best_bid + 10 + offset, 200) for offset in range(0, 100, 10)],
    )
    return venue


def maker(venue: str) -> MarketMaker:
    return MarketMaker(
        MarketMakerConfig(
            venue=venue,
            symbol=SYMBOL,
            size_per_level=5,
            max_position=60,
            gamma=0.5,
            kappa=20.0,
            levels=2,
            initial_volatility=0.5,
            inventory_group="BTC",
        ),
        name=f"maker_{venue}",
    )


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_market_making_hedging_kill_switch_and_recovery() -> None:
    a, b = fake("a", 5_000_000), fake("b", 5_000_003)
    hedger = CrossVenueHedger(
        HedgerConfig(
            group="BTC",
            hedge_on=(("a", SYMBOL), ("b", SYMBOL)),
            watch=(("a", SYMBOL), ("b", SYMBOL)),
            threshold=Decimal("0.004"),
            cooldown_s=0.01,
            check_interval_s=0.05,
            slippage_bps=20.0,
        )
    )
    makers = [maker("a"), maker("b")]
    manager = TradingEngine.build(
        [a, b], [*makers, hedger], execution=ExecutionConfig(latency_budget_us=None)
    )
    async with asyncio.timeout(10):
        await manager.start()
        await manager.wait_idle()
        assert len(a.open_order_ids) == 4 and len(b.open_order_ids) == 4  # 2 levels a side each

        # the market trades down through a's bids: the maker there gets long
        resting_bids = [o for o in manager.tracker.open_orders("a", SYMBOL) if o.side is Side.BUY]
        lowest = min(order.price for order in resting_bids)
        a.set_book(SYMBOL, [(lowest - 50, 200)], [(lowest - 1, 200), (lowest + 100, 200)])
        assert sum(fill.quantity for fill in a.fills) == 10
        assert manager.position("a", SYMBOL) == 10

        # the hedger flattens the aggregate through the router (b's bids are the best now)
        await eventually(lambda: abs(manager.aggregate_position("BTC")) <= Decimal("0.004"))
        await manager.wait_idle()
        assert hedger.hedges_started >= 1 and hedger.reports
        assert manager.position("b", SYMBOL) < 0
        assert hedger.last_routing is not None and "b" in {x.venue for x in hedger.last_routing.allocations}
        assert manager.counters["strategy_errors"] == 0 and manager.counters["event_errors"] == 0

        # kill switch: every order cancelled, nothing new placed while tripped
        manager.risk.trip(detail="integration test")
        await manager.kill_switch.flush()
        await manager.wait_idle()
        assert a.open_order_ids == [] and b.open_order_ids == []
        sent_before = len([kind for kind, _ in a.requests + b.requests if kind is RequestKind.PLACE])
        a.update_book(SYMBOL, bids=[(lowest - 40, 5)])
        b.update_book(SYMBOL, bids=[(5_000_004, 5)])
        await asyncio.sleep(0.06)  # a hedge check timer fires while tripped
        await manager.wait_idle()
        sent_after = len([kind for kind, _ in a.requests + b.requests if kind is RequestKind.PLACE])
        assert sent_after == sent_before and a.open_order_ids == [] and b.open_order_ids == []
        assert manager.counters["decisions_blocked"] >= 1

        # recovery after the reset: both makers quote again on their next book event
        manager.reset_kill_switch("integration test over")
        a.update_book(SYMBOL, bids=[(lowest - 40, 6)])
        b.update_book(SYMBOL, bids=[(5_000_004, 6)])
        await manager.wait_idle()
        assert a.open_order_ids and b.open_order_ids

        await manager.stop("end of test")
    assert a.open_order_ids == [] and b.open_order_ids == []
    assert manager.tracker.open_orders() == []
    assert manager.event_to_decision["maker_a"].count > 0
    assert manager.gateway.decision_to_send.count > 0
