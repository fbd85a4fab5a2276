"""Rebuild books from recorded Binance traffic and check them against the venue's own tops.

``RecordingVerifier`` is the sans-I/O core: feed it recorded frames (and snapshots) in
arrival order and it drives one ``BookSynchronizer`` per (symbol, rule set), counts what
the synchronizer counts, and compares every ``bookTicker`` whose update id equals an applied
diff's last update id with the book rebuilt up to that diff (``hftkit.book.checks``). The two
streams race (a spot ticker usually arrives before the 100 ms diff that contains its update),
so a ticker waits for its diff and an applied diff's top waits for a late ticker, both bounded
by id. ``verify_recordings`` is the file shell: hftbacktest ``<ts_ns> <json>`` files (REST
snapshot inline as a frame without "stream") and cryptofeed ``.ws.1.0`` files with their
``.http.0.0`` snapshot files.

Books persist across the files of one call, so a recording split over several files
(``btcusdt_20240808.gz`` then ``btcusdt_20240809.gz``) replays as one continuous stream.
The recorded format (which line is what, spot or futures, the grids) is read by
``hftkit.venues.binance.recording``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from hftkit.book.checks import top_matches
from hftkit.book.order_book import OrderBook
from hftkit.book.sync import BookSynchronizer, SequenceRules, SyncCounters
from hftkit.core.clock import Clock, SimulatedClock
from hftkit.core.errors import HftkitError
from hftkit.datasets import iter_recording
from hftkit.venues.binance.codec import BookTickerEvent, DepthSnapshot, DepthUpdate
from hftkit.venues.binance.parse import BinanceParser
from hftkit.venues.binance.recording import (
    BOOK_TICKER,
    DEPTH,
    DEPTH_DECODER,
    FRAME_DECODER,
    SNAPSHOT,
    SNAPSHOT_DECODER,
    TICKER_DECODER,
    cryptofeed_snapshot_file,
    frame_kind,
    iter_cryptofeed_snapshots,
    recorded_instrument,
    recorded_rules,
)

# Diffs held per symbol before its first snapshot fixes the grids; beyond that the oldest go.
MAX_HELD_BEFORE_SNAPSHOT = 100_000


@dataclass
class SymbolReport:
    """Integrity figures of one symbol's book over one file."""

    file: str
    symbol: str
    rules: str
    snapshot_id: int | None = None
    diffs_applied: int = 0
    gaps: int = 0
    resyncs: int = 0
    crossed_books: int = 0
    stale_dropped: int = 0
    ticker_matches: int = 0
    ticker_mismatches: int = 0
    conversion_errors: int = 0
    synced_at_end: bool = False
    first_mismatch: str = ""
    gap_reason: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.synced_at_end
            and not self.gaps
            and not self.resyncs
            and not self.crossed_books
            and not self.ticker_mismatches
            and not self.conversion_errors
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class FileReport:
    """Per-file figures: one report per symbol plus frames that could not be used."""

    file: str
    symbols: list[SymbolReport] = field(default_factory=list)
    frames: int = 0
    decode_errors: int = 0
    unattributed_snapshots: int = 0
    first_error: str = ""

    @property
    def ok(self) -> bool:
        return (
            bool(self.symbols)
            and all(report.ok for report in self.symbols)
            and not (self.decode_errors or self.unattributed_snapshots)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "frames": self.frames,
            "decode_errors": self.decode_errors,
            "unattributed_snapshots": self.unattributed_snapshots,
            "first_error": self.first_error,
            "symbols": [report.as_json() for report in self.symbols],
        }


_Top = tuple[tuple[int, int] | None, tuple[int, int] | None]
_Ticker = tuple[int, int, int, int]  # the venue's bid price, bid size, ask price, ask size
# How many recent applied diffs keep their top of book for tickers that arrive late.
RECENT_TOPS = 4_096


class _SymbolBook:
    """Replay state of one symbol under one rule set; lives across files."""

    __slots__ = ("applied_tops", "held", "parser", "pending_tickers", "rules", "symbol", "sync")

    def __init__(self, symbol: str, rules: SequenceRules, clock: Clock) -> None:
        self.symbol = symbol
        self.rules = rules
        self.parser: BinanceParser | None = None
        self.sync = BookSynchronizer(OrderBook(symbol), rules, clock=clock)
        self.held: list[DepthUpdate] = []  # raw diffs before the grids are known
        # bookTicker and depth streams race: a ticker may arrive before or after the diff
        # with its update id, so both sides wait for each other (bounded, by update id).
        self.pending_tickers: dict[int, tuple[_Ticker, str]] = {}
        self.applied_tops: dict[int, _Top] = {}


class _FileTally:
    """Counters of one symbol at the start of a file, to report per-file differences."""

    __slots__ = ("report", "start")

    def __init__(self, report: SymbolReport, start: SyncCounters) -> None:
        self.report = report
        self.start = start


