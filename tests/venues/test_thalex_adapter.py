"""The Thalex adapter against the scripted in-memory JSON-RPC venue, behind its WebSocket transport."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    ConnectionEvent,
    FeeCharge,
    Fill,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    TimeInForce,
    Trade,
)
from hftkit.testing.thalex import Reply, ScriptedThalex, ServerRequest
from hftkit.venues.base import (
    AmendRequest,
    MassQuote,
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    QuoteLevel,
    RateLimitedError,
    VenueAdapter,
    VenueError,
)
from hftkit.venues.thalex.adapter import (
    ClientOrderIds,
    ThalexAdapter,
    ThalexConfig,
    ThalexConnectionError,
    ThalexQueryError,
    VenueNotReadyError,
)
from hftkit.venues.thalex.auth import ThalexCredentials, generate_key_pair
from hftkit.venues.thalex.codec import ThalexAuthenticationError

PERPETUAL = {
    "instrument_name": "BTC-PERPETUAL",
    "product": "FBTCUSD",
    "tick_size": 1,
    "volume_tick_size": 0.001,
    "min_order_amount": 0.001,
    "underlying": "BTCUSD",
    "type": "perpetual",
    "base_currency": "USD",
    "create_time": 1631250800.103645,
}
COMBINATION = {**PERPETUAL, "instrument_name": "BTC-COMBO", "type": "combination"}
BOOK = "book.BTC-PERPETUAL.none.all.raw"
KEY_ID = "K123456789"


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


@pytest.fixture
async def server(key_pair: tuple[bytes, bytes]) -> AsyncIterator[ScriptedThalex]:
    async with ScriptedThalex(
        public_keys={KEY_ID: key_pair[1]}, message_rate=40, instruments=[PERPETUAL, COMBINATION]
    ) as scripted:
        scripted.on("private/insert", insert_answer())
        yield scripted


def make_config(server: ScriptedThalex, private_key: bytes, **overrides: Any) -> ThalexConfig:
    settings: dict[str, Any] = {
        "url": server.url,
        "credentials": ThalexCredentials(KEY_ID, private_key, account="A123456789"),
        "request_timeout_s": 1.0,
        "connect_timeout_s": 5.0,
        "ticker_delay": None,
        "label": "P",
        "reconnect_base_delay_s": 0.01,
        "reconnect_max_delay_s": 0.05,
        "throttle_backoff_s": 0.05,
        "symbols": ("BTC-PERPETUAL",),
    }
    settings.update(overrides)
    return ThalexConfig(**settings)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def states(self, stream: str = "session") -> list[str]:
        return [event.state for event in self.of(ConnectionEvent) if event.stream == stream]


async def start(server: ScriptedThalex, key_pair: tuple[bytes, bytes], **overrides: Any):
    adapter = ThalexAdapter(make_config(server, key_pair[0], **overrides), transports=server.transports)
    recorder = Recorder()
    adapter.add_listener(recorder)
    await adapter.__aenter__()
    return adapter, recorder


_order_ids = itertools.count(1)


def order_status(params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What the venue answers to an insert, built from the request's own params."""
    status = {
        "order_id": f"{next(_order_ids):016X}",
        "client_order_id": params.get("client_order_id"),
        "instrument_name": params.get("instrument_name", "BTC-PERPETUAL"),
        "direction": params.get("direction", "buy"),
        "order_type": params.get("order_type", "limit"),
        "time_in_force": params.get("time_in_force", "good_till_cancelled"),
        "price": params.get("price"),
        "amount": params.get("amount"),
        "filled_amount": 0,
        "remaining_amount": params.get("amount"),
        "status": "open",
        "fills": [],
        "change_reason": "insert",
        "insert_reason": "client_request",
        "label": params.get("label"),
        "persistent": False,
        "create_time": 1795254654.654124,
    }
    status.update(changes)
    return status


def insert_answer(**changes: Any) -> Callable[[ServerRequest], Any]:
    return lambda request: order_status(request.params, **changes)


def buy(client_order_id: str = "ours-1", **fields: Any) -> OrderRequest:
    values: dict[str, Any] = {"symbol": "BTC-PERPETUAL", "side": Side.BUY, "quantity": 100, "price": 47000}
    values.update(fields)
    return OrderRequest(client_order_id=client_order_id, **values)


async def reconnect_through_drop(server: ScriptedThalex, adapter: ThalexAdapter) -> None:
    """Drop the connection and wait for the whole login/resubscribe/reconcile to finish again."""
    await server.drop()
    await until(lambda: not adapter.is_ready)
    await adapter.wait_ready(3.0)


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


# -- session -----------------------------------------------------------------------------------


