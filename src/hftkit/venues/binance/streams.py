"""Binance market streams: combined streams, per-symbol book synchronization, resync by snapshot.

The combined-stream URL carries the subscriptions (``/stream?streams=a/b/c``), so every
reconnect of the transport resubscribes by itself. Books follow Binance's procedure through
the sans-I/O ``BookSynchronizer``: diffs are buffered while a REST snapshot is fetched, then
applied; a gap, a crossed book or a lost connection starts it again. No diff is lost: the
synchronizer keeps buffering while the snapshot is in flight, and sequence ids detect
anything missed while disconnected.

Events reach the listener synchronously from the socket callback: ``BookDelta`` only while
the book is synced (after a (re)sync, one ``is_snapshot`` delta carries the whole book),
``Trade``, ``BookTicker`` and ``ConnectionEvent`` (connected, disconnected, resyncing,
synced). A malformed frame is counted by kind and skipped; it never stops the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import msgspec

from hftkit.book import BINANCE_FUTURES_RULES, BINANCE_SPOT_RULES, BookSynchronizer, OrderBook, SyncAction
from hftkit.codec.classify import classify_decode_error
from hftkit.codec.decode import DECODE_FAILURES
from hftkit.core.errors import HftkitError
from hftkit.core.types import BookDelta, BookTicker, ConnectionEvent, Instrument
from hftkit.metrics import LatencyHistogram
from hftkit.transport.http import TransportError
from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketConfig,
    WebSocketConnect,
    picows_connect,
)
from hftkit.venues.base import EventListener, RateLimitedError, VenueError
from hftkit.venues.binance import codec
from hftkit.venues.binance.endpoints import SPOT_STREAM_URL, USDM_STREAM_URL, Market
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.rest import BinanceRestClient

log = logging.getLogger(__name__)
_perf_ns = time.perf_counter_ns

_envelope = msgspec.json.Decoder(codec.CombinedStreamMessage[msgspec.Raw])
_depth = msgspec.json.Decoder(codec.RawDepthUpdate)
_trade = msgspec.json.Decoder(codec.TradeEvent)
_aggregate_trade = msgspec.json.Decoder(codec.AggregateTradeEvent)
_book_ticker = msgspec.json.Decoder(codec.BookTickerEvent)
_PROBE_PREFIX = "hftkit-probe-"


class _ControlAnswer(msgspec.Struct):
    id: str | int | None = None


_control_answer = msgspec.json.Decoder(_ControlAnswer)


@dataclass(frozen=True)
class StreamConfig:
    """Which streams, where, and how hard to try."""

    base_urls: Sequence[str] = ()  # ws(s)://host[:port] without a path; empty: production
    # Depth cadence suffix: spot "100ms" or "" (1000 ms); USD-M "0ms", "100ms", "500ms" or "" (250 ms).
    depth_speed: str = "100ms"
    # USD-M since 2026-03: depth and bookTicker under /public, trades under /market.
    routed_paths: bool = True
    trade_stream: str = ""  # "" picks "trade" on spot and "aggTrade" on USD-M
    book_ticker: bool = True
    # Binance allows 1024 streams per spot connection; futures clients keep to 200.
    max_streams_per_connection: int = 200
    snapshot_limit: int = 1000
    max_buffer: int = 10_000
    # Stale events in a row that make a synced book resync (its id may be wrong); 0: never.
    max_stale_drops: int = 16
    resync_base_delay_s: float = 0.05
    resync_max_delay_s: float = 2.0
    reconnect_base_delay_s: float = 0.1
    reconnect_max_delay_s: float = 5.0
    stale_timeout_s: float = 30.0
    ping_idle_s: float = 15.0
    # A book connection silent this long has stalled (depth@100ms and bookTicker push many
    # times a second): reconnect and resync its books; checked every quarter of it, so a stall
    # shows within ~1.9 s (0 disables). A quiet but live stream answers the LIST_SUBSCRIPTIONS
    # probe sent after ``stall_probe_s`` of silence (Binance allows 5 messages/s per connection).
    stall_timeout_s: float = 1.5
    stall_probe_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_streams_per_connection < 1:
            raise ValueError("max_streams_per_connection must be at least 1")
        if not 1 <= self.snapshot_limit <= 5000:
            raise ValueError("snapshot_limit must be within [1, 5000]")


@dataclass
class StreamStats:
    frames: int = 0
    malformed: dict[str, int] = dataclasses.field(default_factory=dict)
    probe_answers: int = 0
    snapshot_failures: int = 0
    server_shutdowns: int = 0


class _SymbolBook:
    __slots__ = ("instrument", "parser", "stream", "sync", "task")

    def __init__(self, parser: BinanceParser, sync: BookSynchronizer, stream: str) -> None:
        self.instrument = parser.instrument
        self.parser = parser
        self.sync = sync
        self.stream = stream
        self.task: asyncio.Task[None] | None = None


class _Route:
    """One connection: a path (``""``, ``/public`` or ``/market``) and its stream names."""

    def __init__(self, path: str, index: int) -> None:
        self.path = path
        self.name = (path or "/stream") + (f"#{index}" if index else "")
        self.streams: list[str] = []
        self.book_symbols: list[str] = []  # lower-case symbols whose depth rides this route
        self.socket: ReconnectingWebSocket | None = None
        self.was_connected = False
        self.probes = 0

    def probe(self) -> bytes:
        """A request whose answer travels the stream's own path: proof that a quiet stream lives."""
        self.probes += 1
        return b'{"method":"LIST_SUBSCRIPTIONS","id":"%s%d"}' % (_PROBE_PREFIX.encode(), self.probes)


