"""Replaying the real Binance recordings rebuilds every book exactly (PROVENANCE.md table)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hftkit.app.replay_cli import app
from hftkit.core import DecimalGrid, Instrument, InvalidDecimalError, OffGridError, Side, format_scaled
from hftkit.datasets import hftbacktest_file, shared_data_dir
from hftkit.venues.binance.codec import BookTickerEvent, DepthSnapshot, TradeEvent
from hftkit.venues.binance.parse import BinanceParser, InvalidLevelError, instrument_from_snapshot
from hftkit.venues.binance.recording import iter_cryptofeed_snapshots
from hftkit.venues.binance.replay import RecordingVerifier, reports_ok, verify_recordings

# file, symbol, snapshot id, diffs applied, bookTicker matches (mismatches are always 0)
HFTBACKTEST_TABLE = [
    ("spot", "btcusdt_20240808.gz", "BTCUSDT", 50093239218, 3449, 564),
    ("spot", "ethusdt_20240808.gz", "ETHUSDT", 35346513512, 3432, 577),
    ("usdm", "btcusdt_20240808.gz", "BTCUSDT", 5123107852948, 6547, 629),
    ("usdm", "ethusdt_20240808.gz", "ETHUSDT", 5123107856276, 6581, 551),
    ("cm", "btcusd_perp_20240808.gz", "BTCUSD_PERP", 1007198635033, 26824, 1124),
    ("cm", "ethusd_perp_20240808.gz", "ETHUSD_PERP", 1007198635066, 22887, 1345),
]
FAST = {("spot", "btcusdt_20240808.gz"), ("usdm", "btcusdt_20240808.gz"), ("cm", "ethusd_perp_20240808.gz")}

CRYPTOFEED_TABLE = {
    "BINANCE.ws.1.0": {"NKNUSDT": (149, 19), "BLZETH": (9, 1), "LRCBTC": (13, 6), "RUNEEUR": (1, 0)},
    "BINANCE_FUTURES.ws.1.0": {
        "SUSHIUSDT": (252, 12),
        "AKROUSDT": (188, 7),
        "KEEPUSDT": (132, 13),
        "CTKUSDT": (180, 18),
    },
    "BINANCE_DELIVERY.ws.1.0": {
        "BCHUSD_PERP": (208, 62),
        "LINKUSD_PERP": (228, 12),
        "BCHUSD_210924": (101, 13),
        "ETCUSD_PERP": (215, 23),
        "ETHUSD_210924": (228, 11),
        "XRPUSD_PERP": (176, 44),
        "BTCUSD_211231": (191, 14),
        "TRXUSD_PERP": (139, 13),
        "LINKUSD_211231": (122, 12),
        "EOSUSD_PERP": (180, 8),
    },
    "BINANCE_US.ws.1.0": {
        "COMPUSDT": (106, 21),
        "OMGBUSD": (158, 19),
        "CRVUSDT": (28, 5),
        "ZRXUSDT": (40, 11),
    },
}


def _param(row):
    marks = () if (row[0], row[1]) in FAST else (pytest.mark.slow,)
    return pytest.param(*row, marks=marks, id=f"{row[0]}-{row[1]}")


@pytest.mark.parametrize(
    ("market", "name", "symbol", "snapshot_id", "diffs", "matches"),
    [_param(row) for row in HFTBACKTEST_TABLE],
)
def test_hftbacktest_recording_rebuilds_exactly(market, name, symbol, snapshot_id, diffs, matches):
    (report,) = verify_recordings([hftbacktest_file(market, name)])
    (book,) = report.symbols
    assert (book.symbol, book.snapshot_id) == (symbol, snapshot_id)
    assert book.rules == ("binance-spot" if market == "spot" else "binance-futures")
    assert (book.diffs_applied, book.gaps, book.resyncs, book.crossed_books) == (diffs, 0, 0, 0)
    assert (book.ticker_matches, book.ticker_mismatches) == (matches, 0)
    assert report.decode_errors == 0 and report.ok


@pytest.mark.parametrize(
    ("market", "stem", "total"),
    [
        ("spot", "btcusdt", 6493),
        pytest.param("spot", "ethusdt", 6468, marks=pytest.mark.slow),
        pytest.param("cm", "btcusd_perp", 44772, marks=pytest.mark.slow),
    ],
)
def test_next_day_file_continues_the_book_without_gaps(market, stem, total):
    reports = verify_recordings(
        [hftbacktest_file(market, f"{stem}_20240808.gz"), hftbacktest_file(market, f"{stem}_20240809.gz")]
    )
    assert reports_ok(reports)
    second = reports[1].symbols[0]
    assert second.snapshot_id is None and second.gaps == 0 and second.ticker_mismatches == 0
    assert second.ticker_matches > 0
    assert sum(report.symbols[0].diffs_applied for report in reports) == total


def test_next_day_file_alone_never_syncs_and_fails():
    (report,) = verify_recordings([hftbacktest_file("spot", "btcusdt_20240809.gz")])
    assert not report.ok
    assert report.symbols[0].diffs_applied == 0 and not report.symbols[0].synced_at_end


@pytest.mark.parametrize("name", sorted(CRYPTOFEED_TABLE))
def test_cryptofeed_recording_with_separate_snapshots_rebuilds_exactly(name):
    (report,) = verify_recordings([shared_data_dir() / "cryptofeed" / name])
    found = {book.symbol: (book.diffs_applied, book.ticker_matches) for book in report.symbols}
    assert found == CRYPTOFEED_TABLE[name]
    assert report.ok and all(book.ticker_mismatches == 0 and book.gaps == 0 for book in report.symbols)


def test_cryptofeed_snapshot_lines_are_parsed():
    path = shared_data_dir() / "cryptofeed" / "BINANCE.http.0.0"
    symbols = [symbol for _, symbol, _ in iter_cryptofeed_snapshots(path)]
    assert symbols == ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]


# injected faults on a real recording -------------------------------------------------------

LINES = 3000  # about 250 diffs after the snapshot: enough to exercise every path quickly


def _spot_lines() -> list[bytes]:
    with gzip.open(hftbacktest_file("spot", "btcusdt_20240808.gz"), "rb") as handle:
        return [next(handle) for _ in range(LINES)]


def _depth_indexes(lines: list[bytes]) -> list[int]:
    snapshot_at = next(i for i, line in enumerate(lines) if b'"stream"' not in line)
    return [i for i, line in enumerate(lines) if i > snapshot_at and b"@depth" in line]


def _write(tmp_path: Path, lines: list[bytes], name: str = "faulty.gz") -> Path:
    path = tmp_path / name
    with gzip.open(path, "wb") as handle:
        handle.writelines(lines)
    return path


def test_clean_prefix_is_ok(tmp_path):
    (report,) = verify_recordings([_write(tmp_path, _spot_lines())])
    assert report.ok and report.symbols[0].diffs_applied > 200


def test_missing_diff_in_recording_is_reported_as_gap(tmp_path):
    lines = _spot_lines()
    depth = _depth_indexes(lines)
    del lines[depth[20]]
    (report,) = verify_recordings([_write(tmp_path, lines)])
    book = report.symbols[0]
    assert (book.gaps, book.resyncs) == (1, 1)
    assert not book.synced_at_end and not report.ok
    # the bridging diff (recorded before the snapshot) and the 20 after it; nothing past the gap
    assert book.diffs_applied == 21
    assert "gap" in book.gap_reason


def test_duplicated_diff_is_dropped_as_stale(tmp_path):
    lines = _spot_lines()
    clean = verify_recordings([_write(tmp_path, lines, "clean.gz")])[0].symbols[0]
    depth = _depth_indexes(lines)
    lines.insert(depth[10] + 1, lines[depth[10]])
    (report,) = verify_recordings([_write(tmp_path, lines)])
    book = report.symbols[0]
    assert report.ok
    assert book.stale_dropped == clean.stale_dropped + 1
    assert book.diffs_applied == clean.diffs_applied


def test_reordered_diffs_are_a_gap(tmp_path):
    lines = _spot_lines()
    depth = _depth_indexes(lines)
    lines[depth[5]], lines[depth[6]] = lines[depth[6]], lines[depth[5]]
    (report,) = verify_recordings([_write(tmp_path, lines)])
    assert report.symbols[0].gaps == 1 and not report.ok


def test_wrong_book_ticker_is_a_mismatch(tmp_path):
    lines = _spot_lines()
    clean = verify_recordings([_write(tmp_path, lines, "clean.gz")])[0].symbols[0]
    # rewrite every bookTicker's best bid size: each compared ticker now disagrees
    lines = [line.replace(b'"B":"', b'"B":"9') if b"@bookTicker" in line else line for line in lines]
    (report,) = verify_recordings([_write(tmp_path, lines)])
    book = report.symbols[0]
    assert book.ticker_matches == 0
    assert book.ticker_mismatches == clean.ticker_matches > 0
    assert "venue" in book.first_mismatch and not report.ok


def test_undecodable_frames_and_negative_prices_are_counted_not_fatal(tmp_path):
    lines = _spot_lines()
    depth = _depth_indexes(lines)
    lines.insert(depth[3], b'1 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate"}}\n')
    lines.insert(depth[3], b'2 {"stream":"btcusdt@depth@100ms","data":[1,2\n')
    (report,) = verify_recordings([_write(tmp_path, lines)])
    assert report.decode_errors == 2 and not report.ok
    assert report.symbols[0].gaps == 0 and report.symbols[0].synced_at_end
    lines = _spot_lines()
    depth = _depth_indexes(lines)
    lines[depth[3]] = lines[depth[3]].replace(b'"b":[["', b'"b":[["-', 1)  # a negative price
    (report,) = verify_recordings([_write(tmp_path, lines, "negative.gz")])
    assert report.symbols[0].conversion_errors == 1 and not report.ok


def test_inline_snapshot_without_a_symbol_to_attach_is_counted(tmp_path):
    lines = [line for line in _spot_lines() if b'"stream"' not in line]  # only the snapshot
    (report,) = verify_recordings([_write(tmp_path, lines)])
    assert report.unattributed_snapshots == 1 and not report.ok


def test_verifier_needs_a_file_boundary():
    with pytest.raises(RuntimeError):
        RecordingVerifier().feed(b"{}")


# command line ------------------------------------------------------------------------------


def test_cli_verify_prints_json_and_exits_zero_on_a_clean_recording():
    result = CliRunner().invoke(app, ["--json", str(shared_data_dir() / "cryptofeed" / "BINANCE.ws.1.0")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] is True
    assert {book["symbol"] for book in document["files"][0]["symbols"]} == set(
        CRYPTOFEED_TABLE["BINANCE.ws.1.0"]
    )


def test_cli_verify_exits_non_zero_on_a_gap(tmp_path):
    lines = _spot_lines()
    del lines[_depth_indexes(lines)[20]]
    result = CliRunner().invoke(app, [str(_write(tmp_path, lines))])
    assert result.exit_code == 1
    assert "FAILED" in result.output and "gap" in result.output


# wire conversion ---------------------------------------------------------------------------


def _parser(tick: str = "0.01", lot: str = "0.00001") -> BinanceParser:
    return BinanceParser(Instrument("binance", "BTCUSDT", "BTC", "USDT", tick_size=tick, lot_size=lot))


def test_levels_convert_exactly_and_reject_bad_values():
    parser = _parser()
    assert parser.levels([("61837.63000000", "1.54698000"), ("61837.6", "0")]) == [
        (6183763, 154698),
        (6183760, 0),
    ]
    with pytest.raises(InvalidLevelError):
        parser.levels([("61837.63", "-1")])
    with pytest.raises(InvalidLevelError):
        parser.levels([("0.00", "1")])
    with pytest.raises(OffGridError):
        parser.levels([("61837.635", "1")])
    with pytest.raises(InvalidDecimalError):
        parser.levels([("6e+", "1")])


@settings(max_examples=200, deadline=None)
@given(units=st.integers(1, 10**12), lots=st.integers(0, 10**9), pad=st.integers(0, 6))
def test_fast_conversion_path_equals_the_general_parser(units, lots, pad):
    """Wire-width strings take the int() fast path; padded ones the general one: same ints."""
    parser = _parser("0.00000001", "0.00000001")
    price_text = format_scaled(units, 8)
    size_text = format_scaled(lots, 8) + "0" * pad
    assert parser.levels([(price_text, size_text)]) == [(units, lots)]
    assert parser.levels([(price_text, size_text)]) == [(units, lots)]  # now from the cache
    grid = DecimalGrid("0.00000001")
    assert (grid.to_steps(price_text), grid.to_steps(size_text)) == (units, lots)


def test_book_ticker_and_trades_parse_to_core_events():
    parser = _parser()
    ticker = parser.book_ticker(
        BookTickerEvent(
            update_id=7,
            symbol="BTCUSDT",
            bid_price="61837.63",
            bid_quantity="3.78826",
            ask_price="61837.64",
            ask_quantity="1.5",
        )
    )
    assert (ticker.bid_price, ticker.bid_size, ticker.ask_price, ticker.ask_size) == (
        6183763,
        378826,
        6183764,
        150000,
    )
    trade = parser.trade(
        TradeEvent(
            event_time=1,
            symbol="BTCUSDT",
            trade_id=9,
            price="61837.63",
            quantity="0.02",
            trade_time=1,
            buyer_is_maker=True,
        )
    )
    assert (trade.trade_id, trade.price, trade.size, trade.aggressor) == (9, 6183763, 2000, Side.SELL)


def test_instrument_inferred_from_snapshot_uses_the_wire_width():
    snapshot = DepthSnapshot(last_update_id=1, bids=[("61837.63000000", "0.5")], asks=[("61837.64", "1.25")])
    instrument = instrument_from_snapshot("BTCUSDT", snapshot, extra_levels=[("1.0", "0.001")])
    assert instrument.ticks.step_text == "0.00000001"
    assert instrument.lots.step_text == "0.001"