async def test_login_handshake_protects_subscribes_and_reconciles_before_synced(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        assert isinstance(adapter, VenueAdapter)
        assert adapter.is_ready and not server.login_failures
        methods = [request.method for request in server.requests]
        assert methods == [
            "public/instruments",
            "public/login",
            "private/set_cancel_on_disconnect",
            "private/subscribe",
            "public/subscribe",
            "private/open_orders",
            "private/portfolio",
        ]
        login = server.requests_for("public/login")[0]
        assert set(login.params) == {"token", "account"} and login.params["account"] == "A123456789"
        assert server.requests_for("private/set_cancel_on_disconnect")[0].params == {"timeout_secs": 6}
        assert adapter.rpc.message_rate == 40  # sized to the session's own message_rate
        assert server.requests_for("private/subscribe")[0].params == {
            "channels": ["session.orders", "account.trade_history", "account.portfolio"]
        }
        assert server.requests_for("public/subscribe")[0].params == {"channels": [BOOK]}
        assert recorder.states() == ["connected", "synced"]
        assert set(adapter.instruments) == {"BTC-PERPETUAL"}  # the combination is skipped
        assert adapter.account_number == "A123456789"
        assert all(b'"jsonrpc"' not in request.raw for request in server.requests)
    finally:
        await adapter.__aexit__(None, None, None)
    assert server.requests[-1].method == "private/cancel_session"  # shut down safe


async def test_a_foreign_key_is_refused_and_entering_raises(server):
    other_private, _other_public = generate_key_pair()
    adapter = ThalexAdapter(make_config(server, other_private), transports=server.transports)
    with pytest.raises(ThalexAuthenticationError):
        await adapter.__aenter__()
    assert server.login_failures and "signature" in server.login_failures[0]


async def test_no_server_means_a_clear_connection_error(key_pair):
    config = ThalexConfig(
        url="ws://127.0.0.1:9/ws/api/v2",
        credentials=ThalexCredentials(KEY_ID, key_pair[0]),
        connect_timeout_s=0.2,
        reconnect_base_delay_s=0.01,
    )
    with pytest.raises(ThalexConnectionError):
        await ThalexAdapter(config).__aenter__()


async def test_orders_are_refused_locally_until_the_session_is_ready():
    adapter = ThalexAdapter(ThalexConfig(url="ws://127.0.0.1:9/ws/api/v2"))
    with pytest.raises(VenueNotReadyError):
        await adapter.place_order(buy())
    assert isinstance(VenueNotReadyError("x"), OrderRejectedError)


async def test_disconnect_reconnects_relogs_resubscribes_reconciles_then_syncs(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        hung = asyncio.Event()

        async def never(_request: ServerRequest) -> Reply:
            await hung.wait()
            return Reply.silent()

        await adapter.place_order(buy("before-drop"))
        server.on("private/insert", never)
        pending = asyncio.ensure_future(adapter.place_order(buy("in-flight")))
        await server.wait_for("private/insert")
        server.on(
            "private/open_orders",
            lambda request: [
                order_status({"client_order_id": 1, "amount": 0.2, "price": 46000}, status="open")
            ],
        )
        server.respond(
            "private/portfolio",
            [{"instrument_name": "BTC-PERPETUAL", "position": -0.5, "average_price": 47100.5}],
        )
        server.respond("private/order_history", {"orders": [], "bookmark": None})
        await server.drop()
        with pytest.raises(OrderOutcomeUnknownError) as caught:
            await pending
        assert caught.value.client_order_id == "in-flight"
        await adapter.wait_ready(3.0)
        assert len(server.connections) == 2
        second = [request.method for request in server.requests if request.connection.index == 1]
        assert second == [
            "public/login",
            "private/set_cancel_on_disconnect",
            "private/subscribe",
            "public/subscribe",
            "private/open_orders",
            "private/order_history",  # the in-flight order is gone: its final state is asked for
            "private/portfolio",
        ]
        assert recorder.states() == ["connected", "synced", "disconnected", "connected", "synced"]
        assert recorder.states(BOOK) == ["resyncing"]
        (reconciled,) = adapter.reconciled_open_orders
        assert (reconciled.client_order_id, reconciled.quantity, reconciled.price) == ("1", 200, 46000)
        assert [order.client_order_id for order in adapter.live_orders()] == ["1"]  # "before-drop" is gone
        (position,) = adapter.reconciled_positions
        assert (position.quantity, position.entry_price) == (-500, Decimal("47100.5"))
        assert recorder.of(PositionUpdate) == [position]
        assert adapter.metrics.counter("thalex_reconnects_total", venue="thalex").value == 1
    finally:
        await adapter.__aexit__(None, None, None)


async def test_private_methods_before_login_are_refused_by_the_server(server):
    adapter = ThalexAdapter(
        ThalexConfig(url=server.url, ticker_delay=None, reconnect_base_delay_s=0.01),
        transports=server.transports,
    )
    await adapter.__aenter__()  # public only: no credentials, ready after instruments
    try:
        with pytest.raises(ThalexQueryError) as caught:
            await adapter.balances()
        assert caught.value.code == 7
    finally:
        await adapter.__aexit__(None, None, None)


# -- book ------------------------------------------------------------------------------------


async def test_first_book_push_is_a_snapshot_later_pushes_are_deltas_with_trades(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        await server.push(
            BOOK,
            {
                "bid_changes": [[47000, 1.5, 1.5], [46990, 0.2, 0.2]],
                "ask_changes": [[47010, 0.3, 0.3]],
                "trades": [[47005, 0.1, "buy", 1683901254.7, False]],
                "total_bid_amount": 1.7,
                "total_ask_amount": 0.3,
                "time": 1683901254.785744,
            },
        )
        await server.push(
            BOOK,
            {
                "bid_changes": [[47000, 0, 0]],
                "ask_changes": [[47005, 0.05, 0.05]],
                "trades": [[47000, 1.5, "sell", 1683901255.1, False]],
                "time": 1683901255.2,
            },
        )
        await until(lambda: len(recorder.of(BookDelta)) == 2)
        snapshot, delta = recorder.of(BookDelta)
        assert snapshot.is_snapshot and not delta.is_snapshot
        assert snapshot.bids == [(47000, 1500), (46990, 200)] and snapshot.event_time_ms == 1683901254785
        assert delta.bids == [(47000, 0)] and delta.asks == [(47005, 50)]
        book = adapter.book("BTC-PERPETUAL")
        assert book is not None and adapter.book_synced("BTC-PERPETUAL")
        assert book.best_bid() == (46990, 200) and book.best_ask() == (47005, 50)
        (trade,) = recorder.of(Trade)  # the snapshot's trades are history, not live prints
        assert (trade.price, trade.size, trade.aggressor) == (47000, 1500, Side.SELL)
        assert recorder.states(BOOK) == ["synced"]

        await reconnect_through_drop(server, adapter)
        await server.push(BOOK, {"bid_changes": [[46000, 1, 1]], "ask_changes": [], "time": 1.0})
        await until(lambda: len(recorder.of(BookDelta)) == 3)
        assert recorder.of(BookDelta)[2].is_snapshot
        assert book.best_bid() == (46000, 1000) and book.best_ask() is None
        assert recorder.states(BOOK) == ["synced", "resyncing", "synced"]
    finally:
        await adapter.__aexit__(None, None, None)


async def test_malformed_pushes_are_counted_by_kind_and_never_kill_the_session(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        await server.send_raw("{this is not json")
        await server.push(BOOK, {"bid_changes": "nonsense"})
        await server.current.push("weird.channel", {})
        await server.current.push("session.orders", [{"order_id": 5}])
        await server.push(BOOK, {"bid_changes": [[47000, 1, 1]], "ask_changes": [], "time": 1.0})
        await until(lambda: len(recorder.of(BookDelta)) == 1)
        malformed = adapter.rpc.stats.malformed
        assert malformed == {"frame": 1, "book": 1, "unknown_channel": 1, "session.orders": 1}
        assert adapter.is_ready
        assert len(await adapter.positions()) == 0  # requests still work
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_failing_listener_is_counted_and_others_still_get_events(server, key_pair):
    adapter, _recorder = await start(server, key_pair)
    seen: list[Any] = []

    def broken(_event: Any) -> None:
        raise RuntimeError("strategy bug")

    adapter.add_listener(broken)
    adapter.add_listener(seen.append)
    try:
        await server.push(BOOK, {"bid_changes": [[47000, 1, 1]], "ask_changes": [], "time": 1.0})
        await until(lambda: any(isinstance(event, BookDelta) for event in seen))
        assert adapter.metrics.counter("thalex_listener_errors_total", venue="thalex").value >= 1
    finally:
        await adapter.__aexit__(None, None, None)


async def test_subscribe_adds_book_and_ticker_channels_and_tickers_become_book_tickers(server, key_pair):
    server.instruments.append(
        {**PERPETUAL, "instrument_name": "ETH-PERPETUAL", "product": "FETHUSD", "tick_size": 0.1}
    )
    adapter, recorder = await start(server, key_pair, ticker_delay="100ms", symbols=())
    try:
        assert server.requests_for("public/subscribe") == []
        await adapter.subscribe(["ETH-PERPETUAL"])
        assert server.requests_for("public/subscribe")[0].params == {
            "channels": ["book.ETH-PERPETUAL.none.all.raw", "ticker.ETH-PERPETUAL.100ms"]
        }
        await adapter.subscribe(["ETH-PERPETUAL"])  # already subscribed on this connection
        assert len(server.requests_for("public/subscribe")) == 1
        with pytest.raises(VenueError):
            await adapter.subscribe(["DOGE-PERPETUAL"])
        ticker = {
            "best_bid_price": 2240.5,
            "best_bid_amount": 0.4,
            "best_ask_price": None,
            "best_ask_amount": None,
            "mark_price": 2241.2,
            "mark_timestamp": 1795254600.0,
            "funding_rate": 0.0001,
        }
        await server.push("ticker.ETH-PERPETUAL.100ms", ticker)
        await server.push(
            "ticker.ETH-PERPETUAL.100ms", {**ticker, "best_ask_price": 2242, "best_ask_amount": 1.5}
        )
        await until(lambda: len(recorder.of(BookTicker)) == 1)  # the one-sided ticker has no BookTicker
        (top,) = recorder.of(BookTicker)
        instrument = adapter.instruments["ETH-PERPETUAL"]
        assert (top.bid_price, top.bid_size, top.ask_price, top.ask_size) == (
            instrument.price_to_ticks("2240.5"),
            400,
            instrument.price_to_ticks("2242"),
            1500,
        )
        assert adapter.ticker("ETH-PERPETUAL").mark_price == 2241.2
        await reconnect_through_drop(server, adapter)
        assert (
            server.requests_for("public/subscribe")[-1].params["channels"][0]
            == "book.ETH-PERPETUAL.none.all.raw"
        )
    finally:
        await adapter.__aexit__(None, None, None)


# -- orders ----------------------------------------------------------------------------------


async def test_insert_wire_format_and_the_answer_maps_back_to_our_client_id(server, key_pair):
    adapter, recorder = await start(server, key_pair, reject_post_only=True)
    try:
        update = await adapter.place_order(
            buy("quote-1", order_type=OrderType.LIMIT_MAKER, reduce_only=True, quantity=100, price=47000)
        )
        request = server.requests_for("private/insert")[0]
        wire_id = request.params["client_order_id"]
        assert isinstance(wire_id, int) and 0 < wire_id < 2**64
        assert request.raw == orjson.dumps(
            {
                "method": "private/insert",
                "params": {
                    "direction": "buy",
                    "instrument_name": "BTC-PERPETUAL",
                    "amount": 0.1,
                    "price": 47000,
                    "order_type": "limit",
                    "time_in_force": "good_till_cancelled",
                    "post_only": True,
                    "reject_post_only": True,
                    "reduce_only": True,
                    "client_order_id": wire_id,
                    "label": "P",
                },
                "id": request.id,
            }
        )
        assert (update.client_order_id, update.status, update.price, update.quantity) == (
            "quote-1",
            OrderStatus.NEW,
            47000,
            100,
        )
        assert recorder.of(OrderUpdate) == [update]
        assert [order.client_order_id for order in adapter.live_orders()] == ["quote-1"]

        await adapter.place_order(buy("ioc-1", side=Side.SELL, time_in_force=TimeInForce.IOC, quantity=1))
        await adapter.place_order(buy("market-1", order_type=OrderType.MARKET, price=0, quantity=2500))
        ioc, market = (request.params for request in server.requests_for("private/insert")[1:])
        assert (ioc["direction"], ioc["amount"], ioc["time_in_force"]) == (
            "sell",
            0.001,
            "immediate_or_cancel",
        )
        assert "price" not in market and (
            market["order_type"],
            market["time_in_force"],
            market["amount"],
        ) == (
            "market",
            "immediate_or_cancel",
            2.5,
        )
        assert market["client_order_id"] > ioc["client_order_id"] > wire_id
    finally:
        await adapter.__aexit__(None, None, None)


async def test_unsupported_or_invalid_orders_are_refused_before_sending(server, key_pair):
    adapter, _recorder = await start(server, key_pair)
    try:
        for request in (
            buy("fok", time_in_force=TimeInForce.FOK),
            buy("maker-ioc", order_type=OrderType.LIMIT_MAKER, time_in_force=TimeInForce.IOC),
            buy("zero", quantity=0),
            buy("no-price", price=0),
            buy("unknown", symbol="ETH-PERPETUAL"),
        ):
            with pytest.raises(OrderRejectedError):
                await adapter.place_order(request)
        assert server.requests_for("private/insert") == []
        await adapter.place_order(buy("dup"))
        with pytest.raises(OrderRejectedError, match="already live"):
            await adapter.place_order(buy("dup"))
    finally:
        await adapter.__aexit__(None, None, None)


async def test_an_immediate_fill_is_emitted_once_across_answer_push_and_trade_history(server, key_pair):
    fill = {
        "trade_id": "0080000000000000169F22D05B785A2B",
        "price": 47010,
        "amount": 0.1,
        "time": 1795254654.66,
        "maker_taker": "taker",
        "leg_index": 0,
    }
    server.on(
        "private/insert",
        insert_answer(
            status="filled",
            filled_amount=0.1,
            remaining_amount=0,
            fills=[fill],
            change_reason="fill",
            delete_reason="filled",
            close_time=1795254654.66,
        ),
    )
    adapter, recorder = await start(server, key_pair)
    try:
        update = await adapter.place_order(buy("taker-1"))
        assert update.status is OrderStatus.FILLED and update.filled == 100
        answered = server.requests_for("private/insert")[0]
        pushed = order_status(
            answered.params, status="filled", filled_amount=0.1, remaining_amount=0, fills=[fill]
        )
        pushed["order_id"] = update.venue_order_id
        await server.push("session.orders", [pushed])
        trade = {
            "trade_id": fill["trade_id"],
            "order_id": update.venue_order_id,
            "client_order_id": answered.params["client_order_id"],
            "instrument_name": "BTC-PERPETUAL",
            "direction": "buy",
            "price": 47010,
            "amount": 0.1,
            "time": 1795254654.66,
            "maker_taker": "taker",
            "fee": 1.18,
        }
        await server.push("account.trade_history", [trade])
        await server.push("account.trade_history", [trade])  # a repeated push charges nothing more
        await until(
            lambda: adapter.metrics.counter("thalex_duplicate_fills_total", venue="thalex").value == 3
        )
        (only_fill,) = recorder.of(Fill)
        assert (only_fill.client_order_id, only_fill.price, only_fill.quantity) == ("taker-1", 47010, 100)
        # the answer's fill came without its fee: the trade history's fee follows once, on its own
        (charge,) = recorder.of(FeeCharge)
        assert (charge.client_order_id, charge.trade_id, charge.fee, charge.fee_asset) == (
            "taker-1",
            fill["trade_id"],
            1.18,
            "USD",
        )
        assert adapter.live_orders() == []
    finally:
        await adapter.__aexit__(None, None, None)


async def test_amend_and_cancel_wire_formats_and_not_found(server, key_pair):
    inserted: dict[int, dict[str, Any]] = {}

    def insert(request: ServerRequest) -> dict[str, Any]:
        inserted[request.params["client_order_id"]] = dict(request.params)
        return order_status(request.params)

    def amend(request: ServerRequest) -> dict[str, Any]:
        params = inserted[request.params["client_order_id"]]
        params.update(price=request.params["price"], amount=request.params["amount"])
        return order_status(params, change_reason="amend")

    def cancel(request: ServerRequest) -> dict[str, Any]:
        params = inserted[request.params["client_order_id"]]
        return order_status(params, status="cancelled", change_reason="cancel", delete_reason="client_cancel")

    server.on("private/insert", insert)
    server.on("private/amend", amend)
    server.on("private/cancel", cancel)
    adapter, _recorder = await start(server, key_pair)
    try:
        await adapter.place_order(buy("a-1"))
        wire_id = server.requests_for("private/insert")[0].params["client_order_id"]
        amended = await adapter.amend_order(
            AmendRequest(client_order_id="a-1", symbol="BTC-PERPETUAL", price=46900, quantity=100)
        )
        amend = server.requests_for("private/amend")[0]
        assert amend.raw == orjson.dumps(
            {
                "method": "private/amend",
                "params": {"client_order_id": wire_id, "price": 46900, "amount": 0.1},
                "id": amend.id,
            }
        )
        assert (amended.client_order_id, amended.price) == ("a-1", 46900)
        cancelled = await adapter.cancel_order("BTC-PERPETUAL", "a-1")
        cancel = server.requests_for("private/cancel")[0]
        assert cancel.raw == orjson.dumps(
            {"method": "private/cancel", "params": {"client_order_id": wire_id}, "id": cancel.id}
        )
        assert cancelled.status is OrderStatus.CANCELED and adapter.live_orders() == []

        server.fail("private/cancel", 1, "order not found")
        await adapter.place_order(buy("a-2"))
        with pytest.raises(OrderNotFoundError) as caught:
            await adapter.cancel_order("BTC-PERPETUAL", "a-2")
        assert caught.value.code == 1
        with pytest.raises(OrderNotFoundError):
            await adapter.cancel_order("BTC-PERPETUAL", "never-placed")

        server.respond("private/cancel_all", 3)
        assert await adapter.cancel_all() == 3
        assert server.requests_for("private/cancel_all")[0].params == {}
    finally:
        await adapter.__aexit__(None, None, None)


async def test_venue_error_codes_map_to_order_outcomes(server, key_pair):
    adapter, _recorder = await start(server, key_pair)
    try:
        server.fail("private/insert", 24, "insufficient margin")
        with pytest.raises(OrderRejectedError) as rejected:
            await adapter.place_order(buy("m-1"))
        assert rejected.value.code == 24

        server.fail("private/insert", 4, "throttle exceeded")
        with pytest.raises(RateLimitedError) as throttled:
            await adapter.place_order(buy("m-1"))  # the rejected id is free again
        assert throttled.value.retry_after_s == pytest.approx(0.05)
        assert adapter.metrics.counter("thalex_throttled_total", venue="thalex").value == 1

        server.fail("private/insert", 20, "temporary failure")
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("m-2"))

        server.respond("private/insert", {"nonsense": True})
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("m-3"))
        assert adapter.rpc.stats.malformed == {"result:private/insert": 1}

        server.on("private/insert", insert_answer())
        update = await adapter.place_order(buy("m-1"))
        assert update.client_order_id == "m-1"
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_timed_out_insert_is_unknown_and_settled_by_its_late_answer(server, key_pair):
    adapter, recorder = await start(server, key_pair, request_timeout_s=0.1)
    try:
        server.on("private/insert", lambda request: Reply.after(0.3, order_status(request.params)))
        with pytest.raises(OrderOutcomeUnknownError) as caught:
            await adapter.place_order(buy("slow-1"))
        assert caught.value.client_order_id == "slow-1"
        assert len(server.requests_for("private/insert")) == 1  # never re-sent
        await until(lambda: len(recorder.of(OrderUpdate)) == 1)
        (settled,) = recorder.of(OrderUpdate)
        assert (settled.client_order_id, settled.status) == ("slow-1", OrderStatus.NEW)
        assert adapter.rpc.stats.late_responses == 1

        server.on("private/insert", lambda request: Reply.after(0.3, Reply.error(24, "insufficient margin")))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("slow-2"))
        await until(lambda: len(recorder.of(OrderUpdate)) == 2)
        refused = recorder.of(OrderUpdate)[1]
        assert (refused.client_order_id, refused.status) == ("slow-2", OrderStatus.REJECTED)
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_timed_out_insert_is_settled_by_a_session_orders_push(server, key_pair):
    adapter, recorder = await start(server, key_pair, request_timeout_s=0.1)
    try:
        server.on("private/insert", lambda _request: Reply.silent())
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("lost-1"))
        params = server.requests_for("private/insert")[0].params
        await server.push("session.orders", [order_status(params, change_reason="insert")])
        await until(lambda: len(recorder.of(OrderUpdate)) == 1)
        assert recorder.of(OrderUpdate)[0].client_order_id == "lost-1"
    finally:
        await adapter.__aexit__(None, None, None)


