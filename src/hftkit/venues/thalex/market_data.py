"""Thalex market data: instruments, books, tickers and trades from channel notifications.

The adapter is the one owner of each book: a ``book.*`` push is applied here, through the
book's synchronizer, and a ``BookDelta`` (with the push's trades) follows every apply. A book
that cannot be trusted (a malformed level, a crossed book, a stalled stream) is marked unsynced
and its channel resubscribed for a fresh full book.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.book.sync import THALEX_RULES, BookSynchronizer, SyncAction
from hftkit.core.clock import Clock
from hftkit.core.errors import HftkitError
from hftkit.core.types import BookTicker, ConnectionEvent, Instrument
from hftkit.metrics import MetricsRegistry
from hftkit.venues.base import VenueError, VenueEvent
from hftkit.venues.thalex.codec import (
    ThalexBookLevelError,
    ThalexCodec,
    ThalexInstrument,
    ThalexTicker,
    decode_book_notification,
    decode_ticker,
    instrument_from_wire,
    number_to_steps,
)
from hftkit.venues.thalex.config import ThalexConfig
from hftkit.venues.thalex.errors import ThalexQueryError
from hftkit.venues.thalex.rpc import RpcSession
from hftkit.venues.thalex.session import NotificationHandler, Queries, Readiness

logger = logging.getLogger(__name__)


class BookState:
    """One symbol's book, its synchronizer and its subscription."""

    __slots__ = (
        "book",
        "books",
        "channel",
        "expect_full",
        "resync_task",
        "subscribed_epoch",
        "sync",
        "trades",
    )

    def __init__(self, symbol: str, channel: str) -> None:
        self.book = OrderBook(symbol)
        self.sync = BookSynchronizer(self.book, THALEX_RULES)  # owns the synced/unsynced state
        self.channel = channel
        self.subscribed_epoch = 0  # the connection on which the channel was last subscribed
        # the next push is the full book (sent after a subscribe); until then pushes are dropped
        self.expect_full = False
        self.resync_task: asyncio.Task[None] | None = None
        self.books = False
        self.trades = False


