"""``hftkit record`` end to end: the simulator's live Binance and Thalex feeds recorded, and the
recorded Binance frames (with the REST snapshots) replayed through the book code rebuild the
adapter's own book level by level."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.market_node import MarketPipeline, RecordedMarket
from hftkit.app.record_cli import RecordingSession, record_command
from hftkit.codec import CodecErrorCounters
from hftkit.metrics import MetricsRegistry
from hftkit.recording_files import iter_frames, recorded_symbols

CONFIG = """
venues:
  usdm: {kind: binance, market: usdm}
  thalex: {kind: thalex}
simulator: {speed: 20}
runtime: {uvloop: false}
recorder:
  directory: recorded
  rotate_mb: 1
  instruments:
    usdm: [BTCUSDT]
    thalex: [BTC-PERPETUAL]
"""


@pytest.mark.slow
def test_recorded_live_frames_rebuild_the_adapters_book(tmp_path: Path) -> None:
    (tmp_path / "node.yaml").write_text(CONFIG)
    loaded = node_config.load(tmp_path / "node.yaml")
    session = RecordingSession(loaded, seconds=2.5)
    summary = asyncio.run(session.run())
    assert summary.clean, summary.status
    root = tmp_path / "recorded"
    assert recorded_symbols(root) == {"usdm": ["BTCUSDT"], "thalex": ["BTC-PERPETUAL"]}
    assert not list(root.rglob("*.tmp"))
    import pyarrow.parquet as parquet

    kinds = {
        (row["venue"], row["kind"])
        for path in (root / "normalized").rglob("*.parquet")
        for row in parquet.read_table(path, columns=["venue", "kind"]).to_pylist()
    }
    assert {("usdm", "top"), ("thalex", "top")} <= kinds, kinds  # through the writer process

    adapter = session.adapters["usdm"]
    live_book = adapter.book("BTCUSDT")
    assert live_book is not None and live_book.best_bid() is not None
    frames = list(iter_frames([root], venue="usdm", symbol="BTCUSDT"))
    streams = {frame.stream for frame in frames}
    assert {"snapshot", "depth"} <= streams, streams
    pipeline = MarketPipeline(
        RecordedMarket("usdm BTCUSDT", adapter.instruments["BTCUSDT"], ()),
        MetricsRegistry(),
        CodecErrorCounters(),
    )
    for frame in frames:
        pipeline.on_frame(frame.payload)
    assert pipeline.sync.is_synced
    assert pipeline.book.bids() == live_book.bids()
    assert pipeline.book.asks() == live_book.asks()
    thalex = [frame for frame in iter_frames([root], venue="thalex")]
    assert thalex and all(frame.payload.startswith(b'{"channel_name":"') for frame in thalex)


def test_config_errors_name_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(
        "venues:\n  usdm: {kind: binance, market: usdm}\nrecorder:\n  instruments:\n    usdn: [BTCUSDT]\n"
    )
    assert record_command(str(path), seconds=0.1, directory=None, as_json=True) == 2
    assert (
        "recorder.instruments.usdn: no venue named `usdn` (did you mean `usdm`?)" in capsys.readouterr().err
    )
    path.write_text("venues:\n  usdm: {kind: binance, market: usdm}\n")
    assert record_command(str(path), seconds=0.1, directory=None, as_json=True) == 2
    assert "nothing to record" in capsys.readouterr().err
    path.write_text(
        "venues:\n  usdm: {kind: binance, market: usdm}\nrecorder:\n  raw: false\n  normalized: false\n"
    )
    with pytest.raises(node_config.ConfigError, match=r"recorder\.raw: record `raw`, `normalized` or both"):
        node_config.load(path)
    path.write_text("venues:\n  usdm: {kind: binance, market: usdm}\ninflux:\n  enabled: true\n  api: v2\n")
    with pytest.raises(node_config.ConfigError, match=r"influx\.api: InfluxDB 2\.x/3\.x"):
        node_config.load(path)
    path.write_text("venues:\n  usdm: {kind: binance, market: usdm}\ninflux:\n  measurements: [top_of_bok]\n")
    with pytest.raises(node_config.ConfigError, match=r"influx\.measurements"):
        node_config.load(path)