async def test_concurrent_orders_answered_out_of_order_each_get_their_own_answer(server, key_pair):
    delays = iter([0.2, 0.15, 0.1, 0.05, 0.0])
    server.on("private/insert", lambda request: Reply.after(next(delays), order_status(request.params)))
    adapter, _recorder = await start(server, key_pair)
    try:
        requests = [buy(f"c-{n}", price=47000 - n) for n in range(5)]
        updates = await asyncio.gather(*(adapter.place_order(request) for request in requests))
        assert [(update.client_order_id, update.price) for update in updates] == [
            (request.client_order_id, request.price) for request in requests
        ]
    finally:
        await adapter.__aexit__(None, None, None)


# -- mass quotes -----------------------------------------------------------------------------


async def test_mass_quote_needs_protection_then_sends_single_and_multi_level_sides(server, key_pair):
    adapter, _recorder = await start(server, key_pair, mass_quote_label="mq")
    try:
        quote = MassQuote(
            symbol="BTC-PERPETUAL", bids=[QuoteLevel(47000, 100)], asks=[QuoteLevel(47500, 100)]
        )
        with pytest.raises(OrderRejectedError) as caught:
            await adapter.mass_quote([quote])
        assert caught.value.code == 23
        await adapter.set_mm_protection("FBTCUSD", "1.0", Decimal("0.5") + Decimal("0.5"))
        protection = server.requests_for("private/set_mm_protection")[0]
        assert orjson.loads(protection.raw)["params"] == {
            "product": "FBTCUSD",
            "trade_amount": 1,
            "quote_amount": 1,
        }
        assert server.requests_for("private/subscribe")[-1].params == {"channels": ["session.mm_protection"]}

        server.respond("private/mass_quote", {"n_success": 2, "n_fail": 0, "errors": []})
        report = await adapter.mass_quote([quote])
        request = server.requests_for("private/mass_quote")[0]
        assert request.raw == orjson.dumps(
            {
                "method": "private/mass_quote",
                "params": {
                    "quotes": [
                        {"i": "BTC-PERPETUAL", "b": {"a": 0.1, "p": 47000}, "a": {"a": 0.1, "p": 47500}}
                    ],
                    "label": "mq",
                    "post_only": True,
                },
                "id": request.id,
            }
        )
        assert (report.succeeded, report.failed) == (2, 0)

        server.respond(
            "private/mass_quote",
            {
                "n_success": 1,
                "n_fail": 1,
                "errors": [
                    {
                        "code": 44,
                        "message": "quote exceeds protection group size",
                        "side": "ask",
                        "price": 47500,
                    }
                ],
            },
        )
        ladder = MassQuote(
            symbol="BTC-PERPETUAL", bids=[QuoteLevel(47000, 100), QuoteLevel(46990, 250)], asks=[]
        )
        report = await adapter.mass_quote([ladder])
        sent = orjson.loads(server.requests_for("private/mass_quote")[1].raw)["params"]["quotes"]
        assert sent == [{"i": "BTC-PERPETUAL", "b": [[47000, 0.1], [46990, 0.25]], "a": []}]
        assert report.failed == 1 and "44" in report.errors[0]

        too_deep = MassQuote(symbol="BTC-PERPETUAL", bids=[QuoteLevel(47000 - n, 1) for n in range(11)])
        with pytest.raises(OrderRejectedError):
            await adapter.mass_quote([too_deep])
        assert len(server.requests_for("private/mass_quote")) == 2

        await adapter.cancel_mass_quote("FBTCUSD")
        assert server.requests_for("private/cancel_mass_quote")[0].params == {"product": "FBTCUSD"}

        await reconnect_through_drop(server, adapter)
        assert len(server.requests_for("private/set_mm_protection")) == 2  # re-applied after reconnect
    finally:
        await adapter.__aexit__(None, None, None)


