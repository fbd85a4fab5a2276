"""The node's parts without sockets: book checks, connection handling, probe orders and their ledger."""

from __future__ import annotations

import pytest

from hftkit.app.node import BookMonitor, NodeConfig, OrderExerciser, OrderLedger, VenueMonitor, settle_order
from hftkit.core.types import (
    BookDelta,
    BookTicker,
    ConnectionEvent,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Trade,
)
from hftkit.metrics import LatencyHistogram, MetricsRegistry
from hftkit.venues.base import (
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
)

SYMBOL = "BTCUSDT"
INSTRUMENT = Instrument("stub", SYMBOL, "BTC", "USDT", "0.01", "0.00001", "5")


def snapshot(bids: list[tuple[int, int]], asks: list[tuple[int, int]], update_id: int = 10) -> BookDelta:
    return BookDelta(
        venue="stub", symbol=SYMBOL, bids=bids, asks=asks, last_update_id=update_id, is_snapshot=True
    )


def delta(bids: list[tuple[int, int]], asks: list[tuple[int, int]], update_id: int) -> BookDelta:
    return BookDelta(venue="stub", symbol=SYMBOL, bids=bids, asks=asks, last_update_id=update_id)


def ticker(bid: int, ask: int, update_id: int) -> BookTicker:
    return BookTicker(
        venue="stub", symbol=SYMBOL, update_id=update_id, bid_price=bid, bid_size=1, ask_price=ask, ask_size=1
    )


# books -------------------------------------------------------------------------------------------


def test_a_delta_before_any_snapshot_is_refused_and_a_snapshot_syncs_the_book() -> None:
    state = BookMonitor(INSTRUMENT)
    assert not state.apply(delta([(100, 1)], [], 5))
    assert not state.synced and state.book.best_bid() is None
    assert state.apply(snapshot([(100, 2)], [(101, 3)]))
    assert state.synced and state.last_update_id == 10
    assert state.apply(delta([(100, 0), (99, 4)], [], 11))
    assert state.book.best_bid() == (99, 4) and state.deltas == 1


def test_tickers_are_checked_at_equal_update_ids_now_or_when_the_book_catches_up() -> None:
    state = BookMonitor(INSTRUMENT)
    state.apply(snapshot([(100, 2)], [(101, 3)]))
    state.check_ticker(ticker(100, 101, 10))  # same id: compared now
    state.check_ticker(ticker(99, 101, 12))  # ahead: kept until the book reaches 12
    state.check_ticker(ticker(50, 60, 9))  # behind: never comparable, ignored
    assert (state.tickers_checked, state.ticker_mismatches) == (1, 0)
    state.apply(delta([(100, 0), (99, 1)], [], 12))
    state.after_delta()
    assert (state.tickers_checked, state.ticker_mismatches) == (2, 0)
    state.check_ticker(ticker(98, 101, 12))  # the venue says otherwise: a mismatch is counted
    assert (state.tickers_checked, state.ticker_mismatches) == (3, 1)


def test_tickers_without_sequence_numbers_are_not_compared() -> None:
    state = BookMonitor(INSTRUMENT)
    state.apply(snapshot([(100, 2)], [(101, 3)]))
    state.check_ticker(ticker(1, 2, -1))
    assert state.tickers_checked == 0 and not state.pending_tickers


def test_crossed_books_and_lost_syncs_are_counted() -> None:
    state = BookMonitor(INSTRUMENT)
    state.apply(snapshot([(100, 2)], [(101, 3)]))
    state.apply(delta([(102, 1)], [], 11))
    assert state.crossed == 1
    state.lose_sync()
    state.lose_sync()  # already lost: one resync
    assert state.resyncs == 1 and not state.synced
    assert not state.apply(delta([(99, 1)], [], 12))


