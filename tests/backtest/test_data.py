"""The backtest's data: recordings read exactly (the simulator's readers), merged by timestamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from hftkit.backtest.config import DataSource, TimeRange
from hftkit.backtest.data import DEPTH, SEED, TRADE, DataError, Timeline, load_source, parse_time
from hftkit.core.types import ContractKind, Instrument
from hftkit.datasets import DataNotFoundError, shared_data_dir
from hftkit.sim.config import BINANCE_USDM, CATALOGUE

BTC = CATALOGUE[BINANCE_USDM]["BTCUSDT"].instrument("usdm")
START = parse_time("2024-08-08T23:54:20Z", "start")
END = parse_time("2024-08-08T23:54:30Z", "end")


def shared() -> Path:
    try:
        return shared_data_dir()
    except DataNotFoundError as error:
        pytest.skip(f"needs the shared recordings: {error}")


def test_a_recording_becomes_a_seed_then_diffs_and_trades_in_time_order():
    source = load_source(
        DataSource(venue="usdm", symbol="BTCUSDT", files=["usdm/btcusdt_20240808.gz"]), BTC, until_ns=END
    )
    kinds = [event[1] for event in source.events]
    assert kinds[0] == SEED and kinds.count(SEED) == 1
    assert DEPTH in kinds and TRADE in kinds
    stamps = [event[0] for event in source.events]
    assert stamps == sorted(stamps) and stamps[-1] <= END
    assert source.gaps == 0 and not source.problems
    bids, asks = source.events[0][2]
    assert bids[0][0] < asks[0][0]  # a sane snapshot, in ticks


def test_sources_merge_by_timestamp_and_the_range_cuts_the_end():
    shared()
    eth = CATALOGUE[BINANCE_USDM]["ETHUSDT"].instrument("usdm")
    btc_source = load_source(
        DataSource(venue="usdm", symbol="BTCUSDT", files=["usdm/btcusdt_20240808.gz"]), BTC, until_ns=END
    )
    eth_source = load_source(
        DataSource(venue="usdm", symbol="ETHUSDT", files=["usdm/ethusdt_20240808.gz"]), eth, until_ns=END
    )
    timeline = Timeline(
        [btc_source, eth_source], TimeRange(start="2024-08-08T23:54:20Z", end=END - 5_000_000_000)
    )
    merged = list(timeline)
    assert [item[0] for item in merged] == sorted(item[0] for item in merged)
    assert {item[1] for item in merged} == {0, 1}
    assert merged[-1][0] <= END - 5_000_000_000
    assert timeline.trading_start_ns == START


def test_one_source_replays_as_it_is_tagged_with_its_index_and_cut_at_the_end():
    from hftkit.backtest.data import LoadedSource, MarketEvent

    events: list[MarketEvent] = [
        (1_000, SEED, ([(100, 5)], [(101, 5)])),
        (2_000, DEPTH, ([(100, 0)], [])),
        (2_000, TRADE, (101, 1, "buy")),
        (3_000, DEPTH, ([], [(102, 7)])),
    ]
    source = LoadedSource(venue="usdm", symbol="BTCUSDT", events=events, files=[])
    assert list(Timeline([source])) == [(stamp, 0, kind, payload) for stamp, kind, payload in events]
    cut = list(Timeline([source], TimeRange(start=1_500, end=2_000)))
    assert [(item[0], item[2]) for item in cut] == [(1_000, SEED), (2_000, DEPTH), (2_000, TRADE)]
    assert Timeline([source], TimeRange(end=2_999)).count() == 3


def test_a_cryptofeed_recording_with_its_rest_snapshot():
    folder = shared() / "cryptofeed"
    sushi = Instrument("usdm", "SUSHIUSDT", "SUSHI", "USDT", "0.001", "1", kind=ContractKind.PERPETUAL)
    source = load_source(
        DataSource(
            venue="usdm",
            symbol="SUSHIUSDT",
            files=[str(folder / "BINANCE_FUTURES.ws.1.0")],
            snapshot=str(folder / "BINANCE_FUTURES.http.0.0"),
        ),
        sushi,
    )
    kinds = [event[1] for event in source.events]
    assert kinds[0] == SEED and kinds.count(DEPTH) > 200 and kinds.count(TRADE) > 10  # aggTrade
    assert source.gaps == 0


def test_bad_data_is_refused_with_the_reason(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.gz"):
        load_source(DataSource(venue="usdm", symbol="BTCUSDT", files=["usdm/nothing.gz"]), BTC)
    with pytest.raises(DataError, match="ISO-8601"):
        parse_time("yesterday", "start")
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="no depth snapshot"):
        load_source(
            DataSource(
                venue="usdm", symbol="BTCUSDT", files=[str(tmp_path / "empty.gz")], format="hftbacktest"
            ),
            BTC,
        )


def test_a_parquet_frame_recording_replays_like_the_lines_it_holds(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as parquet

    from hftkit.datasets import hftbacktest_path, iter_recording
    from hftkit.recording_files import FRAME_COLUMNS

    rows: dict[str, list[object]] = {column: [] for column in FRAME_COLUMNS}
    for sequence, (timestamp, body) in enumerate(
        iter_recording(hftbacktest_path("usdm/btcusdt_20240808.gz"))
    ):
        if timestamp > END:
            break
        stream = "snapshot" if b'"stream"' not in body[:12] else body.split(b'"')[3].decode().split("@")[1]
        for column, value in zip(
            FRAME_COLUMNS, (timestamp, sequence, "binance_usdm", "BTCUSDT", stream, body), strict=True
        ):
            rows[column].append(value)
    folder = (
        tmp_path / "rec" / "raw" / "venue=binance_usdm" / "symbol=BTCUSDT" / "date=2024-08-08" / "hour=23"
    )
    folder.mkdir(parents=True)
    parquet.write_table(pa.table(rows), folder / "part-1-a.parquet")
    from_parquet = load_source(
        DataSource(venue="usdm", symbol="BTCUSDT", files=[str(tmp_path / "rec")]), BTC, until_ns=END
    )
    from_lines = load_source(
        DataSource(venue="usdm", symbol="BTCUSDT", files=["usdm/btcusdt_20240808.gz"]), BTC, until_ns=END
    )
    assert from_parquet.events == from_lines.events and len(from_lines.events) > 100


def test_reading_pauses_the_collector_and_leaves_it_as_it_found_it():
    import gc

    from hftkit.backtest.data import _collector_paused

    was_enabled = gc.isenabled()
    gc.enable()
    try:
        with pytest.raises(DataError), _collector_paused():
            assert not gc.isenabled()
            raise DataError("a bad line")
        assert gc.isenabled()
        gc.disable()  # a caller that turned it off keeps it off
        with _collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        if was_enabled:
            gc.enable()
        else:
            gc.disable()
