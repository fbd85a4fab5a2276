"""The Binance adapter end to end against the in-memory scripted Binance: orders, user data,
reconciliation."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from hftkit.core.types import BalanceUpdate, ConnectionEvent, OrderStatus, OrderUpdate, PositionUpdate, Side
from hftkit.testing import Fault, ScriptedBinance
from hftkit.venues.base import (
    MassQuote,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    QuoteLevel,
    VenueAdapter,
)
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig, UnsupportedOperationError
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import RestConfig, VenueUnavailableError
from hftkit.venues.binance.streams import StreamConfig
from hftkit.venues.binance.user_stream import UserStreamConfig

CREDENTIALS = BinanceCredentials("test-api-key", "test-secret")


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


def adapter_config(server: ScriptedBinance, market: Market = Market.SPOT, **overrides) -> BinanceConfig:
    user = UserStreamConfig(
        websocket_api_urls=[f"{server.ws_url}/ws-api/v3"],
        stream_base_urls=[server.ws_url],
        reconnect_base_delay_s=0.005,
        reconnect_max_delay_s=0.02,
        listen_key_path=overrides.pop("listen_key_path", "ws"),
    )
    settings = dict(
        market=market,
        rest=RestConfig(
            base_urls=[server.base_url],
            order_timeout_s=0.2,
            recv_window_ms=overrides.pop("recv_window_ms", 5000),
            retry_base_delay_s=0.001,
            retry_max_delay_s=0.01,
        ),
        streams=StreamConfig(base_urls=[server.ws_url], reconnect_base_delay_s=0.005),
        user_stream=user,
        resolve_interval_s=0.02,
        resolve_margin_ms=100,
    )
    settings.update(overrides)
    return BinanceConfig(**settings)


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind: type, **fields) -> list:
        return [
            event
            for event in self.events
            if isinstance(event, kind) and all(getattr(event, key) == value for key, value in fields.items())
        ]


def request(client_order_id: str, price: int = 5_000_000, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id, symbol="BTCUSDT", side=side, quantity=100, price=price
    )


@pytest.fixture
async def server():
    async with ScriptedBinance(CREDENTIALS) as running:
        yield running


async def open_adapter(server, recorder: Recorder, **overrides) -> BinanceAdapter:
    adapter = BinanceAdapter(CREDENTIALS, adapter_config(server, **overrides), transports=server.transports)
    adapter.add_listener(recorder)
    await adapter.__aenter__()
    return adapter


async def test_start_reconciles_then_orders_flow_with_user_events(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        assert isinstance(adapter, VenueAdapter)
        assert adapter.capabilities.positions is False and adapter.capabilities.amend is False
        assert adapter.is_ready and recorder.of(ConnectionEvent, stream="account", state="synced")
        (usdt,) = recorder.of(BalanceUpdate)
        assert usdt.asset == "USDT" and usdt.free == Decimal(10_000)
        placed = await adapter.place_order(request("a1"))
        assert (placed.status, placed.price, placed.quantity) == (OrderStatus.NEW, 5_000_000, 100)
        await wait_until(lambda: recorder.of(OrderUpdate, client_order_id="a1"))
        await server.fill_order("a1", "0.00040")
        await wait_until(lambda: recorder.of(OrderUpdate, status=OrderStatus.PARTIALLY_FILLED))
        (partial,) = recorder.of(OrderUpdate, status=OrderStatus.PARTIALLY_FILLED)
        assert partial.filled == 40
        assert [order.client_order_id for order in await adapter.open_orders()] == ["a1"]
        cancelled = await adapter.cancel_order("BTCUSDT", "a1")
        assert cancelled.status is OrderStatus.CANCELED and cancelled.client_order_id == "a1"
        assert await adapter.query_order("BTCUSDT", "nope") is None
        with pytest.raises(UnsupportedOperationError):
            await adapter.amend_order(None)  # type: ignore[arg-type]
    finally:
        await adapter.close()


async def test_timed_out_order_is_resolved_by_query_never_resent(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        server.push_order_events = False  # no user-data event: only a query can settle it
        server.inject("POST", "/order", Fault(stall_s=0.5, execute=True))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(request("t1"))
        assert adapter.unresolved() == ["t1"]
        await wait_until(lambda: not adapter.unresolved())
        # the query settles it; the reconciliation after the transport failure confirms it
        updates = recorder.of(OrderUpdate, client_order_id="t1")
        assert updates and all(update.status is OrderStatus.NEW for update in updates)
        assert updates[0].venue_order_id == str(server.orders["t1"]["orderId"])
        assert adapter.stats.resolved_by_query == 1
        assert server.count("POST", "/order") == 1
    finally:
        await adapter.close()


async def test_order_that_never_arrived_is_settled_after_its_recv_window(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, recv_window_ms=300)
    try:
        server.inject("POST", "/order", Fault(stall_s=0.5))  # times out and is never executed
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.place_order(request("lost"))
        await wait_until(lambda: not adapter.unresolved())
        (update,) = recorder.of(OrderUpdate, client_order_id="lost")
        assert update.status is OrderStatus.REJECTED and "recvWindow" in update.reason
        assert adapter.stats.resolved_as_absent == 1 and "lost" not in server.orders
    finally:
        await adapter.close()


async def test_user_stream_reconnect_reconciles_missed_fills(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        await adapter.place_order(request("r1"))
        await adapter.place_order(request("r2", price=4_900_000))
        await wait_until(lambda: len(recorder.of(OrderUpdate, status=OrderStatus.NEW)) >= 2)
        server.push_order_events = False
        # filled while we cannot hear it: before the drop, so the in-memory venue's instant
        # reconnect cannot reconcile ahead of the fill
        await server.fill_order("r1", "0.00100")
        await server.drop_user_connections()
        await wait_until(lambda: recorder.of(ConnectionEvent, stream="user", state="disconnected"))
        server.push_order_events = True
        await wait_until(lambda: len(recorder.of(ConnectionEvent, stream="account", state="synced")) == 2)
        assert adapter.is_ready
        (filled,) = recorder.of(OrderUpdate, client_order_id="r1", status=OrderStatus.FILLED)
        assert filled.filled == 100
        assert recorder.of(OrderUpdate, client_order_id="r2", status=OrderStatus.NEW)
        assert len(recorder.of(BalanceUpdate)) == 2  # once at start, once after the reconnect
        assert server.user_connections == 2
    finally:
        await adapter.close()


async def test_place_order_refuses_while_unreconciled_without_sending(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, ready_timeout_s=0.1)
    try:
        server.refuse_subscriptions = True
        await server.drop_user_connections()
        await wait_until(lambda: not adapter.is_ready)
        with pytest.raises(VenueUnavailableError):
            await adapter.place_order(request("held"))
        assert server.count("POST", "/order") == 0
        server.refuse_subscriptions = False
        await wait_until(lambda: adapter.is_ready)
        assert (await adapter.place_order(request("held"))).status is OrderStatus.NEW
    finally:
        await adapter.close()


async def test_rest_recovery_triggers_reconciliation(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        # two drops in a row: the idempotent query is retried past both
        server.inject("GET", "/openOrders", Fault(disconnect=True), Fault(disconnect=True))
        assert await adapter.open_orders() == []
        await wait_until(lambda: len(recorder.of(ConnectionEvent, stream="account", state="synced")) == 2)
        assert recorder.of(ConnectionEvent, stream="account", state="resyncing", reason="rest recovered")
    finally:
        await adapter.close()


async def test_mass_quote_cancels_first_then_places_and_reports_item_errors(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        first = await adapter.mass_quote(
            [
                MassQuote(
                    symbol="BTCUSDT",
                    bids=[QuoteLevel(4_999_000, 100), QuoteLevel(4_998_000, 200)],
                    asks=[QuoteLevel(5_001_000, 100), QuoteLevel(5_002_000, 200)],
                )
            ]
        )
        assert (first.succeeded, first.failed, first.errors) == (4, 0, [])
        first_bids = {cid for cid, o in server.orders.items() if o["side"] == "BUY"}
        server.inject("POST", "/order", Fault(400, -2010, "Order would immediately match and take."))
        second = await adapter.mass_quote(
            [MassQuote(symbol="BTCUSDT", bids=[QuoteLevel(4_999_500, 100), QuoteLevel(4_998_500, 100)])]
        )
        assert (second.succeeded, second.failed) == (3, 1)  # 2 cancels + 1 of 2 placements
        assert "OrderRejectedError" in second.errors[0] and "-2010" in second.errors[0]
        assert all(server.orders[cid]["status"] == "CANCELED" for cid in first_bids)
        open_orders = [o for o in server.orders.values() if o["status"] == "NEW"]
        quoted = sorted((o["side"], o["price"]) for o in open_orders)
        assert quoted[1:] == [("SELL", "50010.00"), ("SELL", "50020.00")]
        assert quoted[0] in (("BUY", "49995.00"), ("BUY", "49985.00"))  # the placements race
        assert all(o["type"] == "LIMIT_MAKER" for o in open_orders)
        methods = [method for method, path, _, _ in server.log if path == "/api/v3/order"]
        assert methods[-4:] == ["DELETE", "DELETE", "POST", "POST"]  # cancels first
        assert await adapter.cancel_all("BTCUSDT") == 3
    finally:
        await adapter.close()


async def test_usdm_listen_key_expiry_recreates_the_key_and_reconciles():
    async with ScriptedBinance(CREDENTIALS, Market.USDM) as server:
        server.positions["BTCUSDT"] = (Decimal("0.002"), Decimal("50000"))
        recorder = Recorder()
        adapter = await open_adapter(server, recorder, market=Market.USDM)
        try:
            assert adapter.capabilities.positions is True and adapter.name == "binance_usdm"
            (position,) = recorder.of(PositionUpdate)
            assert position.quantity == 200
            first_key = server.listen_key
            await server.expire_listen_key()
            await wait_until(lambda: server.user_connections == 2 and server.listen_key is not None)
            assert server.listen_key != first_key and server.listen_keys_created == 2
            await wait_until(lambda: len(recorder.of(ConnectionEvent, stream="account", state="synced")) == 2)
            await adapter.place_order(request("f1"))
            await wait_until(lambda: len(recorder.of(OrderUpdate, client_order_id="f1")) == 1)
            # a keepalive the venue answers -1125 also moves to a new key
            server.listen_key = None
            await adapter.user_stream.keepalive()
            await wait_until(lambda: server.user_connections == 3)
            assert server.listen_keys_created == 3 and server.keepalives == 1
        finally:
            await adapter.close()


async def test_usdm_private_listen_key_path():
    async with ScriptedBinance(CREDENTIALS, Market.USDM) as server:
        recorder = Recorder()
        adapter = await open_adapter(server, recorder, market=Market.USDM, listen_key_path="private")
        try:
            assert (
                adapter.user_stream.socket.url == f"{server.ws_url}/private/ws?listenKey={server.listen_key}"
            )
            await adapter.place_order(request("p1"))
            await wait_until(lambda: len(recorder.of(OrderUpdate, client_order_id="p1")) == 1)
        finally:
            await adapter.close()


async def test_event_stream_terminated_resubscribes_and_reconciles(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        await server.terminate_user_subscriptions()
        await wait_until(lambda: len(recorder.of(ConnectionEvent, stream="account", state="synced")) == 2)
        assert server.user_connections == 2 and adapter.user_stream.stats.subscribes == 2
    finally:
        await adapter.close()


async def test_place_order_waits_for_reconciliation_after_a_reconnect(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        await server.drop_user_connections()
        # the recorded event, not the flag: a fast reconnect can clear and set it between two polls
        await wait_until(lambda: recorder.of(ConnectionEvent, stream="user", state="disconnected"))
        placed = await adapter.place_order(request("waited"))
        assert placed.status is OrderStatus.NEW
        # the order went out only after the account was reconciled again
        assert len(recorder.of(ConnectionEvent, stream="account", state="synced")) == 2
        assert adapter.stats.refused_unsynced == 0
    finally:
        await adapter.close()


TINY = dict(symbol="BTCUSDT", side=Side.BUY, quantity=1, price=4_999_000)  # 0.5 USDT < 5 USDT minimum


async def test_orders_below_the_venue_minimums_are_refused_locally(server):
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        with pytest.raises(OrderRejectedError, match="minimum"):
            await adapter.place_order(OrderRequest(client_order_id="tiny", **TINY))
        report = await adapter.mass_quote(
            [MassQuote(symbol="BTCUSDT", bids=[QuoteLevel(4_999_000, 1), QuoteLevel(4_998_000, 100)])]
        )
        assert (report.succeeded, report.failed) == (1, 1) and "minimum" in report.errors[0]
        assert server.count("POST", "/order") == 1 and adapter.stats.local_rejects == 2
    finally:
        await adapter.close()