# -- queries ---------------------------------------------------------------------------------


async def test_balances_positions_and_open_orders_queries(server, key_pair):
    server.respond(
        "private/account_summary",
        {"cash": [{"currency": "USDT", "balance": 1000000.25, "collateral_factor": 1, "transactable": True}]},
    )
    adapter, _recorder = await start(server, key_pair)
    try:
        (balance,) = await adapter.balances()
        assert isinstance(balance, BalanceUpdate)
        assert (balance.asset, balance.free) == ("USDT", Decimal("1000000.25"))
        server.respond("private/portfolio", [{"instrument_name": "BTC-PERPETUAL", "position": 1.25}])
        (position,) = await adapter.positions()
        assert position.quantity == 1250
        server.on(
            "private/open_orders",
            lambda _request: [order_status({"client_order_id": None, "amount": 0.1, "price": 47000})],
        )
        (order,) = await adapter.open_orders("BTC-PERPETUAL")
        assert order.client_order_id == order.venue_order_id  # no client id: the venue id stands in
        assert await adapter.open_orders("ETH-PERPETUAL") == []
    finally:
        await adapter.__aexit__(None, None, None)


def test_client_order_ids_are_unique_uint64s_mapped_both_ways():
    ids = ClientOrderIds(start=2**64 - 2)
    first = ids.assign("a", epoch=1)
    second = ids.assign("b", epoch=1)
    assert (first, second) == (2**64 - 2, 2**64 - 1)
    assert ids.assign("c", epoch=1) == 1  # wraps past zero, which is not a valid id
    assert ids.ours(second) == "b" and ids.wire("a") == (first, 1)
    with pytest.raises(ValueError):
        ids.assign("a", epoch=1)
    ids.release("a")
    assert ids.wire("a") is None and ids.ours(first) is None
    small = ClientOrderIds(start=10, retired_memory=1)
    small.assign("x", epoch=1)
    small.assign("y", epoch=1)
    small.retire("x")
    assert small.ours(10) == "x"  # still resolvable for late pushes
    small.retire("y")
    assert small.ours(10) is None and small.ours(11) == "y"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["assign", "release", "retire"]), st.integers(0, 6)), max_size=60))
