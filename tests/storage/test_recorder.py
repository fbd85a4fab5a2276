"""Record -> replay -> identical books, on real Binance frames; file layout, rotation, crash safety."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as parquet
import pytest

from hftkit.app.market_node import MarketPipeline, RecordedMarket
from hftkit.codec import CodecErrorCounters
from hftkit.core.types import BookDelta, BookTicker, ContractKind, Instrument, Side, Trade
from hftkit.datasets import DataNotFoundError, hftbacktest_file, iter_recording
from hftkit.metrics import MetricsRegistry
from hftkit.recording_files import frame_files, iter_frames, recorded_symbols
from hftkit.storage.recorder import MarketRecorder, RecorderOptions

FRAMES_PER_INSTRUMENT = 6000
CHECK_EVERY = 500


def _markets() -> list[RecordedMarket]:
    def usdm(symbol: str, base: str, tick: str) -> Instrument:
        return Instrument("binance-usdm", symbol, base, "USDT", tick, "0.001", "5", ContractKind.PERPETUAL)

    markets = [
        RecordedMarket(
            "usdm BTCUSDT", usdm("BTCUSDT", "BTC", "0.10"), (hftbacktest_file("usdm", "btcusdt_20240808.gz"),)
        )
    ]
    # the second instrument is in the shared data only (the package bundles BTCUSDT)
    with contextlib.suppress(DataNotFoundError):
        markets.append(
            RecordedMarket(
                "usdm ETHUSDT",
                usdm("ETHUSDT", "ETH", "0.01"),
                (hftbacktest_file("usdm", "ethusdt_20240808.gz"),),
            )
        )
    return markets


def _stream(payload: bytes) -> str:
    if not payload.startswith(b'{"stream":"'):
        return "snapshot"
    return payload[11 : payload.index(b'"', 11)].split(b"@")[1].decode()


def _merged(markets: list[RecordedMarket]) -> list[tuple[int, str, bytes]]:
    """The instruments' first frames merged in time order: (timestamp_ns, symbol, payload)."""
    streams = [
        [
            (ts, market.instrument.symbol, body)
            for ts, body in itertools.islice(iter_recording(market.files[0]), FRAMES_PER_INSTRUMENT)
        ]
        for market in markets
    ]
    return list(heapq.merge(*streams, key=lambda item: item[0]))


def _pipelines(markets: list[RecordedMarket]) -> dict[str, MarketPipeline]:
    registry = MetricsRegistry()
    errors = CodecErrorCounters()
    return {market.instrument.symbol: MarketPipeline(market, registry, errors) for market in markets}


def _books_along(
    frames: list[tuple[str, bytes]], markets: list[RecordedMarket]
) -> list[tuple[str, list, list, bool]]:
    """Feed frames through the node's book code; every CHECK_EVERY frames, every book level by level."""
    pipelines = _pipelines(markets)
    states = []
    for index, (symbol, payload) in enumerate(frames, 1):
        pipelines[symbol].on_frame(payload)
        if index % CHECK_EVERY == 0 or index == len(frames):
            for name, pipeline in sorted(pipelines.items()):
                states.append((name, pipeline.book.bids(), pipeline.book.asks(), pipeline.sync.is_synced))
    return states


async def _record(root: Path, frames: list[tuple[int, str, bytes]], **options: object) -> MarketRecorder:
    recorder = MarketRecorder(RecorderOptions(directory=root, normalized=False, **options))  # type: ignore[arg-type]
    async with recorder:
        for count, (timestamp_ns, symbol, payload) in enumerate(frames):
            recorder.record_frame("binance-usdm", symbol, _stream(payload), payload, timestamp_ns)
            if count % 2000 == 0:
                await asyncio.sleep(0)  # let the writer run, as a live feed would
    return recorder


