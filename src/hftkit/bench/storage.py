"""``hftkit bench storage``: the journal, InfluxDB line protocol and writes, the recorder's cost.

Figures (each beside a baseline measured in the same run):

- journal: fill events/s appended and durably committed in batches into SQLite (WAL,
  synchronous=FULL) through ``EventJournal``; baseline: one INSERT + COMMIT per event, same file
  settings and schema (``SqliteJournalStore.write_sync`` of one entry).
- line protocol: ``top_of_book`` points/s encoded by ``LineSchema.encode_many``; baseline:
  influxdb-client's ``Point(...).tag(...).field(...).time(...).to_line_protocol()``.
- InfluxDB end to end: points/s from ``put`` until a local influxd (Debian's ``influxdb``, started
  on a spare loopback port with a temp data dir) acknowledged them, batch 1000, gzip; counted
  back with a query. Skipped (noted) when no ``influxd`` is on PATH.
- recorder: frames/s through the node's market pipeline (decode, sync, book, microstructure, over
  real Binance USD-M frames) with the recorder on (raw + normalized, Parquet zstd, its writer
  thread live) vs off; target >= 90 %. The detail adds the rate including the final flush to disk.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from hftkit.bench.harness import BenchOptions, BenchResult, compare, interleaved
from hftkit.core.types import BookDelta, Side

PEERS = ("influxdb-client", "pyarrow")

JOURNAL_TARGET = 200_000.0
ENCODE_TARGET = 1_000_000.0
RECORDER_TARGET = 0.90


# journal ------------------------------------------------------------------------------------------
def _fill(index: int) -> Any:
    from hftkit.storage.journal import FillEvent

    return FillEvent(
        venue="binance",
        symbol="BTCUSDT",
        client_order_id=f"hk-1-{index}",
        venue_order_id=str(index),
        trade_id=str(index),
        side=Side.BUY,
        price=6_180_000 + index % 100,
        quantity=100,
        fee=0.01,
        fee_asset="USDT",
    )


async def _journal_batched(path: Path, count: int) -> float:
    from hftkit.storage.journal import EventJournal
    from hftkit.storage.journal_sqlite import SqliteJournalStore

    journal = EventJournal(SqliteJournalStore(path, synchronous="full"), "bench", batch_size=1000)
    await journal.open()
    records = [_fill(index) for index in range(count)]
    started = time.perf_counter()
    for index, record in enumerate(records):
        journal.append(record)
        if index % 1000 == 999:
            await asyncio.sleep(0)  # a feed yields to the loop between frames
    await journal.flush(60.0)
    elapsed = time.perf_counter() - started
    assert journal.committed_sequence >= count, "every event committed"
    await journal.close()
    return count / elapsed


def _journal_one_by_one(path: Path, count: int) -> float:
    from hftkit.storage.journal import JournalEntry
    from hftkit.storage.journal_sqlite import SqliteJournalStore

    store = SqliteJournalStore(path, synchronous="full")
    store.open_sync()
    entries = [
        JournalEntry(node="bench", sequence=index + 1, time_ns=index, record=_fill(index))
        for index in range(count)
    ]
    started = time.perf_counter()
    for entry in entries:
        store.write_sync([entry])  # BEGIN, one INSERT, COMMIT (fsync)
    elapsed = time.perf_counter() - started
    store.connection().close()
    return count / elapsed


def journal_figures(options: BenchOptions) -> list[BenchResult]:
    try:
        importlib.import_module("hftkit.storage.journal_sqlite")
    except ImportError as error:
        return [
            compare(
                "journal: events/s batched into SQLite",
                0.0,
                "events/s",
                met=None,
                note=f"journal missing: {error}",
            )
        ]
    count, baseline_count = (5_000, 200) if options.quick else (50_000, 500)
    batched, single = [], []
    with tempfile.TemporaryDirectory(prefix="hftkit-bench-journal-") as folder:
        for attempt in range(1 if options.quick else 3):
            batched.append(asyncio.run(_journal_batched(Path(folder) / f"batched{attempt}.sqlite", count)))
            single.append(_journal_one_by_one(Path(folder) / f"single{attempt}.sqlite", baseline_count))
    value, baseline = sorted(batched)[len(batched) // 2], sorted(single)[len(single) // 2]
    return [
        compare(
            "journal: fill events/s committed in batches into SQLite (WAL, synchronous=FULL)",
            value,
            "events/s",
            baseline="one INSERT + COMMIT per event (same store, same settings)",
            baseline_value=baseline,
            target=">= 200,000 events/s",
            met=value >= JOURNAL_TARGET,
            events=count,
            baseline_events=baseline_count,
        )
    ]


# line protocol ------------------------------------------------------------------------------------
def _rows(count: int) -> list[tuple[tuple[str, str], tuple[float, float, float, float], int]]:
    symbols = (("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("thalex", "BTC-PERPETUAL"))
    return [
        (
            symbols[index % 3],
            (61800.1 + index % 50, 61800.2 + index % 50, 1.25, 0.5 + index % 7),
            1_723_161_255_000_000_000 + index,
        )
        for index in range(count)
    ]


def encoding_figures(options: BenchOptions) -> list[BenchResult]:
    from hftkit.storage.influx import TOP_OF_BOOK, InfluxHttpSink, InfluxTarget, encode_point

    rows = _rows(1000)  # one flushed batch (the writer's default batch_size)
    point_rows = [(TOP_OF_BOOK, series, values, stamp) for series, values, stamp in rows]
    sink = InfluxHttpSink(InfluxTarget())

    def ours(passes: int) -> int:  # what the sink does with each batch: column-wise, in Arrow
        for _ in range(passes):
            sink.encode(point_rows)
        return passes * len(rows)

    def row_wise(passes: int) -> int:  # LineSchema.encode_many: one %-format per point
        for _ in range(passes):
            TOP_OF_BOOK.encode_many(rows)
        return passes * len(rows)

    def general(passes: int) -> int:
        for _ in range(passes):
            for (venue, symbol), (bid, ask, bid_size, ask_size), stamp in rows:
                encode_point(
                    "top_of_book",
                    {"venue": venue, "symbol": symbol},
                    {"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size},
                    stamp,
                )
        return passes * len(rows)

    workloads = [ours, row_wise, general]
    try:
        from influxdb_client import Point, WritePrecision
    except ImportError:
        client_installed = False
    else:
        client_installed = True

    if client_installed:

        def client(passes: int) -> int:
            for _ in range(passes):
                for (venue, symbol), (bid, ask, bid_size, ask_size), stamp in rows:
                    Point("top_of_book").tag("venue", venue).tag("symbol", symbol).field("bid", bid).field(
                        "ask", ask
                    ).field("bid_size", bid_size).field("ask_size", ask_size).time(
                        stamp, WritePrecision.NS
                    ).to_line_protocol()
            return passes * len(rows)

        workloads.append(client)
    timings = interleaved(workloads, options)
    rate = 1e9 / timings[0]
    baseline = 1e9 / timings[3] if Point is not None else None
    return [
        compare(
            "line protocol: top_of_book points/s encoded, batches of 1000 (the sink's column-wise path)",
            rate,
            "points/s",
            baseline="influxdb-client Point API (to_line_protocol)" if baseline else None,
            baseline_value=baseline,
            target=">= 1,000,000 points/s",
            met=rate >= ENCODE_TARGET,
            row_wise_encode_many_points_per_s=round(1e9 / timings[1]),
            general_encode_point_points_per_s=round(1e9 / timings[2]),
        )
    ]


# InfluxDB end to end --------------------------------------------------------------------------------
def _spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _query(url: str, text: str, database: str | None = None) -> dict:
    import json

    parameters = {"q": text, **({"db": database} if database else {})}
    request = urllib.request.Request(
        f"{url}/query", data=urllib.parse.urlencode(parameters).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class LocalInfluxd:
    """influxd 1.x on a spare loopback port with a temporary data dir (for the bench)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.folder = tempfile.TemporaryDirectory(prefix="hftkit-bench-influxd-")
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalInfluxd:
        root = self.folder.name
        http_port, rpc_port = _spare_port(), _spare_port()
        config = Path(root) / "influxdb.conf"
        config.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc_port}"\n'
            f'[meta]\n  dir = "{root}/meta"\n'
            f'[data]\n  dir = "{root}/data"\n  wal-dir = "{root}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{http_port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        self.process = subprocess.Popen(
            [self.binary, "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("influxd did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.folder.cleanup()


async def _write_points(url: str, lines: list[str]) -> tuple[float, int]:
    from hftkit.storage.influx import InfluxHttpSink, InfluxTarget
    from hftkit.storage.writer import BatchingWriter

    sink = InfluxHttpSink(InfluxTarget(url=url, database="bench"))
    writer: BatchingWriter[str] = BatchingWriter(
        sink, name="influx", batch_size=1000, flush_interval_s=2.0, capacity=len(lines)
    )
    await writer.start()
    started = time.perf_counter()
    for index, line in enumerate(lines):
        writer.put(line)
        if index % 1000 == 999:
            await asyncio.sleep(0)
    await writer.flush(120.0)
    elapsed = time.perf_counter() - started
    await writer.close()
    return len(lines) / elapsed, writer.status().written


def influx_figures(options: BenchOptions) -> list[BenchResult]:
    from hftkit.storage.influx import TOP_OF_BOOK

    binary = shutil.which("influxd")
    name = "InfluxDB end to end: points/s put -> acknowledged by a local influxd (batch 1000, gzip)"
    if binary is None:
        return [
            compare(name, 0.0, "points/s", met=None, note="no influxd on PATH (apt-get install influxdb)")
        ]
    count = 20_000 if options.quick else 100_000
    lines = [TOP_OF_BOOK.encode(series, values, stamp) for series, values, stamp in _rows(count)]
    with LocalInfluxd(binary) as server:
        _query(server.url, "CREATE DATABASE bench")
        rate, written = asyncio.run(_write_points(server.url, lines))
        result = _query(server.url, "SELECT count(bid) FROM top_of_book", "bench")["results"][0]
        stored = result["series"][0]["values"][0][1] if "series" in result else 0
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    return [
        compare(name, rate, "points/s", points=count, written=written, counted_back=stored, server=version)
    ]


# recorder cost --------------------------------------------------------------------------------------
def _frames(count: int) -> tuple[Any, list[bytes]]:
    from hftkit.app.market_node import default_markets

    market = next(item for item in default_markets() if item.label == "usdm BTCUSDT")
    from hftkit.datasets import iter_recording

    frames = [body for _, body in itertools.islice(iter_recording(market.files[0]), count)]
    return market, frames


def _depth_events(market: Any, frames: list[bytes]) -> list[BookDelta | None]:
    """The normalized BookDelta a node would hold for each depth frame (built before timing)."""
    from hftkit.venues.binance.parse import BinanceParser
    from hftkit.venues.binance.recording import DEPTH, line_kind

    parser = BinanceParser(market.instrument)
    return [
        parser.depth_frame(frame, time.monotonic_ns()) if line_kind(frame) is DEPTH else None
        for frame in frames
    ]


async def _feed(
    market: Any, frames: list[bytes], events: list[BookDelta | None], recorder_on: bool, folder: Path
) -> tuple[float, float]:
    from hftkit.app.market_node import MarketPipeline
    from hftkit.codec import CodecErrorCounters
    from hftkit.metrics import MetricsRegistry
    from hftkit.storage.recorder import MarketRecorder, RecorderOptions

    pipeline = MarketPipeline(market, MetricsRegistry(), CodecErrorCounters())
    on_frame = pipeline.on_frame
    started = time.perf_counter()
    if not recorder_on:
        for index, frame in enumerate(frames):
            on_frame(frame)
            if index % 256 == 255:
                await asyncio.sleep(0)  # a socket delivers in bursts; other tasks run between them
        elapsed = time.perf_counter() - started
        return len(frames) / elapsed, len(frames) / elapsed
    recorder = MarketRecorder(RecorderOptions(directory=folder, batch_size=4096, flush_interval_s=0.25))
    await recorder.start()
    tap = recorder.binance_frame_tap("binance-usdm")
    on_event = recorder.event_listener(lambda _symbol: pipeline.book)
    now = time.monotonic_ns
    started = time.perf_counter()
    for index, (frame, event) in enumerate(zip(frames, events, strict=True)):
        tap(frame, now())
        on_frame(frame)
        if event is not None:
            on_event(event)
        if index % 256 == 255:
            await asyncio.sleep(0)
    feed_elapsed = time.perf_counter() - started
    await recorder.stop()
    total_elapsed = time.perf_counter() - started
    return len(frames) / feed_elapsed, len(frames) / total_elapsed


def _event_loop_cost(
    market: Any, frames: list[bytes], events: list[BookDelta | None], options: BenchOptions
) -> dict[str, float]:
    """ns per frame the recorder costs the event loop's thread, beside the feed's own ns per frame:
    the taps (tuple + append) and the batch hand-off to the writer process (msgpack encode)."""
    import msgspec

    from hftkit.app.market_node import MarketPipeline
    from hftkit.codec import CodecErrorCounters
    from hftkit.metrics import MetricsRegistry
    from hftkit.storage.recorder import MarketRecorder, RecorderOptions

    sample = frames[:5000]
    sample_events = events[:5000]
    with tempfile.TemporaryDirectory(prefix="hftkit-bench-recorder-cost-") as folder:
        recorder = MarketRecorder(
            RecorderOptions(
                directory=Path(folder), writer="thread", capacity=10_000_000, batch_size=10_000_000
            )
        )
        tap = recorder.binance_frame_tap("binance-usdm")
        synced = MarketPipeline(market, MetricsRegistry(), CodecErrorCounters())
        for frame in sample:  # a synced book to read tops from
            synced.on_frame(frame)
        on_event = recorder.event_listener(lambda _symbol: synced.book)
        encoder = msgspec.msgpack.Encoder()
        captured: list[Any] = []

        def feed(passes: int) -> int:
            for _ in range(passes):
                pipeline = MarketPipeline(market, MetricsRegistry(), CodecErrorCounters())
                for frame in sample:
                    pipeline.on_frame(frame)
            return passes * len(sample)

        def taps(passes: int) -> int:
            for _ in range(passes):
                for frame, event in zip(sample, sample_events, strict=True):
                    tap(frame, 1)
                    if event is not None:
                        on_event(event)
                assert recorder.raw is not None and recorder.normalized is not None
                recorder.raw._buffer.clear()
                captured[:] = recorder.normalized._buffer
                recorder.normalized._buffer.clear()
            return passes * len(sample)

        taps(1)
        raw_rows = [(index, index, "binance-usdm", None, None, frame) for index, frame in enumerate(sample)]
        assert recorder.normalized is not None
        event_rows = list(captured)  # what the listener put: one top per delta

        def hand_off(passes: int) -> int:
            for _ in range(passes):
                encoder.encode(["raw", raw_rows])
                encoder.encode(["normalized", event_rows])
            return passes * len(sample)

        feed_ns, tap_ns, hand_off_ns = interleaved([feed, taps, hand_off], options)
        recorder._executor.shutdown()
    return {"feed_ns_per_frame": feed_ns, "taps_ns_per_frame": tap_ns, "hand_off_ns_per_frame": hand_off_ns}


def recorder_figures(options: BenchOptions) -> list[BenchResult]:
    market, frames = _frames(10_000 if options.quick else 30_000)
    events = _depth_events(market, frames)
    off, on, on_total = [], [], []
    with tempfile.TemporaryDirectory(prefix="hftkit-bench-recorder-") as folder:
        for attempt in range(2 if options.quick else 5):
            off.append(asyncio.run(_feed(market, frames, events, False, Path(folder)))[0])
            feed_rate, total_rate = asyncio.run(
                _feed(market, frames, events, True, Path(folder) / f"run{attempt}")
            )
            on.append(feed_rate)
            on_total.append(total_rate)
        size = sum(path.stat().st_size for path in Path(folder).rglob("*.parquet")) / max(len(on), 1)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    value, baseline = median(on), median(off)
    pair_ratio = median([with_recorder / without for with_recorder, without in zip(on, off, strict=True)])
    cost = _event_loop_cost(market, frames, events, options)
    loop_share = cost["feed_ns_per_frame"] / (
        cost["feed_ns_per_frame"] + cost["taps_ns_per_frame"] + cost["hand_off_ns_per_frame"]
    )
    return [
        compare(
            "recorder: feed frames/s with the recorder on (raw + normalized, Parquet zstd, writer process)",
            value,
            "frames/s",
            baseline="the same feed, recorder off",
            baseline_value=baseline,
            target=">= 90 % of the feed without it",
            met=value >= RECORDER_TARGET * baseline,
            frames=len(frames),
            runs=len(on),
            median_ratio_of_back_to_back_runs=round(pair_ratio, 3),
            with_final_flush_frames_per_s=round(median(on_total)),
            parquet_bytes_per_run=round(size),
            cpus=os.cpu_count(),
            **{key: round(value) for key, value in cost.items()},
            event_loop_cpu_share_kept=round(loop_share, 3),
        )
    ]


def run(options: BenchOptions) -> list[BenchResult]:
    return [
        *journal_figures(options),
        *encoding_figures(options),
        *influx_figures(options),
        *recorder_figures(options),
    ]
