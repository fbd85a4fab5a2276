"""Market streams, live SUBSCRIBE control, book sync over stream + snapshot, stream faults, user data."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BINANCE_FUTURES_RULES, BINANCE_SPOT_RULES, BookSynchronizer, SyncAction
from hftkit.core.clock import SimulatedClock
from hftkit.core.types import OrderType, Side
from hftkit.sim.binance.streams import InvalidStream, Subscriber, parse_stream
from hftkit.sim.engine.faults import FaultInjector, FaultKind, FaultProfile
from hftkit.testing.binance_simulator import API_KEY, API_SECRET, SYMBOL, BinanceSimHarness
from hftkit.venues.binance.auth import HmacSigner
from hftkit.venues.binance.endpoints import Market

TIMEOUT = 3.0


@pytest.fixture
async def sim():
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


async def receive(socket: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> Any:
    message = await socket.receive(timeout=timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def receive_until(socket: aiohttp.ClientWebSocketResponse, predicate, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("expected message never came")
        message = await receive(socket, remaining)
        if predicate(message):
            return message


async def place(sim: BinanceSimHarness, path: str = "/api/v3/order", **params: str) -> dict:
    status, body, _ = await sim.request("POST", path, {"symbol": SYMBOL, **params}, signed=True)
    assert status == 200, body
    return body


def ws_url(sim: BinanceSimHarness, path: str) -> str:
    return f"{sim.urls['ws']}{path}"


# raw, combined and live subscriptions --------------------------------------------------------------


async def test_raw_trade_stream_delivers_bare_payloads(sim):
    async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@trade")) as socket:
        await asyncio.sleep(0.05)
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        trade = await receive(socket)
    assert trade["e"] == "trade" and trade["s"] == SYMBOL
    assert (trade["p"], trade["q"], trade["m"]) == ("50000.01000000", "0.01000000", False)
    assert set(trade) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}


async def test_combined_stream_wraps_every_event(sim):
    url = ws_url(sim, "/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker")
    async with sim.session.ws_connect(url) as socket:
        await asyncio.sleep(0.05)
        await place(sim, side="SELL", type="MARKET", quantity="0.6")
        seen = {}
        while len(seen) < 2:
            message = await receive(socket)
            seen.setdefault(message["stream"], message["data"])
    assert seen["btcusdt@aggTrade"]["e"] == "aggTrade" and seen["btcusdt@aggTrade"]["p"] == "49999.99000000"
    ticker = seen["btcusdt@bookTicker"]
    assert set(ticker) == {"u", "s", "b", "B", "a", "A"}
    assert (ticker["b"], ticker["B"]) == ("49999.98000000", "0.40000000")


async def test_bare_socket_with_live_subscribe_list_unsubscribe_and_properties():
    sim = await BinanceSimHarness(server_options={"incoming_messages_per_s": {Market.SPOT: 0}}).start()
    try:
        await _exercise_control_messages(sim)
    finally:
        await sim.stop()


async def test_too_many_control_messages_per_second_close_the_connection():
    sim = await BinanceSimHarness(clock=SimulatedClock(wall_offset_ns=time.time_ns())).start()
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws")) as socket:
            for index in range(6):
                await socket.send_str(f'{{"method":"LIST_SUBSCRIPTIONS","id":{index}}}')
            answers = []
            while True:
                message = await socket.receive(timeout=TIMEOUT)
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                answers.append(orjson.loads(message.data))
        assert [answer["id"] for answer in answers] == [0, 1, 2, 3, 4]
        assert sim.server.message_limit_disconnects == 1
    finally:
        await sim.stop()


async def test_server_pings_on_its_interval():
    sim = await BinanceSimHarness(server_options={"ping_interval_s": 0.1}).start()
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws"), autoping=False) as socket:
            message = await socket.receive(timeout=TIMEOUT)
            assert message.type is aiohttp.WSMsgType.PING
            await socket.pong(message.data)
    finally:
        await sim.stop()


async def _exercise_control_messages(sim: BinanceSimHarness) -> None:
    async with sim.session.ws_connect(ws_url(sim, "/ws")) as socket:
        await socket.send_str(
            '{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@depth@100ms"],"id":1}'
        )
        assert await receive(socket) == {"result": None, "id": 1}
        await socket.send_str('{"method":"LIST_SUBSCRIPTIONS","id":"two"}')
        assert await receive(socket) == {"result": ["btcusdt@trade", "btcusdt@depth@100ms"], "id": "two"}
        await socket.send_str('{"method":"UNSUBSCRIBE","params":["btcusdt@depth@100ms"],"id":3}')
        assert await receive(socket) == {"result": None, "id": 3}
        await socket.send_str('{"method":"GET_PROPERTY","params":["combined"],"id":4}')
        assert await receive(socket) == {"result": False, "id": 4}
        await socket.send_str('{"method":"SET_PROPERTY","params":["combined",true],"id":5}')
        assert await receive(socket) == {"result": None, "id": 5}
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        wrapped = await receive(socket)
        assert wrapped["stream"] == "btcusdt@trade" and wrapped["data"]["e"] == "trade"
        await socket.send_str('{"method":"SET_PROPERTY","params":["combined","yes"],"id":6}')
        assert await receive(socket) == {"code": 1, "msg": "Invalid value type: expected Boolean", "id": 6}
        await socket.send_str('{"method":"SET_PROPERTY","params":["colour",true],"id":7}')
        assert await receive(socket) == {"code": 0, "msg": "Unknown property", "id": 7}
        await socket.send_str('{"method":"JUMP","params":[],"id":8}')
        answer = await receive(socket)
        assert answer["code"] == 2 and answer["id"] == 8 and "unknown variant `JUMP`" in answer["msg"]
        await socket.send_str("{not json")
        answer = await receive(socket)
        assert answer["code"] == 3 and answer["msg"].startswith("Invalid JSON")
        await socket.send_str('{"method":"SUBSCRIBE","params":["btcusdt@nonsense"],"id":9}')
        answer = await receive(socket)
        assert answer["code"] == 2 and answer["id"] == 9
        await socket.send_str('{"method":"LIST_SUBSCRIPTIONS","id":10}')
        assert await receive(socket) == {"result": ["btcusdt@trade"], "id": 10}


async def test_path_suffix_that_is_no_stream_is_tolerated(sim):
    """ccxt.pro connects to /ws/0, /ws/1, ... and subscribes afterwards."""
    async with sim.session.ws_connect(ws_url(sim, "/ws/0")) as socket:
        await socket.send_str('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}')
        assert await receive(socket) == {"result": None, "id": 1}
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        assert (await receive(socket))["e"] == "aggTrade"


# depth -------------------------------------------------------------------------------------------------


async def test_depth_diffs_are_consecutive_and_net_each_window(sim):
    async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@depth@100ms")) as socket:
        await asyncio.sleep(0.05)
        instrument = sim.spot.instruments[SYMBOL]
        ticks = instrument.price_to_ticks
        for size in (1, 2, 3):
            sim.spot.apply_depth(SYMBOL, [(ticks("49990"), size * 1000)], [])
        first = await receive(socket)
        await place(sim, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="49995")
        second = await receive(socket)
    assert first["e"] == "depthUpdate" and "pu" not in first
    assert first["u"] - first["U"] == 2  # three engine batches in one 100 ms window
    assert first["b"] == [["49990.00000000", "0.03000000"]]  # netted: the last size wins
    assert second["U"] == first["u"] + 1 == second["u"]
    assert second["b"] == [["49995.00000000", "0.00100000"]]


async def run_book_sync(
    sim: BinanceSimHarness, stream_path: str, depth_path: str, rules, venue
) -> BookSynchronizer:
    """Follow Binance's §5.1 procedure with hftkit's BookSynchronizer while the book churns."""
    instrument = venue.instruments[SYMBOL]
    book = OrderBook(SYMBOL)
    sync = BookSynchronizer(book, rules)
    rng = random.Random(7)
    done = asyncio.Event()

    async def churn() -> None:
        mid = instrument.price_to_ticks("50000")
        for step in range(60):
            side_levels = [(mid - rng.randint(1, 30), rng.choice((0, rng.randint(1, 90_000))))]
            venue.apply_depth(SYMBOL, side_levels, [(mid + rng.randint(1, 30), rng.randint(0, 90_000))])
            if step % 7 == 0:
                venue.place(API_KEY, SYMBOL, Side.BUY, OrderType.LIMIT, 1000, mid - rng.randint(1, 40))
            if step % 11 == 0:
                venue.place(API_KEY, SYMBOL, Side.SELL, OrderType.MARKET, 1000)
            await asyncio.sleep(0.005)
        done.set()

    async def snapshot() -> None:
        _, body, _ = await sim.request("GET", depth_path, {"symbol": SYMBOL, "limit": 1000})
        bids = [(instrument.price_to_ticks(p), instrument.quantity_to_lots(q)) for p, q in body["bids"]]
        asks = [(instrument.price_to_ticks(p), instrument.quantity_to_lots(q)) for p, q in body["asks"]]
        if sync.on_snapshot(body["lastUpdateId"], bids, asks) is SyncAction.FETCH_SNAPSHOT:
            await snapshot()

    async with sim.session.ws_connect(ws_url(sim, stream_path)) as socket:
        churner = asyncio.create_task(churn())
        await asyncio.sleep(0.01)
        fetched = False
        while not (
            done.is_set() and sync.is_synced and sync.last_update_id == venue.engine.update_id(SYMBOL)
        ):
            try:
                event = await receive(socket, 0.1)
            except TimeoutError:
                continue
            if "stream" in event:
                event = event["data"]
            bids = [(instrument.price_to_ticks(p), instrument.quantity_to_lots(q)) for p, q in event["b"]]
            asks = [(instrument.price_to_ticks(p), instrument.quantity_to_lots(q)) for p, q in event["a"]]
            action = sync.on_depth(event["U"], event["u"], event.get("pu", -1), bids, asks)
            if action is SyncAction.FETCH_SNAPSHOT or (sync.needs_snapshot and not fetched):
                fetched = True
                await snapshot()
        await churner
    expected = venue.engine.depth(SYMBOL)
    assert book.bids() == expected.bids and book.asks() == expected.asks
    return sync


async def test_spot_book_synchronizer_stays_in_sync_while_orders_and_background_change(sim):
    sync = await run_book_sync(sim, "/ws/btcusdt@depth@100ms", "/api/v3/depth", BINANCE_SPOT_RULES, sim.spot)
    assert sync.counters.gaps == 0 and sync.counters.snapshots == 1


async def test_usdm_realtime_depth_links_pu_and_syncs(sim):
    sync = await run_book_sync(
        sim, "/public/stream?streams=btcusdt@depth@0ms", "/fapi/v1/depth", BINANCE_FUTURES_RULES, sim.usdm
    )
    assert sync.counters.gaps == 0


async def test_snapshot_sits_on_an_event_boundary_for_strict_clients():
    """python-binance wants the first diff after a snapshot to start at exactly lastUpdateId + 1."""
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    sim = await BinanceSimHarness(clock=clock).start()
    ticks = sim.spot.instruments[SYMBOL].price_to_ticks
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@depth")) as socket:  # 1000 ms windows
            await asyncio.sleep(0.05)
            sim.spot.apply_depth(SYMBOL, [(ticks("49980"), 5000)], [])
            sim.spot.apply_depth(SYMBOL, [(ticks("49979"), 5000)], [])
            _, snapshot, _ = await sim.request("GET", "/api/v3/depth", {"symbol": SYMBOL})
            sim.spot.apply_depth(SYMBOL, [(ticks("49981"), 5000)], [])
            events = [await receive(socket)]
            clock.advance_seconds(1)  # the window the snapshot cut short now closes on schedule
            events.append(await receive(socket))
    finally:
        await sim.stop()
    last = snapshot["lastUpdateId"]
    assert (events[0]["U"], events[0]["u"]) == (last - 1, last)
    assert events[1]["U"] == events[1]["u"] == last + 1


async def test_partial_depth_streams(sim):
    async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@depth5@100ms")) as socket:
        spot = await receive(socket)
    assert set(spot) == {"lastUpdateId", "bids", "asks"} and len(spot["bids"]) == 5
    assert spot["asks"][0] == ["50000.01000000", "0.50000000"]
    async with sim.session.ws_connect(ws_url(sim, "/public/ws/btcusdt@depth10@100ms")) as socket:
        futures = await receive(socket)
    assert futures["e"] == "depthUpdate" and len(futures["b"]) == 10 and {"T", "pu", "U", "u"} <= set(futures)


async def test_periodic_streams_follow_the_simulated_clock():
    minute = 60 * 10**9
    now = time.time_ns()
    clock = SimulatedClock(wall_offset_ns=now - now % minute + 10 * 10**9)  # 10 s into a minute
    sim = await BinanceSimHarness(clock=clock).start()
    try:
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        url = ws_url(sim, "/stream?streams=btcusdt@kline_1m/btcusdt@miniTicker/btcusdt@ticker")
        async with sim.session.ws_connect(url) as socket:
            await asyncio.sleep(0.05)
            clock.advance_seconds(2.5)
            seen: dict[str, dict] = {}
            while len(seen) < 3:
                message = await receive(socket)
                seen[message["stream"]] = message["data"]
        kline = seen["btcusdt@kline_1m"]["k"]
        assert (kline["i"], kline["c"], kline["n"], kline["x"]) == ("1m", "50000.01000000", 1, False)
        assert seen["btcusdt@miniTicker"]["c"] == "50000.01000000"
        ticker = seen["btcusdt@ticker"]
        assert ticker["e"] == "24hrTicker" and ticker["b"] == "49999.99000000" and ticker["n"] == 1
    finally:
        await sim.stop()


async def test_all_market_streams():
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    sim = await BinanceSimHarness(clock=clock).start()
    try:
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        url = ws_url(sim, "/stream?streams=!miniTicker@arr/!bookTicker")
        async with sim.session.ws_connect(url) as socket:
            await asyncio.sleep(0.05)
            sim.spot.apply_depth(SYMBOL, [(sim.spot.instruments[SYMBOL].price_to_ticks("49999.99"), 0)], [])
            clock.advance_seconds(1.5)
            seen: dict[str, Any] = {}
            while len(seen) < 2:
                message = await receive(socket)
                seen[message["stream"]] = message["data"]
        assert [row["s"] for row in seen["!miniTicker@arr"]] == [SYMBOL]
        assert seen["!bookTicker"]["s"] == SYMBOL
        with pytest.raises(InvalidStream):
            parse_stream("!markPrice@arr", spot=True)
        assert parse_stream("!markPrice@arr", spot=False).kind == "allMarkPrice"
    finally:
        await sim.stop()


# stream faults ---------------------------------------------------------------------------------------


async def test_dropped_depth_update_leaves_a_visible_gap():
    faults = FaultInjector(FaultProfile(depth_drop_probability=0.5), seed=11)
    sim = await BinanceSimHarness(faults_spot=faults).start()
    ticks = sim.spot.instruments[SYMBOL].price_to_ticks
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@depth@100ms")) as socket:
            await asyncio.sleep(0.05)
            events = []
            for index in range(12):
                sim.spot.apply_depth(SYMBOL, [(ticks("49900") + index, 1000)], [])
                sim.server.markets[Market.SPOT].streams.flush_symbol(SYMBOL)
            while len(events) < 12 - faults.counts[FaultKind.DEPTH_DROPPED]:
                events.append(await receive(socket))
        dropped = faults.counts[FaultKind.DEPTH_DROPPED]
        assert dropped > 0
        gaps = sum(1 for previous, event in itertools.pairwise(events) if event["U"] != previous["u"] + 1)
        assert gaps >= 1
    finally:
        await sim.stop()


async def test_duplicated_and_reordered_depth_updates():
    faults = FaultInjector(FaultProfile(depth_duplicate_probability=1.0))
    sim = await BinanceSimHarness(faults_spot=faults).start()
    ticks = sim.spot.instruments[SYMBOL].price_to_ticks
    streams = sim.server.markets[Market.SPOT].streams
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@depth@100ms")) as socket:
            await asyncio.sleep(0.05)
            sim.spot.apply_depth(SYMBOL, [(ticks("49900"), 1000)], [])
            streams.flush_symbol(SYMBOL)
            first, second = await receive(socket), await receive(socket)
            assert first == second
            faults.set_profile(FaultProfile(depth_reorder_probability=1.0))
            sim.spot.apply_depth(SYMBOL, [(ticks("49901"), 1000)], [])
            streams.flush_symbol(SYMBOL)  # the REST-snapshot flush also releases a held event
            sim.spot.apply_depth(SYMBOL, [(ticks("49902"), 1000)], [])
            streams._flush_depth(
                next(iter(streams._by_symbol[SYMBOL].values()))
            )  # held, then released in order
            sim.spot.apply_depth(SYMBOL, [(ticks("49903"), 1000)], [])
            faults.set_profile(FaultProfile())
            streams.flush_symbol(SYMBOL)
            events = [await receive(socket) for _ in range(3)]
        assert [event["u"] for event in events] != sorted(event["u"] for event in events)
        assert faults.counts[FaultKind.DEPTH_REORDERED] >= 1
    finally:
        await sim.stop()


async def test_corrupt_frame_and_scheduled_disconnect():
    faults = FaultInjector(FaultProfile(malformed_frame_probability=1.0, disconnect_every_s=0.3))
    sim = await BinanceSimHarness(faults_spot=faults).start()
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@trade")) as socket:
            await asyncio.sleep(0.05)
            await place(sim, side="BUY", type="MARKET", quantity="0.01")
            broken = await socket.receive(timeout=TIMEOUT)
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(broken.data)
            intact = orjson.loads((await socket.receive(timeout=TIMEOUT)).data)
            assert intact["e"] == "trade"
            closing = await socket.receive(timeout=TIMEOUT)
            assert closing.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            )
        assert faults.counts[FaultKind.DISCONNECT] == 1 and faults.counts[FaultKind.MALFORMED_FRAME] >= 1
    finally:
        await sim.stop()


async def test_stall_holds_frames_until_it_ends():
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    faults = FaultInjector(FaultProfile(stall_every_s=10, stall_duration_s=2), clock=clock)
    sim = await BinanceSimHarness(clock=clock, faults_spot=faults).start()
    try:
        async with sim.session.ws_connect(ws_url(sim, "/ws/btcusdt@trade")) as socket:
            await asyncio.sleep(0.05)
            clock.advance_seconds(10)  # the stall starts
            await place(sim, side="BUY", type="MARKET", quantity="0.01")
            with pytest.raises(asyncio.TimeoutError):
                await socket.receive(timeout=0.3)
            clock.advance_seconds(2.5)
            assert (await receive(socket))["e"] == "trade"
        assert faults.counts[FaultKind.STALL] == 1
    finally:
        await sim.stop()


# user data: spot WebSocket API -------------------------------------------------------------------------


def signed_ws_params(sim: BinanceSimHarness, **params: Any) -> dict[str, Any]:
    full = {"apiKey": API_KEY, "timestamp": sim.server_ms(), **params}
    full["signature"] = HmacSigner(API_SECRET).sign_websocket_params(full)
    return full


async def subscribe_user_data(sim: BinanceSimHarness, socket: aiohttp.ClientWebSocketResponse) -> int:
    request = {
        "id": "sub",
        "method": "userDataStream.subscribe.signature",
        "params": signed_ws_params(sim, recvWindow=10000),
    }
    await socket.send_str(orjson.dumps(request).decode())
    answer = await receive(socket)
    assert answer["id"] == "sub" and answer["status"] == 200, answer
    return answer["result"]["subscriptionId"]


async def test_execution_reports_for_fills_and_an_expiring_ioc(sim):
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        subscription = await subscribe_user_data(sim, socket)
        maker = await place(
            sim,
            side="SELL",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.01",
            price="50000",
            newClientOrderId="mk",
        )
        sim.spot.accounts.deposit("other", "USDT", sim.spot.accounts.to_units("USDT", "1000"))
        for lots in (400, 600):  # someone else takes 0.004 then 0.006
            assert sim.spot.place("other", SYMBOL, Side.BUY, OrderType.MARKET, lots).accepted
        await place(
            sim,
            side="BUY",
            type="LIMIT",
            timeInForce="IOC",
            quantity="0.6",
            price="50000.01",
            newClientOrderId="tk",
        )
        events = []
        while (
            sum(event["e"] == "executionReport" for event in events) < 6
            or events[-1]["e"] != "outboundAccountPosition"
        ):
            message = await receive(socket)
            assert message["subscriptionId"] == subscription
            events.append(message["event"])
    reports = [event for event in events if event["e"] == "executionReport"]
    summary = [(event["c"], event["x"], event["X"], event["l"], event["z"]) for event in reports]
    assert summary == [
        ("mk", "NEW", "NEW", "0.00000000", "0.00000000"),
        ("mk", "TRADE", "PARTIALLY_FILLED", "0.00400000", "0.00400000"),
        ("mk", "TRADE", "FILLED", "0.00600000", "0.01000000"),
        ("tk", "NEW", "NEW", "0.00000000", "0.00000000"),
        ("tk", "TRADE", "PARTIALLY_FILLED", "0.50000000", "0.50000000"),
        ("tk", "EXPIRED", "EXPIRED", "0.00000000", "0.50000000"),
    ]
    maker_fill = reports[2]
    assert (
        maker_fill["i"] == maker["orderId"]
        and maker_fill["m"] is True
        and maker_fill["L"] == "50000.00000000"
    )
    assert maker_fill["Z"] == "500.00000000" and maker_fill["Y"] == "300.00000000"
    assert maker_fill["n"] == "0.30000000" and maker_fill["N"] == "USDT" and maker_fill["w"] is False
    assert reports[1]["w"] is True and reports[0]["t"] == -1 and reports[0]["N"] is None
    taker_fill = reports[4]
    assert taker_fill["m"] is False and taker_fill["N"] == "BTC" and taker_fill["n"] == "0.00050000"
    assert taker_fill["w"] is False and taker_fill["t"] > maker_fill["t"]
    positions = [event for event in events if event["e"] == "outboundAccountPosition"]
    final = {balance["a"]: balance for balance in positions[-1]["B"]}
    assert final["BTC"] == {"a": "BTC", "f": "2.48950000", "l": "0.00000000"}  # 2 - 0.01 + 0.5 - 0.0005
    assert events.index(positions[-1]) > events.index(reports[-1])


async def test_cancel_report_names_cancel_and_original_client_ids(sim):
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        await subscribe_user_data(sim, socket)
        order = await place(
            sim,
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.01",
            price="49000",
            newClientOrderId="orig",
        )
        await sim.request(
            "DELETE",
            "/api/v3/order",
            {"symbol": SYMBOL, "orderId": order["orderId"], "newClientOrderId": "kill"},
            signed=True,
        )
        canceled = await receive_until(socket, lambda m: m["event"].get("x") == "CANCELED")
    assert (canceled["event"]["c"], canceled["event"]["C"], canceled["event"]["X"]) == (
        "kill",
        "orig",
        "CANCELED",
    )


async def test_websocket_api_order_methods_and_unsubscribe(sim):
    async with sim.session.ws_connect(sim.urls["spot_ws_api"]) as socket:
        await socket.send_str('{"id":1,"method":"ping","params":{}}')
        pong = await receive(socket)
        assert (
            pong["status"] == 200
            and pong["result"] == {}
            and pong["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        )
        params = signed_ws_params(
            sim,
            symbol=SYMBOL,
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="49000",
            newOrderRespType="FULL",
            returnRateLimits=False,
            recvWindow=10000,
        )
        await socket.send_str(orjson.dumps({"id": "p", "method": "order.place", "params": params}).decode())
        placed = await receive(socket)
        assert placed["status"] == 200 and "rateLimits" not in placed
        assert placed["result"]["status"] == "NEW" and placed["result"]["fills"] == []
        status_params = signed_ws_params(sim, symbol=SYMBOL, orderId=placed["result"]["orderId"])
        await socket.send_str(
            orjson.dumps({"id": "s", "method": "order.status", "params": status_params}).decode()
        )
        assert (await receive(socket))["result"]["status"] == "NEW"
        await socket.send_str(
            orjson.dumps(
                {"id": "o", "method": "openOrders.status", "params": signed_ws_params(sim, symbol=SYMBOL)}
            ).decode()
        )
        assert len((await receive(socket))["result"]) == 1
        cancel_params = signed_ws_params(sim, symbol=SYMBOL, orderId=placed["result"]["orderId"])
        await socket.send_str(
            orjson.dumps({"id": "c", "method": "order.cancel", "params": cancel_params}).decode()
        )
        assert (await receive(socket))["result"]["status"] == "CANCELED"
        bad = signed_ws_params(sim)
        bad["signature"] = "00" * 32
        await socket.send_str(
            orjson.dumps({"id": "b", "method": "userDataStream.subscribe.signature", "params": bad}).decode()
        )
        refused = await receive(socket)
        assert refused["status"] == 400 and refused["error"] == {
            "code": -1022,
            "msg": "Signature for this request is not valid.",
        }
        subscription = await subscribe_user_data(sim, socket)
        await socket.send_str(
            orjson.dumps(
                {
                    "id": "u",
                    "method": "userDataStream.unsubscribe",
                    "params": {"subscriptionId": subscription},
                }
            ).decode()
        )
        messages = [await receive(socket), await receive(socket)]
        terminated = next(message for message in messages if "subscriptionId" in message)
        assert terminated["event"]["e"] == "eventStreamTerminated"
        assert next(message for message in messages if message.get("id") == "u")["result"] == {}
        await socket.send_str('{"id":9,"method":"nothing.here","params":{}}')
        assert (await receive(socket))["status"] == 400


# user data: listen keys ---------------------------------------------------------------------------------


async def test_usdm_listen_key_stream_reports_orders_and_account_updates(sim):
    _, body, _ = await sim.request("POST", "/fapi/v1/listenKey")
    key = body["listenKey"]
    async with sim.session.ws_connect(ws_url(sim, f"/private/ws?listenKey={key}")) as socket:
        await asyncio.sleep(0.05)
        await place(sim, "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.01")
        events = [await receive(socket) for _ in range(3)]
    updates = [event for event in events if event["e"] == "ORDER_TRADE_UPDATE"]
    assert [(event["o"]["x"], event["o"]["X"]) for event in updates] == [("NEW", "NEW"), ("TRADE", "FILLED")]
    assert (
        updates[1]["o"]["ap"] == "50000.1"
        and updates[1]["o"]["L"] == "50000.1"
        and updates[1]["o"]["N"] == "USDT"
    )
    account = events[-1]
    assert account["e"] == "ACCOUNT_UPDATE"
    assert account["a"]["P"][0]["pa"] == "0.010" and account["a"]["P"][0]["ep"] == "50000.1"
    assert account["a"]["B"][0]["a"] == "USDT"


async def test_usdm_order_updates_carry_post_only_and_reduce_only_flags(sim):
    _, body, _ = await sim.request("POST", "/fapi/v1/listenKey")
    async with sim.session.ws_connect(ws_url(sim, f"/ws/{body['listenKey']}")) as socket:
        await asyncio.sleep(0.05)
        await place(sim, "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.01")
        await place(
            sim,
            "/fapi/v1/order",
            side="SELL",
            type="LIMIT",
            timeInForce="GTX",
            quantity="0.01",
            price="51000",
        )
        await place(sim, "/fapi/v1/order", side="SELL", type="MARKET", quantity="0.004", reduceOnly="true")
        updates = []
        while len(updates) < 5:
            event = await receive(socket)
            if event["e"] == "ORDER_TRADE_UPDATE":
                updates.append(event["o"])
    post_only, reducing = updates[2], updates[3]
    assert (post_only["x"], post_only["f"], post_only["o"], post_only["R"]) == ("NEW", "GTX", "LIMIT", False)
    assert (reducing["x"], reducing["R"]) == ("NEW", True)
    assert (updates[4]["x"], updates[4]["X"], updates[4]["R"]) == ("TRADE", "FILLED", True)
    assert updates[4]["rp"] == "-0.0008"  # closed 0.004 bought at 50000.1, sold at 49999.9


async def test_listen_key_expires_and_keepalive_extends_it():
    clock = SimulatedClock(wall_offset_ns=time.time_ns())
    sim = await BinanceSimHarness(clock=clock, server_options={"listen_key_validity_s": 60}).start()
    try:
        _, body, _ = await sim.request("POST", "/fapi/v1/listenKey")
        key = body["listenKey"]
        async with sim.session.ws_connect(ws_url(sim, f"/ws/{key}")) as socket:
            clock.advance_seconds(50)
            await sim.request("PUT", "/fapi/v1/listenKey")
            clock.advance_seconds(50)  # 100 s after creation, 50 s after the keepalive: still valid
            await asyncio.sleep(0.3)
            await place(sim, "/fapi/v1/order", side="BUY", type="MARKET", quantity="0.01")
            assert (await receive(socket))["e"] == "ORDER_TRADE_UPDATE"
            clock.advance_seconds(20)
            expired = await receive_until(socket, lambda event: event["e"] == "listenKeyExpired")
            assert expired["listenKey"] == key
        _status, body, _ = await sim.request("PUT", "/fapi/v1/listenKey")
        assert body["code"] == -1125
        async with sim.session.get(
            ws_url(sim, f"/private/ws?listenKey={key}").replace("ws://", "http://")
        ) as response:
            assert response.status == 400
    finally:
        await sim.stop()


async def test_spot_legacy_listen_key_stream(sim):
    _, body, _ = await sim.request("POST", "/api/v3/userDataStream")
    async with sim.session.ws_connect(ws_url(sim, f"/ws/{body['listenKey']}")) as socket:
        await asyncio.sleep(0.05)
        await place(sim, side="BUY", type="MARKET", quantity="0.01")
        first = await receive(socket)
    assert first["e"] == "executionReport" and first["x"] == "NEW"


# the depth-stream law, sans-I/O ------------------------------------------------------------------


class _Capture:
    """Stands in for a connection's outbox: keeps the frames a subscriber would be sent."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.closed = False

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))


