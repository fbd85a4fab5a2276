"""The Thalex-compatible simulator over real loopback WebSockets, frame by frame."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hftkit.core.clock import REAL_CLOCK
from hftkit.core.types import OrderType, Side
from hftkit.datasets import shared_data_dir
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.faults import FaultInjector, FaultKind, FaultProfile
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex.channels import diff_levels, group_levels
from hftkit.sim.thalex.server import ThalexApiKey, ThalexSimServer
from hftkit.sim.thalex.wire import (
    amount_number,
    default_instruments,
    json_number,
    number_text,
    price_number,
    thalex_perpetual,
    to_lots,
    to_ticks,
)
from hftkit.venues.thalex.auth import ThalexCredentials, generate_key_pair, make_login_token

BTC = "BTC-PERPETUAL"
KEY_ID = "K123456789"
ACCOUNT = "A123456789"
OTHER = "A987654321"
ORDER_ID = re.compile(r"^[0-9A-F]{16}$")
TRADE_ID = re.compile(r"^[0-9A-F]{32}$")


@functools.cache
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


@functools.cache
def other_key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


@functools.cache
def spec_examples() -> dict[str, Any]:
    path = shared_data_dir() / "thalex_spec" / "thalex_spec_examples.json"
    examples = json.loads(path.read_text())["examples"]
    found: dict[str, Any] = {}
    for source in ("ws_spec.json", "openapi.json"):
        for item in examples[source]:
            name = item["path"].rsplit("/", 1)[-1]
            if item["path"].startswith("/components/schemas/") and item["path"].count("/") == 3:
                found.setdefault(name, item["example"])
    return found


@functools.cache
def schemas(source: str) -> dict[str, Any]:
    return json.loads((shared_data_dir() / "thalex_spec" / source).read_text())["components"]["schemas"]


def assert_schema(payload: dict[str, Any], name: str, source: str = "openapi.json") -> None:
    """The payload uses only the schema's fields, has its required ones, and valid enum values."""
    schema = schemas(source)[name]
    properties = schema["properties"]
    assert set(payload) <= set(properties), (name, set(payload) - set(properties))
    assert set(schema.get("required", ())) <= set(payload), (name, set(schema["required"]) - set(payload))
    for key, value in payload.items():
        allowed = properties[key].get("enum")
        if allowed is not None and value is not None:
            assert value in allowed, (name, key, value)
        if properties[key].get("type") == "number" and value is not None:
            assert isinstance(value, int | float) and not isinstance(value, bool), (name, key, value)


def token(issued_at: float | None = None, key_id: str = KEY_ID, private: bytes | None = None) -> str:
    return make_login_token(ThalexCredentials(key_id, private or key_pair()[0]), issued_at)


class Venue:
    """A funded Thalex venue with background liquidity around 50000 on BTC-PERPETUAL."""

    def __init__(self, **server_options: Any) -> None:
        self.accounts = Accounts()
        self.engine = MatchingEngine(self.accounts, clock=REAL_CLOCK)
        self.venue = SimVenue("thalex", self.engine)
        for instrument in default_instruments():
            self.venue.add_instrument(instrument)
        for name in (ACCOUNT, OTHER):
            self.accounts.deposit(name, "USD", self.accounts.to_units("USD", "1000000"))
        self.venue.apply_depth(BTC, [(49990, 2000), (49980, 3000)], [(50010, 2000), (50020, 3000)])
        keys = [ThalexApiKey(KEY_ID, key_pair()[1], (ACCOUNT, OTHER))]
        self.server = ThalexSimServer(self.venue, keys=keys, **server_options)
        self.url = ""


