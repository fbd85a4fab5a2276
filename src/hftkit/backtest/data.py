"""The data a backtest replays: recordings of several instruments and venues, one timeline.

Each ``DataSource`` (one venue and symbol) is read with the simulator's own readers
(``hftkit.venues.binance.recording.RecordingDecoder`` for exact ticks and lots,
``hftkit.sim.engine.market.BookSequencer`` for Binance's snapshot-and-diff rules), so a
backtest replays a recording exactly as ``hftkit sim`` does. The events of all sources are
merged by timestamp (ties: the order the sources are configured, then file order), and cut to
a time range.

Formats:

* ``hftbacktest``: ``<local_ts_ns> <json>`` lines (gzip), the REST snapshot inline;
* ``cryptofeed``: ``<unix_ts>: <json>`` websocket lines (``depth``, ``trade`` and ``aggTrade``
  streams of the source's symbol), the depth snapshot from the ``.http`` file (``snapshot``);
* ``parquet``: the raw frames ``hftkit record`` writes (``hftkit.recording_files``; a file, a
  recording root or a partition folder), the source's symbol only: Binance stream frames and the
  REST snapshot each book was seeded from, decoded like the lines above.

Timestamps are the recorder's local receive stamps (the only clock every line has), in epoch ns.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from hftkit.backtest.config import DataSource, TimeRange
from hftkit.core.errors import HftkitError
from hftkit.core.types import Instrument
from hftkit.datasets import DataNotFoundError, hftbacktest_path, iter_recording
from hftkit.sim.engine.market import (
    ApplyDiff,
    BookSequencer,
    BucketAggregator,
    MarketAction,
    ReplayTrade,
    SeedBook,
    grid_ratio,
)
from hftkit.venues.binance.recording import (
    FRAME_DECODER,
    RecordedKind,
    RecordedMessage,
    RecordingDecoder,
    frame_kind,
    iter_cryptofeed_snapshots,
)

__all__ = [
    "DEPTH",
    "SEED",
    "TRADE",
    "DataError",
    "LoadedSource",
    "MarketEvent",
    "Timeline",
    "load_source",
    "parse_time",
    "resolve_file",
]

SEED, DEPTH, TRADE = 0, 1, 2
# (timestamp ns, kind, payload): SEED/DEPTH -> (bids, asks); TRADE -> (price, quantity, aggressor)
MarketEvent = tuple[int, int, tuple[object, ...]]


class DataError(HftkitError, ValueError):
    """Data a backtest cannot read: a missing file, an unknown format, a bad time range."""


class LoadedSource(msgspec.Struct, kw_only=True):
    """One source's events in time order, with what reading it found."""

    venue: str
    symbol: str
    events: list[MarketEvent]
    files: list[str]
    gaps: int = 0
    problems: dict[str, int] = {}
    book_levels: int = 0  # level changes in the seeds and diffs (book-level events)