class StubAdapter:
    """Answers like a venue, scripted per call; no sockets."""

    def __init__(self, place_outcomes: list[OrderStatus | Exception] | None = None) -> None:
        self.name = "stub"
        self.instruments = {SYMBOL: INSTRUMENT}
        self.place_outcomes = list(place_outcomes or [])
        self.orders: dict[str, OrderUpdate] = {}  # what the venue holds, by client order id
        self.requests: list[OrderRequest] = []
        self.cancels: list[str] = []

    def _update(self, request: OrderRequest, status: OrderStatus) -> OrderUpdate:
        return OrderUpdate(
            venue=self.name,
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            venue_order_id="1",
            status=status,
            side=request.side,
            price=request.price,
            quantity=request.quantity,
            filled=request.quantity if status is OrderStatus.FILLED else 0,
        )

    async def place_order(self, request: OrderRequest) -> OrderUpdate:
        self.requests.append(request)
        outcome = self.place_outcomes.pop(0) if self.place_outcomes else OrderStatus.NEW
        if isinstance(outcome, OrderOutcomeUnknownError):
            if outcome.client_order_id == "reached":  # the request got there, the answer did not
                self.orders[request.client_order_id] = self._update(request, OrderStatus.NEW)
            raise outcome
        if isinstance(outcome, Exception):
            raise outcome
        update = self.orders[request.client_order_id] = self._update(request, outcome)
        return update

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderUpdate:
        self.cancels.append(client_order_id)
        order = self.orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            raise OrderNotFoundError("unknown order", venue=self.name)
        cancelled = self.orders[client_order_id] = OrderUpdate(
            **{**{f: getattr(order, f) for f in order.__struct_fields__}, "status": OrderStatus.CANCELED}
        )
        return cancelled

    async def query_order(self, symbol: str, client_order_id: str) -> OrderUpdate | None:
        return self.orders.get(client_order_id)

    def add_listener(self, listener: object) -> None:
        return None


def exerciser_for(adapter: StubAdapter, synced: bool = True) -> tuple[OrderExerciser, OrderLedger]:
    monitor = VenueMonitor(adapter, [SYMBOL], MetricsRegistry())  # type: ignore[arg-type]
    if synced:
        monitor(snapshot([(6_000_000, 100)], [(6_000_100, 100)]))
    ledger = OrderLedger()
    config = NodeConfig(order_rest_s=0, passive_offset_bps=100, probe_notional="20")
    exerciser = OrderExerciser(
        adapter,  # type: ignore[arg-type]
        monitor,
        SYMBOL,
        ledger,
        LatencyHistogram(),
        LatencyHistogram(),
        config,
        prefix="node-t-",
    )
    return exerciser, ledger


async def test_a_probe_is_placed_passively_post_only_then_cancelled_and_timed() -> None:
    adapter = StubAdapter()
    exerciser, ledger = exerciser_for(adapter)
    await exerciser.cycle(Side.BUY)
    await exerciser.cycle(Side.SELL)
    buy, sell = adapter.requests
    assert buy.price == 6_000_000 * 9_900 // 10_000 and sell.price == 6_000_100 * 10_100 // 10_000
    for request in (buy, sell):
        assert request.order_type is OrderType.LIMIT_MAKER
        assert INSTRUMENT.meets_minimums(request.price, request.quantity)
        assert INSTRUMENT.notional(request.price, request.quantity) >= 20
    assert adapter.cancels == [buy.client_order_id, sell.client_order_id]
    assert (ledger.sent, ledger.acknowledged, ledger.cancelled) == (2, 2, 2) and ledger.accounted
    assert exerciser.place_latency.count == 2 and exerciser.cancel_latency.count == 2


async def test_no_probe_without_a_synced_two_sided_book() -> None:
    adapter = StubAdapter()
    exerciser, ledger = exerciser_for(adapter, synced=False)
    await exerciser.cycle(Side.BUY)
    assert adapter.requests == [] and ledger.skipped == 1 and ledger.sent == 0


async def test_a_rejected_probe_is_accounted_as_rejected() -> None:
    adapter = StubAdapter([OrderRejectedError("would cross", venue="stub")])
    exerciser, ledger = exerciser_for(adapter)
    await exerciser.cycle(Side.BUY)
    assert (ledger.sent, ledger.rejected, ledger.acknowledged) == (1, 1, 0)
    assert ledger.accounted and adapter.cancels == [] and ledger.incidents


