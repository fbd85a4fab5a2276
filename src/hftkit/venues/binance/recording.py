"""Recorded Binance traffic, read in one place: a recorded line -> a typed message on the instrument's grids.

Every recording of Binance market data (hftbacktest ``<ts_ns> <json>`` files, cryptofeed
``.ws`` files with their ``.http`` snapshot files, the Parquet frames ``hftkit record``
writes) holds two kinds of line: combined-stream frames ``{"stream": "<symbol>@<kind>...",
"data": {...}}`` and REST depth snapshots ``{"lastUpdateId": ...}`` (no ``stream``). This
module is the one reader of that format, so that the replay verifier, the simulator's replay,
the backtest, the market-data node and the benchmarks agree on it:

* the split: ``stream_kind`` / ``frame_kind`` (decoded envelope) and ``line_kind`` (the
  first bytes only, for readers that decode the whole frame in one pass);
* spot or futures: a diff with a ``pu`` is futures (``is_futures``), whose book follows
  ``BINANCE_FUTURES_RULES`` (``recorded_rules``, ``sequence_rules``);
* the grids: ``recorded_instrument`` (the wire precision of the snapshot and the diffs);
* typed messages on the grids: ``RecordingDecoder`` -> ``RecordedDiff``, ``RecordedSnapshot``,
  ``RecordedTrade``, ``RecordedTicker`` (exact ticks and lots, problems counted by kind);
* cryptofeed's separate snapshot files: ``iter_cryptofeed_snapshots``.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from hftkit.book.sync import BINANCE_FUTURES_RULES, BINANCE_SPOT_RULES, SequenceRules
from hftkit.core.errors import HftkitError
from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.datasets import iter_recording
from hftkit.venues.binance.codec import (
    AggregateTradeEvent,
    BookTickerEvent,
    DepthSnapshot,
    DepthUpdate,
    PriceLevel,
    RawDepthUpdate,
    TradeEvent,
)
from hftkit.venues.binance.parse import BinanceParser, instrument_from_snapshot

logger = logging.getLogger(__name__)

Levels = tuple[tuple[int, int], ...]


# the split: what a recorded line is ----------------------------------------------------------


class RecordedKind(enum.Enum):
    """What one recorded line carries."""

    SNAPSHOT = "snapshot"  # a REST depth snapshot (no "stream")
    DEPTH = "depth"  # ``<symbol>@depth[@100ms]``: a diff
    PARTIAL_DEPTH = "partial_depth"  # ``<symbol>@depth<N>``: a top-N book, not a diff
    TRADE = "trade"
    AGGREGATE_TRADE = "aggregate_trade"
    BOOK_TICKER = "book_ticker"
    OTHER = "other"  # any other stream, or a line that is neither a frame nor a snapshot


# module-level names: a global lookup is cheaper than an enum attribute on the per-line path
SNAPSHOT = RecordedKind.SNAPSHOT
DEPTH = RecordedKind.DEPTH
PARTIAL_DEPTH = RecordedKind.PARTIAL_DEPTH
TRADE = RecordedKind.TRADE
AGGREGATE_TRADE = RecordedKind.AGGREGATE_TRADE
BOOK_TICKER = RecordedKind.BOOK_TICKER
OTHER = RecordedKind.OTHER

_PARTIAL_DEPTH = re.compile(r"depth\d+")
_KNOWN_STREAMS_CAP = 4_096  # distinct stream names remembered (a file holds a handful)
_stream_kinds: dict[str, RecordedKind] = {}
_line_kinds: dict[bytes, RecordedKind] = {}
_STREAM_PREFIX = b'{"stream":"'


def _parse_stream_kind(stream: str) -> RecordedKind:
    kind = stream.partition("@")[2]
    if kind.startswith("depth"):
        return PARTIAL_DEPTH if _PARTIAL_DEPTH.match(kind) else DEPTH
    if kind == "trade":
        return TRADE
    if kind == "aggTrade":
        return AGGREGATE_TRADE
    if kind == "bookTicker":
        return BOOK_TICKER
    return OTHER


def stream_kind(stream: str) -> RecordedKind:
    """The kind of a combined-stream name (``btcusdt@depth@100ms`` -> DEPTH); remembered per name."""
    kind = _stream_kinds.get(stream)
    if kind is None:
        kind = _parse_stream_kind(stream)
        if len(_stream_kinds) < _KNOWN_STREAMS_CAP:
            _stream_kinds[stream] = kind
    return kind


class RecordedFrame(msgspec.Struct):
    """Just enough of a recorded line to route it: the combined-stream envelope or a snapshot's id."""

    stream: str = ""
    data: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    lastUpdateId: int = -1  # Binance's own field name: present on a REST depth snapshot only