class Client:
    """A raw JSON-RPC client that keeps notifications per channel and raw frames."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.next_id = 1
        self.frames: list[str] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: dict[str, list[Any]] = {}

    async def send(self, method: str, params: dict[str, Any] | None = None, request_id: Any = "auto") -> Any:
        if request_id == "auto":
            request_id = self.next_id
            self.next_id += 1
        message: dict[str, Any] = {"method": method, "params": params or {}}
        if request_id is not None:
            message["id"] = request_id
        await self.ws.send_str(json.dumps(message))
        return request_id

    async def read(self, timeout: float = 2.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        self.frames.append(message.data)
        frame = orjson.loads(message.data)
        if "channel_name" in frame:
            self.notifications.setdefault(frame["channel_name"], []).append(frame["notification"])
        else:
            self.responses[frame["id"]] = frame
        return frame

    async def response(self, request_id: Any, timeout: float = 2.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while request_id not in self.responses:
            await self.read(max(deadline - time.monotonic(), 0.01))
        return self.responses.pop(request_id)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.response(await self.send(method, params))

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        frame = await self.call(method, params)
        assert "result" in frame, frame
        return frame["result"]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> int:
        frame = await self.call(method, params)
        assert "error" in frame and "result" not in frame, frame
        assert set(frame["error"]) == {"code", "message"} and frame["error"]["message"]
        return frame["error"]["code"]

    async def pushes(self, channel: str, count: int = 1, timeout: float = 2.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.notifications.get(channel, [])) < count:
            await self.read(max(deadline - time.monotonic(), 0.01))
        return self.notifications[channel]

    async def quiet(self, seconds: float = 0.05) -> None:
        """Read whatever arrives within ``seconds``."""
        with pytest.raises(asyncio.TimeoutError):
            while True:
                await self.read(seconds)

    async def login(self, account: str | None = None) -> None:
        params = {"token": token()}
        if account:
            params["account"] = account
        assert "account_number" in await self.result("public/login", params)


@pytest.fixture
async def sim() -> AsyncIterator[Venue]:
    venue = Venue()
    venue.url = await venue.server.start()
    yield venue
    await venue.server.stop()


@pytest.fixture
async def connect(sim: Venue) -> AsyncIterator[Any]:
    http = aiohttp.ClientSession()
    clients: list[Client] = []

    async def open_client(login: bool = True, account: str | None = None, url: str | None = None) -> Client:
        ws = await http.ws_connect(url or sim.url)
        client = Client(http, ws)
        clients.append(client)
        if login:
            await client.login(account)
        return client

    yield open_client
    for client in clients:
        await client.ws.close()
    await http.close()


def limit(price: float, amount: float, direction: str = "buy", **extra: Any) -> dict[str, Any]:
    return {"direction": direction, "instrument_name": BTC, "price": price, "amount": amount, **extra}


# wire helpers ------------------------------------------------------------------------------------


def test_numbers_round_trip_exactly():
    assert number_text(0.1, "amount") == "0.1"
    assert number_text(1e-05, "amount") == "0.00001"
    assert number_text(47000, "price") == "47000"
    assert json_number("47000") == 47000 and isinstance(json_number("47000.000"), int)
    assert json_number("0.100") == 0.1 and json_number("12.5") == 12.5


@given(
    steps=st.integers(min_value=1, max_value=10**12),
    grid=st.sampled_from(["1", "0.1", "0.5", "0.001", "0.00001", "25"]),
)
def test_grid_numbers_survive_the_json_round_trip(steps, grid):
    instrument = thalex_perpetual("BTC", grid, grid)
    assert to_ticks(instrument, orjson.loads(orjson.dumps(price_number(instrument, steps)))) == steps
    assert to_lots(instrument, orjson.loads(orjson.dumps(amount_number(instrument, steps)))) == steps


levels = st.dictionaries(st.integers(1, 60), st.integers(1, 9), max_size=12)


@given(old=levels, new=levels)
def test_applying_a_diff_turns_the_old_view_into_the_new(old, new):
    view = dict(old)
    for price, size in diff_levels(old, new):
        if size:
            view[price] = size
        else:
            del view[price]
    assert view == new


@given(book=levels, grouping=st.integers(2, 7), limit=st.one_of(st.none(), st.integers(1, 5)))
def test_grouping_keeps_volume_and_the_best_buckets(book, grouping, limit):
    bids = sorted(book.items(), reverse=True)
    grouped = group_levels(bids, grouping, True, limit)
    assert all(price % grouping == 0 for price in grouped)
    if limit is None:
        assert sum(grouped.values()) == sum(book.values())
    else:
        assert len(grouped) <= limit
        everything = group_levels(bids, grouping, True, None)
        assert grouped == dict(sorted(everything.items(), reverse=True)[:limit])


def test_book_grouping_and_diff():
    bids = [(105, 1), (104, 2), (99, 3)]
    assert group_levels(bids, 5, True, None) == {105: 1, 100: 2, 95: 3}
    assert group_levels([(101, 1), (104, 2), (106, 3)], 5, False, 1) == {105: 3}
    assert group_levels(bids, 0, True, 2) == {105: 1, 104: 2}
    assert diff_levels({1: 5, 2: 3}, {2: 4, 3: 1}) == [(1, 0), (2, 4), (3, 1)]


# login -----------------------------------------------------------------------------------------------


async def test_login_accepts_a_fresh_token_and_selects_the_account(connect):
    client = await connect(login=False)
    frame = await client.call("public/login", {"token": token(), "account": OTHER})
    assert frame == {"id": 1, "result": {"account_number": OTHER}}
    assert client.frames[-1].startswith('{"id":1,"result":')
    integer_iat = await connect(login=False)
    assert (await integer_iat.result("public/login", {"token": token(float(int(time.time())))})) == {
        "account_number": ACCOUNT
    }


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(lambda: token(private=other_key_pair()[0]), id="wrong-key"),
        pytest.param(lambda: token(key_id="K000"), id="unknown-kid"),
        pytest.param(lambda: token(time.time() - 120), id="stale-iat"),
        pytest.param(lambda: "not.a.token", id="garbage"),
    ],
)
async def test_login_refuses_bad_tokens_with_error_19(connect, sim, bad_token):
    client = await connect(login=False)
    assert await client.error("public/login", {"token": bad_token()}) == 19
    assert await client.error("private/open_orders") == 7
    assert sim.server.counters["login_failures"] == 1


async def test_private_methods_need_login_and_unknown_account_is_refused(connect):
    client = await connect(login=False)
    assert await client.error("private/insert", limit(49000, 0.1)) == 7
    assert await client.error("private/subscribe", {"channels": ["session.orders"]}) == 7
    assert await client.error("public/login", {"token": token(), "account": "A0"}) == 19


# request handling ------------------------------------------------------------------------------------


async def test_bad_requests_get_error_objects_not_dropped_connections(connect):
    client = await connect()
    await client.ws.send_str("{not json")
    assert await client.response(None) == {"id": None, "error": {"code": 6, "message": "malformed JSON"}}
    await client.ws.send_str("[1,2]")
    assert (await client.response(None))["error"]["code"] == 6
    assert await client.error("private/no_such_method") == 31
    await client.ws.send_str('{"method":"private/insert","params":[1],"id":77}')
    assert (await client.response(77))["error"]["code"] == 6
    assert await client.error("private/insert", {"direction": "buy", "instrument_name": BTC}) == 6
    assert await client.error("private/insert", limit("x", 0.1)) == 6
    await client.ws.send_str('{"jsonrpc":"2.0","method":"public/system_info","params":{},"id":"abc"}')
    assert (await client.response("abc"))["result"]["environment"] == "simulator"
    await client.ws.send_str('{"method":"public/system_info","params":{}}')
    assert (await client.response(None))["result"]["api_version"]
    assert all(re.match(r'^\{"id":', frame) for frame in client.frames)
    assert not client.ws.closed


async def test_throttle_answers_error_4_beyond_the_message_rate(connect, sim):
    sim.server.message_rate = 5
    client = await connect(login=False)
    ids = [await client.send("public/system_info") for _ in range(20)]
    codes = [(await client.response(request_id)).get("error", {}).get("code") for request_id in ids]
    assert codes.count(None) >= 5
    assert 4 in codes
    assert sim.server.counters["throttled"] == codes.count(4)


async def test_set_cancel_on_disconnect_returns_the_message_rate(connect):
    client = await connect()
    assert await client.result("private/set_cancel_on_disconnect", {"timeout_secs": 6}) == {
        "message_rate": 50
    }


async def test_fault_injector_turns_server_errors_into_error_20(sim, connect):
    sim.server.faults.set_profile(FaultProfile(http_error_probability=1.0))
    client = await connect(login=False)
    assert await client.error("public/system_info") == 20
    assert sim.server.snapshot()["error_codes"] == {"20": 1}
    assert sim.server.snapshot()["faults"]["http_error"] == 1
    sim.server.faults.set_profile(FaultProfile(request_timeout_probability=1.0))
    request_id = await client.send("public/system_info")
    with pytest.raises(asyncio.TimeoutError):
        await client.response(request_id, timeout=0.2)
    sim.server.faults.set_profile(FaultProfile())
    assert await client.result("public/system_info")


# market data -------------------------------------------------------------------------------------------


async def test_market_data_shapes_match_the_spec_examples(connect, sim):
    client = await connect(login=False)
    examples = spec_examples()
    instruments = await client.result("public/instruments")
    assert [item["instrument_name"] for item in instruments] == ["BTC-PERPETUAL", "ETH-PERPETUAL"]
    btc = instruments[0]
    option_only = {"option_type", "expiry_date", "expiration_timestamp", "strike_price"}
    assert set(btc) == set(examples["Instrument"]) - option_only
    assert (btc["type"], btc["product"], btc["underlying"]) == ("perpetual", "FBTCUSD", "BTCUSD")
    assert (btc["tick_size"], btc["volume_tick_size"], btc["min_order_amount"]) == (1, 0.001, 0.001)
    assert instruments[1]["tick_size"] == 0.1
    assert await client.result("public/instrument", {"instrument_name": BTC}) == btc
    assert await client.error("public/instrument", {"instrument_name": "NOPE"}) == 5

    ticker = await client.result("public/ticker", {"instrument_name": BTC})
    assert set(examples["Ticker"]) <= set(ticker)
    assert (ticker["best_bid_price"], ticker["best_bid_amount"]) == (49990, 2)
    assert (ticker["best_ask_price"], ticker["best_ask_amount"]) == (50010, 2)
    assert ticker["mark_price"] == 50000 and isinstance(ticker["mark_timestamp"], float)

    book = await client.result("public/book", {"instrument_name": BTC})
    assert book["bids"] == [[49990, 2, 2], [49980, 3, 3]] and book["asks"] == [[50010, 2, 2], [50020, 3, 3]]
    assert book["last"] is None and isinstance(book["time"], float)

    index = await client.result("public/index", {"underlying": "BTCUSD"})
    assert set(index) == set(examples["Index"]) and index["price"] == 50000
    sim.server.set_index_price("BTCUSD", "50001.5")
    assert (await client.result("public/index", {"underlying": "BTCUSD"}))["price"] == 50001.5
    assert await client.error("public/index", {"underlying": "XXXUSD"}) == 40


# trading -------------------------------------------------------------------------------------------------


async def test_insert_resting_order_matches_the_order_status_shape(connect):
    client = await connect()
    order = await client.result("private/insert", limit(49000, 0.1, client_order_id=2**64 - 1, label="P"))
    assert set(spec_examples()["OrderStatus"]) <= set(order)
    assert ORDER_ID.match(order["order_id"])
    assert order["client_order_id"] == 2**64 - 1 and order["label"] == "P"
    assert (order["price"], order["amount"], order["filled_amount"], order["remaining_amount"]) == (
        49000,
        0.1,
        0,
        0.1,
    )
    assert (order["status"], order["change_reason"], order["insert_reason"]) == (
        "open",
        "insert",
        "client_request",
    )
    assert order["persistent"] is True and "delete_reason" not in order
    assert '"price":49000,' in client.frames[-1]
    buy = await client.result("private/buy", {"instrument_name": BTC, "price": 48000, "amount": 0.2})
    sell = await client.result("private/sell", {"instrument_name": BTC, "price": 52000, "amount": 0.3})
    assert (buy["direction"], sell["direction"]) == ("buy", "sell")
    open_orders = await client.result("private/open_orders")
    assert {item["order_id"] for item in open_orders} == {
        order["order_id"],
        buy["order_id"],
        sell["order_id"],
    }


async def test_crossing_insert_fills_with_fills_and_trade_ids(connect, sim):
    client = await connect()
    order = await client.result("private/insert", limit(50020, 2.5, label="T"))
    assert (order["status"], order["filled_amount"], order["remaining_amount"]) == ("filled", 2.5, 0)
    assert order["delete_reason"] == "filled" and isinstance(order["close_time"], float)
    assert [(fill["price"], fill["amount"], fill["maker_taker"]) for fill in order["fills"]] == [
        (50010, 2, "taker"),
        (50020, 0.5, "taker"),
    ]
    assert all(TRADE_ID.match(fill["trade_id"]) and fill["leg_index"] == 0 for fill in order["fills"])
    history = await client.result("private/trade_history", {"sort": "asc"})
    trades = history["trades"]
    assert set(spec_examples()["Trade"]) - {"session_realised_after", "funding_mark"} <= set(trades[0])
    assert [trade["position_after"] for trade in trades] == [2, 2.5]
    assert history["bookmark"] is None
    ioc = await client.result("private/insert", limit(49985, 3, "sell", time_in_force="immediate_or_cancel"))
    assert (ioc["status"], ioc["delete_reason"]) == ("cancelled_partially_filled", "immediate_cancel")
    assert ioc["filled_amount"] == 2 and ioc["remaining_amount"] == 0 and ioc["fills"][0]["price"] == 49990
    orders = (await client.result("private/order_history", {"limit": 1}))["orders"]
    assert orders[0]["order_id"] == ioc["order_id"] and "remaining_amount" not in orders[0]


async def test_order_validation_errors_use_thalex_codes(connect):
    client = await connect()
    assert await client.error("private/insert", limit(49000.5, 0.1)) == 15
    assert await client.error("private/insert", limit(-5, 0.1)) == 13
    assert await client.error("private/insert", limit(49000, 0.0001)) == 14
    assert await client.error("private/insert", limit(49000, 0)) == 14
    assert await client.error("private/insert", {**limit(49000, 0.1), "instrument_name": "BTC-X"}) == 5
    market_gtc = {"order_type": "market", "time_in_force": "good_till_cancelled"}
    assert await client.error("private/insert", {**limit(49000, 0.1), **market_gtc}) == 25
    ioc_post = {"time_in_force": "immediate_or_cancel", "post_only": True}
    assert await client.error("private/insert", {**limit(49000, 0.1), **ioc_post}) == 25
    assert await client.error("private/insert", limit(49000, 0.1, client_order_id=-1)) == 6
    await client.result("private/insert", limit(49000, 0.1, client_order_id=7))
    assert await client.error("private/insert", limit(49001, 0.1, client_order_id=7)) == 2
    assert await client.error("private/cancel", {"order_id": "00000000000000FF"}) == 1
    assert await client.error("private/cancel", {"client_order_id": 8}) == 1
    assert await client.error("private/cancel", {}) == 6
    assert await client.error("private/amend", {"client_order_id": 7, "price": 49000}) == 6
    assert await client.error("private/insert", limit(49000, 0.1, reduce_only=True)) == 14


async def test_margin_is_checked_against_collateral(sim, connect):
    sim.accounts.deposit("poor", "USD", sim.accounts.to_units("USD", "10"))
    sim.server.add_key(ThalexApiKey("KPOOR", key_pair()[1], ("poor",)))
    client = await connect(login=False)
    await client.result("public/login", {"token": token(key_id="KPOOR")})
    assert await client.error("private/insert", limit(49000, 1)) == 24
    assert (await client.result("private/insert", limit(49000, 0.001)))["status"] == "open"


async def test_post_only_reprices_one_tick_away_unless_reject_post_only(connect):
    client = await connect()
    repriced = await client.result("private/insert", limit(50010, 0.1, post_only=True))
    assert (repriced["status"], repriced["price"]) == ("open", 50009)
    rejected = await client.result("private/insert", limit(50010, 0.1, post_only=True, reject_post_only=True))
    assert (rejected["status"], rejected["delete_reason"], rejected["filled_amount"]) == (
        "cancelled",
        "immediate_cancel",
        0,
    )
    booked = await client.result("private/insert", limit(49995, 0.1, post_only=True, reject_post_only=True))
    assert (booked["status"], booked["price"]) == ("open", 49995)


async def test_amend_keeps_priority_only_for_a_smaller_amount_at_the_same_price(connect, sim):
    first = await connect()
    second = await connect(account=OTHER)
    a = await first.result("private/insert", limit(49000, 0.5, client_order_id=1))
    b = await second.result("private/insert", limit(49000, 0.5, client_order_id=1))
    engine = sim.engine
    order_a = engine.get_order(ACCOUNT, order_id=int(a["order_id"], 16))
    order_b = engine.get_order(OTHER, order_id=int(b["order_id"], 16))
    smaller = await first.result("private/amend", {"client_order_id": 1, "price": 49000, "amount": 0.3})
    assert (smaller["change_reason"], smaller["amount"], smaller["remaining_amount"]) == ("amend", 0.3, 0.3)
    assert engine.orders_ahead(order_b) == 300 and engine.orders_ahead(order_a) == 0
    larger = await first.result("private/amend", {"order_id": a["order_id"], "price": 49000, "amount": 0.6})
    assert larger["amount"] == 0.6
    assert engine.orders_ahead(order_a) == 500
    moved = await second.result("private/amend", {"client_order_id": 1, "price": 50010, "amount": 0.5})
    assert (moved["status"], moved["change_reason"], moved["fills"][0]["price"]) == ("filled", "amend", 50010)
    gone = await first.result("private/amend", {"client_order_id": 1, "price": 49000, "amount": 0})
    assert (gone["status"], gone["change_reason"]) == ("cancelled", "amend")
    assert await first.error("private/amend", {"client_order_id": 1, "price": 49000, "amount": 1}) == 1


async def test_cancel_cancel_all_and_cancel_session(connect):
    client = await connect()
    order = await client.result("private/insert", limit(49000, 0.1, client_order_id=5))
    cancelled = await client.result("private/cancel", {"client_order_id": 5})
    assert (cancelled["order_id"], cancelled["status"], cancelled["change_reason"]) == (
        order["order_id"],
        "cancelled",
        "cancel",
    )
    assert cancelled["delete_reason"] == "client_cancel" and cancelled["remaining_amount"] == 0
    assert await client.error("private/cancel", {"order_id": order["order_id"]}) == 1
    for price in (48000, 48001, 48002):
        await client.result("private/insert", limit(price, 0.1))
    assert await client.result("private/cancel_all") == 3
    assert await client.result("private/open_orders") == []
    assert await client.error("private/cancel_session") == 52
    await client.result("private/set_cancel_on_disconnect", {"timeout_secs": 6})
    await client.result("private/insert", limit(48000, 0.1))
    assert await client.result("private/cancel_session") is None
    assert await client.result("private/open_orders") == []


async def test_cancel_on_disconnect_cancels_non_persistent_orders_with_session_end(connect, sim):
    watcher = await connect()
    await watcher.result("private/subscribe", {"channels": ["account.orders"]})
    client = await connect()
    persistent = await client.result("private/insert", limit(48000, 0.1))
    await client.result("private/set_cancel_on_disconnect", {"timeout_secs": 6})
    volatile = await client.result("private/insert", limit(48001, 0.1))
    assert (persistent["persistent"], volatile["persistent"]) == (True, False)
    await client.ws.close()
    deadline = time.monotonic() + 2
    while len(sim.engine.open_orders(ACCOUNT)) != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [order.price for order in sim.engine.open_orders(ACCOUNT)] == [48000]
    updates = [item for push in await watcher.pushes("account.orders", 4) for item in push]
    ended = [
        item for item in updates if item["order_id"] == volatile["order_id"] and item["status"] == "cancelled"
    ]
    assert ended and ended[0]["delete_reason"] == "session_end"


async def test_cancel_on_disconnect_timeout_without_frames(connect, sim):
    client = await connect()
    await client.result("private/set_cancel_on_disconnect", {"timeout_secs": 0.2})
    await client.result("private/insert", limit(48001, 0.1))
    deadline = time.monotonic() + 2
    while sim.engine.open_orders(ACCOUNT) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sim.engine.open_orders(ACCOUNT) == []
    assert sim.server.counters["session_end_cancels"] == 1


# mass quoting ---------------------------------------------------------------------------------------------


def quote(bid: Any, ask: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"i": BTC}
    if bid is not None:
        item["b"] = bid
    if ask is not None:
        item["a"] = ask
    return item


async def test_mass_quote_needs_protection_and_replaces_sides(connect, sim):
    client = await connect()
    quotes = [quote({"p": 49500, "a": 0.1}, {"p": 50500, "a": 0.1})]
    assert await client.error("private/mass_quote", {"quotes": quotes}) == 23
    assert (
        await client.error(
            "private/set_mm_protection", {"product": "FXXXUSD", "trade_amount": 1, "quote_amount": 1}
        )
        == 17
    )
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 0.5, "quote_amount": 0.5}
    )
    assert await client.result("private/mass_quote", {"quotes": quotes, "label": "mq"}) == {
        "n_success": 2,
        "n_fail": 0,
        "errors": [],
    }
    opened = await client.result("private/open_orders")
    assert {(item["label"], item["persistent"]) for item in opened} == {("mq", False)}
    first = {(order.price, order.side): order.order_id for order in sim.engine.open_orders(ACCOUNT)}
    assert set(first) == {(49500, Side.BUY), (50500, Side.SELL)}
    await client.result("private/mass_quote", {"quotes": quotes})
    assert {
        (o.price, o.side): o.order_id for o in sim.engine.open_orders(ACCOUNT)
    } == first  # same quote kept
    result = await client.result("private/mass_quote", {"quotes": [quote({"p": 49600, "a": 0.1}, None)]})
    assert result["n_success"] == 1
    now = {(o.price, o.side): o.order_id for o in sim.engine.open_orders(ACCOUNT)}
    assert set(now) == {(49600, Side.BUY), (50500, Side.SELL)}
    assert now[(50500, Side.SELL)] == first[(50500, Side.SELL)]
    multi = [quote([[49700, 0.1], [49650, 0.2]], {"p": 0, "a": 0})]
    assert (await client.result("private/mass_quote", {"quotes": multi}))["n_success"] == 3
    assert sorted(o.price for o in sim.engine.open_orders(ACCOUNT)) == [49650, 49700]
    too_big = await client.result("private/mass_quote", {"quotes": [quote(None, {"p": 50500, "a": 0.6})]})
    assert too_big["n_success"] == 0 and too_big["n_fail"] == 1
    assert too_big["errors"] == [
        {"code": 44, "message": "quote exceeds protection group size", "side": "ask", "price": 50500}
    ]
    await client.result("private/cancel_mass_quote", {})
    assert sim.engine.open_orders(ACCOUNT) == []
    assert await client.error("private/mass_quote", {"quotes": quotes}) == 23


async def test_mm_protection_trip_pulls_the_group_quotes(connect, sim):
    client = await connect()
    await client.result("private/subscribe", {"channels": ["session.mm_protection", "session.orders"]})
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 0.2, "quote_amount": 1}
    )
    quotes = [quote([[49995, 0.2], [49994, 0.3]], {"p": 50005, "a": 0.5})]
    assert (await client.result("private/mass_quote", {"quotes": quotes, "post_only": True}))[
        "n_success"
    ] == 3
    sim.venue.apply_market_trade(BTC, 49995, 200, Side.SELL)  # the market sells into our best bid
    deadline = time.monotonic() + 2
    while sim.engine.open_orders(ACCOUNT) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sim.engine.open_orders(ACCOUNT) == []
    protection = [item for push in await client.pushes("session.mm_protection", 2) for item in push]
    assert protection[0] == {"product": "FBTCUSD", "remaining_amount": 0.2, "reason": "refill"}
    assert protection[1]["reason"] == "executions" and protection[1]["remaining_amount"] <= 0
    await client.quiet()
    updates = [item for push in client.notifications["session.orders"] for item in push]
    pulled = [item for item in updates if item.get("delete_reason") == "mm_protection"]
    assert len(pulled) == 2
    filled = [item for item in updates if item["change_reason"] == "fill"]
    assert filled and filled[0]["fills"][0]["maker_taker"] == "maker"
    refused = await client.result("private/mass_quote", {"quotes": quotes})
    assert refused["n_fail"] == 3 and {error["code"] for error in refused["errors"]} == {23}
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 1, "quote_amount": 1}
    )
    assert (await client.result("private/mass_quote", {"quotes": quotes}))["n_success"] == 3


# subscriptions --------------------------------------------------------------------------------


async def test_book_channel_first_push_has_all_levels_then_changes(connect, sim):
    client = await connect(login=False)
    channel = "book.BTC-PERPETUAL.none.all.raw"
    assert await client.result("public/subscribe", {"channels": [channel, "book.NOPE.none.all.raw"]}) == [
        channel
    ]
    first = (await client.pushes(channel))[0]
    assert first["bid_changes"] == [[49980, 3, 3], [49990, 2, 2]]
    assert first["ask_changes"] == [[50010, 2, 2], [50020, 3, 3]]
    assert (first["total_bid_amount"], first["total_ask_amount"]) == (5, 5)
    assert set(first) == set(spec_examples()["Book"]) | {"ask_changes"}
    sim.venue.apply_depth(BTC, [(49990, 1000)], [])
    second = (await client.pushes(channel, 2))[1]
    assert (second["bid_changes"], second["ask_changes"], second["trades"]) == ([[49990, 1, 1]], [], [])
    sim.venue.apply_market_trade(BTC, 50010, 500, Side.BUY)
    third = (await client.pushes(channel, 3))[2]
    assert third["trades"][0][:3] == [50010, 0.5, "buy"] and third["trades"][0][4] is False
    assert third["ask_changes"] == [[50010, 1.5, 1.5]] and third["total_ask_amount"] == 4.5
    assert await client.error("public/subscribe", {"channels": [channel]}) == 8
    assert await client.result("unsubscribe", {"channels": [channel]}) == [channel]
    assert await client.error("unsubscribe", {"channels": [channel]}) == 9
    assert all(frame.startswith('{"channel_name":"') for frame in client.frames if "notification" in frame)


async def test_limited_grouped_book_and_delay_coalescing(connect, sim):
    client = await connect(login=False)
    grouped = "book.BTC-PERPETUAL.20.1.raw"
    slow = "book.BTC-PERPETUAL.none.all.500ms"
    await client.result("public/subscribe", {"channels": [grouped, slow]})
    assert (await client.pushes(grouped))[0]["bid_changes"] == [[49980, 5, 5]]
    assert (await client.pushes(grouped))[0]["ask_changes"] == [[50020, 5, 5]]
    await client.pushes(slow)
    sim.venue.apply_depth(BTC, [(49970, 1000)], [])  # outside the single level: no grouped change
    await asyncio.sleep(0.02)
    sim.venue.apply_depth(BTC, [(49985, 1000)], [])
    pushes = await client.pushes(slow, 2, timeout=3)
    assert pushes[1]["bid_changes"] == [[49970, 1, 1], [49985, 1, 1]]
    assert len(client.notifications[grouped]) == 2
    assert client.notifications[grouped][1]["bid_changes"] == [[49980, 6, 6]]


async def test_ticker_lwt_index_and_recent_trades_channels(connect, sim):
    sim.venue.apply_market_trade(BTC, 50010, 100, Side.BUY)
    client = await connect(login=False)
    channels = [
        "ticker.BTC-PERPETUAL.raw",
        "lwt.BTC-PERPETUAL.raw",
        "price_index.BTCUSD",
        "recent_trades.BTC-PERPETUAL.all",
    ]
    assert await client.result("public/subscribe", {"channels": channels}) == channels
    ticker = (await client.pushes(channels[0]))[0]
    assert ticker["last_price"] == 50010 and ticker["best_ask_amount"] == 1.9
    lwt = (await client.pushes(channels[1]))[0]
    assert set(lwt) == set(spec_examples()["Lwt"]) and lwt["b"] == [49990, 2, 2]
    assert (await client.pushes(channels[2]))[0]["price"] == 50000
    assert (await client.pushes(channels[3]))[0][0][:5] == [
        50010,
        0.1,
        "buy",
        pytest.approx(time.time(), abs=5),
        BTC,
    ]
    sim.venue.apply_depth(BTC, [(49995, 1000)], [])
    assert (await client.pushes(channels[0], 2))[1]["best_bid_price"] == 49995
    assert (await client.pushes(channels[1], 2))[1]["m"] == 50002.5


async def test_private_channels_push_order_trade_portfolio_and_summary(connect):
    client = await connect()
    resting = await client.result("private/insert", limit(48000, 0.1))
    channels = [
        "session.orders",
        "account.orders",
        "account.trade_history",
        "account.portfolio",
        "account.summary",
    ]
    assert await client.result("private/subscribe", {"channels": channels}) == channels
    assert await client.result("private/subscribe", {"channels": ["ticker.BTC-PERPETUAL.raw"]}) == []
    existing = (await client.pushes("session.orders"))[0]
    assert [(item["order_id"], item["change_reason"]) for item in existing] == [
        (resting["order_id"], "existing")
    ]
    assert (await client.pushes("account.portfolio"))[0] == []
    summary = (await client.pushes("account.summary"))[0]
    assert set(summary) == set(spec_examples()["AccountSummary"]) and summary["cash_collateral"] == 1000000
    taker = await client.result("private/insert", limit(50010, 0.5, client_order_id=9))
    await client.result("private/cancel", {"order_id": resting["order_id"]})
    await client.quiet()
    updates = [item for push in client.notifications["session.orders"][1:] for item in push]
    assert [(item["change_reason"], item["status"]) for item in updates] == [
        ("insert", "filled"),
        ("cancel", "cancelled"),
    ]
    assert updates[0]["order_id"] == taker["order_id"] and updates[0]["fills"] == taker["fills"]
    trades = (await client.pushes("account.trade_history"))[0]
    assert [(trade["client_order_id"], trade["amount"], trade["position_after"]) for trade in trades] == [
        (9, 0.5, 0.5)
    ]
    portfolio = client.notifications["account.portfolio"][1]
    assert set(portfolio[0]) == set(spec_examples()["PortfolioEntry"])
    assert (portfolio[0]["position"], portfolio[0]["average_price"]) == (0.5, 50010)
    assert client.notifications["account.summary"][-1]["unrealised_pnl"] == -5
    assert len(client.notifications["account.orders"]) == 3


async def test_system_channel_announces_reconnect(connect, sim):
    client = await connect(login=False)
    await client.result("public/subscribe", {"channels": ["system"]})
    sim.server.announce_reconnect()
    assert (await client.pushes("system"))[0] == {"event": "reconnect"}


async def test_stream_faults_corrupt_frames_are_counted(sim, connect):
    sim.server.faults = FaultInjector(FaultProfile(malformed_frame_probability=1.0))
    client = await connect(login=False)
    await client.send("public/subscribe", {"channels": ["system"]})
    message = await client.ws.receive(timeout=2)
    assert orjson.loads(message.data)["result"] == ["system"]
    sim.server.announce_reconnect()
    corrupt = await client.ws.receive(timeout=2)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(corrupt.data)
    assert orjson.loads((await client.ws.receive(timeout=2)).data)["notification"] == {"event": "reconnect"}


async def test_orders_of_other_venue_users_are_visible_on_account_orders(connect, sim):
    client = await connect()
    await client.result("private/subscribe", {"channels": ["account.orders"]})
    await client.pushes("account.orders")
    sim.venue.place(ACCOUNT, BTC, Side.BUY, OrderType.LIMIT, 100, 47000)
    pushed = (await client.pushes("account.orders", 2))[1]
    assert pushed[0]["price"] == 47000 and pushed[0]["persistent"] is True


async def test_delayed_ack_lets_notifications_overtake_the_answer(sim, connect):
    client = await connect()
    await client.result("private/subscribe", {"channels": ["session.orders"]})
    await client.pushes("session.orders")
    sim.server.faults.set_profile(FaultProfile(ack_delay_s=0.05, ack_delay_probability=1.0))
    request_id = await client.send("private/insert", limit(49000, 0.1))
    order = (await client.response(request_id))["result"]
    update = client.notifications["session.orders"][1][0]
    assert update["order_id"] == order["order_id"] and update["change_reason"] == "insert"
    answer = next(i for i, frame in enumerate(client.frames) if frame.startswith(f'{{"id":{request_id},'))
    pushed = next(i for i, frame in enumerate(client.frames) if order["order_id"] in frame)
    assert pushed < answer
    assert sim.server.faults.counts[FaultKind.DELAYED_ACK] == 1


async def test_scheduled_disconnect_fault_drops_the_connection(sim, connect):
    sim.server.faults.set_profile(FaultProfile(disconnect_every_s=0.1))
    client = await connect(login=False)
    message = await client.ws.receive(timeout=2)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert sim.server.faults.counts[FaultKind.DISCONNECT] == 1


async def test_protection_amounts_are_validated(connect):
    client = await connect()
    params = {"product": "FBTCUSD", "trade_amount": 2, "quote_amount": 1}
    assert await client.error("private/set_mm_protection", params) == 14
    assert await client.error("private/set_mm_protection", {**params, "trade_amount": 0}) == 14
    assert await client.result("private/set_mm_protection", {"product": "FBTCUSD", "amount": 1}) is None


@pytest.mark.parametrize("channel", ["book.BTC-PERPETUAL.none.all.raw", "book.BTC-PERPETUAL.none.3.raw"])
async def test_book_pushes_rebuild_the_venue_book(connect, sim, channel):
    """Law: snapshot + every later change == the venue's book (top N for a limited channel)."""
    client = await connect(login=False)
    await client.result("public/subscribe", {"channels": [channel]})
    await client.pushes(channel)
    chooser = random.Random(7)
    for _ in range(40):
        bids = [(chooser.randint(49900, 49995), chooser.choice([0, 100, 700])) for _ in range(3)]
        asks = [(chooser.randint(50005, 50100), chooser.choice([0, 200, 900])) for _ in range(3)]
        sim.venue.apply_depth(BTC, bids, asks)
        if chooser.random() < 0.3:
            await asyncio.sleep(0)
    await client.quiet(0.1)
    view: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for push in client.notifications[channel]:
        for side in ("bid", "ask"):
            for price, amount, outright in push[f"{side}_changes"]:
                assert amount == outright
                if amount:
                    view[side][price] = amount
                else:
                    view[side].pop(price, None)
    levels = 3 if channel.endswith(".3.raw") else None
    depth = sim.venue.depth(BTC, levels)
    instrument = sim.venue.instruments[BTC]
    for side, expected in (("bid", depth.bids), ("ask", depth.asks)):
        assert view[side] == {
            price_number(instrument, price): amount_number(instrument, size) for price, size in expected
        }