def test_client_order_ids_stay_a_bijection_under_any_history(operations):
    ids = ClientOrderIds(start=2**64 - 5, retired_memory=3)
    for operation, number in operations:
        ours = f"o-{number}"
        if operation == "assign":
            live = ids.wire(ours) is not None and ours not in ids._retired
            if live:
                with pytest.raises(ValueError):
                    ids.assign(ours, epoch=1)
            else:
                wire = ids.assign(ours, epoch=1)
                assert 0 < wire < 2**64
        elif operation == "release":
            ids.release(ours)
        else:
            ids.retire(ours)
        assert {wire: name for name, (wire, _epoch) in ids._by_ours.items()} == ids.by_wire
        assert len(ids._retired) <= 3


# -- book integrity (issue 17, items 8 and 12) ----------------------------------------------------


async def resubscribed(server: ScriptedThalex, count: int) -> None:
    """The adapter unsubscribed the book and subscribed it again (``count`` subscribes in all)."""
    await server.wait_for("unsubscribe")
    await server.wait_for("public/subscribe", count)


@pytest.mark.parametrize(
    ("bad_push", "kind"),
    [
        ({"bid_changes": [[47000.4, 1, 1]]}, "book_level:off_grid"),  # tick 1: never rounded onto 47000
        ({"bid_changes": [[46999, 0.0005, 0]]}, "book_level:off_grid"),  # lot 0.001
        ({"bid_changes": [[0, 1, 1]]}, "book_level:non_positive_price"),
        ({"ask_changes": [[-47010, 1, 1]]}, "book_level:non_positive_price"),
        ({"bid_changes": [[46990, -0.2, 0]]}, "book_level:negative_size"),
        ({"bid_changes": [[47020, 1, 1]]}, "crossed"),
    ],
)
async def test_a_malformed_or_crossed_book_push_is_counted_and_resyncs_the_book(
    server, key_pair, bad_push, kind
):
    adapter, recorder = await start(server, key_pair, stall_timeout_s=0)
    try:
        subscribes = len(server.requests_for("public/subscribe"))
        full = {"bid_changes": [[47000, 1.5, 1.5], [46990, 0.2, 0.2]], "ask_changes": [[47010, 0.3, 0.3]]}
        await server.push(BOOK, {**full, "time": 1.0})
        await until(lambda: adapter.book_synced("BTC-PERPETUAL"))
        await server.push(BOOK, {"bid_changes": [], "ask_changes": [], **bad_push, "time": 2.0})
        await until(lambda: recorder.states(BOOK) == ["synced", "resyncing"])
        assert not adapter.book_synced("BTC-PERPETUAL")
        sync = adapter.synchronizer("BTC-PERPETUAL")
        if kind == "crossed":
            assert sync.counters.crossed_books == 1
        else:
            assert adapter.rpc.stats.malformed == {kind: 1}
        assert sync.counters.resyncs == 1
        await resubscribed(server, subscribes + 1)
        # a push still in flight from the old subscription would be dropped; the next is the full book
        await server.push(BOOK, {"bid_changes": [[46900, 2, 2]], "ask_changes": [[46950, 1, 1]], "time": 3.0})
        await until(lambda: adapter.book_synced("BTC-PERPETUAL"))
        book = adapter.book("BTC-PERPETUAL")
        assert book.bids() == [(46900, 2000)] and book.asks() == [(46950, 1000)]
        assert recorder.states(BOOK) == ["synced", "resyncing", "synced"]
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_crossed_full_book_is_not_published_and_resyncs(server, key_pair):
    adapter, recorder = await start(server, key_pair, stall_timeout_s=0)
    try:
        subscribes = len(server.requests_for("public/subscribe"))
        await server.push(BOOK, {"bid_changes": [[47010, 1, 1]], "ask_changes": [[47000, 1, 1]], "time": 1.0})
        await resubscribed(server, subscribes + 1)
        assert not adapter.book_synced("BTC-PERPETUAL") and recorder.of(BookDelta) == []
        assert adapter.synchronizer("BTC-PERPETUAL").counters.crossed_books == 1
        await server.push(BOOK, {"bid_changes": [[47000, 1, 1]], "ask_changes": [[47010, 1, 1]], "time": 2.0})
        await until(lambda: adapter.book_synced("BTC-PERPETUAL"))
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_stalled_book_stream_is_noticed_from_its_cadence_and_resubscribed(server, key_pair):
    """Issue 17 item 12: the session still answers and pongs, but no push comes any more."""
    adapter, recorder = await start(server, key_pair, stall_timeout_s=0.4)
    try:
        subscribes = len(server.requests_for("public/subscribe"))
        await server.push(BOOK, {"bid_changes": [[47000, 1, 1]], "ask_changes": [[47010, 1, 1]], "time": 1.0})
        await until(lambda: adapter.book_synced("BTC-PERPETUAL"))
        # nothing more is pushed: the stream stalled
        # (on a loaded machine the resubscribed, still silent stream may stall again before the
        # next push: the first resync is the one this test is about)
        await until(lambda: recorder.states(BOOK)[:2] == ["synced", "resyncing"])
        event = next(event for event in recorder.of(ConnectionEvent) if event.state == "resyncing")
        assert event.reason.startswith("stalled")
        assert adapter.synchronizer("BTC-PERPETUAL").counters.stalls >= 1
        assert adapter.is_ready  # the session itself is fine: only the book is resynced
        await resubscribed(server, subscribes + 1)
        await server.push(BOOK, {"bid_changes": [[47001, 1, 1]], "ask_changes": [[47010, 1, 1]], "time": 2.0})
        # synced again from the resubscribed stream's full book; the events, not the book's state
        # now, say so: a process paused past the 0.4 s timeout just after (a loaded machine) stalls
        # the silent stream once more, as it should
        await until(lambda: recorder.states(BOOK)[2:3] == ["synced"])
        (full,) = [delta for delta in recorder.of(BookDelta) if delta.is_snapshot][1:2]
        assert (full.bids, full.asks) == ([(47001, 1000)], [(47010, 1000)])
    finally:
        await adapter.__aexit__(None, None, None)