FRAME_DECODER = msgspec.json.Decoder(RecordedFrame)
DEPTH_DECODER = msgspec.json.Decoder(DepthUpdate)
RAW_DEPTH_DECODER = msgspec.json.Decoder(RawDepthUpdate)  # levels converted from the raw bytes
SNAPSHOT_DECODER = msgspec.json.Decoder(DepthSnapshot)
TRADE_DECODER = msgspec.json.Decoder(TradeEvent)
AGGREGATE_TRADE_DECODER = msgspec.json.Decoder(AggregateTradeEvent)
TICKER_DECODER = msgspec.json.Decoder(BookTickerEvent)


def frame_kind(frame: RecordedFrame) -> RecordedKind:
    """The kind of a decoded line: its stream's, a snapshot when it carries ``lastUpdateId``, else OTHER."""
    stream = frame.stream
    if stream:
        return _stream_kinds.get(stream) or stream_kind(stream)
    return SNAPSHOT if frame.lastUpdateId >= 0 else OTHER


def line_kind(line: bytes) -> RecordedKind:
    """The kind of a raw line from its first bytes, without decoding it.

    For readers that decode the whole frame in one typed pass: Binance writes compact JSON with
    ``stream`` first, so a line that does not open with it is the REST snapshot (decoding it as
    one says whether it is).
    """
    if not line.startswith(_STREAM_PREFIX):
        return SNAPSHOT
    name = line[11 : line.find(b'"', 11)]
    kind = _line_kinds.get(name)
    if kind is None:
        kind = stream_kind(name.decode("utf-8", "replace"))
        if len(_line_kinds) < _KNOWN_STREAMS_CAP:
            _line_kinds[name] = kind
    return kind


# spot or futures ----------------------------------------------------------------------------


def is_futures(update: DepthUpdate) -> bool:
    """A diff with a ``pu`` (previous final update id) is USD-M or COIN-M futures; spot has none."""
    return update.previous_update_id >= 0


def sequence_rules(futures: bool) -> SequenceRules:
    """Binance's snapshot/diff rules for a spot or a futures book."""
    return BINANCE_FUTURES_RULES if futures else BINANCE_SPOT_RULES


def recorded_rules(previous_update_id: int) -> SequenceRules:
    """The rules a recorded diff follows, told by its ``pu`` (-1: none, spot)."""
    return BINANCE_FUTURES_RULES if previous_update_id >= 0 else BINANCE_SPOT_RULES


# the grids ----------------------------------------------------------------------------------


def recorded_instrument(symbol: str, snapshot: DepthSnapshot, diffs: Sequence[DepthUpdate]) -> Instrument:
    """The instrument whose grids are the wire precision of a snapshot and the diffs around it.

    A recording carries no exchangeInfo: the written precision (trailing zeros count) is exact
    for every value the venue sends, if finer than the real tick size. The diffs also say spot
    or futures (a perpetual: the recordings cannot tell a dated future from it).
    """
    extra: list[PriceLevel] = [level for update in diffs for level in (*update.bids, *update.asks)]
    kind = ContractKind.PERPETUAL if diffs and is_futures(diffs[0]) else ContractKind.SPOT
    return instrument_from_snapshot(symbol, snapshot, kind, extra_levels=extra)


# typed messages on the instrument's grids -----------------------------------------------------


class RecordedDiff(msgspec.Struct, frozen=True, kw_only=True):
    """A ``depthUpdate`` in ticks and lots; ``previous_update_id`` is -1 on spot (no ``pu``)."""

    first_update_id: int
    last_update_id: int
    previous_update_id: int
    bids: Levels
    asks: Levels


class RecordedSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    last_update_id: int
    bids: Levels
    asks: Levels


class RecordedTrade(msgspec.Struct, frozen=True, kw_only=True):
    trade_id: int
    price: int
    quantity: int
    aggressor: Side  # SELL when the buyer was the maker (``m`` true)


class RecordedTicker(msgspec.Struct, frozen=True, kw_only=True):
    update_id: int
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int


RecordedMessage = RecordedDiff | RecordedSnapshot | RecordedTrade | RecordedTicker


class DecodeProblem(enum.Enum):
    MALFORMED = "malformed"  # not JSON, or not the schema of its stream
    OFF_GRID = "off_grid"  # a price or size that the instrument's grid cannot hold exactly
    OTHER_SYMBOL = "other_symbol"
    UNKNOWN_STREAM = "unknown_stream"


# Room for every distinct price and size text of a busy day (the USD-M BTCUSDT day holds 19k
# prices and 14k sizes): a cache smaller than the working set clears itself every few seconds
# and turns a dict hit into a parse for one level in seven. Bounded, so flat once full (~5 MB).
RECORDING_CACHE_CAPACITY = 32_768


class RecordingDecoder:
    """Recorded line -> ``RecordedMessage`` for one instrument, exact, problems counted by kind.

    bookTickers are skipped (before decoding) unless ``keep_tickers``: a replay derives its own.
    """

    def __init__(self, instrument: Instrument, *, keep_tickers: bool = False) -> None:
        self.instrument = instrument
        self.keep_tickers = keep_tickers
        # the stream parser's conversions (C grids where built: a diff's levels straight from its
        # raw JSON bytes); small caches behind them: a replay converts a few thousand levels a
        # second, and a 65k-entry cache per grid (the parser's default) is ~8 MB each, filled
        # over many minutes: it reads as a leak
        parser = BinanceParser(instrument, RECORDING_CACHE_CAPACITY)
        self._levels = parser.levels
        self._raw_levels = parser.raw_levels
        self._price = parser.price_steps
        self._size = parser.size_steps
        self.problems: dict[DecodeProblem, int] = dict.fromkeys(DecodeProblem, 0)
        self._symbol = instrument.symbol.upper()

    def decode(self, body: bytes) -> RecordedMessage | None:
        """The message, or None for a skipped/broken line (counted in ``problems``)."""
        if not self.keep_tickers and line_kind(body) is BOOK_TICKER:
            return None  # most lines of a recording, and nothing a replay needs: not even decoded
        try:
            frame = FRAME_DECODER.decode(body)
            stream = frame.stream
            if not stream:
                if frame.lastUpdateId < 0:
                    self._problem(DecodeProblem.MALFORMED)
                    return None
                snapshot = SNAPSHOT_DECODER.decode(body)
                return RecordedSnapshot(
                    last_update_id=snapshot.last_update_id,
                    bids=tuple(self._levels(snapshot.bids)),
                    asks=tuple(self._levels(snapshot.asks)),
                )
            kind = _stream_kinds.get(stream) or stream_kind(stream)
            if kind is DEPTH:
                diff = RAW_DEPTH_DECODER.decode(frame.data)
                if diff.symbol.upper() != self._symbol:
                    self._problem(DecodeProblem.OTHER_SYMBOL)
                    return None
                return RecordedDiff(
                    first_update_id=diff.first_update_id,
                    last_update_id=diff.last_update_id,
                    previous_update_id=diff.previous_update_id,
                    bids=tuple(self._raw_levels(diff.bids)),
                    asks=tuple(self._raw_levels(diff.asks)),
                )
            if kind is BOOK_TICKER:
                if not self.keep_tickers:
                    return None
                ticker = TICKER_DECODER.decode(frame.data)
                if ticker.symbol.upper() != self._symbol:
                    self._problem(DecodeProblem.OTHER_SYMBOL)
                    return None
                return RecordedTicker(
                    update_id=ticker.update_id,
                    bid_price=self._price(ticker.bid_price),
                    bid_quantity=self._size(ticker.bid_quantity),
                    ask_price=self._price(ticker.ask_price),
                    ask_quantity=self._size(ticker.ask_quantity),
                )
            if kind is TRADE:
                trade = TRADE_DECODER.decode(frame.data)
                if trade.symbol.upper() != self._symbol:
                    self._problem(DecodeProblem.OTHER_SYMBOL)
                    return None
                return RecordedTrade(
                    trade_id=trade.trade_id,
                    price=self._price(trade.price),
                    quantity=self._size(trade.quantity),
                    aggressor=Side.SELL if trade.buyer_is_maker else Side.BUY,
                )
            if kind is AGGREGATE_TRADE:  # what USD-M nodes subscribe to (and ``hftkit record`` records)
                aggregate = AGGREGATE_TRADE_DECODER.decode(frame.data)
                if aggregate.symbol.upper() != self._symbol:
                    self._problem(DecodeProblem.OTHER_SYMBOL)
                    return None
                return RecordedTrade(
                    trade_id=aggregate.aggregate_trade_id,
                    price=self._price(aggregate.price),
                    quantity=self._size(aggregate.quantity),
                    aggressor=Side.SELL if aggregate.buyer_is_maker else Side.BUY,
                )
            self._problem(DecodeProblem.UNKNOWN_STREAM)
            return None
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._problem(DecodeProblem.MALFORMED)
            return None
        except HftkitError:  # off-grid or malformed decimal text
            self._problem(DecodeProblem.OFF_GRID)
            return None

    def _problem(self, problem: DecodeProblem) -> None:
        self.problems[problem] += 1
        if self.problems[problem] == 1:
            logger.warning("%s recording: first %s line skipped", self._symbol, problem.value)
        return None