class MarketData:
    """Instruments, books and tickers of one adapter, kept across reconnects."""

    def __init__(
        self,
        config: ThalexConfig,
        *,
        rpc: RpcSession,
        queries: Queries,
        codec: ThalexCodec,
        instruments: dict[str, Instrument],
        products: dict[str, str],
        handlers: dict[str, NotificationHandler],
        emit: Callable[[VenueEvent], None],
        clock: Clock,
        metrics: MetricsRegistry,
    ) -> None:
        self.config = config
        self.name = config.venue
        self._rpc = rpc
        self._queries = queries
        self._codec = codec
        self._instruments = instruments
        self._products = products
        self._handlers = handlers
        self._emit = emit
        self._clock = clock
        # the per-level work of a book change, done once here (the one owner of the book)
        self._book_apply = metrics.histogram("book_apply_ns", venue=self.name)
        self.books: dict[str, BookState] = {}
        self.tickers: dict[str, ThalexTicker] = {}
        self._stall_watch: asyncio.Task[None] | None = None
        self._market_data_ns = clock.monotonic_ns()  # the last book or ticker push
        # the session's state, told by it on every change
        self._readiness = Readiness.DOWN
        self._epoch = 0
        self._closing = False

    def session_changed(self, readiness: Readiness, epoch: int, closing: bool) -> None:
        self._readiness = readiness
        self._epoch = epoch
        self._closing = closing

    # -- instruments -------------------------------------------------------------------------
    def has_instruments(self) -> bool:
        return bool(self._instruments)

    async def load_instruments(self) -> dict[str, Instrument]:
        """``public/instruments``: active outrights (combinations are skipped)."""
        raw = await self._queries.call("public/instruments", {})
        items = self._queries.decode(raw, list[msgspec.Raw], "public/instruments")
        for item in items:
            try:
                wire = msgspec.json.decode(item, type=ThalexInstrument)
                instrument = instrument_from_wire(self.name, wire)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, HftkitError, ValueError):
                self._rpc.count_malformed("instrument")
                continue
            if instrument is None:
                continue
            self._instruments[instrument.symbol] = instrument
            if wire.product:
                self._products[instrument.symbol] = wire.product
        return dict(self._instruments)

    # -- subscriptions -----------------------------------------------------------------------
    def symbols(self, *, unsubscribed: bool = False) -> list[str]:
        """Every wanted symbol, or those not subscribed on the current connection."""
        if not unsubscribed:
            return list(self.books)
        return [symbol for symbol, book in self.books.items() if book.subscribed_epoch != self._epoch]

    async def subscribe(self, symbols: Sequence[str], *, books: bool, trades: bool) -> None:
        if self._instruments:
            unknown = [symbol for symbol in symbols if symbol not in self._instruments]
            if unknown:
                raise VenueError(f"unknown Thalex instruments: {unknown}", venue=self.name)
        for symbol in symbols:
            self.want(symbol, books=books, trades=trades)
        if self._readiness is not Readiness.READY:
            return  # the connection being synced (or the next one) subscribes them
        missing = [symbol for symbol in symbols if self.books[symbol].subscribed_epoch != self._epoch]
        if missing:
            await self.subscribe_market(missing)

    def want(self, symbol: str, *, books: bool, trades: bool) -> None:
        state = self.books.get(symbol)
        if state is None:
            state = BookState(symbol, self.config.book_channel(symbol))
            self.books[symbol] = state
            self._handlers[state.channel] = functools.partial(self._on_book, symbol)
            if self.config.ticker_delay is not None:
                ticker = self.config.ticker_channel(symbol)
                self._handlers[ticker] = functools.partial(self._on_ticker, symbol)
        state.books = state.books or books
        state.trades = state.trades or trades

    async def subscribe_market(self, symbols: Sequence[str]) -> None:
        channels: list[str] = []
        for symbol in symbols:
            state = self.books[symbol]
            if state.sync.is_synced:
                state.sync.request_resync("resubscribed")
            state.expect_full = True  # the first push after (re)subscribing is the full book
            state.subscribed_epoch = self._epoch
            channels.append(state.channel)
            if self.config.ticker_delay is not None:
                channels.append(self.config.ticker_channel(symbol))
        if channels:
            self._market_data_ns = self._clock.monotonic_ns()  # the full books are due now
            await self._queries.subscribe("public/subscribe", channels)

    def on_disconnected(self, reason: str, book_state: str, now_ns: int) -> None:
        """Every book waits for the full book of the next subscription; listeners hear it."""
        for state_of_book in self.books.values():
            state_of_book.expect_full = False
            if state_of_book.sync.is_synced:
                state_of_book.sync.request_resync(f"disconnected: {reason}")
            self._emit(
                ConnectionEvent(
                    venue=self.name,
                    stream=state_of_book.channel,
                    state=book_state,
                    reason=reason,
                    receive_ns=now_ns,
                )
            )

    # -- notifications -----------------------------------------------------------------------
    def _on_book(self, symbol: str, channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        self._market_data_ns = self._clock.monotonic_ns()
        state = self.books[symbol]
        sync = state.sync
        is_snapshot = state.expect_full
        if not is_snapshot and not sync.is_synced:
            return  # a push of the subscription being replaced: the full book follows the resubscribe
        wire = decode_book_notification(payload)
        try:
            delta = self._codec.book_delta(symbol, wire, is_snapshot=is_snapshot, receive_ns=receive_ns)
        except ThalexBookLevelError as error:
            self._rpc.count_malformed(f"book_level:{error.kind}")
            self._resync_book(state, f"malformed level ({error.kind}): {error}")
            return
        if delta is None:
            return
        trades = (
            self._codec.book_trades(symbol, wire, receive_ns)
            if wire.trades and state.trades and not is_snapshot
            else ()
        )
        if is_snapshot:
            state.expect_full = False
            if sync.on_snapshot(-1, delta.bids, delta.asks) is not SyncAction.APPLIED:
                self._resync_book(state, sync.last_gap_reason)
                return
            synced = ConnectionEvent(venue=self.name, stream=channel, state="synced", receive_ns=receive_ns)
            self._emit(synced)
        else:
            started = time.perf_counter_ns()
            applied = sync.on_depth(-1, -1, -1, delta.bids, delta.asks)
            self._book_apply.record(time.perf_counter_ns() - started)
            if applied is not SyncAction.APPLIED:
                self._resync_book(state, sync.last_gap_reason)  # crossed: the book is not the venue's
                return
        if state.books:
            self._emit(delta)
        for trade in trades:  # the first push may repeat old trades: only later pushes are live
            self._emit(trade)

    def _on_ticker(self, symbol: str, _channel: str, payload: msgspec.Raw, receive_ns: int) -> None:
        self._market_data_ns = self._clock.monotonic_ns()
        ticker = decode_ticker(payload)
        self.tickers[symbol] = ticker
        instrument = self._instruments.get(symbol)
        if (
            instrument is None
            or ticker.best_bid_price is None
            or ticker.best_ask_price is None
            or ticker.best_bid_amount is None
            or ticker.best_ask_amount is None
        ):
            return
        self._emit(
            BookTicker(
                venue=self.name,
                symbol=symbol,
                update_id=-1,  # Thalex tickers carry no sequence number
                bid_price=number_to_steps(instrument, ticker.best_bid_price, price=True),
                bid_size=number_to_steps(instrument, ticker.best_bid_amount, price=False),
                ask_price=number_to_steps(instrument, ticker.best_ask_price, price=True),
                ask_size=number_to_steps(instrument, ticker.best_ask_amount, price=False),
                event_time_ms=int(ticker.mark_timestamp * 1000),
                receive_ns=receive_ns,
            )
        )

    # -- book resync and stall watch ---------------------------------------------------------
    def _resync_book(self, state: BookState, reason: str, *, stalled: bool = False) -> None:
        """Mark the book unsynced (once) and resubscribe its channel for a fresh full book."""
        sync = state.sync
        if sync.is_synced:
            if stalled:
                sync.report_stall(reason)
            else:
                sync.request_resync(reason)
        elif stalled:
            return
        state.expect_full = False
        now = self._clock.monotonic_ns()
        self._emit(
            ConnectionEvent(
                venue=self.name, stream=state.channel, state="resyncing", reason=reason, receive_ns=now
            )
        )
        self._start_resubscribe(state)

    def _start_resubscribe(self, state: BookState) -> None:
        if self._closing or not self._rpc.attached or state.subscribed_epoch != self._epoch:
            return  # not subscribed on this connection: the next subscribe brings the full book
        if state.resync_task is None or state.resync_task.done():
            state.resync_task = asyncio.get_running_loop().create_task(
                self._resubscribe(state), name=f"{self.name}:{state.channel}:resubscribe"
            )

    async def _resubscribe(self, state: BookState) -> None:
        """Unsubscribe, then subscribe: once the unsubscribe is answered no old push can follow."""
        epoch = self._epoch
        try:
            with contextlib.suppress(ThalexQueryError):  # not subscribed any more: fine
                await self._queries.call("unsubscribe", {"channels": [state.channel]})
            if epoch != self._epoch or self._closing:
                return
            state.expect_full = True
            self._market_data_ns = self._clock.monotonic_ns()
            await self._queries.subscribe("public/subscribe", [state.channel])
        except (VenueError, HftkitError, ConnectionError) as error:
            state.expect_full = False  # the stall watch tries again
            logger.warning("%s: resubscribing %s failed: %s", self.name, state.channel, error)
        finally:
            if state.resync_task is asyncio.current_task():
                state.resync_task = None

    def start_stall_watch(self) -> None:
        if self.config.stall_timeout_s > 0 and self._stall_watch is None:
            self._stall_watch = asyncio.get_running_loop().create_task(
                self._watch_stalls(), name=f"{self.name}-stall-watch"
            )

    def background_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks to cancel at shutdown (the stall watch is started again by the next start)."""
        tasks = [state.resync_task for state in self.books.values() if state.resync_task is not None]
        if self._stall_watch is not None:
            tasks.append(self._stall_watch)
            self._stall_watch = None
        return tasks

    async def _watch_stalls(self) -> None:
        """Books are only as fresh as their stream: no push within the timeout resyncs them."""
        timeout_ns = int(self.config.stall_timeout_s * 1e9)
        while True:
            await asyncio.sleep(self.config.stall_timeout_s / 4)
            if self._closing or not self._rpc.attached:
                continue
            now = self._clock.monotonic_ns()
            silent_ns = now - self._market_data_ns
            if silent_ns < timeout_ns:
                continue
            current = [state for state in self.books.values() if state.subscribed_epoch == self._epoch]
            if not current:
                continue
            self._market_data_ns = now  # re-armed: the resubscribed books get a full timeout
            reason = f"stalled: no market data for {silent_ns / 1e9:.2f}s"
            for state in current:
                if state.sync.is_synced:
                    self._resync_book(state, reason, stalled=True)
                elif not state.expect_full:
                    self._start_resubscribe(state)  # an earlier resubscribe failed