class RecordingVerifier:
    """Sans-I/O replay core: frames in, per-file ``FileReport`` out."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SimulatedClock()
        self._books: dict[tuple[str, str], _SymbolBook] = {}
        self._file: FileReport | None = None
        self._tallies: dict[tuple[str, str], _FileTally] = {}
        self._file_symbols: dict[str, _SymbolBook] = {}

    # file boundaries ----------------------------------------------------------------------
    def begin_file(self, name: str) -> None:
        self._file = FileReport(name)
        self._tallies = {}
        self._file_symbols = {}

    def end_file(self) -> FileReport:
        report = self._current_file()
        for key, tally in self._tallies.items():
            book = self._books[key]
            counters = book.sync.counters
            start = tally.start
            symbol_report = tally.report
            symbol_report.diffs_applied = counters.applied - start.applied
            symbol_report.gaps = counters.gaps - start.gaps
            symbol_report.resyncs = counters.resyncs - start.resyncs
            symbol_report.crossed_books = counters.crossed_books - start.crossed_books
            symbol_report.stale_dropped = counters.stale_dropped - start.stale_dropped
            symbol_report.synced_at_end = book.sync.is_synced
            if symbol_report.resyncs:
                symbol_report.gap_reason = book.sync.last_gap_reason
            report.symbols.append(symbol_report)
        self._file = None
        return report

    def _current_file(self) -> FileReport:
        if self._file is None:
            raise RuntimeError("begin_file() must be called before feeding frames")
        return self._file

    # frames -------------------------------------------------------------------------------
    def feed(self, body: bytes, receive_ns: int = 0) -> None:
        """One recorded frame: a combined-stream message or an inline REST snapshot."""
        report = self._current_file()
        report.frames += 1
        try:
            frame = FRAME_DECODER.decode(body)
            kind = frame_kind(frame)
            if kind is DEPTH:
                self._on_depth(DEPTH_DECODER.decode(frame.data))
            elif kind is BOOK_TICKER:
                self._on_ticker(TICKER_DECODER.decode(frame.data))
            elif kind is SNAPSHOT:
                self._inline_snapshot(body, receive_ns)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            report.decode_errors += 1
            report.first_error = report.first_error or f"decode: {error}"

    def feed_snapshot(self, symbol: str, body: bytes, receive_ns: int = 0) -> None:
        """A REST depth snapshot recorded apart from the stream (cryptofeed ``.http`` files)."""
        report = self._current_file()
        try:
            snapshot = SNAPSHOT_DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            report.decode_errors += 1
            report.first_error = report.first_error or f"decode snapshot: {error}"
            return
        book = self._file_symbols.get(symbol.upper()) or self._unique_book(symbol.upper())
        if book is None:
            report.unattributed_snapshots += 1
            report.first_error = report.first_error or f"snapshot for {symbol} before any of its diffs"
            return
        self._attach(book)
        self._on_snapshot(book, snapshot)

    def _inline_snapshot(self, body: bytes, receive_ns: int) -> None:
        # hftbacktest files hold one symbol; the snapshot carries no symbol of its own
        report = self._current_file()
        books = {id(book): book for book in self._file_symbols.values()}
        if len(books) != 1:
            report.unattributed_snapshots += 1
            report.first_error = report.first_error or "inline snapshot with no single symbol to attach to"
            return
        (book,) = books.values()
        self.feed_snapshot(book.symbol, body, receive_ns)

    def _unique_book(self, symbol: str) -> _SymbolBook | None:
        matches = [book for (name, _), book in self._books.items() if name == symbol]
        return matches[0] if len(matches) == 1 else None

    def _book_for(self, symbol: str, rules: SequenceRules) -> _SymbolBook:
        key = (symbol, rules.name)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _SymbolBook(symbol, rules, self._clock)
            book.sync.on_book = lambda order_book, book=book: self._on_book(book, order_book)
        self._attach(book)
        return book

    def _attach(self, book: _SymbolBook) -> None:
        # start this file's tally for the book (books outlive files; reports are per file)
        self._file_symbols[book.symbol] = book
        key = (book.symbol, book.rules.name)
        if key not in self._tallies:
            report = SymbolReport(self._current_file().file, book.symbol, book.rules.name)
            self._tallies[key] = _FileTally(report, SyncCounters(**book.sync.counters.as_dict()))

    def _tally(self, book: _SymbolBook) -> SymbolReport:
        return self._tallies[(book.symbol, book.rules.name)].report

    # events -------------------------------------------------------------------------------
    def _on_depth(self, update: DepthUpdate) -> None:
        book = self._book_for(update.symbol, recorded_rules(update.previous_update_id))
        if book.parser is None:
            book.held.append(update)
            if len(book.held) > MAX_HELD_BEFORE_SNAPSHOT:
                del book.held[0]
            return
        self._apply_depth(book, update)

    def _apply_depth(self, book: _SymbolBook, update: DepthUpdate) -> None:
        assert book.parser is not None
        try:
            bids = book.parser.levels(update.bids)
            asks = book.parser.levels(update.asks)
        except HftkitError as error:
            report = self._tally(book)
            report.conversion_errors += 1
            report.first_mismatch = report.first_mismatch or f"u={update.last_update_id}: {error}"
            book.sync.request_resync(f"unconvertible diff u={update.last_update_id}")
            return
        book.sync.on_depth(
            update.first_update_id, update.last_update_id, update.previous_update_id, bids, asks
        )

    def _on_snapshot(self, book: _SymbolBook, snapshot: DepthSnapshot) -> None:
        report = self._tally(book)
        report.snapshot_id = snapshot.last_update_id
        if book.parser is None:
            held, book.held = book.held, []
            book.parser = BinanceParser(recorded_instrument(book.symbol, snapshot, held))
            for update in held:
                self._apply_depth(book, update)
        try:
            bids = book.parser.levels(snapshot.bids)
            asks = book.parser.levels(snapshot.asks)
        except HftkitError as error:
            report.conversion_errors += 1
            report.first_mismatch = report.first_mismatch or f"snapshot {snapshot.last_update_id}: {error}"
            return
        book.sync.on_snapshot(snapshot.last_update_id, bids, asks)

    def _on_ticker(self, ticker: BookTickerEvent) -> None:
        book = self._file_symbols.get(ticker.symbol)
        if book is None:
            book = self._unique_book(ticker.symbol)  # a continuation file opening with tickers
            if book is None:
                return
            self._attach(book)
        if book.parser is None:
            return  # before the first snapshot: the grids are not known yet
        try:
            expected = (
                book.parser.price(ticker.bid_price),
                book.parser.size(ticker.bid_quantity),
                book.parser.price(ticker.ask_price),
                book.parser.size(ticker.ask_quantity),
            )
        except HftkitError as error:
            report = self._tally(book)
            report.conversion_errors += 1
            report.first_mismatch = report.first_mismatch or f"bookTicker u={ticker.update_id}: {error}"
            return
        update_id = ticker.update_id
        description = f"bookTicker u={update_id}"
        top = book.applied_tops.get(update_id)
        if top is not None:
            self._compare(book, expected, top, description)
        elif update_id > book.sync.last_update_id or not book.sync.is_synced:
            pending = book.pending_tickers
            pending[update_id] = (expected, description)
            if len(pending) > RECENT_TOPS:
                del pending[next(iter(pending))]

    def _on_book(self, book: _SymbolBook, order_book: OrderBook) -> None:
        update_id = order_book.last_update_id
        top = (order_book.best_bid(), order_book.best_ask())
        tops = book.applied_tops
        tops[update_id] = top
        if len(tops) > RECENT_TOPS:
            del tops[next(iter(tops))]
        pending = book.pending_tickers
        if pending:
            waiting = pending.pop(update_id, None)
            if waiting is not None:
                self._compare(book, waiting[0], top, waiting[1])
            # tickers older than this diff matched no diff (a bookTicker-only update id)
            if next(iter(pending), update_id) < update_id:
                for stale in [key for key in pending if key < update_id]:
                    del pending[stale]

    def _compare(self, book: _SymbolBook, expected: _Ticker, top: _Top, description: str) -> None:
        report = self._tally(book)
        if top_matches(top[0], top[1], *expected):
            report.ticker_matches += 1
        else:
            report.ticker_mismatches += 1
            bid, ask = expected[:2], expected[2:]
            report.first_mismatch = report.first_mismatch or (
                f"{description}: venue {bid}/{ask}, book {top[0]}/{top[1]}"
            )


# file shell --------------------------------------------------------------------------------


def replay_file(verifier: RecordingVerifier, path: Path) -> FileReport:
    """Feed one recording (and, for cryptofeed, its snapshots in time order) to ``verifier``."""
    verifier.begin_file(str(path))
    companion = cryptofeed_snapshot_file(path)
    snapshots = sorted(iter_cryptofeed_snapshots(companion)) if companion else []
    next_snapshot = 0
    for timestamp_ns, body in iter_recording(path):
        while next_snapshot < len(snapshots) and snapshots[next_snapshot][0] <= timestamp_ns:
            snapshot_ns, symbol, snapshot_body = snapshots[next_snapshot]
            verifier.feed_snapshot(symbol, snapshot_body, snapshot_ns)
            next_snapshot += 1
        verifier.feed(body, timestamp_ns)
    for snapshot_ns, symbol, snapshot_body in snapshots[next_snapshot:]:
        verifier.feed_snapshot(symbol, snapshot_body, snapshot_ns)
    return verifier.end_file()


def verify_recordings(paths: Iterable[str | Path]) -> list[FileReport]:
    """Replay files in order (later files continue earlier ones) and report each."""
    verifier = RecordingVerifier()
    return [replay_file(verifier, Path(path)) for path in paths]


def reports_ok(reports: Sequence[FileReport]) -> bool:
    return bool(reports) and all(report.ok for report in reports)
