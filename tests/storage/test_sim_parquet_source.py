"""``hftkit sim`` replays a Parquet recording (``source: parquet``) exactly as it replays the
original text recording: same frames in, same venue book out, level by level."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from pathlib import Path

import pytest

from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.sim.config import SimConfigError, config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.storage.recorder import MarketRecorder, RecorderOptions

FRAMES = 4000


def _stream(payload: bytes) -> str:
    if not payload.startswith(b'{"stream":"'):
        return "snapshot"
    return payload[11 : payload.index(b'"', 11)].split(b"@")[1].decode()


async def _final_book(venues: dict) -> tuple[list, list]:
    config = config_from_mapping(
        {"venues": venues, "speed": "max", "loop": False, "faults": "none"}, "<test>"
    )
    async with Simulator(config, wait_for_clients=False) as sim:  # read in process, no client
        (driver,) = sim.drivers.values()
        for _ in range(500):
            if driver.status.loops >= 1 and not driver.status.running:
                break
            await asyncio.sleep(0.01)
        assert driver.status.loops == 1 and driver.status.diffs > 100
        depth = sim.venues["binance-usdm"].depth("BTCUSDT")
        return depth.bids, depth.asks


def test_the_simulator_replays_a_parquet_recording_like_the_original(tmp_path: Path) -> None:
    lines = list(itertools.islice(iter_recording(hftbacktest_file("usdm", "btcusdt_20240808.gz")), FRAMES))
    text = tmp_path / "slice.gz"
    with gzip.open(text, "wb") as handle:
        for timestamp_ns, body in lines:
            handle.write(b"%d %s\n" % (timestamp_ns, body))

    async def record() -> None:
        async with MarketRecorder(RecorderOptions(directory=tmp_path / "rec", normalized=False)) as recorder:
            for timestamp_ns, body in lines:
                recorder.record_frame("usdm", "BTCUSDT", _stream(body), body, timestamp_ns)

    asyncio.run(record())
    original = asyncio.run(
        _final_book({"binance-usdm": {"symbols": ["BTCUSDT"], "replay": {"BTCUSDT": [str(text)]}}})
    )
    replayed = asyncio.run(
        _final_book(
            {
                "binance-usdm": {
                    "symbols": ["BTCUSDT"],
                    "source": "parquet",
                    "recording": str(tmp_path / "rec"),
                }
            }
        )
    )
    assert original[0] and original[1]
    assert replayed == original


def test_parquet_source_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(
        SimConfigError, match=r"venues\.binance-usdm\.recording: source: parquet needs recording"
    ):
        config_from_mapping({"venues": {"binance-usdm": {"symbols": ["BTCUSDT"], "source": "parquet"}}})
    (tmp_path / "raw").mkdir()
    with pytest.raises(SimConfigError, match="no recorded venue holds BTCUSDT"):
        config_from_mapping(
            {
                "venues": {
                    "binance-usdm": {"symbols": ["BTCUSDT"], "source": "parquet", "recording": str(tmp_path)}
                }
            }
        )
    with pytest.raises(SimConfigError, match="recording is for source: parquet"):
        config_from_mapping(
            {"venues": {"binance-usdm": {"symbols": ["BTCUSDT"], "recording": str(tmp_path)}}}
        )


def test_recorded_usdm_aggregate_trades_replay_as_trades() -> None:
    """A node on USD-M subscribes to aggTrade, so its recordings carry those: the sim reads them."""
    from hftkit.core.types import ContractKind, Instrument, Side
    from hftkit.venues.binance.recording import RecordedTrade, RecordingDecoder

    decoder = RecordingDecoder(
        Instrument("binance-usdm", "BTCUSDT", "BTC", "USDT", "0.10", "0.001", "5", ContractKind.PERPETUAL)
    )
    frame = (
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"61800.10",'
        b'"q":"0.002","f":1,"l":2,"T":1,"m":true}}'
    )
    assert decoder.decode(frame) == RecordedTrade(trade_id=7, price=618001, quantity=2, aggressor=Side.SELL)