async def test_mass_quotes_die_with_their_session_even_without_cancel_on_disconnect(connect, sim, tmp_path):
    pem = tmp_path / "key.pem"
    pem.write_bytes(key_pair()[1])
    sim.server.add_key(ThalexApiKey.from_pem_file("KFILE", pem, ACCOUNT))
    client = await connect(login=False)
    await client.result("public/login", {"token": token(key_id="KFILE")})
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 1, "quote_amount": 1}
    )
    await client.result("private/mass_quote", {"quotes": [quote({"p": 49000, "a": 0.1}, None)]})
    await client.result("private/insert", limit(48000, 0.1))
    await client.ws.close()
    deadline = time.monotonic() + 2
    while len(sim.engine.open_orders(ACCOUNT)) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert [order.price for order in sim.engine.open_orders(ACCOUNT)] == [48000]


async def test_post_only_quotes_reprice_or_are_deleted_with_immediate_cancel(connect, sim):
    client = await connect()
    await client.result("private/subscribe", {"channels": ["session.orders"]})
    await client.pushes("session.orders")
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 1, "quote_amount": 1}
    )
    crossing = [quote({"p": 50010, "a": 0.1}, {"p": 49990, "a": 0.1})]
    repriced = await client.result("private/mass_quote", {"quotes": crossing, "post_only": True})
    assert repriced["n_success"] == 2
    assert sorted((o.side.value, o.price) for o in sim.engine.open_orders(ACCOUNT)) == [
        ("buy", 50009),
        ("sell", 50010),  # one tick above the best bid, which is by then our own repriced bid
    ]
    await client.result("private/cancel_mass_quote", {})
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 1, "quote_amount": 1}
    )
    strict = {"quotes": crossing, "post_only": True, "reject_post_only": True}
    assert (await client.result("private/mass_quote", strict))["n_success"] == 2
    assert sim.engine.open_orders(ACCOUNT) == []
    await client.quiet()
    updates = [item for push in client.notifications["session.orders"] for item in push]
    deleted = [item for item in updates if item.get("delete_reason") == "immediate_cancel"]
    assert [(item["direction"], item["price"], item["persistent"]) for item in deleted] == [
        ("buy", 50010, False),
        ("sell", 49990, False),
    ]


