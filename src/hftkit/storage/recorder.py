"""The market-data recorder: raw frames (lossless, replayable) and normalized events to Parquet.

Why two recordings: the raw frames with their receive times are the truth a simulator or a
backtester replays through the same decoder and book code, so a bug found later can be
replayed; the normalized events (book deltas and snapshots in ticks/lots, trades, tickers) are
what research reads without a venue codec.

The hot path pays one tuple and one deque append per frame (``BatchingWriter.put``); the
Arrow conversion, the Parquet encoding and the disk writes run in a writer process (default;
``hftkit.storage.recorder_process``) or a writer thread, fed in batches. A full buffer
drops by its policy and counts it; a failing disk is retried, then counted; neither ever blocks
the feed. Files are partitioned venue/symbol/date/hour, rotated on the hour and past a size
bound, and completed by rename (see ``hftkit.recording_files`` for the format and the reader).

Wiring: ``attach(adapter, venue)`` taps a Binance adapter's market streams (every frame, and
the REST snapshot each book is seeded from) or a Thalex adapter's market notifications, and
listens to its normalized events.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import msgspec

from hftkit.core.types import BookDelta, BookTicker, Trade
from hftkit.recording_files import NORMALIZED, RAW
from hftkit.storage.parquet_files import RecordingFiles, event_fields
from hftkit.storage.recorder_process import ProcessFiles
from hftkit.storage.writer import BatchingWriter, OverflowPolicy

log = logging.getLogger(__name__)

_THALEX_MARKET_CHANNELS = ("book.", "ticker.", "trades.", "lwt.")


class BookTop(msgspec.Struct, frozen=True, kw_only=True):
    """The recorder's ``top`` row: a book's best levels after a delta (fields as ``BookTicker``)."""

    venue: str
    symbol: str
    update_id: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    event_time_ms: int = 0
    receive_ns: int = 0
    top: bool = True  # marks the row kind once it has crossed to the writer process


@dataclass(frozen=True)
class RecorderOptions:
    """Where and what to record (``recorder:`` in a node config builds one)."""

    directory: Path
    raw: bool = True
    normalized: bool = True
    rotate_bytes: int = 256 * 1024 * 1024  # a file past this size is completed, the next one opened
    batch_size: int = 4096  # rows per hand-off to the writer thread
    flush_interval_s: float = 1.0
    capacity: int = 1_000_000  # rows buffered in memory per recording before the overflow policy
    overflow: str = "drop_oldest"
    compression: str = "zstd"
    compression_level: int | None = 1  # zstd 1: most of the ratio at a fraction of the CPU
    # "process": Arrow conversion and disk writes in a child process (off the event loop's GIL);
    # "thread": in a thread of this process (no child to start; costs the feed more CPU)
    writer: str = "process"
    # book changes in the normalized recording: "top" (the book's best bid/ask after each delta:
    # cheap) or "deltas" (every level of every delta in ticks/lots: the raw frames hold them too,
    # at several times the recorder's CPU)
    normalized_depth: str = "top"

    def __post_init__(self) -> None:
        if self.normalized_depth not in ("top", "deltas"):
            raise ValueError(f"normalized_depth must be 'top' or 'deltas', got {self.normalized_depth!r}")
        if self.writer not in ("process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', got {self.writer!r}")
        if not (self.raw or self.normalized):
            raise ValueError("a recorder needs raw or normalized (or both)")
        if self.rotate_bytes < 1024:
            raise ValueError("rotate_bytes must be at least 1024")
        OverflowPolicy.parse(self.overflow)


class _WriterSettings(TypedDict):
    """What the raw and the normalized writer share (``BatchingWriter`` keywords)."""

    capacity: int
    batch_size: int
    flush_interval_s: float
    overflow: str
    write_timeout_s: float


class _ThreadSink:
    """A ``Sink`` that writes batches of one kind through the shared writer thread."""

    def __init__(self, recorder: MarketRecorder, kind: str) -> None:
        self._recorder = recorder
        self._kind = kind

    async def write(self, batch: Sequence[tuple[Any, ...]]) -> None:
        recorder = self._recorder
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(recorder._executor, recorder._write_batch, self._kind, batch)


class MarketRecorder:
    """Record frames and events of any number of venues and instruments into one root folder."""

    def __init__(self, options: RecorderOptions) -> None:
        self.options = options
        # wall clock = monotonic receive time + this offset (frames are stamped monotonic)
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        file_options: dict[str, Any] = {
            "rotate_bytes": options.rotate_bytes,
            "compression": options.compression,
            "compression_level": options.compression_level,
        }
        self.files: RecordingFiles | ProcessFiles
        if options.writer == "process":
            self.files = ProcessFiles(Path(options.directory), self._wall_offset_ns, file_options)
        else:
            self.files = RecordingFiles(options.directory, self._wall_offset_ns, **file_options)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hftkit-recorder")
        self._sequence = itertools.count(1)  # arrival order across every stream (C-level next)
        self.raw: BatchingWriter[tuple[Any, ...]] | None = None
        self.normalized: BatchingWriter[tuple[Any, ...]] | None = None
        common: _WriterSettings = {
            "capacity": options.capacity,
            "batch_size": min(options.batch_size, options.capacity),
            "flush_interval_s": options.flush_interval_s,
            "overflow": options.overflow,
            "write_timeout_s": 60.0,
        }
        if options.raw:
            self.raw = BatchingWriter(_ThreadSink(self, RAW), name="recorder.raw", **common)
        if options.normalized:
            self.normalized = BatchingWriter(
                _ThreadSink(self, NORMALIZED), name="recorder.normalized", **common
            )
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        files = self.files
        start = files.start if isinstance(files, ProcessFiles) else files.warm_up
        await asyncio.get_running_loop().run_in_executor(self._executor, start)
        for writer in self._writers():
            await writer.start()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Flush what is buffered, complete every file (rename), stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers():
            await writer.close(timeout_s)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.files.close)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> MarketRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _writers(self) -> list[BatchingWriter[tuple[Any, ...]]]:
        return [writer for writer in (self.raw, self.normalized) if writer is not None]

    # -- the hot path ------------------------------------------------------------------------
    # One tuple and one deque append per frame or event: no parsing, no copying of levels. The
    # writer thread turns each batch into Arrow columns (symbol and stream parsed there, in C).

    def record_frame(
        self, venue: str, symbol: str | None, stream: str | None, payload: bytes, timestamp_ns: int
    ) -> None:
        """One raw frame (``timestamp_ns``: wall clock when it was received). ``symbol`` and
        ``stream`` None: read from a Binance combined-stream envelope on the writer thread."""
        raw = self.raw
        if raw is not None:
            raw.put((timestamp_ns, next(self._sequence), venue, symbol, stream, payload))

    def record_event(self, event: object, timestamp_ns: int | None = None) -> None:
        """A normalized ``BookDelta``, ``Trade`` or ``BookTicker`` (other events are ignored)."""
        normalized = self.normalized
        if normalized is None:
            return
        kind = type(event)
        if kind is BookDelta or kind is Trade or kind is BookTicker or kind is BookTop:
            if timestamp_ns is None and not event.receive_ns:  # type: ignore[attr-defined]
                timestamp_ns = time.time_ns()
            normalized.put((timestamp_ns, next(self._sequence), event))

    # -- the writer thread (it hands batches to the files: in this process or the child) -----

    def _write_batch(self, kind: str, batch: Sequence[tuple[Any, ...]]) -> None:
        if kind == NORMALIZED and isinstance(self.files, RecordingFiles):
            batch = [(stamp, sequence, *event_fields(event)) for stamp, sequence, event in batch]
        self.files.write(kind, batch)  # to the writer process, events go as msgspec encodes them

    # -- taps --------------------------------------------------------------------------------

    def binance_frame_tap(self, venue: str) -> Callable[[bytes, int], None]:
        """A tap for Binance combined-stream frames: ``(payload, monotonic receive_ns)``. The
        symbol and stream are read from the envelope on the writer thread (frames that are not
        market data, e.g. a stall probe's answer, are counted in ``unparsed_frames``)."""
        offset = self._wall_offset_ns
        if self.raw is None:
            return lambda payload, receive_ns: None
        put = self.raw.put
        sequence = self._sequence

        def tap(payload: bytes, receive_ns: int) -> None:  # one tuple, one append: nothing else
            put((receive_ns + offset, next(sequence), venue, None, None, payload))

        return tap

    def binance_snapshot_tap(self, venue: str) -> Callable[[str, object, int], None]:
        """A tap for the REST depth snapshot a book is seeded from (re-encoded as Binance sends it)."""
        offset = self._wall_offset_ns
        encode = msgspec.json.encode

        def tap(symbol: str, snapshot: object, receive_ns: int) -> None:
            self.record_frame(venue, symbol, "snapshot", encode(snapshot), receive_ns + offset)

        return tap

    def thalex_notification_tap(self, venue: str) -> Callable[[str, bytes, int], None]:
        """A tap for Thalex notifications; market channels only (never our private channels)."""
        offset = self._wall_offset_ns
        record = self.record_frame

        def tap(channel: str, payload: bytes, receive_ns: int) -> None:
            if not channel.startswith(_THALEX_MARKET_CHANNELS):
                return
            parts = channel.split(".")
            frame = b'{"channel_name":%s,"notification":%s}' % (encode_string(channel), bytes(payload))
            record(venue, parts[1] if len(parts) > 1 else "?", parts[0], frame, receive_ns + offset)

        return tap

    def attach(self, adapter: Any, venue: str) -> None:
        """Record a connected adapter's market data: raw taps where it has them, events always.

        Call after the adapter is entered and before it subscribes.
        """
        streams = getattr(adapter, "streams", None)
        if streams is not None and hasattr(streams, "frame_tap"):
            streams.frame_tap = self.binance_frame_tap(venue)
            streams.snapshot_tap = self.binance_snapshot_tap(venue)
        elif hasattr(adapter, "notification_tap"):
            adapter.notification_tap = self.thalex_notification_tap(venue)
        elif self.raw is not None:
            log.warning(
                "recorder: %s (%s) offers no frame tap; recording its events only", venue, type(adapter)
            )
        if self.normalized is not None:
            adapter.add_listener(self.event_listener(adapter.book))

    def event_listener(self, book_of: Callable[[str], Any]) -> Callable[[object], None]:
        """An adapter listener: trades and tickers as they are; a book delta as the delta or, with
        ``normalized_depth: top``, as the book's top after it (``book_of(symbol)``: the book)."""
        record_event = self.record_event
        if self.options.normalized_depth == "deltas":
            return record_event
        record_top = self.record_top

        def listener(event: object) -> None:
            if type(event) is BookDelta:
                book = book_of(event.symbol)
                if book is not None:
                    record_top(event, book)
            else:
                record_event(event)

        return listener

    def record_top(self, delta: BookDelta, book: Any, timestamp_ns: int | None = None) -> None:
        """The book's top after ``delta`` was applied (a ``top`` row)."""
        normalized = self.normalized
        if normalized is None:
            return
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        if timestamp_ns is None and not delta.receive_ns:
            timestamp_ns = time.time_ns()
        top = BookTop(
            venue=delta.venue,
            symbol=delta.symbol,
            update_id=delta.last_update_id,
            bid_price=bid[0],
            bid_size=bid[1],
            ask_price=ask[0],
            ask_size=ask[1],
            event_time_ms=delta.event_time_ms,
            receive_ns=delta.receive_ns,
        )
        normalized.put((timestamp_ns, next(self._sequence), top))

    # -- reporting ---------------------------------------------------------------------------

    @property
    def unparsed_frames(self) -> int:
        """Frames with no readable stream/symbol (e.g. a stall probe's answer): counted, not kept."""
        return self.files.status().get("unparsed_frames", 0)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "directory": str(self.options.directory),
            "writer": self.options.writer,
            "files_completed": 0,
            "bytes_completed": 0,
            "rows_written": 0,
            "open_files": 0,
            "unparsed_frames": 0,
        }
        result.update(self.files.status())
        for writer in self._writers():
            result[writer.name] = writer.status_dict()
        return result

    @property
    def healthy(self) -> bool:
        return all(writer.status().healthy for writer in self._writers())


def encode_string(text: str) -> bytes:
    return msgspec.json.encode(text)


__all__ = ["BookTop", "MarketRecorder", "RecorderOptions"]
