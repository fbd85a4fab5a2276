"""Binance orders always reach a known end: unknown outcomes are settled by client order id until
known, a cancel of unknown outcome is sent again, reconciliation closes orders the venue no longer
knows (as events, so the tracker never keeps a ghost), and close() cancels what may still rest."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.core.types import ConnectionEvent, OrderStatus, OrderUpdate, Side
from hftkit.testing import Fault, ScriptedBinance
from hftkit.venues.base import OrderOutcomeUnknownError, OrderRequest
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import RestConfig
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


def adapter_config(server: ScriptedBinance, **overrides: object) -> BinanceConfig:
    settings: dict[str, object] = dict(
        market=Market.SPOT,
        rest=RestConfig(
            base_urls=[server.base_url],
            order_timeout_s=0.2,
            recv_window_ms=300,
            retry_base_delay_s=0.001,
            retry_max_delay_s=0.01,
        ),
        streams=StreamConfig(base_urls=[server.ws_url], reconnect_base_delay_s=0.005),
        user_stream=UserStreamConfig(
            websocket_api_urls=[f"{server.ws_url}/ws-api/v3"],
            stream_base_urls=[server.ws_url],
            reconnect_base_delay_s=0.005,
            reconnect_max_delay_s=0.02,
        ),
        resolve_interval_s=0.02,
        resolve_max_interval_s=0.1,
        resolve_margin_ms=100,
    )
    settings.update(overrides)
    return BinanceConfig(**settings)  # type: ignore[arg-type]


def request(client_order_id: str, price: int = 5_000_000) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_order_id, symbol="BTCUSDT", side=Side.BUY, quantity=100, price=price
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)

    def updates(self, client_order_id: str) -> list[OrderUpdate]:
        return [
            event
            for event in self.events
            if isinstance(event, OrderUpdate) and event.client_order_id == client_order_id
        ]

    def synced(self) -> int:
        return sum(
            1
            for event in self.events
            if isinstance(event, ConnectionEvent) and event.stream == "account" and event.state == "synced"
        )


@pytest.fixture
async def server():
    async with ScriptedBinance(CREDENTIALS) as running:
        yield running


async def open_adapter(server: ScriptedBinance, recorder: Recorder, **overrides: object) -> BinanceAdapter:
    adapter = BinanceAdapter(CREDENTIALS, adapter_config(server, **overrides), transports=server.transports)
    adapter.add_listener(recorder)
    await adapter.__aenter__()
    return adapter


async def test_reconciliation_closes_an_order_the_venue_no_longer_knows(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        await adapter.place_order(request("ghost"))
        server.push_order_events = False
        del server.orders["ghost"]  # Binance purges closed orders it never filled
        await server.drop_user_connections()
        await wait_until(lambda: recorder.synced() == 2)
        last = recorder.updates("ghost")[-1]
        assert last.status is OrderStatus.CANCELED and "unknown to the venue" in last.reason
        assert (last.side, last.price, last.quantity) == (Side.BUY, 5_000_000, 100)
        assert adapter.stats.closed_unknown_to_venue == 1
    finally:
        await adapter.close()


async def test_a_cancel_of_unknown_outcome_is_sent_again_until_the_order_is_closed(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder)
    try:
        await adapter.place_order(request("k1"))
        server.inject("DELETE", "/order", Fault(status=503, code=-1001, msg="Internal error"))
        with pytest.raises(OrderOutcomeUnknownError):
            await adapter.cancel_order("BTCUSDT", "k1")
        await wait_until(lambda: server.orders["k1"]["status"] == "CANCELED")
        await wait_until(lambda: not adapter.unresolved())
        assert recorder.updates("k1")[-1].status is OrderStatus.CANCELED
    finally:
        await adapter.close()


async def test_a_placement_abandoned_by_its_caller_is_settled_like_an_unknown_outcome(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, rest=RestConfig(base_urls=[server.base_url]))
    try:
        server.push_order_events = False  # only the adapter's own settlement can say what happened
        server.inject("POST", "/order", Fault(stall_s=0.3, execute=True))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):  # the caller gives up while the request is out
                await adapter.place_order(request("abandoned"))
        assert adapter.unresolved() == ["abandoned"]
        await wait_until(lambda: not adapter.unresolved())
        assert recorder.updates("abandoned")[-1].status is OrderStatus.NEW
    finally:
        await adapter.close()


async def test_close_cancels_every_order_that_may_rest(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, resolve_interval_s=30.0)
    await adapter.place_order(request("open1"))
    await adapter.place_order(request("open2", price=4_900_000))
    server.push_order_events = False
    server.inject("POST", "/order", Fault(stall_s=0.5, execute=True))  # exists, though unconfirmed
    with pytest.raises(OrderOutcomeUnknownError):
        await adapter.place_order(request("unknown1", price=4_800_000))
    assert adapter.unresolved() == ["unknown1"]
    await wait_until(lambda: "unknown1" in server.orders)
    await adapter.close()
    assert {cid: order["status"] for cid, order in server.orders.items()} == dict.fromkeys(
        ("open1", "open2", "unknown1"), "CANCELED"
    )
    for client_order_id in ("open1", "open2", "unknown1"):
        assert recorder.updates(client_order_id)[-1].status is OrderStatus.CANCELED
    assert adapter.stats.cancelled_on_exit == 3 and not adapter.unresolved()


async def test_close_leaves_orders_resting_when_cancel_on_exit_is_off(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, cancel_on_exit=False)
    await adapter.place_order(request("stays"))
    await adapter.close()
    assert server.orders["stays"]["status"] == "NEW"


async def test_close_waits_a_bounded_time_for_cancels_the_venue_never_answers(server) -> None:
    recorder = Recorder()
    adapter = await open_adapter(server, recorder, exit_timeout_s=0.3)
    await adapter.place_order(request("stuck"))
    server.inject("DELETE", "/order", *[Fault(status=503, code=-1001, msg="busy")] * 100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await adapter.close()
    assert loop.time() - started < 2.0
    assert adapter.stats.exit_cancel_failures == 1
