"""The market maker on two simulated venues, over real loopback sockets, for a bounded time.

One ``Simulator`` replays the recorded USD-M BTCUSDT market (ten times faster) into its
Binance USD-M venue and, folded to 1 USD buckets, into its Thalex BTC-PERPETUAL. The real
adapters connect to its protocol servers. A ``TradingEngine`` runs the Avellaneda-Stoikov
``MarketMaker`` on Thalex and a ``CrossVenueHedger`` that flattens the BTC exposure on Binance
through the router and the execution engine. The test follows one session end to end: quotes
rest at the venue, they fill, the hedge executes, positions agree with the venue's accounts, a
stalled Thalex feed makes the book stale and trips the kill switch (every order cancelled at
the venue, new ones blocked while the feed is back), and quoting resumes after the reset.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from two_venue_node import (
    FUTURE,
    HEDGE_VENUE,
    MAKER_VENUE,
    MAX_BOOK_AGE_MS,
    PERPETUAL,
    build_node,
    eventually,
    resting,
    sim_position,
    simulator_config,
    tracked,
    watchdog,
)

from hftkit.core.types import Fill, Side
from hftkit.sim.config import BINANCE_USDM, THALEX
from hftkit.sim.runner import Simulator
from hftkit.trading.risk import TripSource

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


async def test_market_maker_fills_hedges_trips_the_kill_switch_and_recovers() -> None:
    async with asyncio.timeout(75), Simulator(simulator_config(seed=7)) as sim:
        await sim.wait_seeded()
        node = build_node(sim)
        account, thalex, hedger, manager = node.account, node.thalex, node.hedger, node.manager
        maker_fills: list[Fill] = []
        thalex.add_listener(lambda event: maker_fills.append(event) if isinstance(event, Fill) else None)
        await manager.start()
        sweeper = asyncio.create_task(watchdog(manager))
        try:
            # 1. the maker's quotes rest at the venue, exactly as the tracker believes
            await eventually(
                lambda: (
                    bool(tracked(manager, MAKER_VENUE, PERPETUAL))
                    and resting(sim, THALEX, account) == tracked(manager, MAKER_VENUE, PERPETUAL)
                ),
                10,
                "the maker's quotes resting at the simulated Thalex",
            )
            sides = {side for side, _ in resting(sim, THALEX, account)}
            assert sides == {Side.BUY, Side.SELL}

            # 2. the replayed flow fills them and the hedger flattens on Binance through the router
            await eventually(
                lambda: any(report.filled > 0 for report in hedger.reports),
                25,
                "a maker fill followed by an executed hedge",
            )
            assert maker_fills and all(fill.symbol == PERPETUAL for fill in maker_fills)
            hedge = next(report for report in hedger.reports if report.filled > 0)
            assert hedge.venue == HEDGE_VENUE and hedge.symbol == FUTURE and hedge.sent
            assert hedger.last_routing is not None
            assert {allocation.venue for allocation in hedger.last_routing.allocations} == {HEDGE_VENUE}
            assert not manager.risk.tripped, manager.risk.audit

            # 3. the Thalex feed stalls: its book goes stale and the sweep trips the kill switch
            sim.set_faults(THALEX, {"stall_every_s": 0.001, "stall_duration_s": 60.0})
            await eventually(lambda: manager.risk.tripped, MAX_BOOK_AGE_MS / 1000 + 5, "a stale-book trip")
            trip = next(event for event in manager.risk.audit if event.first and event.source is not None)
            assert trip.source is TripSource.BOOK and PERPETUAL in trip.detail
            await manager.kill_switch.flush()
            await manager.wait_idle()
            assert resting(sim, THALEX, account) == Counter()
            assert resting(sim, BINANCE_USDM, account) == Counter()
            assert manager.tracker.open_orders() == []

            # 4. the feed is back, the maker decides again, and nothing reaches the venue
            blocked_before = manager.counters["decisions_blocked"]
            sent_before = manager.gateway.decision_to_send.count
            sim.set_faults(THALEX, "none")
            await eventually(
                lambda: manager.counters["decisions_blocked"] > blocked_before + 3,
                5,
                "maker decisions blocked by the tripped kill switch",
            )
            assert resting(sim, THALEX, account) == Counter()
            assert manager.tracker.open_orders() == []
            assert manager.gateway.decision_to_send.count == sent_before

            # 5. positions in the tracker are the venue's positions, on both venues (after the stall:
            # it held Thalex's private notifications too, so a fill just before the trip arrives now)
            await eventually(
                lambda: all(
                    manager.position(venue, symbol) == sim_position(sim, sim_venue, account, symbol)
                    for venue, sim_venue, symbol in (
                        (MAKER_VENUE, THALEX, PERPETUAL),
                        (HEDGE_VENUE, BINANCE_USDM, FUTURE),
                    )
                ),
                5,
                "tracker positions equal to the simulator's accounts",
            )
            assert sim_position(sim, BINANCE_USDM, account, FUTURE) != 0  # the hedge really traded

            # 6. after the reset quoting resumes at the venue
            manager.reset_kill_switch("integration test: feed healthy again")
            await eventually(
                lambda: bool(resting(sim, THALEX, account)),
                5,
                "quotes resting again after the reset",
            )
            assert manager.counters["strategy_errors"] == 0
            assert manager.counters["event_errors"] == 0
        finally:
            sweeper.cancel()
            await manager.stop("end of test")
        assert resting(sim, THALEX, account) == Counter()
        assert resting(sim, BINANCE_USDM, account) == Counter()
        assert manager.tracker.open_orders() == []