async def test_one_overflowing_order_in_a_push_is_counted_and_the_rest_delivered(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        params = {"instrument_name": "BTC-PERPETUAL", "price": 47000, "amount": 0.1}
        first, bad, last = (order_status(params) for _ in range(3))
        bad["create_time"] = 1e308  # to milliseconds: int(inf) overflows
        await server.push("session.orders", [first, bad, last])
        await until(lambda: len(recorder.of(OrderUpdate)) == 2)
        delivered = {update.venue_order_id for update in recorder.of(OrderUpdate)}
        assert delivered == {first["order_id"], last["order_id"]}
        assert adapter.rpc.stats.malformed == {"session.orders": 1}
    finally:
        await adapter.__aexit__(None, None, None)


async def test_one_overflowing_trade_in_a_push_is_counted_and_the_rest_delivered(server, key_pair):
    adapter, recorder = await start(server, key_pair)
    try:
        trades = [
            {
                "trade_id": f"t{index}",
                "order_id": f"{index:016X}",
                "client_order_id": None,
                "instrument_name": "BTC-PERPETUAL",
                "direction": "buy",
                "price": 47010,
                "amount": 0.1,
                "time": 1e308 if index == 1 else 1795254654.66,
                "maker_taker": "maker",
                "fee": 1.18,
            }
            for index in range(3)
        ]
        await server.push("account.trade_history", trades)
        await until(lambda: len(recorder.of(Fill)) == 2)
        assert {fill.trade_id for fill in recorder.of(Fill)} == {"t0", "t2"}
        assert adapter.rpc.stats.malformed == {"account.trade_history": 1}
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_timed_out_insert_without_any_push_is_settled_by_a_query(server, key_pair):
    adapter, recorder = await start(server, key_pair, request_timeout_s=0.1, settle_interval_s=0.02)
    try:
        resting: list[dict[str, Any]] = []

        def insert_silently(request: ServerRequest) -> Reply:
            resting.append(order_status(request.params))  # it exists; the answer never comes
            return Reply.silent()

        server.on("private/insert", insert_silently)
        server.on("private/open_orders", lambda _request: list(resting))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("quiet-1"))
        assert adapter.unresolved() == ["quiet-1"]
        await until(lambda: not adapter.unresolved())
        (settled,) = [update for update in recorder.of(OrderUpdate) if update.client_order_id == "quiet-1"]
        assert settled.status is OrderStatus.NEW
        assert len(server.requests_for("private/insert")) == 1  # never re-sent
    finally:
        await adapter.__aexit__(None, None, None)