async def test_an_unknown_outcome_is_never_resent_and_settled_by_query() -> None:
    adapter = StubAdapter(
        [
            OrderOutcomeUnknownError("timeout", venue="stub", client_order_id="lost"),
            OrderOutcomeUnknownError("timeout", venue="stub", client_order_id="reached"),
        ]
    )
    exerciser, ledger = exerciser_for(adapter)
    await exerciser.cycle(Side.BUY)
    await exerciser.cycle(Side.SELL)
    assert len(adapter.requests) == 2 and len(ledger.unknown) == 2 and not ledger.accounted
    for client_order_id, symbol in list(ledger.unknown.items()):
        await settle_order(adapter, symbol, client_order_id, ledger)  # type: ignore[arg-type]
    assert len(adapter.requests) == 2  # nothing was sent again
    assert (ledger.never_created, ledger.cancelled) == (1, 1) and ledger.accounted
    reached = adapter.requests[1].client_order_id
    assert adapter.cancels == [reached] and adapter.orders[reached].status is OrderStatus.CANCELED


async def test_an_order_filled_before_its_cancel_is_accounted_as_filled() -> None:
    adapter = StubAdapter()
    exerciser, ledger = exerciser_for(adapter)

    async def fill_then_cancel(symbol: str, client_order_id: str) -> OrderUpdate:
        order = adapter.orders[client_order_id]
        adapter.orders[client_order_id] = OrderUpdate(
            **{
                **{f: getattr(order, f) for f in order.__struct_fields__},
                "status": OrderStatus.FILLED,
                "filled": order.quantity,
            }
        )
        raise OrderNotFoundError("already filled", venue="stub")

    adapter.cancel_order = fill_then_cancel  # type: ignore[method-assign]
    await exerciser.cycle(Side.BUY)
    assert (ledger.filled, ledger.cancelled) == (1, 0) and ledger.accounted


def test_the_ledger_is_accounted_only_when_every_order_closed_once() -> None:
    ledger = OrderLedger(sent=3)
    ledger.open.update({"a": SYMBOL, "b": SYMBOL})
    ledger.unknown["c"] = SYMBOL
    ledger.close("b", OrderStatus.CANCELED)
    ledger.close("b", OrderStatus.FILLED)  # a late second word on a closed order changes nothing
    assert (ledger.cancelled, ledger.filled) == (1, 0) and not ledger.accounted
    ledger.close("a", OrderStatus.EXPIRED)
    assert not ledger.accounted  # "c" is still unknown
    ledger.close("c", OrderStatus.FILLED)
    assert ledger.accounted and (ledger.cancelled, ledger.filled) == (2, 1)


# the monitor as a listener -------------------------------------------------------------------------


def test_the_monitor_counts_reconnects_per_stream_and_resyncs_only_the_named_book() -> None:
    adapter = StubAdapter()
    adapter.instruments = {SYMBOL: INSTRUMENT, "ETHUSDT": INSTRUMENT}
    monitor = VenueMonitor(adapter, [SYMBOL, "ETHUSDT"], MetricsRegistry())  # type: ignore[arg-type]
    for symbol in (SYMBOL, "ETHUSDT"):
        monitor(BookDelta(venue="stub", symbol=symbol, bids=[(1, 1)], asks=[(2, 1)], is_snapshot=True))
    for stream in ("/stream", "user", "/stream"):
        monitor(ConnectionEvent(venue="stub", stream=stream, state="connected"))
    assert monitor.reconnects == 1
    monitor(ConnectionEvent(venue="stub", stream="ethusdt@depth", state="resyncing"))
    assert monitor.books[SYMBOL].synced and not monitor.books["ETHUSDT"].synced and not monitor.synced
    monitor(Trade(venue="stub", symbol=SYMBOL, trade_id=1, price=1, size=1, aggressor=Side.BUY, receive_ns=1))
    monitor(Trade(venue="stub", symbol="XRPUSDT", trade_id=2, price=1, size=1, aggressor=Side.BUY))
    assert monitor.books[SYMBOL].trades == 1 and monitor.ignored == 1 and monitor.decode.count == 1
    monitor.closed = True
    monitor(ConnectionEvent(venue="stub", stream="btcusdt@depth", state="disconnected"))
    assert monitor.books[SYMBOL].synced  # a closed monitor keeps its final figures


@pytest.mark.parametrize(
    "changes",
    [
        {"seconds": 0},
        {"speed": -1},
        {"order_rest_s": -0.1},
        {"passive_offset_bps": 0},
        {"compare_levels": 0},
        {"probe_notional": "0"},
        {"binance_symbols": (), "thalex_symbols": ()},
    ],
)
def test_bad_node_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NodeConfig(**changes)  # type: ignore[arg-type]