def test_record_then_replay_gives_identical_books(tmp_path: Path) -> None:
    markets = _markets()
    original = _merged(markets)
    recorder = asyncio.run(_record(tmp_path, original, rotate_bytes=256 * 1024))

    files = frame_files([tmp_path])
    assert len(files) >= 2, "the small size bound must have rotated the files"
    assert not list(tmp_path.rglob("*.tmp")), "every file completed by rename at stop"
    for path in files:
        assert parquet.ParquetFile(path).metadata.row_group(0).column(5).compression == "ZSTD"
        assert "venue=binance-usdm" in path.parts[-5] and path.parts[-2].startswith("hour=")
    assert recorder.raw is not None and recorder.raw.status().dropped == 0
    assert set(recorded_symbols(tmp_path)["binance-usdm"]) == {m.instrument.symbol for m in markets}

    replayed = [(frame.timestamp_ns, frame.symbol, frame.payload) for frame in iter_frames([tmp_path])]
    assert replayed == original, (
        "the reader yields every frame, in the recorded order, all instruments merged"
    )

    before = _books_along([(symbol, payload) for _, symbol, payload in original], markets)
    after = _books_along([(symbol, payload) for _, symbol, payload in replayed], markets)
    assert any(synced for *_, synced in before), "the books must actually have synced on real data"
    assert len(before) == len(after)
    for expected, got in zip(before, after, strict=True):
        assert got == expected  # level by level, at every checkpoint

    # the generic recording reader (what `hftkit sim` and the replay use) reads one instrument's folder
    symbol = markets[0].instrument.symbol
    partition = tmp_path / "raw" / "venue=binance-usdm" / f"symbol={symbol}"
    lines = list(iter_recording(partition))
    assert [body for _, body in lines] == [payload for _, name, payload in original if name == symbol]


def test_rotation_on_the_hour_and_crash_leftovers_are_ignored(tmp_path: Path) -> None:
    hour_ns = 3600 * 10**9
    base = 1_723_161_000 * 10**9 // hour_ns * hour_ns + hour_ns - 10**9  # one second before an hour
    frames = [
        (base + index * 200_000_000, "BTCUSDT", b'{"stream":"btcusdt@trade","data":{"i":%d}}' % index)
        for index in range(20)
    ]
    asyncio.run(_record(tmp_path, frames, writer="thread"))
    hours = sorted({path.parts[-2] for path in frame_files([tmp_path])})
    assert len(hours) == 2, hours
    # a crash mid-file leaves a .tmp that no reader sees
    leftover = tmp_path / "raw" / "venue=binance-usdm" / "symbol=BTCUSDT" / "part-9.parquet.tmp"
    leftover.write_bytes(b"PAR1 half a file")
    assert [frame.payload for frame in iter_frames([tmp_path])] == [payload for *_, payload in frames]


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_normalized_events_are_recorded_in_ticks_and_lots(tmp_path: Path, writer: str) -> None:
    async def scenario() -> None:
        async with MarketRecorder(RecorderOptions(directory=tmp_path, raw=False, writer=writer)) as recorder:
            recorder.record_event(
                BookDelta(
                    venue="v", symbol="S", bids=[(100, 5)], asks=[(101, 7), (102, 1)], last_update_id=9
                ),
                timestamp_ns=1_000,
            )
            recorder.record_event(
                Trade(venue="v", symbol="S", trade_id=3, price=101, size=2, aggressor=Side.BUY),
                timestamp_ns=2_000,
            )
            recorder.record_event(
                BookTicker(
                    venue="v", symbol="S", update_id=9, bid_price=100, bid_size=5, ask_price=101, ask_size=7
                ),
                timestamp_ns=3_000,
            )
            recorder.record_event(object())  # not market data: ignored

    asyncio.run(scenario())
    (path,) = list((tmp_path / "normalized").rglob("*.parquet"))
    rows = parquet.read_table(path).to_pylist()
    assert [row["kind"] for row in rows] == ["delta", "trade", "ticker"]
    assert rows[0]["bids"] == [[100, 5]] and rows[0]["asks"] == [[101, 7], [102, 1]]
    assert rows[0]["last_update_id"] == 9
    assert (rows[1]["price"], rows[1]["size"], rows[1]["aggressor"]) == (101, 2, Side.BUY.value)
    assert (rows[2]["price"], rows[2]["ask_price"], rows[2]["ask_size"]) == (100, 101, 7)


