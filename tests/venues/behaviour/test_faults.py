"""Every adapter through a few seconds of a hostile venue, then held against the simulator's truth.

While the simulator drops connections, stalls streams, answers 5xx and 429 (Thalex: throttle),
delays acks, never answers some requests and (Binance) drops, duplicates and reorders depth
updates, a loop places, cancels and sometimes crosses orders through the adapter. Afterwards,
with the faults off and the adapter resynced: its book is the simulator's book, every order
the simulator holds is known with the same state, nothing was placed twice, every unknown
outcome is settled, and what the adapter counted matches what the simulator injected.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from cases import CASES, VenueCase
from suite import WAIT_S, Harness, simulator_for, wait_until

from hftkit.core.errors import HftkitError
from hftkit.core.types import OrderStatus, OrderUpdate, Side
from hftkit.sim.engine.faults import FaultInjector
from hftkit.venues.base import OrderOutcomeUnknownError, OrderRequest

FAULT_WINDOW_S = 4.0
MAX_FAULT_WINDOW_S = 3 * FAULT_WINDOW_S  # a run that drew too few faults by chance trades on
DISCONNECT_EVERY_S = 1.5
ACTION_INTERVAL_S = 0.03
MAX_RESTING = 4

HOSTILE = {
    "request_latency_s": 0.001,
    "request_jitter_s": 0.004,
    "http_error_probability": 0.06,
    "request_timeout_probability": 0.02,
    "request_timeout_s": 1.5,  # beyond the adapters' 1 s order timeout: an unknown outcome
    "rate_limit_probability": 0.01,
    "rate_limit_storm_s": 0.3,
    "stream_jitter_s": 0.003,
    "malformed_frame_probability": 0.01,
    "depth_drop_probability": 0.05,
    "depth_duplicate_probability": 0.05,
    "depth_reorder_probability": 0.05,
    "disconnect_every_s": DISCONNECT_EVERY_S,
    "stall_every_s": 1.1,
    "stall_duration_s": 0.25,
    "ack_delay_s": 0.15,
    "ack_delay_probability": 0.1,
}


class Beliefs:
    """What the adapter told us about each order: call results and events; a closed order stays closed."""

    def __init__(self) -> None:
        self.orders: dict[str, OrderUpdate] = {}

    def __call__(self, event: object) -> None:
        if isinstance(event, OrderUpdate):
            self.learn(event)

    def learn(self, update: OrderUpdate) -> None:
        known = self.orders.get(update.client_order_id)
        if update.status is OrderStatus.UNKNOWN:
            return
        if known is not None and known.status.is_terminal and not update.status.is_terminal:
            return  # a late answer after the push that closed it
        if known is not None and not update.status.is_terminal and update.filled < known.filled:
            return
        self.orders[update.client_order_id] = update


def drew_every_fault(outcomes: Counter[str], injected: dict[str, int]) -> bool:
    """The run exercised what the test asserts on: trades went through, connections dropped, 5xx answered."""
    return outcomes["ok"] >= 10 and injected["disconnect"] >= 2 and injected["http_error"] >= 1


async def trade_through_faults(
    harness: Harness, beliefs: Beliefs, injector: FaultInjector, seed: int
) -> Counter[str]:
    """Place, cancel and sometimes cross for the fault window; count the outcomes by kind.

    The faults are random and the number of requests depends on timing, so a run that has not yet
    drawn every fault the test checks goes on trading, up to MAX_FAULT_WINDOW_S.
    """
    adapter = harness.adapter
    chooser = random.Random(seed)
    outcomes: Counter[str] = Counter()
    resting: list[str] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        elapsed = loop.time() - start
        if elapsed >= MAX_FAULT_WINDOW_S:
            break
        if elapsed >= FAULT_WINDOW_S and drew_every_fault(outcomes, injector.snapshot()):
            break
        action = chooser.random()
        request: OrderRequest | None = None
        try:
            if action < 0.1:
                request = harness.marketable("m", Side.BUY if chooser.random() < 0.5 else Side.SELL)
                if request is None:
                    outcomes["thin_book"] += 1
                else:
                    beliefs.learn(await adapter.place_order(request))
            elif len(resting) < MAX_RESTING or action < 0.5:
                side = Side.BUY if chooser.random() < 0.5 else Side.SELL
                request = harness.resting("f", side, ticks_away=chooser.randrange(10, 40))
                resting.append(request.client_order_id)
                beliefs.learn(await adapter.place_order(request))
            else:
                target = resting.pop(0)
                beliefs.learn(await adapter.cancel_order(harness.symbol, target))
            outcomes["ok"] += 1
        except OrderOutcomeUnknownError:
            outcomes["unknown"] += 1
            if request is not None:
                harness.unknown.append(request.client_order_id)
        except HftkitError as error:  # rejects, rate limits, not ready, not found: all classified
            outcomes[type(error).__name__] += 1
        await asyncio.sleep(ACTION_INTERVAL_S)
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_adapter_recovers_from_a_hostile_venue_and_agrees_with_it(case: VenueCase) -> None:
    async with simulator_for(case, seed=23) as sim:
        harness = Harness(case, sim)
        beliefs = Beliefs()
        harness.recorder.hooks.append(beliefs)
        injector = sim.faults[case.sim_venue]
        loop = asyncio.get_running_loop()
        try:
            # every connection the adapter opens from here on is dropped after DISCONNECT_EVERY_S
            sim.set_faults(case.sim_venue, {"disconnect_every_s": DISCONNECT_EVERY_S})
            adapter = await harness.start()
            sim.set_faults(case.sim_venue, HOSTILE)
            harness.mover.start()
            outcomes = await trade_through_faults(harness, beliefs, injector, seed=5)
            sim.set_faults(case.sim_venue, "none")
            faults_off = loop.time()

            # recovery: connections opened under the faults are still dropped on schedule, so
            # wait out that schedule, then for the adapter to be reconnected, reconciled and settled
            def recovered() -> bool:
                unresolved = getattr(adapter, "unresolved", list)()
                return (
                    loop.time() > faults_off + DISCONNECT_EVERY_S + 0.1
                    and adapter.is_ready
                    and not unresolved
                    and case.reconnects(adapter) >= injector.snapshot()["disconnect"]
                )

            await wait_until(recovered, f"{case.name} to recover", timeout_s=WAIT_S + DISCONNECT_EVERY_S)
            await harness.settle_book()
            injected = injector.snapshot()

            # the fault run did what it says
            assert drew_every_fault(outcomes, injected), (outcomes, injected)

            # nothing was placed twice
            assert all(len(orders) == 1 for orders in harness.sim_orders.orders.values())
            assert not [key for key in harness.sim_orders.orders if key.startswith("venue:")]

            # every unknown outcome settled: what the venue has, the adapter knows; the rest never existed
            for client_order_id in harness.unknown:
                order = harness.sim_order(client_order_id)
                if order is None:
                    if hasattr(adapter, "unresolved"):  # Binance settles by itself, as an event
                        assert beliefs.orders[client_order_id].status is OrderStatus.REJECTED
                    assert await adapter.query_order(harness.symbol, client_order_id) is None
                else:
                    update = await adapter.query_order(harness.symbol, client_order_id)
                    assert harness.agrees_with_sim(update, order), (update, order)

            # every order the venue holds is known to the adapter, in the same state, and no other
            sim_open = harness.sim_open()
            for client_order_id, order in sim_open.items():
                assert harness.agrees_with_sim(beliefs.orders.get(client_order_id), order), client_order_id
            believed_open = {cid for cid, update in beliefs.orders.items() if update.status.is_open}
            assert believed_open == set(sim_open)
            reported = {update.client_order_id for update in await adapter.open_orders(harness.symbol)}
            assert reported == set(sim_open)
            # closed orders: the adapter's last word is the venue's final state
            for client_order_id, orders in harness.sim_orders.orders.items():
                order = orders[0]
                if not order.is_open and client_order_id in beliefs.orders:
                    assert harness.agrees_with_sim(beliefs.orders[client_order_id], order), client_order_id

            # fills reached positions (derivatives) or balances (spot)
            if case.positions:
                positions = {position.symbol: position for position in await adapter.positions()}
                held = positions[harness.symbol].quantity if harness.symbol in positions else 0
                assert held == harness.sim_position()
            else:
                for balance in await adapter.balances():
                    if balance.asset in (harness.instrument.base, harness.instrument.quote):
                        assert (balance.free, balance.locked) == harness.sim_balance(balance.asset)

            # the two sides count the same faults
            assert abs(case.reconnects(adapter) - injected["disconnect"]) <= 1
            assert case.malformed(adapter) <= injected["malformed_frame"]
            if injected["depth_dropped"] or injected["depth_reordered"]:
                assert case.book_resyncs(adapter, harness.symbol) >= 1
        finally:
            await harness.close()
