"""Market-data and user-data streams of the Binance-compatible simulator.

``MarketStreams`` listens to a venue and publishes Binance stream payloads to subscribed
connections: depth diffs (real time per engine batch, or netted over a 100/250/500/1000 ms
window with ``U`` = first and ``u`` = last update id, ``pu`` = previous event's ``u`` on
USD-M), partial depth, trades, aggregate trades, book ticker, klines and tickers.
``UserData`` turns an account's order events into executionReport /
outboundAccountPosition (spot) or ORDER_TRADE_UPDATE / ACCOUNT_UPDATE (USD-M).

``Outbox`` is one connection's sender: it applies the venue's stream faults (latency,
malformed frames, stalls) on the way out, in order, and never blocks a publisher. Events are
encoded once (``StreamText``: bytes, not dicts) and the same bytes fan out to every subscriber,
written straight to the transport while no fault needs the per-frame path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from hftkit.core.types import OrderStatus, OrderType
from hftkit.sim.binance.margin import FuturesMargin, funding_terms
from hftkit.sim.binance.rest import KLINE_INTERVALS_MS, mark_price
from hftkit.sim.binance.state import FuturesOrderFlags, MarketState
from hftkit.sim.binance.wire import (
    ORDER_TYPES,
    SIDES,
    TIME_IN_FORCE,
    Formats,
    aggregate_trade_event,
    depth_diff,
    futures_status,
    kline_event,
    merge_candles,
    merge_updates,
    mini_ticker_event,
    ms,
    spot_status,
    ticker_event,
)
from hftkit.sim.engine.errors import CloseReason
from hftkit.sim.engine.faults import DepthAction, FaultInjector, FaultProfile
from hftkit.sim.engine.matching import BookUpdate, Execution, SimOrder, TradePrint
from hftkit.sim.engine.venue import OrderEvent, OrderEventKind, SimEvent
from hftkit.sim.websocket import SEND_TIMEOUT_S, DirectText, abort

logger = logging.getLogger(__name__)

REALTIME = 0
_STREAM = re.compile(
    r"^(?P<symbol>[a-z0-9_.-]{1,40})@(?P<kind>depth|depth5|depth10|depth20|trade|aggTrade|bookTicker|"
    r"miniTicker|ticker|markPrice|kline_(?P<interval>[0-9]+[a-zA-Z]))(?:@(?P<speed>[0-9]+m?s))?$"
)
SPOT_DEPTH_SPEEDS = {None: 1000, "100ms": 100, "1000ms": 1000}
USDM_DEPTH_SPEEDS = {None: 250, "0ms": REALTIME, "100ms": 100, "250ms": 250, "500ms": 500}
MARK_PRICE_SPEEDS = {None: 3000, "1s": 1000}


@dataclass(frozen=True)
class StreamSpec:
    """A parsed stream name such as ``btcusdt@depth@100ms``."""

    name: str
    symbol: str  # upper case, as the venue lists it
    kind: str  # depth, partial, trade, aggTrade, bookTicker, miniTicker, ticker, kline, markPrice
    cadence_ms: int = REALTIME
    levels: int = 0
    interval: str = ""


class InvalidStream(ValueError):
    pass


ALL_SYMBOLS = "*"
_ALL_MARKET = {
    "!miniTicker@arr": ("allMiniTicker", 1000),
    "!ticker@arr": ("allTicker", 1000),
    "!bookTicker": ("bookTicker", REALTIME),
}


# USD-M routed paths (fstream since 2026-03): high-frequency book data on /public, the rest on
# /market; a connection without a routed path gets /public data only. A stream asked for on the
# wrong path is accepted and stays silent, as on the venue. ``trade`` is not in the venue's
# documented list; it is served on /public, where ccxt.pro asks for it.
PUBLIC, MARKET = "public", "market"
_PUBLIC_KINDS = frozenset({"depth", "partial", "bookTicker", "trade"})


def usdm_route(spec: StreamSpec) -> str:
    """The USD-M path (``public`` or ``market``) that carries a stream."""
    return PUBLIC if spec.kind in _PUBLIC_KINDS else MARKET


def parse_stream(name: str, spot: bool) -> StreamSpec:
    """Parse a stream name; raise ``InvalidStream`` for anything Binance would refuse."""
    if name in _ALL_MARKET:
        kind, cadence = _ALL_MARKET[name]
        return StreamSpec(name, ALL_SYMBOLS, kind, cadence_ms=cadence)
    if name == "!markPrice@arr" and not spot:
        return StreamSpec(name, ALL_SYMBOLS, "allMarkPrice", cadence_ms=3000)
    match = _STREAM.match(name)
    if match is None:
        raise InvalidStream(name)
    symbol = match["symbol"].upper()
    kind = match["kind"]
    speed = match["speed"]
    if kind == "depth" or kind.startswith("depth"):
        speeds = SPOT_DEPTH_SPEEDS if spot else USDM_DEPTH_SPEEDS
        if speed not in speeds:
            raise InvalidStream(name)
        if kind == "depth":
            return StreamSpec(name, symbol, "depth", cadence_ms=speeds[speed])
        cadence = speeds[speed] or 100
        return StreamSpec(name, symbol, "partial", cadence_ms=cadence, levels=int(kind[5:]))
    if kind == "markPrice":
        if spot or speed not in MARK_PRICE_SPEEDS:
            raise InvalidStream(name)
        return StreamSpec(name, symbol, "markPrice", cadence_ms=MARK_PRICE_SPEEDS[speed])
    if speed is not None:
        raise InvalidStream(name)
    if kind.startswith("kline_"):
        interval = match["interval"]
        if interval not in KLINE_INTERVALS_MS:
            raise InvalidStream(name)
        return StreamSpec(name, symbol, "kline", cadence_ms=2000, interval=interval)
    if kind in ("miniTicker", "ticker"):
        return StreamSpec(name, symbol, kind, cadence_ms=1000)
    return StreamSpec(name, symbol, kind)


# one connection's sender ---------------------------------------------------------------------


class Outbox:
    """One WebSocket's sender: frames go out in order, stream faults applied, slow clients dropped.

    The common case costs no task step: while nothing is queued, no stream fault is active
    and the transport takes writes, ``send`` writes the frame synchronously (``DirectText``).
    With ``coalesce`` (market streams) such frames are gathered until the publisher yields to
    the event loop and written together: one system call per burst instead of one per frame.
    Otherwise the frame is queued and the sender task takes over: frame by frame with the
    faults (stall, latency, malformed frame), or, with none active, everything queued in one
    write, waiting at most ``send_timeout_s`` for a full transport to drain before dropping
    the client. The queue is bounded in frames and bytes; overflow drops the client at once.
    """

    def __init__(
        self,
        socket: web.WebSocketResponse,
        faults: FaultInjector,
        *,
        max_queue: int = 50_000,
        max_queue_bytes: int = 8 << 20,
        send_timeout_s: float = SEND_TIMEOUT_S,
        on_close: Callable[[], None] | None = None,
        on_slow: Callable[[], None] | None = None,
        coalesce: bool = False,
    ) -> None:
        self.socket = socket
        self.faults = faults
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.send_timeout_s = send_timeout_s
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._busy = False  # the sender holds a frame taken off the queue: no overtaking it
        self._coalesce = coalesce
        self._gathered: list[bytes] = []  # coalesced frames waiting for the end of the burst
        self._direct = DirectText(socket)
        self._quiet_profile: FaultProfile | None = None  # the last profile seen without stream faults
        self._task: asyncio.Task[None] | None = None
        self._on_close = on_close
        self._on_slow = on_slow
        self.closed = False
        self.sent = 0
        self.overflowed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _quiet(self) -> bool:
        """No stream fault can act on a frame now (checked once per profile object)."""
        profile = self.faults.profile
        if profile is self._quiet_profile:
            return True
        if (
            profile.stream_latency_s
            or profile.stream_jitter_s
            or profile.malformed_frame_probability
            or (profile.stall_every_s > 0 and profile.stall_duration_s > 0)
        ):
            return False
        self._quiet_profile = profile
        return True

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self._queue and not self._busy and self._quiet() and self._direct.ready():
            if self._coalesce:
                gathered = self._gathered
                if not gathered:
                    asyncio.get_running_loop().call_soon(self._write_gathered)
                gathered.append(frame)
                return
            try:
                self._direct.write(frame)
            except (ConnectionError, RuntimeError):
                return  # the connection is gone; the socket's reader ends the handler
            self.sent += 1
            return
        if len(self._queue) >= self.max_queue or self._queued_bytes + len(frame) > self.max_queue_bytes:
            logger.warning(
                "stream client too slow: %d frames (%d bytes) queued, disconnecting",
                len(self._queue),
                self._queued_bytes,
            )
            self._drop_slow_client()
            return
        self._queued_bytes += len(frame)
        self._queue.append(frame)
        self._wakeup.set()

    def send_json(self, value: Any) -> None:
        self.send(orjson.dumps(value))

    def _write_gathered(self) -> None:
        """End of a burst: the gathered frames in one write, or ahead of the queue if it cannot."""
        frames, self._gathered = self._gathered, []
        if not frames or self.overflowed:
            return
        if not self._queue and not self._busy and self._direct.ready():
            try:
                self._direct.write_many(frames)
            except (ConnectionError, RuntimeError):
                return
            self.sent += len(frames)
            return
        self._queue.extendleft(reversed(frames))  # they were sent first: they go first
        self._queued_bytes += sum(map(len, frames))
        self._wakeup.set()

    def close(self) -> None:
        """Stop sending and close the socket once what is queued is out."""
        if not self.closed:
            self.closed = True
            self._wakeup.set()

    def _drop_slow_client(self) -> None:
        """A client that stopped reading: drop it now, not once its backlog is out (it never is)."""
        if self.overflowed:
            return
        self.overflowed = True
        self.closed = True
        if self._on_slow is not None:
            self._on_slow()
        abort(self.socket)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._queue.clear()  # free the backlog at once
        self._queued_bytes = 0

    async def _run(self) -> None:
        socket = self.socket
        try:
            while True:
                if self._gathered:
                    self._write_gathered()
                if not self._queue:
                    if self.closed:
                        break
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self._quiet():
                    if not await self._direct.drained(self.send_timeout_s):
                        self._too_slow()
                        break
                    if self._direct.ready():
                        frames = list(self._queue)
                        self._queue.clear()
                        self._queued_bytes = 0
                        self._direct.write_many(frames)
                        self.sent += len(frames)
                        continue
                if not await self._send_one(socket):
                    break
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            with contextlib.suppress(Exception):
                await socket.close()
            if self._on_close is not None:
                self._on_close()

    async def _send_one(self, socket: web.WebSocketResponse) -> bool:
        """The head of the queue, with the stream faults, through aiohttp; False: stop sending."""
        faults = self.faults
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame)
        self._busy = True
        try:
            while faults.stalled():
                await asyncio.sleep(0.05)
            delay = faults.stream_delay()
            if delay:
                await asyncio.sleep(delay)
            if faults.corrupt_frame():
                await socket.send_str(frame[: max(1, len(frame) // 2)].decode("utf-8", "replace"))
            request = socket._req
            transport = request.transport if request is not None else None
            if transport is None or not transport.get_write_buffer_size():
                await socket.send_frame(frame, WSMsgType.TEXT)
            else:
                try:
                    await asyncio.wait_for(socket.send_frame(frame, WSMsgType.TEXT), self.send_timeout_s)
                except TimeoutError:
                    self._too_slow()
                    return False
        finally:
            self._busy = False
        self.sent += 1
        return True

    def _too_slow(self) -> None:
        logger.warning("stream client too slow: a send took over %gs, disconnecting", self.send_timeout_s)
        self._drop_slow_client()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


# encoding ---------------------------------------------------------------------------------------

# entries per cache; a full cache starts over (bounded memory). Above the distinct prices of a
# busy recorded day (19k in USD-M BTCUSDT's): a smaller cache kept clearing and re-formatting.
_TEXT_CACHE_LIMIT = 1 << 15
_JSON_BOOL = {True: b"true", False: b"false"}


class StreamText:
    """Encodes one symbol's depth diffs and trades straight to JSON bytes, once per event.

    The bytes equal ``orjson.dumps`` of ``wire.depth_diff`` / ``wire.trade_event`` (the tests
    hold them to it); building them from cached level fragments instead of dicts of formatted
    strings is what makes a depth event cheap: the same prices and sizes recur all the time.
    """

    __slots__ = ("_prices", "_quantities", "_symbol", "formats", "spot")

    def __init__(self, symbol: str, formats: Formats) -> None:
        self.formats = formats
        self.spot = formats.spot
        self._symbol = orjson.dumps(symbol)
        self._prices: dict[int, bytes] = {}  # ticks -> b'["50000.10",'
        self._quantities: dict[int, bytes] = {}  # lots -> b'"0.123"]'

    def _price(self, ticks: int) -> bytes:
        if len(self._prices) >= _TEXT_CACHE_LIMIT:
            self._prices.clear()
        text = self._prices[ticks] = b'["' + self.formats.price(ticks).encode() + b'",'
        return text

    def _quantity(self, lots: int) -> bytes:
        if len(self._quantities) >= _TEXT_CACHE_LIMIT:
            self._quantities.clear()
        text = self._quantities[lots] = b'"' + self.formats.quantity(lots).encode() + b'"]'
        return text

    def levels(self, levels: list[tuple[int, int]]) -> bytes:
        """``[["price","qty"],...]`` without the outer brackets."""
        prices, quantities = self._prices, self._quantities
        try:  # every text cached: one comprehension (the usual case once the caches are warm)
            return b",".join([prices[price] + quantities[size] for price, size in levels])
        except KeyError:
            pass
        parts: list[bytes] = []
        append = parts.append
        for price, size in levels:
            head = prices.get(price)
            if head is None:
                head = self._price(price)
            tail = quantities.get(size)
            if tail is None:
                tail = self._quantity(size)
            append(head + tail)
        return b",".join(parts)

    def depth_diff(
        self,
        first_id: int,
        last_id: int,
        previous_id: int,
        bids: list[tuple[int, int]],
        asks: list[tuple[int, int]],
        event_ms: int,
        transaction_ms: int,
    ) -> bytes:
        if self.spot:
            return b'{"e":"depthUpdate","E":%d,"s":%s,"U":%d,"u":%d,"b":[%s],"a":[%s]}' % (
                event_ms,
                self._symbol,
                first_id,
                last_id,
                self.levels(bids),
                self.levels(asks),
            )
        return b'{"e":"depthUpdate","E":%d,"T":%d,"s":%s,"U":%d,"u":%d,"pu":%d,"b":[%s],"a":[%s]}' % (
            event_ms,
            transaction_ms,
            self._symbol,
            first_id,
            last_id,
            previous_id,
            self.levels(bids),
            self.levels(asks),
        )

    def trade(self, trade: TradePrint, event_ms: int) -> bytes:
        price = self._prices.get(trade.price) or self._price(trade.price)
        quantity = self._quantities.get(trade.quantity) or self._quantity(trade.quantity)
        return b'{"e":"trade","E":%d,"s":%s,"t":%d,"p":%s,"q":%s,"T":%d,"m":%s,%s}' % (
            event_ms,
            self._symbol,
            trade.trade_id,
            price[1:-1],
            quantity[:-1],
            ms(trade.time_ns),
            _JSON_BOOL[trade.buyer_is_maker],
            b'"M":true' if self.spot else b'"X":"MARKET"',
        )


# market streams --------------------------------------------------------------------------------


class Subscriber:
    """A market-stream connection: its subscriptions, the combined flag, its outbox.

    ``route``: the USD-M path the connection came in on (``public`` / ``market``), None on
    spot; streams of the other path are listed but never delivered.
    """

    def __init__(self, outbox: Outbox, combined: bool, route: str | None = None) -> None:
        self.outbox = outbox
        self.combined = combined
        self.route = route
        self.streams: dict[str, StreamSpec] = {}


@dataclass
class _Topic:
    spec: StreamSpec
    subscribers: set[Subscriber] = field(default_factory=set)
    pending: list[BookUpdate] = field(default_factory=list)  # depth batches of the open window
    last_sent_id: int = -1  # u of the previous depth event (futures "pu")
    window_start_ms: int = 0
    held: tuple[bytes, str] | None = None  # a depth event kept back by a HOLD fault
    # bookTicker: the last (bid, bid qty, ask, ask qty) sent per symbol
    last_tickers: dict[str, tuple[int, ...]] = field(default_factory=dict)


class MarketStreams:
    """Publishes one market's venue events to the subscribers of its streams."""

    def __init__(self, state: MarketState) -> None:
        self.state = state
        self.spot = state.is_spot
        self._topics: dict[str, _Topic] = {}
        self._by_symbol: dict[str, dict[str, _Topic]] = {}
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self.margin: FuturesMargin | None = None  # USD-M: funding rate and time of the markPrice stream
        self._text: dict[str, StreamText] = {}
        state.venue.add_listener(self.on_event)

    def text(self, symbol: str) -> StreamText:
        """The symbol's encoder (made on first use: instruments can be listed at run time)."""
        found = self._text.get(symbol)
        if found is None:
            found = self._text[symbol] = StreamText(symbol, self.state.formats(symbol))
        return found

    # subscriptions -------------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber, spec: StreamSpec) -> None:
        if subscriber.route is not None and usdm_route(spec) != subscriber.route:
            subscriber.streams[spec.name] = spec  # accepted, silent: the venue's wrong-path answer
            return
        topic = self._topics.get(spec.name)
        if topic is None:
            topic = self._topics[spec.name] = _Topic(spec)
            topic.window_start_ms = ms(self.state.clock.time_ns())
            self._by_symbol.setdefault(spec.symbol, {})[spec.name] = topic
        topic.subscribers.add(subscriber)
        subscriber.streams[spec.name] = spec

    def unsubscribe(self, subscriber: Subscriber, name: str) -> None:
        subscriber.streams.pop(name, None)
        topic = self._topics.get(name)
        if topic is None:
            return
        topic.subscribers.discard(subscriber)
        if not topic.subscribers:
            del self._topics[name]
            by_symbol = self._by_symbol.get(topic.spec.symbol)
            if by_symbol is not None:
                by_symbol.pop(name, None)

    def drop(self, subscriber: Subscriber) -> None:
        for name in list(subscriber.streams):
            self.unsubscribe(subscriber, name)
        self.subscribers.discard(subscriber)

    # publishing ----------------------------------------------------------------------------
    def _publish(self, topic: _Topic, payload: dict[str, Any]) -> None:
        self._deliver(topic, orjson.dumps(payload), topic.spec.name)

    @staticmethod
    def _deliver(topic: _Topic, raw: bytes, name: str) -> None:
        """Fan one encoded event out: the same bytes (or one combined wrapping) to every subscriber."""
        combined: bytes | None = None
        for subscriber in topic.subscribers:
            if subscriber.combined:
                if combined is None:
                    combined = b'{"stream":' + orjson.dumps(name) + b',"data":' + raw + b"}"
                subscriber.outbox.send(combined)
            else:
                subscriber.outbox.send(raw)

    def on_event(self, event: SimEvent) -> None:
        if isinstance(event, BookUpdate):
            self._on_book(event)
        elif isinstance(event, TradePrint):
            self._on_trade(event)

    def _on_trade(self, trade: TradePrint) -> None:
        topics = self._by_symbol.get(trade.symbol)
        if not topics:
            return
        formats = self.state.formats(trade.symbol)
        now = ms(self.state.clock.time_ns())
        for topic in list(topics.values()):
            kind = topic.spec.kind
            if kind == "trade":
                self._deliver(topic, self.text(trade.symbol).trade(trade, now), topic.spec.name)
            elif kind == "aggTrade":
                self._publish(topic, aggregate_trade_event(trade, formats, now))

    def _on_book(self, update: BookUpdate) -> None:
        topics = self._by_symbol.get(update.symbol)
        if topics:
            self._on_book_topics(topics, update)
        everything = self._by_symbol.get(ALL_SYMBOLS)
        if everything:
            for topic in list(everything.values()):
                if topic.spec.kind == "bookTicker":  # !bookTicker
                    self._book_ticker(topic, update)

    def _on_book_topics(self, topics: dict[str, _Topic], update: BookUpdate) -> None:
        for topic in list(topics.values()):
            kind = topic.spec.kind
            if kind == "depth":
                topic.pending.append(update)
                if topic.spec.cadence_ms == REALTIME:
                    self._flush_depth(topic)
            elif kind == "bookTicker":
                self._book_ticker(topic, update)

    def _book_ticker(self, topic: _Topic, update: BookUpdate) -> None:
        engine = self.state.engine
        bid = engine.best_bid(update.symbol)
        ask = engine.best_ask(update.symbol)
        key = (*(bid or (0, 0)), *(ask or (0, 0)))
        last_tickers = topic.last_tickers
        if last_tickers.get(update.symbol) == key:
            return
        last_tickers[update.symbol] = key
        formats = self.state.formats(update.symbol)
        zero_price, zero_quantity = formats.zero_price(), formats.zero_quantity()
        payload: dict[str, Any] = {}
        if not self.spot:
            now = ms(self.state.clock.time_ns())
            payload = {"e": "bookTicker", "u": update.update_id, "E": now, "T": ms(update.time_ns)}
        else:
            payload["u"] = update.update_id
        payload["s"] = update.symbol
        payload["b"] = formats.price(bid[0]) if bid else zero_price
        payload["B"] = formats.quantity(bid[1]) if bid else zero_quantity
        payload["a"] = formats.price(ask[0]) if ask else zero_price
        payload["A"] = formats.quantity(ask[1]) if ask else zero_quantity
        self._publish(topic, payload)

    def _flush_depth(self, topic: _Topic) -> None:
        pending = topic.pending
        if not pending:
            return
        topic.pending = []
        if len(pending) == 1:  # a real-time event: the engine's batch is already best first, one per price
            bids, asks = pending[0].bids, pending[0].asks
        else:
            bids, asks = merge_updates(pending)
        first, last = pending[0].update_id, pending[-1].update_id
        previous = topic.last_sent_id if topic.last_sent_id >= 0 else first - 1
        topic.last_sent_id = last
        raw = self.text(topic.spec.symbol).depth_diff(
            first, last, previous, bids, asks, ms(self.state.clock.time_ns()), ms(pending[-1].time_ns)
        )
        action = self.state.faults.depth_action()
        self.published += 1
        if action is DepthAction.DROP:
            return
        if action is DepthAction.HOLD and topic.held is None:
            topic.held = (raw, topic.spec.name)
            return
        self._deliver(topic, raw, topic.spec.name)
        if action is DepthAction.DUPLICATE:
            self._deliver(topic, raw, topic.spec.name)
        if topic.held is not None:
            held_raw, name = topic.held
            topic.held = None
            self._deliver(topic, held_raw, name)

    def flush_symbol(self, symbol: str) -> None:
        """Close every open depth window of ``symbol`` now (a REST snapshot is being taken)."""
        topics = self._by_symbol.get(symbol)
        if not topics:
            return
        for topic in list(topics.values()):
            if topic.spec.kind == "depth":
                self._flush_depth(topic)
                if topic.held is not None:
                    held_raw, name = topic.held
                    topic.held = None
                    self._deliver(topic, held_raw, name)

    def tick(self) -> None:
        """Close the windows and push the periodic streams that are due (called every ~100 ms)."""
        now_ms = ms(self.state.clock.time_ns())
        for topic in list(self._topics.values()):
            cadence = topic.spec.cadence_ms
            if cadence == REALTIME or now_ms - topic.window_start_ms < cadence:
                continue
            topic.window_start_ms = now_ms - (now_ms - topic.window_start_ms) % cadence
            kind = topic.spec.kind
            try:
                if kind == "depth":
                    self._flush_depth(topic)
                elif kind == "partial":
                    self._partial(topic, now_ms)
                elif kind == "kline":
                    self._kline(topic, now_ms)
                elif kind in ("miniTicker", "ticker"):
                    self._ticker(topic, now_ms)
                elif kind == "markPrice":
                    self._mark_price(topic, now_ms)
                elif kind in ("allMiniTicker", "allTicker", "allMarkPrice"):
                    self._all_market(topic, now_ms)
            except Exception:
                logger.exception("stream %s failed to publish", topic.spec.name)

    def _partial(self, topic: _Topic, now_ms: int) -> None:
        spec = topic.spec
        if spec.symbol not in self.state.venue.instruments:
            return
        formats = self.state.formats(spec.symbol)
        snapshot = self.state.engine.depth(spec.symbol, spec.levels)
        if self.spot:
            payload: dict[str, Any] = {
                "lastUpdateId": snapshot.update_id,
                "bids": formats.levels(snapshot.bids),
                "asks": formats.levels(snapshot.asks),
            }
        else:
            payload = depth_diff(
                spec.symbol,
                formats,
                snapshot.update_id,
                snapshot.update_id,
                topic.last_sent_id if topic.last_sent_id >= 0 else snapshot.update_id,
                snapshot.bids,
                snapshot.asks,
                now_ms,
                now_ms,
            )
            topic.last_sent_id = snapshot.update_id
        self._publish(topic, payload)

    def _kline(self, topic: _Topic, now_ms: int) -> None:
        spec = topic.spec
        if spec.symbol not in self.state.venue.instruments:
            return
        interval_ms = KLINE_INTERVALS_MS[spec.interval]
        candles = merge_candles(self.state.venue.candles(spec.symbol, 1440), interval_ms)
        if not candles:
            return
        candle = candles[-1]
        final = ms(candle.open_time_ns) + interval_ms <= now_ms
        formats = self.state.formats(spec.symbol)
        self._publish(
            topic, kline_event(spec.symbol, spec.interval, candle, formats, interval_ms, now_ms, final)
        )

    def _ticker(self, topic: _Topic, now_ms: int) -> None:
        spec = topic.spec
        if spec.symbol not in self.state.venue.instruments:
            return
        statistics = self.state.venue.ticker(spec.symbol, self.state.clock.time_ns())
        if statistics.count == 0 and statistics.last_price == 0:
            return
        formats = self.state.formats(spec.symbol)
        if spec.kind == "miniTicker":
            self._publish(topic, mini_ticker_event(statistics, formats, now_ms))
        else:
            engine = self.state.engine
            bid, ask = engine.best_bid(spec.symbol), engine.best_ask(spec.symbol)
            self._publish(topic, ticker_event(statistics, formats, bid, ask, now_ms))

    def _all_market(self, topic: _Topic, now_ms: int) -> None:
        """``!miniTicker@arr`` / ``!ticker@arr`` / ``!markPrice@arr``: one array of every symbol."""
        state = self.state
        rows = []
        for symbol in state.venue.instruments:
            formats = state.formats(symbol)
            if topic.spec.kind == "allMarkPrice":
                rows.append(self._mark_price_event(symbol, now_ms))
                continue
            statistics = state.venue.ticker(symbol, state.clock.time_ns())
            if statistics.count == 0:
                continue  # Binance lists only symbols that changed
            if topic.spec.kind == "allMiniTicker":
                rows.append(mini_ticker_event(statistics, formats, now_ms))
            else:
                bid, ask = state.engine.best_bid(symbol), state.engine.best_ask(symbol)
                rows.append(ticker_event(statistics, formats, bid, ask, now_ms))
        if rows:
            self._deliver(topic, orjson.dumps(rows), topic.spec.name)

    def _mark_price(self, topic: _Topic, now_ms: int) -> None:
        if topic.spec.symbol in self.state.venue.instruments:
            self._publish(topic, self._mark_price_event(topic.spec.symbol, now_ms))

    def _mark_price_event(self, symbol: str, now_ms: int) -> dict[str, Any]:
        mark = self.state.formats(symbol).price(mark_price(self.state, symbol))
        rate, next_time = funding_terms(self.margin, symbol, now_ms)
        return {
            "e": "markPriceUpdate",
            "E": now_ms,
            "s": symbol,
            "p": mark,
            "i": mark,
            "P": mark,
            "r": rate,
            "T": next_time,
        }