def parse_time(value: str | int | None, what: str) -> int | None:
    """ISO-8601 (UTC unless it says otherwise) or epoch ns -> epoch ns."""
    if value is None or isinstance(value, int):
        return value
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DataError(f"range.{what}: {value!r} is neither ISO-8601 nor epoch nanoseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def resolve_file(name: str, directory: Path) -> Path:
    """Absolute, relative to the config's folder, or a path under the shared ``hftbacktest/``."""
    path = Path(name)
    if path.is_absolute():
        if path.exists():  # a file, or a folder of Parquet frames
            return path
        raise DataError(f"data file {path} not found")
    local = directory / path
    if local.exists():  # a file, or a folder of Parquet frames
        return local
    relative = name.removeprefix("hftbacktest/")
    try:
        return hftbacktest_path(relative)
    except DataNotFoundError as error:
        raise DataError(
            f"data file {name!r} not found beside the config ({directory}) nor as shared data: {error}"
        ) from None


def _format(source: DataSource, first: Path) -> str:
    if source.format != "auto":
        return source.format
    if first.suffix == ".parquet" or first.is_dir():
        return "parquet"
    if ".ws." in first.name:
        return "cryptofeed"
    return "hftbacktest"


def load_source(
    source: DataSource,
    instrument: Instrument,
    directory: Path = Path(),
    until_ns: int | None = None,
    recorded: Instrument | None = None,
) -> LoadedSource:
    """Read one source into ``MarketEvent`` values (book actions and trades, exact integers);
    reading stops at the first line after ``until_ns`` (a range's end).

    ``recorded``: the instrument the files hold when it is not ``instrument`` itself (Thalex
    BTC-PERPETUAL driven by the USD-M BTCUSDT recording, as ``hftkit sim`` drives it): the fine
    book is folded into the coarse grid by the simulator's ``BucketAggregator``."""
    if not source.files:
        raise DataError(f"data for {source.venue}:{source.symbol} names no files")
    paths = [resolve_file(name, directory) for name in source.files]
    kind = _format(source, paths[0])
    decoder = RecordingDecoder(recorded or instrument)
    buckets = None
    if recorded is not None and recorded is not instrument:
        buckets = BucketAggregator(*grid_ratio(instrument, recorded))
    if kind == "hftbacktest":
        lines: Iterable[tuple[int, RecordedMessage | None]] = (
            (timestamp, decoder.decode(body)) for path in paths for timestamp, body in iter_recording(path)
        )
    elif kind == "cryptofeed":
        lines = _cryptofeed(source, paths, decoder, directory)
    else:  # parquet: the raw frames of ``hftkit record`` (Binance streams and REST snapshots)
        from hftkit.recording_files import iter_frames

        lines = (
            (frame.timestamp_ns, decoder.decode(frame.payload))
            for frame in iter_frames(paths, symbol=source.symbol.upper())
        )
    sequencer = BookSequencer()
    events: list[MarketEvent] = []
    levels = 0
    with _collector_paused():
        for timestamp, message in lines:
            if until_ns is not None and timestamp > until_ns:
                break
            if message is None:
                continue
            for fine in sequencer.feed(message):
                action = fine if buckets is None else _coarse(fine, buckets)
                if action is None:
                    continue
                if type(action) is ApplyDiff:
                    events.append((timestamp, DEPTH, (action.bids, action.asks)))
                    levels += len(action.bids) + len(action.asks)
                elif type(action) is ReplayTrade:
                    events.append((timestamp, TRADE, (action.price, action.quantity, action.aggressor)))
                elif type(action) is SeedBook:
                    events.append((timestamp, SEED, (action.bids, action.asks)))
                    levels += len(action.bids) + len(action.asks)
    problems = {problem.value: count for problem, count in decoder.problems.items() if count}
    if not any(event[1] == SEED for event in events[:1]):
        raise DataError(f"data for {source.venue}:{source.symbol}: no depth snapshot, so no book to replay")
    return LoadedSource(
        venue=source.venue,
        symbol=source.symbol,
        events=events,
        files=[str(path) for path in paths],
        gaps=sequencer.gaps,
        problems=problems,
        book_levels=levels,
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a recording is read: the events pile up by the hundred
    thousand and are all kept, so every full pass the growing heap triggers scans it for nothing
    (a fifth of the read's time); reference counting still frees everything dropped on the way."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _coarse(action: MarketAction, buckets: BucketAggregator) -> MarketAction | None:
    """A fine-grid action as the coarse venue sees it (``hftkit.sim.engine.market.BucketSink``'s rules)."""
    if type(action) is ApplyDiff:
        bids, asks = buckets.apply(action.bids, action.asks)
        return ApplyDiff(bids, asks) if bids or asks else None
    if type(action) is ReplayTrade:
        return ReplayTrade(
            buckets.bucket_of(action.price, action.aggressor),
            action.quantity * buckets.lots_factor,
            action.aggressor,
        )
    if type(action) is SeedBook:
        return SeedBook(*buckets.replace(action.bids, action.asks))
    return action


def _cryptofeed(
    source: DataSource, paths: Sequence[Path], decoder: RecordingDecoder, directory: Path
) -> Iterator[tuple[int, RecordedMessage | None]]:
    """cryptofeed websocket lines of one symbol, with the REST depth snapshot put in time order.

    A cryptofeed file holds several symbols and streams: only this symbol's depth and trades
    reach the decoder, so the others are not counted as problems.
    """
    symbol = source.symbol.upper()
    snapshots: list[tuple[int, RecordedMessage | None]] = []
    if source.snapshot is not None:
        for timestamp, snapshot_symbol, body in iter_cryptofeed_snapshots(
            resolve_file(source.snapshot, directory)
        ):
            if snapshot_symbol == symbol:
                snapshots.append((timestamp, decoder.decode(body)))
    prefix = f"{symbol.lower()}@"
    wanted = (RecordedKind.DEPTH, RecordedKind.TRADE, RecordedKind.AGGREGATE_TRADE)
    lines: list[tuple[int, RecordedMessage | None]] = []
    for path in paths:
        for timestamp, body in iter_recording(path):
            try:
                frame = FRAME_DECODER.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                lines.append((timestamp, decoder.decode(body)))  # counted as malformed there
                continue
            if frame.stream.startswith(prefix) and frame_kind(frame) in wanted:
                lines.append((timestamp, decoder.decode(body)))
    merged = sorted(snapshots + lines, key=lambda item: item[0])
    yield from merged


def _tagged(events: list[MarketEvent], index: int) -> Iterator[tuple[int, int, int, tuple[object, ...]]]:
    for timestamp, kind, payload in events:
        yield timestamp, index, kind, payload


class Timeline:
    """Loaded sources merged by timestamp, cut to ``[start, end]`` (see the module docstring).

    Iterating yields ``(timestamp_ns, source_index, kind, payload)``. ``warmup`` events (before
    ``start``) are included: they build the books; the runner starts strategies at ``start``.
    """

    def __init__(self, sources: Sequence[LoadedSource], time_range: TimeRange | None = None) -> None:
        if not sources:
            raise DataError("a backtest needs at least one data source")
        self.sources = list(sources)
        time_range = time_range or TimeRange()
        self.start_ns = parse_time(time_range.start, "start")
        self.end_ns = parse_time(time_range.end, "end")
        if self.start_ns is not None and self.end_ns is not None and self.end_ns <= self.start_ns:
            raise DataError("range.end must be after range.start")
        firsts = [source.events[0][0] for source in self.sources if source.events]
        lasts = [source.events[-1][0] for source in self.sources if source.events]
        if not firsts:
            raise DataError("the data sources hold no events")
        self.first_ns = min(firsts)
        self.last_ns = max(lasts) if self.end_ns is None else min(max(lasts), self.end_ns)
        if self.start_ns is not None and self.start_ns > self.last_ns:
            raise DataError("range.start is after the end of the data")

    @property
    def trading_start_ns(self) -> int:
        return self.first_ns if self.start_ns is None else max(self.start_ns, self.first_ns)

    def __iter__(self) -> Iterator[tuple[int, int, int, tuple[object, ...]]]:
        end = self.end_ns
        if len(self.sources) == 1:  # one source: its events as they are, without a merge
            for timestamp, kind, payload in self.sources[0].events:
                if end is not None and timestamp > end:
                    return
                yield timestamp, 0, kind, payload
            return
        streams = [_tagged(source.events, index) for index, source in enumerate(self.sources)]
        for item in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            if end is not None and item[0] > end:
                return
            yield item

    def count(self) -> int:
        return sum(1 for _ in self)