class MarketStreamSession:
    """Market data of one Binance market for a set of symbols; books kept in sync."""

    def __init__(
        self,
        market: Market,
        rest: BinanceRestClient,
        instruments: Mapping[str, Instrument],
        emit: EventListener,
        config: StreamConfig | None = None,
        *,
        venue: str = "binance",
        random_source: random.Random | None = None,
        connect: WebSocketConnect = picows_connect,
    ) -> None:
        self.market = market
        self._connect = connect  # the WebSocket transport, fixed for every connection
        self.config = config or StreamConfig()
        self.venue = venue
        self.stats = StreamStats()
        self._rest = rest
        self._instruments = instruments
        self._emit = emit
        # set by the adapter's owner (the node): the per-level work of each depth update, timed here
        self.book_apply: LatencyHistogram | None = None
        # set by a recorder: every frame (payload, receive_ns) and every REST snapshot a book is
        # seeded from (symbol, snapshot, receive_ns), before they are processed
        self.frame_tap: Callable[[bytes, int], None] | None = None
        self.snapshot_tap: Callable[[str, codec.DepthSnapshot, int], None] | None = None
        self._random = random_source or random.Random()
        self._rules = BINANCE_SPOT_RULES if market is Market.SPOT else BINANCE_FUTURES_RULES
        self._parsers: dict[str, BinanceParser] = {}  # lower-case symbol -> parser (trades, tickers)
        self._books: dict[str, _SymbolBook] = {}  # lower-case symbol -> book state
        self._book_symbols: dict[str, None] = {}  # ordered sets: subscription order
        self._trade_symbols: dict[str, None] = {}
        self._routes: dict[tuple[str, int], _Route] = {}
        self._closed = False

    # -- public ------------------------------------------------------------------------------

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        """Add symbols; the affected connections reconnect with the new stream list."""
        for symbol in symbols:
            instrument = self._instruments.get(symbol)
            if instrument is None:
                raise VenueError(f"unknown symbol {symbol!r}", venue=self.venue)
            lower = symbol.lower()
            parser = self._parsers.setdefault(lower, BinanceParser(instrument))
            if books:
                self._book_symbols[lower] = None
                if lower not in self._books:
                    book = OrderBook(symbol)
                    sync = BookSynchronizer(
                        book,
                        self._rules,
                        max_buffer=self.config.max_buffer,
                        max_stale_drops=self.config.max_stale_drops,
                    )
                    self._books[lower] = _SymbolBook(parser, sync, f"{lower}@depth")
            if trades:
                self._trade_symbols[lower] = None
        self._apply_routes()

    def book(self, symbol: str) -> OrderBook | None:
        state = self._books.get(symbol.lower())
        return state.sync.book if state is not None else None

    def synchronizer(self, symbol: str) -> BookSynchronizer | None:
        state = self._books.get(symbol.lower())
        return state.sync if state is not None else None

    def is_synced(self, symbol: str) -> bool:
        state = self._books.get(symbol.lower())
        return state is not None and state.sync.is_synced

    @property
    def sockets(self) -> list[ReconnectingWebSocket]:
        return [route.socket for route in self._routes.values() if route.socket is not None]

    def urls(self) -> list[str]:
        """The connection URLs in use (for logs and tests)."""
        return [self._url(base, route) for route in self._routes.values() for base in self._bases()[:1]]

    async def close(self) -> None:
        self._closed = True
        for state in self._books.values():
            if state.task is not None:
                state.task.cancel()
        for route in self._routes.values():
            if route.socket is not None:
                await route.socket.close()
        tasks = [state.task for state in self._books.values() if state.task is not None]
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- routing -----------------------------------------------------------------------------

    def _bases(self) -> list[str]:
        bases = list(self.config.base_urls)
        if not bases:
            bases = [SPOT_STREAM_URL if self.market is Market.SPOT else USDM_STREAM_URL]
        return [base.rstrip("/") for base in bases]

    def _paths(self) -> tuple[str, str]:
        """Paths of the (book, trade) connections."""
        if self.market is Market.USDM and self.config.routed_paths:
            return "/public", "/market"
        return "", ""

    def _apply_routes(self) -> None:
        """Lay the streams out on connections and (re)connect the ones whose list changed.

        Symbols keep their subscription order, so adding one only touches the last
        connection of its path; a path with more than ``max_streams_per_connection`` streams
        is split over several connections.
        """
        config = self.config
        book_path, trade_path = self._paths()
        entries: dict[str, list[tuple[str, str | None]]] = {}  # path -> (stream, book symbol)
        depth_suffix = f"@depth@{config.depth_speed}" if config.depth_speed else "@depth"
        trade_kind = config.trade_stream or ("trade" if self.market is Market.SPOT else "aggTrade")
        for lower in self._book_symbols:
            entries.setdefault(book_path, []).append((lower + depth_suffix, lower))
            if config.book_ticker:
                entries[book_path].append((f"{lower}@bookTicker", None))
        for lower in self._trade_symbols:
            entries.setdefault(trade_path, []).append((f"{lower}@{trade_kind}", None))
        size = config.max_streams_per_connection
        for path, path_entries in entries.items():
            for index in range(0, len(path_entries), size):
                chunk = path_entries[index : index + size]
                self._update_route(
                    path, index // size, [stream for stream, _ in chunk], [s for _, s in chunk if s]
                )

    def _update_route(self, path: str, index: int, streams: list[str], book_symbols: list[str]) -> None:
        config = self.config
        key = (path, index)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = _Route(path, index)
        if route.streams == streams:
            return
        route.streams = streams
        route.book_symbols = book_symbols
        urls = [self._url(base, route) for base in self._bases()]
        # only book connections have a cadence to hold them to: trades come when they come
        stall_timeout_s = config.stall_timeout_s if book_symbols else 0.0
        if route.socket is None:
            route.socket = ReconnectingWebSocket(
                WebSocketConfig(
                    urls=urls,
                    reconnect_base_delay_s=config.reconnect_base_delay_s,
                    reconnect_max_delay_s=config.reconnect_max_delay_s,
                    stale_timeout_s=config.stale_timeout_s,
                    ping_idle_s=config.ping_idle_s,
                    stall_timeout_s=stall_timeout_s,
                    stall_probe_s=config.stall_probe_s,
                ),
                partial(self._on_frame, route),  # not a lambda: one Python call per frame, not two
                on_state=lambda state, reason: self._on_state(route, state, reason),
                random_source=self._random,
                name=f"{self.venue}{route.name}",
                stall_probe=route.probe,
                connect=self._connect,
            )
            route.socket.start()
        else:
            route.socket.config = dataclasses.replace(
                route.socket.config, urls=urls, stall_timeout_s=stall_timeout_s
            )
            route.socket.reconnect()

    @staticmethod
    def _url(base: str, route: _Route) -> str:
        return f"{base}{route.path}/stream?streams={'/'.join(route.streams)}"

    # -- connection events -------------------------------------------------------------------

    def _on_state(self, route: _Route, state: ConnectionState, reason: DisconnectReason | None) -> None:
        stream = route.name
        if state is ConnectionState.CONNECTED:
            route.was_connected = True
            self._emit(ConnectionEvent(venue=self.venue, stream=stream, state="connected"))
            return
        if state is not ConnectionState.DISCONNECTED or not route.was_connected:
            return
        route.was_connected = False
        why = reason.value if reason is not None else ""
        self._emit(ConnectionEvent(venue=self.venue, stream=stream, state="disconnected", reason=why))
        # Diffs were missed while down: every book on this connection starts again from a snapshot.
        stalled = reason is DisconnectReason.STALLED
        for lower in route.book_symbols:
            state_ = self._books[lower]
            if state_.task is not None:
                state_.task.cancel()
                state_.task = None
            if stalled:
                state_.sync.report_stall(f"stalled: no data for {self.config.stall_timeout_s:g}s")
            else:
                state_.sync.request_resync(f"disconnected: {why}")
            self._emit(
                ConnectionEvent(
                    venue=self.venue,
                    stream=state_.stream,
                    state="resyncing",
                    reason=why if stalled else "disconnected",
                )
            )

    # -- frames ------------------------------------------------------------------------------

    def _count(self, kind: str) -> None:
        malformed = self.stats.malformed
        malformed[kind] = malformed.get(kind, 0) + 1

    def _on_frame(self, route: _Route, payload: bytes, receive_ns: int) -> None:
        self.stats.frames += 1
        if self.frame_tap is not None:
            self.frame_tap(payload, receive_ns)
        try:
            envelope = _envelope.decode(payload)
        except RecursionError as error:  # nested deeper than any venue frame: malformed, not a crash
            self._count(classify_decode_error(error, payload, "CombinedStreamMessage").kind.value)
            return
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            if self._is_probe_answer(payload):
                self.stats.probe_answers += 1
                return
            self._count(classify_decode_error(error, payload, "CombinedStreamMessage").kind.value)
            return
        stream = envelope.stream
        lower, _, tail = stream.partition("@")
        if not tail:
            if "serverShutdown" in stream or b"serverShutdown" in payload:
                # maintenance ahead: move to a fresh connection now rather than be cut mid-stream
                self.stats.server_shutdowns += 1
                if route.socket is not None:
                    route.socket.reconnect()
                return
            self._count("unknown_stream")
            return
        kind = tail.partition("@")[0]
        data = envelope.data
        try:
            if kind == "depth":
                state = self._books.get(lower)
                if state is None:
                    self._count("unknown_symbol")
                    return
                self._on_depth(state, _depth.decode(data), receive_ns)
                return
            parser = self._parsers.get(lower)
            if parser is None:
                self._count("unknown_symbol")
            elif kind == "trade":
                self._emit(parser.trade(_trade.decode(data), receive_ns))
            elif kind == "aggTrade":
                self._emit(parser.trade(_aggregate_trade.decode(data), receive_ns))
            elif kind == "bookTicker":
                ticker = parser.book_ticker(_book_ticker.decode(data), receive_ns)
                self._emit(ticker)
                state = self._books.get(lower)
                if state is not None:
                    self._check_ticker(state, ticker)
            else:
                self._count("unknown_stream")
        except DECODE_FAILURES as error:
            self._count(classify_decode_error(error, bytes(data), kind).kind.value)
        except (HftkitError, ValueError):
            self._count("invalid_value")

    @staticmethod
    def _is_probe_answer(payload: bytes) -> bool:
        """The answer to a stall probe (any answer, even an error, proves the stream alive)."""
        try:
            answer = _control_answer.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False
        return isinstance(answer.id, str) and answer.id.startswith(_PROBE_PREFIX)

    def _on_depth(self, state: _SymbolBook, update: codec.RawDepthUpdate, receive_ns: int) -> None:
        delta = state.parser.depth_update(update, receive_ns)
        sync = state.sync
        was_synced = sync.is_synced
        started = _perf_ns()
        action = sync.on_depth(
            delta.first_update_id, delta.last_update_id, delta.previous_update_id, delta.bids, delta.asks
        )
        if self.book_apply is not None:
            self.book_apply.record(_perf_ns() - started)
        if action is SyncAction.APPLIED:
            if was_synced:
                self._emit(delta)
            else:
                self._synced(state, receive_ns)
        elif action is SyncAction.FETCH_SNAPSHOT:
            self._resync(state, was_synced)
        elif sync.needs_snapshot and state.task is None:
            self._fetch_snapshot(state)  # first diff after a reconnect: the snapshot can follow it now

    def _check_ticker(self, state: _SymbolBook, ticker: BookTicker) -> None:
        """A bookTicker carries the book's update id: at that id the book's top must match it."""
        sync = state.sync
        was_synced = sync.is_synced
        action = sync.on_ticker(
            ticker.update_id, ticker.bid_price, ticker.bid_size, ticker.ask_price, ticker.ask_size
        )
        if action is SyncAction.FETCH_SNAPSHOT:
            self._resync(state, was_synced)

    def _resync(self, state: _SymbolBook, was_synced: bool) -> None:
        if was_synced:
            self._emit(
                ConnectionEvent(
                    venue=self.venue,
                    stream=state.stream,
                    state="resyncing",
                    reason=state.sync.last_gap_reason,
                )
            )
        self._fetch_snapshot(state)

    def _synced(self, state: _SymbolBook, receive_ns: int = 0) -> None:
        sync = state.sync
        book = sync.book
        self._emit(ConnectionEvent(venue=self.venue, stream=state.stream, state="synced"))
        self._emit(
            BookDelta(
                venue=self.venue,
                symbol=state.instrument.symbol,
                bids=book.bids(),
                asks=book.asks(),
                last_update_id=sync.last_update_id,
                is_snapshot=True,
                receive_ns=receive_ns,
            )
        )

    # -- snapshots ---------------------------------------------------------------------------

    def _fetch_snapshot(self, state: _SymbolBook) -> None:
        if self._closed or (state.task is not None and not state.task.done()):
            return
        state.task = asyncio.get_running_loop().create_task(
            self._snapshot_loop(state), name=f"{self.venue}:{state.stream}:snapshot"
        )

    async def _snapshot_loop(self, state: _SymbolBook) -> None:
        sync = state.sync
        attempt = 0
        try:
            while not self._closed and sync.needs_snapshot:
                delay = 0.0
                try:
                    snapshot = await self._rest.depth(state.instrument.symbol, self.config.snapshot_limit)
                    if self.snapshot_tap is not None:
                        self.snapshot_tap(state.instrument.symbol, snapshot, time.monotonic_ns())
                    delta = state.parser.depth_snapshot(snapshot)
                except RateLimitedError as error:
                    self.stats.snapshot_failures += 1
                    delay = max(error.retry_after_s, self._backoff(attempt))
                except (VenueError, TransportError, HftkitError, ValueError) as error:
                    self.stats.snapshot_failures += 1
                    log.warning("%s: snapshot of %s failed: %s", self.venue, state.instrument.symbol, error)
                    delay = self._backoff(attempt)
                else:
                    sync.on_snapshot(delta.last_update_id, delta.bids, delta.asks)
                    if sync.is_synced:
                        self._synced(state)
                        return
                    if not sync.needs_snapshot:
                        return  # bridging: the event that straddles the snapshot is still to come
                    # older than the buffered diffs, or a gap inside the buffer: fetch a newer one
                    delay = self._backoff(attempt) if attempt else 0.0
                attempt += 1
                if delay:
                    await asyncio.sleep(delay)
        finally:
            if state.task is asyncio.current_task():
                state.task = None

    def _backoff(self, attempt: int) -> float:
        config = self.config
        return self._random.uniform(
            0, min(config.resync_max_delay_s, config.resync_base_delay_s * 2**attempt)
        )