async def test_every_payload_conforms_to_the_venue_schemas(connect, sim):
    client = await connect()
    private = [
        "session.orders",
        "account.trade_history",
        "account.portfolio",
        "account.summary",
        "session.mm_protection",
    ]
    public = [
        "book.BTC-PERPETUAL.none.all.raw",
        "lwt.BTC-PERPETUAL.raw",
        "ticker.BTC-PERPETUAL.raw",
        "price_index.BTCUSD",
    ]
    await client.result("private/subscribe", {"channels": private})
    await client.result("public/subscribe", {"channels": public})
    results = [
        await client.result("private/insert", limit(49000, 0.1, client_order_id=1, label="L")),
        await client.result("private/amend", {"client_order_id": 1, "price": 49001, "amount": 0.2}),
        await client.result("private/insert", limit(50020, 2.5, "buy", time_in_force="immediate_or_cancel")),
        await client.result(
            "private/insert", limit(50100, 0.1, "buy", post_only=True, reject_post_only=True)
        ),
        await client.result("private/cancel", {"client_order_id": 1}),
    ]
    await client.result(
        "private/set_mm_protection", {"product": "FBTCUSD", "trade_amount": 0.1, "quote_amount": 1}
    )
    mass = await client.result("private/mass_quote", {"quotes": [quote([[49995, 0.1]], [[50030, 0.5]])]})
    assert_schema(mass, "DoubleSidedQuoteResult")
    sim.venue.apply_market_trade(BTC, 49995, 100, Side.SELL)
    for order in results + await client.result("private/open_orders"):
        assert_schema(order, "OrderStatus")
    assert_schema(await client.result("private/account_summary"), "AccountSummary")
    for entry in await client.result("private/portfolio"):
        assert_schema(entry, "PortfolioEntry")
    for trade in (await client.result("private/trade_history"))["trades"]:
        assert_schema(trade, "Trade")
    history = (await client.result("private/order_history"))["orders"]
    for order in history:
        assert_schema(order, "OrderHistory")
    swept = next(order for order in history if order["filled_amount"] == 2.5)
    assert [fill["amount"] for fill in swept["fills"]] == [2, 0.5]  # all fills, not the last update's
    for instrument in await client.result("public/instruments"):
        assert_schema(instrument, "Instrument")
    assert_schema(await client.result("public/ticker", {"instrument_name": BTC}), "Ticker")
    assert_schema(await client.result("public/index", {"underlying": "BTCUSD"}), "Index")
    await client.quiet(0.1)
    seen = client.notifications
    orders = [item for push in seen["session.orders"] for item in push]
    assert {item["delete_reason"] for item in orders if "delete_reason" in item} >= {
        "filled",
        "immediate_cancel",
        "client_cancel",
        "mm_protection",
    }
    for order in orders:
        assert_schema(order, "OrderStatus")
        for fill in order["fills"]:
            assert_schema(fill, "OrderFill")
    for trade in [item for push in seen["account.trade_history"] for item in push]:
        assert_schema(trade, "Trade")
    for entry in [item for push in seen["account.portfolio"] for item in push]:
        assert_schema(entry, "PortfolioEntry")
    for summary in seen["account.summary"]:
        assert_schema(summary, "AccountSummary")
    for item in [item for push in seen["session.mm_protection"] for item in push]:
        assert_schema(item, "SessionMmProtectionPayloadInner", "ws_spec.json")
    for book in seen[public[0]]:
        assert_schema(book, "Book", "ws_spec.json")
    for lwt in seen[public[1]]:
        assert_schema(lwt, "Lwt", "ws_spec.json")
    for ticker in seen[public[2]]:
        assert_schema(ticker, "Ticker")
    for index in seen[public[3]]:
        assert_schema(index, "Index")


