"""Acceptance: the official ``thalex`` PyPI client trades against the simulator unmodified."""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import thalex

from hftkit.core.clock import REAL_CLOCK
from hftkit.core.types import Side
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex.server import ThalexApiKey, ThalexSimServer
from hftkit.sim.thalex.wire import default_instruments
from hftkit.venues.thalex.auth import generate_key_pair

BTC = "BTC-PERPETUAL"
KEY_ID = "K000000001"
ACCOUNT = "A000000001"


class Bot:
    """The official client plus the dispatch the official examples use (channel_name / result / error)."""

    def __init__(self, url: str) -> None:
        self.tlx = thalex.Thalex(network=types.SimpleNamespace(value=url))
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: dict[str, list[Any]] = {}

    async def pump(self, timeout: float) -> None:
        frame = json.loads(await asyncio.wait_for(self.tlx.receive(), timeout))
        if "channel_name" in frame:
            self.notifications.setdefault(frame["channel_name"], []).append(frame["notification"])
        else:
            self.responses[frame["id"]] = frame

    async def answer(self, request_id: int, timeout: float = 3.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while request_id not in self.responses:
            await self.pump(max(deadline - time.monotonic(), 0.01))
        return self.responses.pop(request_id)

    async def result(self, request_id: int) -> Any:
        frame = await self.answer(request_id)
        assert "result" in frame, frame
        return frame["result"]

    async def pushes(self, channel: str, count: int = 1, timeout: float = 3.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.notifications.get(channel, [])) < count:
            await self.pump(max(deadline - time.monotonic(), 0.01))
        return self.notifications[channel]


@pytest.fixture
async def exchange() -> AsyncIterator[tuple[SimVenue, str, bytes]]:
    accounts = Accounts()
    engine = MatchingEngine(accounts, clock=REAL_CLOCK)
    venue = SimVenue("thalex", engine)
    for instrument in default_instruments():
        venue.add_instrument(instrument)
    accounts.deposit(ACCOUNT, "USD", accounts.to_units("USD", "1000000"))
    venue.apply_depth(BTC, [(49990, 2000), (49980, 3000)], [(50010, 2000), (50020, 3000)])
    private_pem, public_pem = generate_key_pair()
    server = ThalexSimServer(venue, keys=[ThalexApiKey(KEY_ID, public_pem, (ACCOUNT,))])
    url = await server.start()
    yield venue, url, private_pem
    await server.stop()


async def test_official_client_runs_a_quoting_session(exchange):
    venue, url, private_pem = exchange
    bot = Bot(url)
    await bot.tlx.connect()
    try:
        await bot.tlx.instruments(id=0)
        instruments = await bot.result(0)
        perp = next(
            item for item in instruments if item["type"] == "perpetual" and item["underlying"] == "BTCUSD"
        )
        assert (perp["instrument_name"], perp["tick_size"]) == (BTC, 1)

        await bot.tlx.login(KEY_ID, private_pem.decode(), id=1)
        assert await bot.result(1) == {"account_number": ACCOUNT}
        await bot.tlx.set_cancel_on_disconnect(6, id=2)
        assert await bot.result(2) == {"message_rate": 50}
        private = ["session.orders", "account.trade_history", "account.portfolio"]
        await bot.tlx.private_subscribe(private, id=3)
        assert await bot.result(3) == private
        await bot.tlx.public_subscribe(["ticker.BTC-PERPETUAL.raw", "price_index.BTCUSD"], id=4)
        assert await bot.result(4) == ["ticker.BTC-PERPETUAL.raw", "price_index.BTCUSD"]
        ticker = (await bot.pushes("ticker.BTC-PERPETUAL.raw"))[0]
        assert (ticker["best_bid_price"], ticker["best_ask_price"], ticker["mark_price"]) == (
            49990,
            50010,
            50000,
        )
        assert (await bot.pushes("price_index.BTCUSD"))[0]["price"] == 50000

        # insert / amend / cancel by client_order_id, request id == client_order_id as the examples do
        await bot.tlx.insert(
            thalex.Direction.BUY, BTC, 0.1, client_order_id=100, price=49000, label="P", id=100
        )
        inserted = await bot.result(100)
        assert (inserted["status"], inserted["client_order_id"], inserted["label"]) == ("open", 100, "P")
        assert inserted["persistent"] is False
        await bot.tlx.amend(0.2, 49001, client_order_id=100, id=101)
        amended = await bot.result(101)
        assert (amended["order_id"], amended["price"], amended["amount"]) == (
            inserted["order_id"],
            49001,
            0.2,
        )
        assert amended["change_reason"] == "amend"
        await bot.tlx.cancel(client_order_id=100, id=102)
        cancelled = await bot.result(102)
        assert (cancelled["status"], cancelled["delete_reason"]) == ("cancelled", "client_cancel")
        await bot.tlx.cancel(client_order_id=100, id=103)
        assert (await bot.answer(103))["error"]["code"] == 1

        # an aggressive order: fills in the answer, trade history, portfolio, ticker
        await bot.tlx.insert(
            thalex.Direction.BUY,
            BTC,
            0.5,
            client_order_id=104,
            price=50010,
            time_in_force=thalex.TimeInForce.IOC,
            id=104,
        )
        taker = await bot.result(104)
        assert (taker["status"], taker["filled_amount"], taker["fills"][0]["price"]) == ("filled", 0.5, 50010)
        trades = (await bot.pushes("account.trade_history"))[0]
        assert [(trade["client_order_id"], trade["amount"], trade["maker_taker"]) for trade in trades] == [
            (104, 0.5, "taker")
        ]
        portfolio = (await bot.pushes("account.portfolio", 2))[-1]
        assert [(entry["instrument_name"], entry["position"]) for entry in portfolio] == [(BTC, 0.5)]
        assert (await bot.pushes("ticker.BTC-PERPETUAL.raw", 2))[-1]["last_price"] == 50010

        # mass quoting after set_mm_protection, then a fill on the quote
        await bot.tlx.set_mm_protection(thalex.Product.BTC_FUTURES, 1.0, 1.0, id=105)
        assert await bot.result(105) is None
        quotes = [thalex.Quote(BTC, thalex.SideQuote(49995, 0.3), thalex.SideQuote(50005, 0.3))]
        await bot.tlx.mass_quote(quotes, label="mq", post_only=True, id=106)
        assert await bot.result(106) == {"n_success": 2, "n_fail": 0, "errors": []}
        venue.apply_market_trade(BTC, 49995, 300, Side.SELL)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            updates = [item for push in bot.notifications.get("session.orders", []) for item in push]
            if any(item["change_reason"] == "fill" for item in updates):
                break
            await bot.pump(max(deadline - time.monotonic(), 0.01))
        fills = [item for item in updates if item["change_reason"] == "fill"]
        assert fills[0]["status"] == "filled" and fills[0]["fills"][0]["maker_taker"] == "maker"
        assert fills[0]["label"] == "mq" and fills[0]["price"] == 49995
        changes = [item["change_reason"] for item in updates]
        assert changes[:5] == ["insert", "amend", "cancel", "insert", "insert"]

        await bot.tlx.open_orders(id=107)
        open_orders = await bot.result(107)
        assert [(item["direction"], item["price"]) for item in open_orders] == [("sell", 50005)]
        await bot.tlx.cancel_session(id=108)
        assert await bot.result(108) is None
        assert venue.engine.open_orders(ACCOUNT) == []
    finally:
        await bot.tlx.disconnect()


async def test_official_client_orders_die_with_the_connection(exchange):
    venue, url, private_pem = exchange
    bot = Bot(url)
    await bot.tlx.connect()
    await bot.tlx.login(KEY_ID, private_pem.decode(), id=1)
    await bot.result(1)
    await bot.tlx.insert(thalex.Direction.SELL, BTC, 0.1, price=51000, id=2)
    assert (await bot.result(2))["persistent"] is True
    await bot.tlx.set_cancel_on_disconnect(6, id=3)
    await bot.result(3)
    await bot.tlx.insert(thalex.Direction.SELL, BTC, 0.1, price=51001, id=4)
    assert (await bot.result(4))["persistent"] is False
    await bot.tlx.disconnect()
    deadline = time.monotonic() + 3
    while len(venue.engine.open_orders(ACCOUNT)) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [order.price for order in venue.engine.open_orders(ACCOUNT)] == [51000]


async def test_hftkit_thalex_adapter_trades_against_the_simulator(exchange):
    """Our own adapter too: ready, place, amend, take, cancel, mass quote, positions."""
    from hftkit.core.types import Fill, OrderStatus, TimeInForce
    from hftkit.venues.base import AmendRequest, MassQuote, OrderRequest, QuoteLevel
    from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig
    from hftkit.venues.thalex.auth import ThalexCredentials

    venue, url, private_pem = exchange
    events: list[Any] = []
    config = ThalexConfig(url=url, credentials=ThalexCredentials(KEY_ID, private_pem), symbols=(BTC,))
    async with ThalexAdapter(config) as adapter:
        adapter.add_listener(events.append)
        await adapter.wait_ready(5)
        assert set(adapter.instruments) == {"BTC-PERPETUAL", "ETH-PERPETUAL"}
        placed = await adapter.place_order(
            OrderRequest(client_order_id="o1", symbol=BTC, side=Side.BUY, quantity=100, price=49000)
        )
        assert (placed.status, placed.price, placed.quantity) == (OrderStatus.NEW, 49000, 100)
        amended = await adapter.amend_order(
            AmendRequest(client_order_id="o1", symbol=BTC, price=49001, quantity=200)
        )
        assert (amended.price, amended.quantity) == (49001, 200)
        taker = await adapter.place_order(
            OrderRequest(
                client_order_id="o2",
                symbol=BTC,
                side=Side.BUY,
                quantity=500,
                price=50010,
                time_in_force=TimeInForce.IOC,
            )
        )
        assert (taker.status, taker.filled) == (OrderStatus.FILLED, 500)
        cancelled = await adapter.cancel_order(BTC, "o1")
        assert cancelled.status is OrderStatus.CANCELED
        await adapter.set_mm_protection("FBTCUSD", "1", "1")
        report = await adapter.mass_quote(
            [MassQuote(symbol=BTC, bids=[QuoteLevel(49500, 100)], asks=[QuoteLevel(50500, 100)])]
        )
        assert (report.succeeded, report.failed) == (2, 0)
        assert sorted(order.price for order in await adapter.open_orders()) == [49500, 50500]
        positions = await adapter.positions()
        assert [(position.symbol, position.quantity) for position in positions] == [(BTC, 500)]
        fills = [event for event in events if isinstance(event, Fill)]
        assert [(fill.client_order_id, fill.price, fill.quantity) for fill in fills] == [("o2", 50010, 500)]
    assert venue.engine.open_orders(ACCOUNT) == []
