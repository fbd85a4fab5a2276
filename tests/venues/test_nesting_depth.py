"""Issue 17 item 11: JSON nested past the stack is a classified malformed frame on every decode path.

msgspec refuses such input with ``RecursionError``, which no ``except msgspec.DecodeError``
catches; each test drives one path a venue or the network reaches and checks that the frame is
counted as ``nesting_depth`` (or the path's own malformed count) and nothing escapes.
"""

from __future__ import annotations

import asyncio

import pytest

from hftkit.codec import DEFAULT_COUNTERS, CodecError, CodecErrorKind
from hftkit.core.types import Instrument
from hftkit.venues.base import VenueError
from hftkit.venues.binance import rest
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.streams import MarketStreamSession, _Route
from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig

DEPTHS = [2_000, 100_000]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def btcusdt() -> Instrument:
    return Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("stream", ["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"])
def test_binance_stream_frames_count_nesting_depth(stream: str, depth: int) -> None:
    session = MarketStreamSession(Market.SPOT, None, {"BTCUSDT": btcusdt()}, lambda event: None)  # type: ignore[arg-type]
    session._parsers["btcusdt"] = BinanceParser(btcusdt())
    frame = b'{"stream":"%s","data":{"e":"x","b":%s}}' % (stream.encode(), nested(depth))
    session._on_frame(_Route("", 0), frame, 0)
    assert session.stats.malformed == {"nesting_depth": 1}


@pytest.mark.parametrize("depth", DEPTHS)
def test_binance_raw_depth_frame_raises_a_counted_codec_error(depth: int) -> None:
    before = DEFAULT_COUNTERS.counts[CodecErrorKind.NESTING_DEPTH]
    frame = b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","b":%s}}' % nested(depth)
    with pytest.raises(CodecError) as caught:
        BinanceParser(btcusdt()).depth_frame(frame)
    assert caught.value.kind is CodecErrorKind.NESTING_DEPTH
    assert DEFAULT_COUNTERS.counts[CodecErrorKind.NESTING_DEPTH] == before + 1


class _Stats:
    malformed_responses = 0


class _Client:
    """What ``rest._decode`` touches of a BinanceRestClient."""

    def __init__(self) -> None:
        self.venue = "binance"
        self.stats = _Stats()


@pytest.mark.parametrize("depth", DEPTHS)
def test_binance_rest_answers_are_malformed_responses(depth: int) -> None:
    client = _Client()
    # an unknown member is skipped by msgspec, recursively: the deep value is never type-checked
    body = b'{"symbol":"BTCUSDT","orderId":1,"clientOrderId":"a","extra":%s}' % nested(depth)
    with pytest.raises(VenueError, match="malformed response"):
        rest._decode(rest._order_decoder, body, client)  # type: ignore[arg-type]
    assert client.stats.malformed_responses == 1
    assert rest._decode_error(b'{"code":-1,"msg":"x","extra":%s}' % nested(depth)) is None


@pytest.mark.parametrize("depth", [*DEPTHS, 950])
@pytest.mark.parametrize(
    "channel", ["session.orders", "account.trade_history", "account.portfolio", "system"]
)
async def test_thalex_frames_and_notifications_count_nesting_depth(channel: str, depth: int) -> None:
    adapter = ThalexAdapter(ThalexConfig(url="ws://127.0.0.1:9/ws/api/v2"))
    adapter._register_private_handlers()
    adapter._rpc.on_message(b'{"channel_name":"%s","notification":%s}' % (channel.encode(), nested(depth)), 0)
    adapter._rpc.on_message(b'{"id":1,"result":%s}' % nested(depth), 0)
    malformed = adapter._rpc.stats.malformed
    assert malformed.get("frame", 0) + malformed.get(channel, 0) + malformed.get("result", 0) >= 1
    await asyncio.sleep(0)