async def test_a_timed_out_insert_the_venue_never_shows_is_cancelled_by_client_id_then_closed(
    server, key_pair
):
    adapter, recorder = await start(server, key_pair, request_timeout_s=0.1, settle_interval_s=0.02)
    try:
        server.on("private/insert", lambda _request: Reply.silent())
        server.on("private/order_history", lambda _request: {"orders": []})
        server.on("private/cancel", lambda _request: Reply.error(1, "order not found"))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("never-1"))
        await until(lambda: not adapter.unresolved())
        (closed,) = recorder.of(OrderUpdate)
        assert (closed.client_order_id, closed.status) == ("never-1", OrderStatus.REJECTED)
        assert "cancel by client id" in closed.reason
        wire_id = server.requests_for("private/insert")[0].params["client_order_id"]
        assert [request.params for request in server.requests_for("private/cancel")] == [
            {"client_order_id": wire_id}
        ]
    finally:
        await adapter.__aexit__(None, None, None)


async def test_cancel_all_of_a_symbol_also_cancels_inserts_of_unknown_outcome(server, key_pair):
    adapter, _recorder = await start(server, key_pair, request_timeout_s=0.1, settle_interval_s=30.0)
    try:
        server.on("private/insert", lambda _request: Reply.silent())
        server.on("private/cancel", lambda request: order_status(request.params, status="cancelled"))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(buy("maybe-1"))
        await adapter.cancel_all("BTC-PERPETUAL")
        wire_id = server.requests_for("private/insert")[0].params["client_order_id"]
        assert [request.params for request in server.requests_for("private/cancel")] == [
            {"client_order_id": wire_id}
        ]
    finally:
        await adapter.__aexit__(None, None, None)