async def test_remaining_channels_instruments_underlying_trades_history_and_persistent(connect, sim):
    client = await connect()
    await client.result(
        "private/subscribe", {"channels": ["account.persistent_orders", "account.order_history"]}
    )
    channels = ["instruments", "recent_trades.BTCUSD.perpetual", "recent_trades.ETHUSD.options", "bogus"]
    assert await client.result("public/subscribe", {"channels": channels}) == channels[:3]
    added = (await client.pushes("instruments"))[0]
    assert [item["added"]["instrument_name"] for item in added] == ["BTC-PERPETUAL", "ETH-PERPETUAL"]
    assert (await client.pushes("recent_trades.BTCUSD.perpetual"))[0] == []
    assert (await client.pushes("account.persistent_orders"))[0] == []
    persistent = await client.result("private/insert", limit(48000, 0.1))
    await client.result("private/set_cancel_on_disconnect", {"timeout_secs": 6})
    await client.result("private/insert", limit(48001, 0.1))
    taker = await client.result("private/insert", limit(50010, 0.1))
    await client.quiet()
    shown = [item["order_id"] for push in client.notifications["account.persistent_orders"] for item in push]
    assert shown == [persistent["order_id"]]
    history = [item for push in client.notifications["account.order_history"] for item in push]
    assert [(item["order_id"], item["status"]) for item in history] == [(taker["order_id"], "filled")]
    rows = client.notifications["recent_trades.BTCUSD.perpetual"][1]
    assert rows == [[50010, 0.1, "buy", taker["fills"][0]["time"], BTC, False]]
    assert client.notifications["recent_trades.ETHUSD.options"] == [[]]


async def test_stalled_streams_hold_notifications_but_answer_requests(sim, connect):
    client = await connect(login=False)
    await client.result("public/subscribe", {"channels": ["system"]})
    sim.server.faults = FaultInjector(FaultProfile(stall_every_s=0.001, stall_duration_s=60))
    await asyncio.sleep(0.01)  # past the first scheduled stall
    sim.server.announce_reconnect()
    assert await client.result("public/system_info")  # answers still flow during a stall
    await client.quiet(0.1)
    assert "system" not in client.notifications
    sim.server.faults.set_profile(FaultProfile())  # the stall ends: what was held goes out
    assert (await client.pushes("system", timeout=3))[0] == {"event": "reconnect"}
    assert sim.server.faults.counts[FaultKind.STALL] >= 1