operations = st.lists(
    st.one_of(
        st.tuples(st.just("depth"), st.booleans(), st.integers(1, 40), st.integers(0, 5000)),
        st.tuples(st.just("limit"), st.booleans(), st.integers(1, 40), st.integers(1, 3000)),
        st.tuples(st.just("market"), st.booleans(), st.integers(1, 40), st.integers(1, 3000)),
        st.tuples(st.just("flush"), st.booleans(), st.integers(1, 40), st.integers(0, 0)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(operations=operations, spot=st.booleans())
def test_snapshot_plus_published_diffs_always_equal_the_engine_book(operations, spot):
    """For any mix of market data, orders and snapshot points: ids chain and the book replays exactly."""
    harness = BinanceSimHarness()
    venue = harness.spot if spot else harness.usdm
    market = harness.server.markets[Market.SPOT if spot else Market.USDM]
    streams = market.streams
    capture = _Capture()
    subscriber = Subscriber(capture, combined=False)  # type: ignore[arg-type]
    streams.subscribe(subscriber, parse_stream("btcusdt@depth@100ms", spot))
    start = venue.engine.depth(SYMBOL)
    book = {"b": dict(start.bids), "a": dict(start.asks)}
    mid = venue.instruments[SYMBOL].price_to_ticks("50000")
    for kind, is_buy, offset, size in operations:
        side = Side.BUY if is_buy else Side.SELL
        if kind == "depth":
            level = [(mid - offset if is_buy else mid + offset, size)]
            venue.apply_depth(SYMBOL, level if is_buy else [], [] if is_buy else level)
        elif kind == "limit":
            venue.place(
                API_KEY, SYMBOL, side, OrderType.LIMIT, size, mid - offset if is_buy else mid + offset
            )
        elif kind == "market":
            venue.place(API_KEY, SYMBOL, side, OrderType.MARKET, size)
        else:
            streams.flush_symbol(SYMBOL)
            assert capture.frames == [] or capture.frames[-1]["u"] == venue.engine.update_id(SYMBOL)
    streams.flush_symbol(SYMBOL)
    last = start.update_id
    instrument = venue.instruments[SYMBOL]
    for frame in capture.frames:
        assert frame["U"] == last + 1 and frame["u"] >= frame["U"]
        if not spot:
            assert frame["pu"] == last
        last = frame["u"]
        for key in ("b", "a"):
            for price, quantity in frame[key]:
                ticks, lots = instrument.price_to_ticks(price), instrument.quantity_to_lots(quantity)
                if lots:
                    book[key][ticks] = lots
                else:
                    book[key].pop(ticks, None)
    assert last == venue.engine.update_id(SYMBOL)
    final = venue.engine.depth(SYMBOL)
    assert sorted(book["b"].items(), reverse=True) == final.bids
    assert sorted(book["a"].items()) == final.asks


async def test_usdm_websocket_api_places_futures_orders(sim):
    async with sim.session.ws_connect(sim.urls["usdm_ws_api"]) as socket:
        params = signed_ws_params(
            sim, symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.01", newOrderRespType="RESULT"
        )
        await socket.send_str(orjson.dumps({"id": 1, "method": "order.place", "params": params}).decode())
        placed = await receive(socket)
        assert placed["status"] == 200 and placed["result"]["avgPrice"] == "50000.1"
        await socket.send_str(
            orjson.dumps({"id": 2, "method": "account.position", "params": signed_ws_params(sim)}).decode()
        )
        positions = (await receive(socket))["result"]
        assert [row["positionAmt"] for row in positions] == ["0.010"]