def read_recording(
    paths: Sequence[str | Path], decoder: RecordingDecoder
) -> Iterator[tuple[int, RecordedMessage]]:
    """``(timestamp_ns, message)`` over several files read as one continuous stream."""
    for path in paths:
        for timestamp_ns, body in iter_recording(path):
            message = decoder.decode(body)
            if message is not None:
                yield timestamp_ns, message


# cryptofeed's snapshot files --------------------------------------------------------------------


def iter_cryptofeed_snapshots(path: Path) -> Iterator[tuple[int, str, bytes]]:
    """``(timestamp_ns, symbol, json)`` per depth snapshot line of a cryptofeed ``.http`` file.

    Lines read ``<url> -> <unix_ts>: <json>``; the symbol is the URL's ``symbol=`` parameter.
    """
    with open(path, "rb") as handle:
        for line in handle:
            url, arrow, rest = line.strip().partition(b" -> ")
            if not arrow:
                continue
            stamp, colon, body = rest.partition(b": ")
            match = re.search(rb"[?&]symbol=([A-Za-z0-9_]+)", url)
            if not colon or match is None or b"depth" not in url:
                continue
            try:
                timestamp_ns = int(float(stamp) * 1e9)
            except ValueError:
                continue
            yield timestamp_ns, match.group(1).decode().upper(), body


def cryptofeed_snapshot_file(path: Path) -> Path | None:
    """The ``.http.0.0`` companion of a cryptofeed ``.ws.1.0`` recording, if present."""
    name = path.name
    if ".ws." not in name:
        return None
    companion = path.with_name(name.split(".ws.")[0] + ".http.0.0")
    return companion if companion.exists() else None


__all__ = [
    "AGGREGATE_TRADE",
    "BOOK_TICKER",
    "DEPTH",
    "OTHER",
    "PARTIAL_DEPTH",
    "RECORDING_CACHE_CAPACITY",
    "SNAPSHOT",
    "TRADE",
    "DecodeProblem",
    "Levels",
    "RecordedDiff",
    "RecordedFrame",
    "RecordedKind",
    "RecordedMessage",
    "RecordedSnapshot",
    "RecordedTicker",
    "RecordedTrade",
    "RecordingDecoder",
    "cryptofeed_snapshot_file",
    "frame_kind",
    "is_futures",
    "iter_cryptofeed_snapshots",
    "line_kind",
    "read_recording",
    "recorded_instrument",
    "recorded_rules",
    "sequence_rules",
    "stream_kind",
]
