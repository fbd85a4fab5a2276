"""Chaos: the market maker + hedger node under every simulator fault profile, several seeds each.

Each run trades for a bounded time under the profile (5xx answers, timeouts, 429 storms, delayed
acks, disconnects, stalls, malformed and reordered frames), then stops under the same faults and
must leave the node's verdict true: books equal the venue's once the faults heal, every order the
node sent has a known end, nothing rests at either venue after exit, and the tracker's positions
equal the venue's accounts. The fault decisions are seeded, so a failing run names its seed.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from two_venue_node import (
    FUTURE,
    INSTRUMENTS,
    TwoVenueNode,
    build_node,
    eventually,
    resting,
    sim_position,
    simulator_config,
    watchdog,
)

from hftkit.sim.engine.faults import PROFILES
from hftkit.sim.runner import Simulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TRADE_S = 6.0  # under faults, per run
SEEDS = (11, 12)
PAUSED_SPEED = 1e-9
SPEED = 10.0


def _book_differences(node: TwoVenueNode, levels: int = 5) -> list[str]:
    """The node's books (the adapters' own, as the engine reads them) against the simulator's."""
    problems = []
    for venue, sim_venue, symbol in INSTRUMENTS:
        theirs = node.sim.venues[sim_venue].engine.depth(symbol, levels)
        expected = ([tuple(level) for level in theirs.bids], [tuple(level) for level in theirs.asks])
        book = node.manager.book(venue, symbol)
        mine = None if book is None else (book.bids(levels), book.asks(levels))
        if mine != expected:
            problems.append(f"book {venue}:{symbol}: {mine} != {expected}")
    return problems


def _diagnosis(node: TwoVenueNode) -> str:
    """What a failed resync looks like from the Binance side: sync state, REST budget and errors,
    and whether the simulator's market is still moving."""
    binance = node.binance
    sync = binance.streams.synchronizer(FUTURE) if binance.streams is not None else None
    state = (sync.state, sync.counters) if sync is not None else None
    usage = [(window.name, window.used, window.limit) for window in binance.rest.limiter.usage()]
    market = {name: driver["total_messages"] for name, driver in node.sim.status()["market"].items()}
    return f"sync {state}; rest {binance.rest.stats}; usage {usage}; market messages {market}"


async def _books_once_still(node: TwoVenueNode, attempts: int = 3) -> list[str]:
    """Let every book sync with the market moving, pause it, compare; again if one resynced meanwhile."""
    manager, sim = node.manager, node.sim
    differences: list[str] = []
    for _ in range(attempts):
        for _, sim_venue, _ in INSTRUMENTS:
            sim.set_speed(sim_venue, SPEED)
        try:
            await eventually(
                lambda: all(manager.book(venue, symbol) is not None for venue, _, symbol in INSTRUMENTS),
                10,
                "every book synced after the faults healed",
            )
        except AssertionError as failure:
            unsynced = [
                f"{venue}:{symbol}" for venue, _, symbol in INSTRUMENTS if manager.book(venue, symbol) is None
            ]
            raise AssertionError(f"{failure}: {unsynced} still resyncing; {_diagnosis(node)}") from None
        for _, sim_venue, _ in INSTRUMENTS:
            sim.set_speed(sim_venue, PAUSED_SPEED)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: not _book_differences(node), 3, "books equal")
        differences = _book_differences(node)
        if not differences:
            return []
    return differences


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_node_verdict_holds_under_faults(profile: str, seed: int) -> None:
    async with (
        asyncio.timeout(50),
        Simulator(simulator_config(seed=seed, faults=profile, speed=SPEED)) as sim,
    ):
        await sim.wait_seeded()
        node = build_node(sim)
        manager, account = node.manager, node.account
        await manager.start()
        sweeper = asyncio.create_task(watchdog(manager))
        try:
            await asyncio.sleep(TRADE_S)
            sent = manager.gateway.counters["orders_sent"]
            # the faults heal, every book resyncs and must then equal the venue's while the market
            # holds still (a Binance resync starts from the next diff: the market moves until then)
            for _, sim_venue, _ in INSTRUMENTS:
                sim.set_faults(sim_venue, "none")
            differences = await _books_once_still(node)
            assert not differences, f"books differ from the venue's after the faults healed: {differences}"
            # ... then the faults come back for the shutdown: it must be safe on a bad day too
            for _, sim_venue, _ in INSTRUMENTS:
                sim.set_faults(sim_venue, profile)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await manager.stop(f"chaos {profile} seed {seed}")
        assert sent > 0, "the node sent no order: nothing was tested"
        for _, sim_venue, _ in INSTRUMENTS:
            assert not sim.venues[sim_venue].engine.open_orders(account), (
                f"{sim_venue}: orders left resting after exit: {resting(sim, sim_venue, account)}"
            )
        unsettled = [order for order in manager.tracker.all_orders() if not order.status.is_terminal]
        assert unsettled == [], f"orders without a known end: {unsettled}"
        for venue, sim_venue, symbol in INSTRUMENTS:
            assert manager.position(venue, symbol) == sim_position(sim, sim_venue, account, symbol), (
                f"{venue}:{symbol} position differs from the venue's"
            )
