"""Bus messages: one decode gives the typed envelope and event; stream names follow the scheme."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from hftkit.bus.memory import InProcessBus
from hftkit.bus.messages import (
    BalanceMessage,
    BusNameError,
    DeltaMessage,
    FillMessage,
    KillSwitchMessage,
    NodeReport,
    OrderMessage,
    PositionFigure,
    PositionMessage,
    SnapshotMessage,
    TickerMessage,
    TradeMessage,
    decode,
    encode,
    parse_stream_name,
    stream_name,
)
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    Fill,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    Side,
    Trade,
)

DELTA = BookDelta(venue="binance", symbol="BTCUSDT", bids=[(100, 2)], asks=[(101, 0)], first_update_id=5)
MESSAGES = [
    DeltaMessage(7, 11, DELTA),
    SnapshotMessage(8, 12, BookDelta(venue="binance", symbol="BTCUSDT", bids=[], asks=[], is_snapshot=True)),
    TradeMessage(1, Trade(venue="v", symbol="s", trade_id=3, price=10, size=2, aggressor=Side.SELL)),
    TickerMessage(
        1, BookTicker(venue="v", symbol="s", update_id=1, bid_price=1, bid_size=2, ask_price=3, ask_size=4)
    ),
    OrderMessage(
        "n1",
        1,
        OrderUpdate(
            venue="v",
            symbol="s",
            client_order_id="c",
            venue_order_id=None,
            status=OrderStatus.NEW,
            side=Side.BUY,
            price=1,
            quantity=2,
            filled=0,
        ),
    ),
    FillMessage(
        "n1",
        1,
        Fill(
            venue="v",
            symbol="s",
            client_order_id="c",
            venue_order_id="9",
            trade_id="t",
            side=Side.BUY,
            price=1,
            quantity=1,
        ),
    ),
    PositionMessage("n1", 1, PositionUpdate(venue="v", symbol="s", quantity=-3, entry_price=Decimal("1.5"))),
    BalanceMessage("n1", 1, BalanceUpdate(venue="v", asset="USDT", free=Decimal("10.25"))),
    NodeReport("n1", "strategy", 1, False, [PositionFigure("v", "s", "BTC", "0.1", "-2", "1.5", "USDT")]),
    KillSwitchMessage("trip", "risk", "firm loss", 1),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: type(message).__name__)
def test_every_message_round_trips_to_its_own_type(message: object) -> None:
    decoded = decode(encode(message))  # type: ignore[arg-type]
    assert type(decoded) is type(message)
    assert decoded == message


def test_bad_bytes_raise_a_decode_error_not_anything_else() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode(b"\xc1garbage")
    with pytest.raises(msgspec.ValidationError):
        decode(msgspec.msgpack.encode(["zz", 1]))


def test_stream_names_follow_the_scheme_and_refuse_ambiguous_parts() -> None:
    name = stream_name("book", "binance_usdm", "BTCUSDT")
    assert name == "hftkit:book:binance_usdm:BTCUSDT"
    assert parse_stream_name(name) == ("book", "binance_usdm", "BTCUSDT")
    assert stream_name("control") == "hftkit:control:all:all"
    for bad in ("a:b", "", "has space"):
        with pytest.raises(BusNameError):
            stream_name("book", bad, "X")
    with pytest.raises(BusNameError):
        stream_name("nonsense", "v", "s")
    with pytest.raises(BusNameError):
        parse_stream_name("other:book:v:s")


async def test_in_process_bus_hands_subscribers_the_same_object() -> None:
    bus = InProcessBus()
    seen: list[tuple[str, object]] = []
    bus.subscribe(
        ["hftkit:book:v:s"], lambda stream, message: seen.append((stream, message)), group="g", consumer="c"
    )
    message = DeltaMessage(1, 0, DELTA)
    assert bus.publish("hftkit:book:v:s", message)
    bus.publish("hftkit:book:v:other", message)  # nobody subscribed: kept as latest only
    assert seen == [("hftkit:book:v:s", message)] and seen[0][1] is message
    assert await bus.latest("hftkit:book:v:other") is message
    assert bus.status().streams["hftkit:book:v:s"].delivered == 1


@pytest.mark.parametrize("count", [1, 15, 16, 300, 70_000])
def test_joined_messages_decode_as_one_typed_list(count: int) -> None:
    from hftkit.bus.messages import decode_many, join_encoded

    messages = [DeltaMessage(index, index, DELTA) for index in range(count)]
    decoded = decode_many(join_encoded([encode(message) for message in messages]))
    assert decoded == messages