# user data ---------------------------------------------------------------------------------------

UserSink = Callable[[dict[str, Any]], None]


class UserData:
    """Per-account user-data events of one market, fanned out to the account's sinks."""

    def __init__(self, state: MarketState) -> None:
        self.state = state
        self.spot = state.is_spot
        self._sinks: dict[str, list[UserSink]] = {}
        self._touched: dict[str, set[str]] = {}  # account -> assets (spot) / symbols (futures) changed
        self._flush_scheduled = False
        state.venue.add_listener(self.on_event)

    def add(self, account: str, sink: UserSink) -> None:
        self._sinks.setdefault(account, []).append(sink)

    def remove(self, account: str, sink: UserSink) -> None:
        sinks = self._sinks.get(account)
        if sinks and sink in sinks:
            sinks.remove(sink)
            if not sinks:
                del self._sinks[account]

    def _emit(self, account: str, event: dict[str, Any]) -> None:
        for sink in list(self._sinks.get(account, ())):
            sink(event)

    def publish(self, account: str, event: dict[str, Any]) -> None:
        """Send an event made elsewhere (an algo order's ALGO_UPDATE) to the account's sinks."""
        self._emit(account, event)

    def account_update(self, account: str, symbols: list[str], reason: str) -> None:
        """An ACCOUNT_UPDATE of these symbols for a reason other than an order (``FUNDING_FEE``)."""
        if account not in self._sinks:
            return
        event = self._account_update(account, symbols, ms(self.state.clock.time_ns()))
        event["a"]["m"] = reason
        self._emit(account, event)

    def on_event(self, event: SimEvent) -> None:
        if isinstance(event, OrderEvent):
            order = event.order
            if order.account not in self._sinks:
                return
            if event.kind is OrderEventKind.FILLED:
                self._touch(order, traded=False)
                return  # the last TRADE report already says FILLED
            self._emit(order.account, self._order_report(event))
            self._touch(order, traded=False)
        elif isinstance(event, Execution):
            order = event.order
            if order.account not in self._sinks:
                return
            self._emit(order.account, self._execution_report(event))
            self._touch(order, traded=True)

    # batching of the account updates that follow the order reports ------------------------
    def _touch(self, order: SimOrder, traded: bool) -> None:
        instrument = self.state.instrument(order.symbol)
        touched = self._touched.setdefault(order.account, set())
        if self.spot:
            touched.update((instrument.base, instrument.quote))
        elif traded:
            touched.add(order.symbol)
        else:
            return
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush_accounts()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush_accounts)

    def flush_accounts(self) -> None:
        """Send the account updates of everything touched since the last flush."""
        self._flush_scheduled = False
        touched, self._touched = self._touched, {}
        now = ms(self.state.clock.time_ns())
        for account_name, keys in touched.items():
            if not keys or account_name not in self._sinks:
                continue
            account = self.state.accounts.get(account_name)
            if self.spot:
                balances = []
                for asset in sorted(keys):
                    balance = account.balance(asset)
                    balances.append(
                        {
                            "a": asset,
                            "f": self.state.asset_text(asset, balance.free),
                            "l": self.state.asset_text(asset, balance.locked),
                        }
                    )
                self._emit(account_name, {"e": "outboundAccountPosition", "E": now, "u": now, "B": balances})
            else:
                self._emit(account_name, self._account_update(account_name, sorted(keys), now))

    def _account_update(self, account_name: str, symbols: list[str], now: int) -> dict[str, Any]:
        state = self.state
        account = state.accounts.get(account_name)
        assets = sorted({state.instrument(symbol).quote for symbol in symbols})
        balances = []
        for asset in assets:
            balance = account.balance(asset)
            balances.append(
                {
                    "a": asset,
                    "wb": state.asset_text(asset, balance.total),
                    "cw": state.asset_text(asset, balance.total),
                    "bc": "0",
                }
            )
        positions = []
        for symbol in symbols:
            formats = state.formats(symbol)
            instrument = state.instrument(symbol)
            position = account.position(symbol)
            entry = position.entry_price
            entry_text = formats.average(position.cost, position.quantity) if entry is not None else "0"
            mark = mark_price(state, symbol)
            positions.append(
                {
                    "s": symbol,
                    "pa": formats.quantity(position.quantity),
                    "ep": entry_text,
                    "bep": entry_text,
                    "cr": formats.quote(position.realized),
                    "up": formats.quote(mark * position.quantity - position.cost),
                    "mt": "cross",
                    "iw": "0",
                    "ps": "BOTH",
                    "ma": instrument.quote,
                }
            )
        return {"e": "ACCOUNT_UPDATE", "E": now, "T": now, "a": {"m": "ORDER", "B": balances, "P": positions}}

    # order reports -------------------------------------------------------------------------
    def _order_report(self, event: OrderEvent) -> dict[str, Any]:
        order = event.order
        if event.kind is OrderEventKind.ACCEPTED:
            execution_type, status = "NEW", "NEW"
            filled = quote_filled = 0
        elif event.kind is OrderEventKind.AMENDED:
            # spot reports an in-place amend as REPLACED, USD-M a modify as AMENDMENT
            execution_type, status = ("REPLACED" if self.spot else "AMENDMENT"), event.status.name
            filled, quote_filled = order.filled, order.quote_filled
        else:
            if event.status is OrderStatus.CANCELED:
                execution_type = "CANCELED"
            else:
                execution_type = "EXPIRED"
            status = (spot_status if self.spot else futures_status)(event.status, event.close_reason)
            filled, quote_filled = order.filled, order.quote_filled
        working = event.kind is OrderEventKind.ACCEPTED and _rests(order)
        cancel_id = self.state.pending_cancel_id if execution_type == "CANCELED" else None
        return self._report(
            order,
            execution_type=execution_type,
            status=status,
            time_ns=event.time_ns,
            filled=filled,
            quote_filled=quote_filled,
            working=working,
            cancel_client_id=cancel_id,
            close_reason=event.close_reason,
        )

    def _execution_report(self, execution: Execution) -> dict[str, Any]:
        order = execution.order
        status_name = execution.status.name
        working = execution.status is OrderStatus.PARTIALLY_FILLED and (execution.is_maker or _rests(order))
        return self._report(
            order,
            execution_type="TRADE",
            status=status_name,
            time_ns=execution.time_ns,
            filled=execution.filled,
            quote_filled=execution.quote_filled,
            working=working,
            execution=execution,
        )

    def _report(
        self,
        order: SimOrder,
        *,
        execution_type: str,
        status: str,
        time_ns: int,
        filled: int,
        quote_filled: int,
        working: bool,
        execution: Execution | None = None,
        cancel_client_id: str | None = None,
        close_reason: CloseReason | None = None,
    ) -> dict[str, Any]:
        state = self.state
        formats = state.formats(order.symbol)
        now = ms(state.clock.time_ns())
        zero_price, zero_quantity = formats.zero_price(), formats.zero_quantity()
        if execution is not None:
            last_quantity = formats.quantity(execution.quantity)
            last_price = formats.price(execution.price)
            fee = state.asset_text(execution.fee_asset, execution.fee)
            fee_asset: str | None = execution.fee_asset
            trade_id = execution.trade_id
            is_maker = execution.is_maker
            last_quote = formats.quote(execution.price * execution.quantity)
        else:
            last_quantity, last_price, fee, fee_asset = zero_quantity, zero_price, "0", None
            trade_id, is_maker, last_quote = -1, False, formats.quote(0)
        price = formats.price(order.price) if order.price else zero_price
        if self.spot:
            report: dict[str, Any] = {
                "e": "executionReport",
                "E": now,
                "s": order.symbol,
                "c": cancel_client_id or order.client_order_id,
                "S": SIDES[order.side],
                "o": ORDER_TYPES[order.order_type],
                "f": TIME_IN_FORCE[order.time_in_force],
                "q": formats.quantity(order.quantity),
                "p": price,
                "P": zero_price,
                "F": zero_quantity,
                "g": -1,
                "C": order.client_order_id if cancel_client_id else "",
                "x": execution_type,
                "X": status,
                "r": "NONE",
                "i": order.order_id,
                "l": last_quantity,
                "z": formats.quantity(filled),
                "L": last_price,
                "n": fee,
                "N": fee_asset,
                "T": ms(time_ns),
                "t": trade_id,
                "I": _next_execution_id(),
                "w": working,
                "m": is_maker,
                "M": False,
                "O": ms(order.created_ns),
                "Z": formats.quote(quote_filled),
                "Y": last_quote,
                "Q": formats.quote(0),
                "W": ms(order.created_ns),
                "V": "EXPIRE_MAKER",
            }
            if close_reason is CloseReason.SELF_TRADE_PREVENTION:
                report["v"] = 0
            stop = state.stop_orders.get(order.order_id)
            if stop is not None:  # a conditional order (binance_stops): its type and stop price
                report["o"] = stop[0]
                report["P"] = formats.price(stop[1])
                if order.order_id in state.pending_stop_ids:
                    report["w"] = False
            return report
        flags = state.futures_flags.get(order.order_id, FuturesOrderFlags(False, _tif(order)))
        order_type = "LIMIT" if order.order_type is OrderType.LIMIT_MAKER else ORDER_TYPES[order.order_type]
        return {
            "e": "ORDER_TRADE_UPDATE",
            "E": now,
            "T": ms(time_ns),
            "o": {
                "s": order.symbol,
                "c": order.client_order_id,
                "S": SIDES[order.side],
                "o": order_type,
                "f": flags.time_in_force,
                "q": formats.quantity(order.quantity),
                "p": price,
                "ap": formats.average(quote_filled, filled),
                "sp": zero_price,
                "x": execution_type,
                "X": status,
                "i": order.order_id,
                "l": last_quantity,
                "z": formats.quantity(filled),
                "L": last_price,
                "N": fee_asset or state.instrument(order.symbol).quote,
                "n": fee,
                "T": ms(time_ns),
                "t": trade_id if trade_id >= 0 else 0,
                "b": "0",
                "a": "0",
                "m": is_maker,
                "R": flags.reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": order_type,
                "ps": "BOTH",
                "cp": False,
                "rp": formats.quote(state.realized(execution)) if execution is not None else "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
            },
        }


def _rests(order: SimOrder) -> bool:
    return order.order_type is not OrderType.MARKET and order.time_in_force.name == "GTC"


def _tif(order: SimOrder) -> str:
    return "GTX" if order.order_type is OrderType.LIMIT_MAKER else order.time_in_force.name


_execution_ids = iter(range(1, 1 << 62))


def _next_execution_id() -> int:
    return next(_execution_ids)


__all__ = [
    "InvalidStream",
    "MarketStreams",
    "Outbox",
    "StreamSpec",
    "Subscriber",
    "UserData",
    "parse_stream",
    "usdm_route",
]
