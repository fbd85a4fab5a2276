"""The simulated venue adapter: the simulator's matching (queue position, partial fills, fees,
the venue's own refusals) behind the VenueAdapter protocol, with latency on a simulated clock."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest

from hftkit.backtest.latency import LatencyModel
from hftkit.backtest.loop import SimulatedLoop
from hftkit.backtest.rate import BucketRate, OrderRate, WindowRate
from hftkit.backtest.venue import SimulatedVenue
from hftkit.core.clock import Clock
from hftkit.core.types import BookDelta, Fill, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from hftkit.sim.config import BINANCE_USDM, CATALOGUE
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.venues.base import (
    AmendRequest,
    OrderNotFoundError,
    OrderRejectedError,
    OrderRequest,
    VenueCapabilities,
)
from hftkit.venues.binance.endpoints import Market

CAPABILITIES = VenueCapabilities(
    amend=False,
    amend_keeps_priority_on_size_down=False,
    native_mass_quote=False,
    cancel_on_disconnect=False,
    post_only_reprices=False,
    positions=True,
    max_batch_orders=5,
)
BID, ASK = 618_000, 618_001  # 61800.0 / 61800.1 in ticks of 0.1


def venue(
    latency: LatencyModel | None = None, order_rate: Callable[[Clock], OrderRate] | None = None
) -> tuple[SimulatedVenue, SimulatedLoop, list[object]]:
    loop = SimulatedLoop()
    instrument = CATALOGUE[BINANCE_USDM]["BTCUSDT"].instrument("usdm")
    simulated = SimulatedVenue(
        "usdm",
        [instrument],
        scheduler=loop,
        capabilities=CAPABILITIES,
        latency=latency,
        fees=FeeSchedule.from_basis_points("2", "5"),
        balances={"USDT": "100000"},
        order_rate=order_rate,
    )
    events: list[object] = []
    simulated.add_listener(events.append)
    simulated.seed("BTCUSDT", [(BID, 5), (BID - 1, 10)], [(ASK, 5), (ASK + 1, 10)])
    loop.run_until_complete(simulated.subscribe(["BTCUSDT"]))
    return simulated, loop, events


def order(
    client_order_id: str, side: Side, price: int, lots: int, kind: OrderType = OrderType.LIMIT
) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id,
        symbol="BTCUSDT",
        side=side,
        quantity=lots,
        price=price,
        order_type=kind,
    )


def test_a_resting_order_fills_only_after_the_queue_ahead_of_it_trades():
    simulated, loop, events = venue()
    ack = loop.run_until_complete(simulated.place_order(order("a", Side.BUY, BID, 3)))
    assert ack.status is OrderStatus.NEW and ack.venue_order_id
    assert simulated.book("BTCUSDT").best_bid() == (BID, 8)  # the venue shows our order
    simulated.trade("BTCUSDT", BID, 5, Side.SELL)  # exactly the 5 lots queued ahead of us
    assert not [event for event in events if isinstance(event, Fill)]
    simulated.trade("BTCUSDT", BID, 2, Side.SELL)  # now ours: a partial fill of 2
    fills = [event for event in events if isinstance(event, Fill)]
    assert [(fill.price, fill.quantity, fill.is_maker, fill.client_order_id) for fill in fills] == [
        (BID, 2, True, "a")
    ]
    assert fills[0].fee == pytest.approx(61800.0 * 0.002 * 0.0002)  # maker 2 bp of the notional
    updates = [event for event in events if isinstance(event, OrderUpdate) and event.client_order_id == "a"]
    assert updates[-1].status is OrderStatus.PARTIALLY_FILLED and updates[-1].filled == 2


def test_a_taker_order_walks_the_book_and_pays_the_taker_fee():
    simulated, loop, events = venue()
    answer = loop.run_until_complete(simulated.place_order(order("t", Side.BUY, ASK + 1, 8)))
    assert answer.status is OrderStatus.FILLED and answer.filled == 8
    fills = [event for event in events if isinstance(event, Fill)]
    assert [(fill.price, fill.quantity, fill.is_maker) for fill in fills] == [
        (ASK, 5, False),
        (ASK + 1, 3, False),
    ]
    assert fills[0].fee == pytest.approx(61800.1 * 0.005 * 0.0005)
    positions = loop.run_until_complete(simulated.positions())
    assert [(position.symbol, position.quantity) for position in positions] == [("BTCUSDT", 8)]


def test_refusals_carry_the_venue_s_own_error_codes():
    simulated, loop, _ = venue()
    with pytest.raises(OrderRejectedError) as crossed:
        loop.run_until_complete(simulated.place_order(order("p", Side.BUY, ASK, 2, OrderType.LIMIT_MAKER)))
    assert crossed.value.code == -2010
    with pytest.raises(OrderRejectedError) as small:
        loop.run_until_complete(simulated.place_order(order("s", Side.BUY, BID, 1)))  # 61.8 USDT < 100
    assert small.value.code == -1013 and "NOTIONAL" in str(small.value)
    with pytest.raises(OrderNotFoundError) as unknown:
        loop.run_until_complete(simulated.cancel_order("BTCUSDT", "nope"))
    assert unknown.value.code == -2011


def test_latency_delays_arrival_and_answer_on_the_simulated_clock():
    model = LatencyModel.constant(market_data_ns=100_000, order_entry_ns=1_000_000, ack_ns=2_000_000)
    simulated, loop, events = venue(model)
    loop.advance_to(1_000_000)  # the seed's book reaches the strategy 100 us after the venue
    started = loop.now_ns()
    seen_at: list[int] = []

    async def place() -> OrderUpdate:
        task = asyncio.ensure_future(simulated.place_order(order("l", Side.BUY, BID, 2)))
        await asyncio.sleep(0.0005)
        seen_at.append(len(simulated.matching.open_orders("simulated")))  # not at the venue yet
        await asyncio.sleep(0.001)
        seen_at.append(len(simulated.matching.open_orders("simulated")))  # arrived at +1 ms
        return await task

    answer = loop.run_until_complete(place())
    assert seen_at == [0, 1]
    assert answer.status is OrderStatus.NEW
    assert loop.now_ns() - started == 3_000_000  # entry 1 ms + ack 2 ms
    deltas = [event for event in events if isinstance(event, BookDelta)]
    assert deltas and all(delta.receive_ns >= 100_000 for delta in deltas)


def test_ioc_remainder_expires_and_cancel_all_reports_every_order():
    simulated, loop, _ = venue()
    ioc = OrderRequest(
        client_order_id="i",
        symbol="BTCUSDT",
        side=Side.BUY,
        quantity=20,
        price=ASK,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.IOC,
    )
    answer = loop.run_until_complete(simulated.place_order(ioc))
    assert answer.status is OrderStatus.EXPIRED and answer.filled == 5
    for index in range(3):
        loop.run_until_complete(simulated.place_order(order(f"r{index}", Side.SELL, ASK + 5 + index, 2)))
    assert loop.run_until_complete(simulated.cancel_all("BTCUSDT")) == 3
    assert loop.run_until_complete(simulated.open_orders("BTCUSDT")) == []
    assert simulated.matching.audit() == []


def test_a_batched_depth_stream_delivers_one_merged_diff_per_window():
    loop = SimulatedLoop()
    instrument = CATALOGUE[BINANCE_USDM]["BTCUSDT"].instrument("usdm")
    simulated = SimulatedVenue(
        "usdm", [instrument], scheduler=loop, capabilities=CAPABILITIES, depth_interval_ns=100_000_000
    )
    deltas: list[BookDelta] = []
    simulated.add_listener(lambda event: deltas.append(event) if isinstance(event, BookDelta) else None)
    loop.run_until_complete(simulated.subscribe(["BTCUSDT"]))
    simulated.seed("BTCUSDT", [(BID, 5)], [(ASK, 5)])
    for moment, size in ((10, 6), (20, 7), (50, 9)):
        loop.advance_to(moment * 1_000_000)
        simulated.depth("BTCUSDT", [(BID, size)], [(ASK + 2, size)])
    assert not deltas and not simulated.book_synced("BTCUSDT")
    loop.advance_to(100_000_000)
    assert len(deltas) == 1  # the seed and three diffs, merged: last size per level wins
    assert deltas[0].bids == [(BID, 9)] and deltas[0].asks == [(ASK, 5), (ASK + 2, 9)]
    assert simulated.book("BTCUSDT").best_bid() == (BID, 9)


@pytest.mark.parametrize("entry_ns, ack_ns", [(0, 0), (1_000_000, 2_000_000)])
def test_orders_amends_and_cancels_written_now_arrive_and_answer_as_the_awaited_ones(
    entry_ns: int, ack_ns: int
):
    """The live WebSocket adapters' path (``place_order_now``/``cancel_order_now``): the answer
    is told later, never inside the call (even with no latency), after the same entry + ack
    delay, and says what the awaited request returns or raises."""
    model = LatencyModel.constant(order_entry_ns=entry_ns, ack_ns=ack_ns)
    simulated, loop, events = venue(model)
    answers: list[tuple[int, OrderUpdate | Exception]] = []

    def told(answer: OrderUpdate | Exception) -> None:
        answers.append((loop.now_ns(), answer))

    def settle() -> None:
        loop.advance_to(loop.now_ns() + entry_ns + ack_ns)

    started = loop.now_ns()
    assert simulated.place_order_now(order("n", Side.BUY, BID, 2), told)
    assert answers == [] and not simulated.matching.open_orders("simulated")  # not there yet
    settle()
    assert [(at - started, update.status) for at, update in answers] == [(entry_ns + ack_ns, OrderStatus.NEW)]
    assert any(isinstance(event, OrderUpdate) and event.client_order_id == "n" for event in events)

    answers.clear()
    started = loop.now_ns()
    moved = AmendRequest(client_order_id="n", symbol="BTCUSDT", price=BID - 1, quantity=3)
    assert simulated.amend_order_now(moved, told)
    assert answers == []
    settle()
    assert [(at - started, update.status, update.price, update.quantity) for at, update in answers] == [
        (entry_ns + ack_ns, OrderStatus.NEW, BID - 1, 3)
    ]
    (resting,) = simulated.matching.open_orders("simulated")
    assert (resting.price, resting.quantity) == (BID - 1, 3)

    answers.clear()
    started = loop.now_ns()
    assert simulated.cancel_order_now("BTCUSDT", "n", told)
    assert answers == []
    settle()
    assert [(at - started, update.status) for at, update in answers] == [
        (entry_ns + ack_ns, OrderStatus.CANCELED)
    ]

    answers.clear()
    assert simulated.cancel_order_now("BTCUSDT", "n", told)  # gone: the venue's own not-found
    settle()
    assert len(answers) == 1 and isinstance(answers[0][1], OrderNotFoundError)
    assert answers[0][1].code == -2011
    assert simulated.place_order_now(order("m", Side.BUY, ASK, 2, OrderType.LIMIT_MAKER), told)
    settle()
    assert isinstance(answers[-1][1], OrderRejectedError) and answers[-1][1].code == -2010
    with pytest.raises(OrderRejectedError):  # refused locally: nothing is sent
        simulated.place_order_now(
            OrderRequest(client_order_id="x", symbol="ETHUSDT", side=Side.BUY, quantity=1, price=1), told
        )
    assert simulated.requests == 5


def test_the_live_adapter_s_message_budget_holds_on_the_simulated_clock():
    """Thalex's session bucket (here 5 messages a second): an order written now declines once it
    is spent, as the live adapter's does, and an awaited one waits for a token in simulated time."""
    simulated, loop, _ = venue(order_rate=functools.partial(BucketRate, rate=5))
    told: list[object] = []
    assert simulated.order_budget() == 5
    for index in range(5):
        assert simulated.place_order_now(order(f"n{index}", Side.BUY, BID - 10 - index, 2), told.append)
    assert simulated.order_budget() == 0
    assert not simulated.place_order_now(order("late", Side.BUY, BID - 20, 2), told.append)
    assert not simulated.cancel_order_now("BTCUSDT", "n0", told.append)
    loop.advance_to(loop.now_ns())  # what was written arrives (no latency: this instant)
    assert simulated.requests == 5 and len(told) == 5  # the declined ones were never sent
    assert simulated.order_budget_wait_s() == pytest.approx(0.2)
    started = loop.now_ns()
    answer = loop.run_until_complete(simulated.place_order(order("waited", Side.BUY, BID - 20, 2)))
    assert answer.status is OrderStatus.NEW
    assert loop.now_ns() - started == 200_000_000  # one token at 5 a second


def test_binance_windows_count_new_orders_and_keep_a_reserve_for_cancels():
    """USD-M: 300 new orders a 10 s window, a tenth of it kept for cancels (the REST client's)."""
    simulated, _, _ = venue(order_rate=functools.partial(WindowRate, Market.USDM))
    assert simulated.order_budget() == 270
    rate = simulated.order_rate
    assert isinstance(rate, WindowRate)
    for _ in range(270):
        assert rate.take_now(cancel=False)
    assert simulated.order_budget() == 0
    assert not simulated.place_order_now(order("over", Side.BUY, BID - 10, 2), lambda answer: None)
    assert rate.take_now(cancel=True)  # a cancel costs no order count, and has its reserve
    assert 0.0 < simulated.order_budget_wait_s() <= 10.0