async def test_cancel_all_of_a_symbol_also_cancels_inserts_written_and_not_yet_answered(server, key_pair):
    """The venue's own cancel_all may miss orders in flight: a stop that cancels while an insert's
    answer is still on its way cancels that insert by client id, on the same connection (so the
    venue reads the cancel after the insert) and never leaves it resting."""
    server.instruments.append(
        {**PERPETUAL, "instrument_name": "ETH-PERPETUAL", "product": "FETHUSD", "tick_size": 0.1}
    )
    adapter, recorder = await start(server, key_pair)
    try:
        # the venue answers in the order it acts: the insert first, the cancel after it
        inserted: dict[int, dict[str, Any]] = {}

        def insert(request: ServerRequest) -> Reply:
            inserted[request.params["client_order_id"]] = request.params
            return Reply.after(0.2, order_status(request.params))

        def cancel(request: ServerRequest) -> Reply:
            params = inserted[request.params["client_order_id"]]
            return Reply.after(0.3, order_status(params, status="cancelled", change_reason="cancel"))

        server.on("private/insert", insert)
        server.on("private/cancel", cancel)
        answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        assert adapter.place_order_now(buy("flying-1"), answered.set_result)
        other = asyncio.ensure_future(adapter.place_order(buy("flying-2", symbol="ETH-PERPETUAL")))
        await until(lambda: len(server.requests_for("private/insert")) == 2)
        assert not answered.done() and adapter.live_orders() == []
        assert await adapter.cancel_all("BTC-PERPETUAL") == 1
        inserts = {
            request.params["instrument_name"]: request for request in server.requests_for("private/insert")
        }
        assert [request.params for request in server.requests_for("private/cancel")] == [
            {"client_order_id": inserts["BTC-PERPETUAL"].params["client_order_id"]}
        ]  # the other symbol's insert in flight is not touched
        placed = await answered
        assert isinstance(placed, OrderUpdate) and placed.status is OrderStatus.NEW
        await other
        await until(lambda: [order.client_order_id for order in adapter.live_orders()] == ["flying-2"])
        last = [update for update in recorder.of(OrderUpdate) if update.client_order_id == "flying-1"][-1]
        assert last.status is OrderStatus.CANCELED
    finally:
        await adapter.__aexit__(None, None, None)


async def test_exit_reports_the_session_orders_it_cancelled_as_events(server, key_pair):
    server.on("private/insert", insert_answer())
    adapter, recorder = await start(server, key_pair)
    await adapter.place_order(buy("rests-1"))
    await adapter.__aexit__(None, None, None)
    assert server.requests_for("private/cancel_session") or server.requests_for("private/cancel_all")
    last = [update for update in recorder.of(OrderUpdate) if update.client_order_id == "rests-1"][-1]
    assert last.status is OrderStatus.CANCELED and last.reason == "cancelled on exit"
    assert adapter.live_orders() == []
