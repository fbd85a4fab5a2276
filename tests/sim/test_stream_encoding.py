"""The stream fast paths: bytes-level encoders equal the dict encoders, and the direct sender keeps
frames whole and in order across its synchronous, batched and fault paths."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.core.types import Side
from hftkit.sim.binance.streams import Outbox, StreamText
from hftkit.sim.binance.wire import Formats, depth_diff, trade_event
from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, CATALOGUE
from hftkit.sim.engine.book import TradePrint
from hftkit.sim.engine.faults import FaultInjector, FaultKind, FaultProfile
from hftkit.sim.websocket import DirectText, SimWebSocketResponse, text_frame_header

INSTRUMENTS = {
    "spot": CATALOGUE[BINANCE_SPOT]["BTCUSDT"].instrument("binance"),
    "usdm": CATALOGUE[BINANCE_USDM]["BTCUSDT"].instrument("binance"),
}
levels = st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**12)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    market=st.sampled_from(sorted(INSTRUMENTS)),
    ids=st.tuples(st.integers(0, 2**62), st.integers(0, 2**62), st.integers(-1, 2**62)),
    bids=levels,
    asks=levels,
    times=st.tuples(st.integers(0, 2**45), st.integers(0, 2**45)),
)
def test_depth_bytes_equal_the_dict_encoding(market, ids, bids, asks, times) -> None:
    formats = Formats(INSTRUMENTS[market])
    text = StreamText("BTCUSDT", formats)
    for _ in range(2):  # cold caches, then warm ones
        expected = orjson.dumps(depth_diff("BTCUSDT", formats, *ids, bids, asks, *times))
        assert text.depth_diff(*ids, bids, asks, *times) == expected


@settings(max_examples=200, deadline=None)
@given(
    market=st.sampled_from(sorted(INSTRUMENTS)),
    price=st.integers(1, 10**9),
    quantity=st.integers(1, 10**12),
    trade_id=st.integers(0, 2**62),
    aggressor=st.sampled_from([Side.BUY, Side.SELL]),
    time_ns=st.integers(0, 2**62),
    event_ms=st.integers(0, 2**45),
)
def test_trade_bytes_equal_the_dict_encoding(market, price, quantity, trade_id, aggressor, time_ns, event_ms):
    formats = Formats(INSTRUMENTS[market])
    trade = TradePrint(
        symbol="BTCUSDT",
        trade_id=trade_id,
        price=price,
        quantity=quantity,
        aggressor=aggressor,
        buy_order_id=-1,
        sell_order_id=-1,
        time_ns=time_ns,
    )
    text = StreamText("BTCUSDT", formats)
    for _ in range(2):
        assert text.trade(trade, event_ms) == orjson.dumps(trade_event(trade, formats, event_ms))


def test_text_caches_stay_bounded() -> None:
    text = StreamText("BTCUSDT", Formats(INSTRUMENTS["usdm"]))
    for price in range(40_000):
        text.levels([(price, price + 1)])
    assert len(text._prices) <= 1 << 14 and len(text._quantities) <= 1 << 14


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frame_header_lengths(length: int) -> None:
    header = text_frame_header(length)
    assert header[0] == 0x81 and not header[1] & 0x80  # final text frame, unmasked
    declared = header[1] & 0x7F
    if declared == 126:
        declared = int.from_bytes(header[2:4], "big")
    elif declared == 127:
        declared = int.from_bytes(header[2:10], "big")
    assert declared == length


# the sender over a real loopback socket ---------------------------------------------------------


async def _serve(
    outboxes: list[Outbox], faults: FaultInjector, frames: list[bytes], coalesce: bool = False
) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        socket = SimWebSocketResponse()
        await socket.prepare(request)
        outbox = Outbox(socket, faults, coalesce=coalesce)
        outboxes.append(outbox)
        outbox.start()
        for index, frame in enumerate(frames):
            outbox.send(frame)
            if index % 100 == 0:
                await asyncio.sleep(0)  # end of a burst: what was gathered goes out
        outbox.close()
        await outbox.wait_closed()
        return socket

    app = web.Application()
    app.router.add_get("/ws", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/ws"


async def _receive_all(url: str, compress: int = 0) -> list[str]:
    received = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=compress) as socket:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                received.append(message.data)
    return received


@pytest.mark.parametrize(("compress", "coalesce"), [(0, False), (0, True), (15, False), (15, True)])
async def test_outbox_sends_every_frame_whole_and_in_order(compress: int, coalesce: bool) -> None:
    frames = [orjson.dumps({"n": index, "pad": "x" * (index % 300)}) for index in range(3000)]
    # past the transport's high-water mark: what follows queues, then goes out in batches
    frames.insert(1500, b'{"big":"' + b"y" * 200_000 + b'"}')
    outboxes: list[Outbox] = []
    runner, url = await _serve(outboxes, FaultInjector(), frames, coalesce)
    try:
        received = await _receive_all(url, compress)
    finally:
        await runner.cleanup()
    assert [text.encode() for text in received] == frames
    assert outboxes[0].sent == len(frames) and not outboxes[0].overflowed


async def test_outbox_applies_stream_faults_on_the_queued_path() -> None:
    faults = FaultInjector(FaultProfile(malformed_frame_probability=0.5, stream_latency_s=0.001), seed=3)
    frames = [orjson.dumps({"n": index}) for index in range(40)]
    outboxes: list[Outbox] = []
    runner, url = await _serve(outboxes, faults, frames, coalesce=True)
    try:
        received = await _receive_all(url)
    finally:
        await runner.cleanup()
    intact = []
    for text in received:
        try:
            intact.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            continue
    assert intact == [{"n": index} for index in range(40)]
    assert len(received) - 40 == faults.counts[FaultKind.MALFORMED_FRAME] > 0
    assert faults.counts[FaultKind.STREAM_LATENCY] == 40


def test_direct_text_is_not_ready_before_prepare() -> None:
    assert not DirectText(web.WebSocketResponse()).ready()
