"""What travels on the bus: typed envelopes around the normalized events, and stream names.

Every message is a tagged ``msgspec.Struct`` (array-like: MessagePack arrays, no field names on
the wire), so one ``decode`` of the bytes gives the typed envelope and its typed event: no dict,
no second pass. The core events (``hftkit.core.types``) stay as they are; the envelope adds
what the bus itself needs: the publisher's clock (lag) and, for books, the stream's own
sequence number (gap detection independent of the venue's ids).

Stream names: ``hftkit:<kind>:<venue>:<symbol>`` (``stream_name``). ``kind`` is one of
``STREAM_KINDS``; streams that are not per instrument use ``all`` for venue and symbol
(``hftkit:control:all:all``: the firm-wide kill switch; ``hftkit:report:all:all``: every node's
positions and PnL for the risk node).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    Fill,
    OrderUpdate,
    PositionUpdate,
    Trade,
)

STREAM_PREFIX = "hftkit"
STREAM_KINDS = (
    "book",  # DeltaMessage: one book delta, numbered per stream
    "snapshot",  # SnapshotMessage: a full book at a sequence number (periodic, and on every resync)
    "trade",
    "ticker",
    "order",  # order updates
    "fill",
    "position",
    "balance",
    "report",  # NodeReport: a node's positions and PnL, for the risk node
    "control",  # KillSwitchMessage: firm-wide kill switch
)
ALL = "all"
_NAME_PART = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class BusNameError(ValueError):
    """A stream name part the scheme cannot carry (empty, ``:`` or spaces inside, too long)."""


def stream_name(kind: str, venue: str = ALL, symbol: str = ALL) -> str:
    """``hftkit:<kind>:<venue>:<symbol>``; refuses parts that would make the name ambiguous."""
    if kind not in STREAM_KINDS:
        raise BusNameError(f"unknown stream kind {kind!r}; one of {', '.join(STREAM_KINDS)}")
    for part in (venue, symbol):
        if not _NAME_PART.fullmatch(part):
            raise BusNameError(f"stream name part {part!r}: letters, digits, `_`, `.`, `-` only (1-64)")
    return f"{STREAM_PREFIX}:{kind}:{venue}:{symbol}"


def parse_stream_name(name: str) -> tuple[str, str, str]:
    """(kind, venue, symbol) of a stream name made by ``stream_name``."""
    parts = name.split(":")
    if len(parts) != 4 or parts[0] != STREAM_PREFIX or parts[1] not in STREAM_KINDS:
        raise BusNameError(f"not an hftkit stream name: {name!r}")
    return parts[1], parts[2], parts[3]


class _Envelope(msgspec.Struct, frozen=True, array_like=True, tag_field="k"):
    """Base: ``published_ns`` is the publisher's ``time.time_ns()`` (wall clock: lag across hosts)."""


class DeltaMessage(_Envelope, frozen=True, tag="d"):
    """One book delta as the feed's adapter applied it; ``sequence`` counts per stream from 1."""

    sequence: int
    published_ns: int
    event: BookDelta


class SnapshotMessage(_Envelope, frozen=True, tag="s"):
    """The feed's whole book after delta ``sequence`` (the next delta is ``sequence + 1``)."""

    sequence: int
    published_ns: int
    event: BookDelta


class TradeMessage(_Envelope, frozen=True, tag="t"):
    published_ns: int
    event: Trade


class TickerMessage(_Envelope, frozen=True, tag="b"):
    published_ns: int
    event: BookTicker


class OrderMessage(_Envelope, frozen=True, tag="o"):
    node_id: str
    published_ns: int
    event: OrderUpdate


class FillMessage(_Envelope, frozen=True, tag="f"):
    node_id: str
    published_ns: int
    event: Fill


class PositionMessage(_Envelope, frozen=True, tag="p"):
    node_id: str
    published_ns: int
    event: PositionUpdate


class BalanceMessage(_Envelope, frozen=True, tag="a"):
    node_id: str
    published_ns: int
    event: BalanceUpdate


class PositionFigure(msgspec.Struct, frozen=True, array_like=True):
    """One instrument of a node report, in the instrument's own units (decimal strings)."""

    venue: str
    symbol: str
    base: str  # the asset the position is in (net positions across venues add up by it)
    quantity: str  # signed, base units
    realized_pnl: str  # quote units
    unrealized_pnl: str
    quote: str


class NodeReport(_Envelope, frozen=True, tag="r"):
    """A node's positions and PnL now (sent every ``bus.report_interval_s``)."""

    node_id: str
    role: str  # strategy / feed
    published_ns: int
    kill_switch_tripped: bool
    positions: list[PositionFigure] = []


class KillSwitchMessage(_Envelope, frozen=True, tag="k"):
    """Firm-wide kill switch: every node trips its own on ``trip``; ``reset`` is informational
    (a node re-arms only by its operator's decision, never because the bus said so)."""

    action: str  # trip / reset
    origin: str  # node id of the sender (the risk node, or an operator's tool)
    reason: str
    published_ns: int


BusMessage = (
    DeltaMessage
    | SnapshotMessage
    | TradeMessage
    | TickerMessage
    | OrderMessage
    | FillMessage
    | PositionMessage
    | BalanceMessage
    | NodeReport
    | KillSwitchMessage
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(BusMessage)
_batch_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(list[BusMessage])


def encode(message: BusMessage) -> bytes:
    """MessagePack bytes of one message."""
    return _encoder.encode(message)


def join_encoded(encoded: list[bytes]) -> bytes:
    """Several encoded messages as one MessagePack array, without re-encoding any of them."""
    count = len(encoded)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 65536:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(encoded)


def decode_many(data: bytes | bytearray | memoryview) -> list[BusMessage]:
    """The messages of a ``join_encoded`` array, typed, in one decode."""
    return _batch_decoder.decode(data)


def decode(data: bytes | bytearray | memoryview) -> BusMessage:
    """The typed message; raises ``msgspec.DecodeError``/``ValidationError`` on bad bytes
    (callers count them: a bad message is never a crash)."""
    return _decoder.decode(data)


__all__ = [
    "ALL",
    "STREAM_KINDS",
    "BalanceMessage",
    "BusMessage",
    "BusNameError",
    "DeltaMessage",
    "FillMessage",
    "KillSwitchMessage",
    "NodeReport",
    "OrderMessage",
    "PositionFigure",
    "PositionMessage",
    "SnapshotMessage",
    "TickerMessage",
    "TradeMessage",
    "decode",
    "decode_many",
    "encode",
    "join_encoded",
    "parse_stream_name",
    "stream_name",
]