def test_binance_tap_reads_stream_and_symbol_and_counts_the_rest(tmp_path: Path) -> None:
    async def scenario() -> MarketRecorder:
        recorder = MarketRecorder(RecorderOptions(directory=tmp_path, normalized=False, writer="thread"))
        async with recorder:
            tap = recorder.binance_frame_tap("binance-spot")
            tap(b'{"stream":"btcusdt@depth@100ms","data":{}}', 5)
            tap(b'{"result":null,"id":"hftkit-probe-1"}', 6)
            tap(b'{"stream":"nosuch","data":{}}', 7)
        return recorder

    recorder = asyncio.run(scenario())
    frames = list(iter_frames([tmp_path]))
    assert [(frame.symbol, frame.stream) for frame in frames] == [("BTCUSDT", "depth")]
    assert recorder.unparsed_frames == 2


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="raw or normalized"):
        RecorderOptions(directory=tmp_path, raw=False, normalized=False)
    with pytest.raises(ValueError, match="overflow"):
        RecorderOptions(directory=tmp_path, overflow="block")
    with pytest.raises(ValueError, match="writer"):
        RecorderOptions(directory=tmp_path, writer="fork")


KILLED_PARENT = """
import asyncio, os, signal, sys
from pathlib import Path
from hftkit.storage.recorder import MarketRecorder, RecorderOptions

async def main():
    recorder = MarketRecorder(RecorderOptions(directory=Path(sys.argv[1]), normalized=False, batch_size=100))
    await recorder.start()
    for index in range(1000):
        recorder.record_frame("v", "S", "trade", b'{"i":%d}' % index, 1_723_161_255_000_000_000 + index)
    assert recorder.raw is not None and await recorder.raw.flush(30)
    print("flushed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_killed_node_leaves_only_complete_files(tmp_path: Path) -> None:
    """SIGKILL of the recording process: its writer process completes the open files itself."""
    script = tmp_path / "record.py"
    script.write_text(KILLED_PARENT)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rec")], capture_output=True, timeout=60
    )
    assert result.returncode == -signal.SIGKILL and b"flushed" in result.stdout, result.stderr[-500:]
    for _ in range(100):  # the orphaned writer notices the closed pipe and completes its files
        if list((tmp_path / "rec").rglob("*.parquet")) and not list((tmp_path / "rec").rglob("*.tmp")):
            break
        time.sleep(0.1)
    assert not list((tmp_path / "rec").rglob("*.tmp"))
    frames = list(iter_frames([tmp_path / "rec"]))
    assert [frame.payload for frame in frames] == [b'{"i":%d}' % index for index in range(1000)]


def test_with_normalized_depth_top_a_delta_is_recorded_as_the_books_new_top(tmp_path: Path) -> None:
    from hftkit.book.order_book import OrderBook

    book = OrderBook("S")
    book.apply_snapshot([(100, 5), (99, 1)], [(101, 7)])

    async def scenario() -> None:
        options = RecorderOptions(directory=tmp_path, raw=False, writer="thread")
        async with MarketRecorder(options) as recorder:
            listener = recorder.event_listener(lambda symbol: book if symbol == "S" else None)
            delta = BookDelta(venue="v", symbol="S", bids=[(100, 5)], asks=[(101, 7)], last_update_id=9)
            listener(delta)
            listener(BookDelta(venue="v", symbol="other", bids=[], asks=[]))  # no book: nothing
            listener(Trade(venue="v", symbol="S", trade_id=3, price=101, size=2, aggressor=Side.SELL))

    asyncio.run(scenario())
    (path,) = list((tmp_path / "normalized").rglob("*.parquet"))
    rows = parquet.read_table(path).to_pylist()
    assert [row["kind"] for row in rows] == ["top", "trade"]
    top = rows[0]
    assert (top["price"], top["size"], top["ask_price"], top["ask_size"], top["last_update_id"]) == (
        100,
        5,
        101,
        7,
        9,
    )
    assert top["bids"] is None and rows[1]["aggressor"] == "sell"
