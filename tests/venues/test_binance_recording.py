"""The one reader of recorded Binance traffic: line kinds, spot or futures, the grids."""

from __future__ import annotations

import itertools

from hftkit.book.sync import BINANCE_FUTURES_RULES, BINANCE_SPOT_RULES
from hftkit.core.types import ContractKind
from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.sim.engine.market import ApplyDiff, BookSequencer
from hftkit.venues.binance.codec import DepthSnapshot, DepthUpdate
from hftkit.venues.binance.recording import (
    FRAME_DECODER,
    RecordedDiff,
    RecordedKind,
    RecordedSnapshot,
    frame_kind,
    is_futures,
    line_kind,
    recorded_instrument,
    recorded_rules,
    stream_kind,
)


def test_stream_names_map_to_kinds() -> None:
    assert stream_kind("btcusdt@depth@100ms") is RecordedKind.DEPTH
    assert stream_kind("btcusdt@depth") is RecordedKind.DEPTH
    assert stream_kind("btcusdt@depth20@100ms") is RecordedKind.PARTIAL_DEPTH
    assert stream_kind("btcusdt@trade") is RecordedKind.TRADE
    assert stream_kind("btcusdt@aggTrade") is RecordedKind.AGGREGATE_TRADE
    assert stream_kind("btcusdt@bookTicker") is RecordedKind.BOOK_TICKER
    assert stream_kind("btcusdt@kline_1m") is RecordedKind.OTHER


def test_decoded_and_peeked_kinds_agree_on_a_real_recording() -> None:
    lines = itertools.islice(iter_recording(hftbacktest_file("usdm", "btcusdt_20240808.gz")), 3000)
    kinds = [(line_kind(body), frame_kind(FRAME_DECODER.decode(body))) for _, body in lines]
    assert all(peeked is decoded for peeked, decoded in kinds)
    assert {kind for kind, _ in kinds} >= {RecordedKind.SNAPSHOT, RecordedKind.DEPTH, RecordedKind.TRADE}
    assert frame_kind(FRAME_DECODER.decode(b'{"result":null,"id":1}')) is RecordedKind.OTHER


def test_a_pu_field_means_futures_rules_and_a_perpetual() -> None:
    spot = DepthUpdate(event_time=1, symbol="X", first_update_id=1, last_update_id=2, bids=[], asks=[])
    futures = DepthUpdate(
        event_time=1, symbol="X", first_update_id=1, last_update_id=2, bids=[], asks=[], previous_update_id=0
    )
    assert not is_futures(spot) and is_futures(futures)
    assert recorded_rules(-1) is BINANCE_SPOT_RULES and recorded_rules(0) is BINANCE_FUTURES_RULES
    snapshot = DepthSnapshot(last_update_id=1, bids=[("100.10", "1.0")], asks=[("100.20", "2.125")])
    instrument = recorded_instrument("X", snapshot, [futures])
    assert instrument.kind is ContractKind.PERPETUAL
    assert (instrument.ticks.step_text, instrument.lots.step_text) == ("0.01", "0.001")
    assert recorded_instrument("X", snapshot, [spot]).kind is ContractKind.SPOT


def test_replay_bridges_a_futures_snapshot_taken_between_two_events() -> None:
    """The rules' PREVIOUS_ID bridge: the first diff after L links to it by ``pu`` alone."""
    sequencer = BookSequencer()
    sequencer.feed(RecordedSnapshot(last_update_id=10, bids=(), asks=()))
    diff = RecordedDiff(first_update_id=12, last_update_id=15, previous_update_id=10, bids=(), asks=())
    assert sequencer.feed(diff) == [ApplyDiff((), ())]
    assert sequencer.gaps == 0
