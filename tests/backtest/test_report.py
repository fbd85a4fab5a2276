"""The backtest HTML report: bounded, deterministic, self-contained, and rendered by a real browser."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
import pytest
import yaml

from hftkit.backtest.report import (
    ReportError,
    ReportOptions,
    downsample_indexes,
    latency_buckets,
    render_report,
    write_report,
)
from hftkit.backtest.results import LATENCY_KINDS, BacktestResult
from hftkit.metrics import LatencyHistogram


def _load_browser_module():  # tests run with --import-mode=importlib: load the helper by path
    path = Path(__file__).with_name("browser.py")
    spec = importlib.util.spec_from_file_location("hftkit_test_browser", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


browser = _load_browser_module()

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backtest_maker.yaml"
START_NS = 1_700_000_000_000_000_000
INSTRUMENTS = (("binance-usdm", "BTCUSDT"), ("thalex", "BTC-PERPETUAL"))


def synthetic_result(
    samples: int = 2_000, fills: int = 60, seed: int = 3, instruments=INSTRUMENTS
) -> BacktestResult:
    """A ``BacktestResult`` with the documented columns, from a seeded random walk."""
    rng = np.random.default_rng(seed)
    times = START_NS + np.arange(samples, dtype=np.int64) * 100_000_000
    markets, fill_frames, position_frames = [], [], []
    for venue, symbol in instruments:
        mid = 60_000 + np.cumsum(rng.normal(0, 5, samples))
        our_bid = np.where(rng.random(samples) < 0.1, np.nan, mid - 3)  # gaps: no bid resting
        markets.append(
            pd.DataFrame(
                {
                    "time_ns": times,
                    "venue": venue,
                    "symbol": symbol,
                    "bid": mid - 0.5,
                    "ask": mid + 0.5,
                    "mid": mid,
                    "our_bid": our_bid,
                    "our_ask": mid + 3,
                }
            )
        )
        at = np.sort(rng.choice(samples, fills, replace=False))
        sides = np.where(rng.random(fills) < 0.5, "buy", "sell")
        quantity = np.full(fills, 0.01)
        fill_frames.append(
            pd.DataFrame(
                {
                    "time_ns": times[at],
                    "receive_ns": times[at] + 1_000,
                    "venue": venue,
                    "symbol": symbol,
                    "client_order_id": [f"c{i}" for i in range(fills)],
                    "trade_id": [f"t{i}" for i in range(fills)],
                    "side": sides,
                    "price": mid[at],
                    "quantity": quantity,
                    "notional": mid[at] * quantity,
                    "fee": mid[at] * quantity * 1e-4,
                    "fee_asset": "USDT",
                    "is_maker": True,
                    "mid": mid[at],
                }
            )
        )
        position = np.cumsum(np.where(sides == "buy", quantity, -quantity))
        position_frames.append(
            pd.DataFrame({"time_ns": times[at], "venue": venue, "symbol": symbol, "position": position})
        )

    def in_time_order(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(frames).sort_values("time_ns", kind="stable").reset_index(drop=True)

    gross = np.cumsum(rng.normal(0.1, 1, samples))
    fees = np.linspace(0, 5, samples)
    equity = pd.DataFrame(
        {"time_ns": times, "pnl_gross": gross, "fees": fees, "equity": gross - fees, "position": 0.0}
    )
    latency = pd.DataFrame(
        {
            "kind": np.repeat(LATENCY_KINDS, 500),
            "value_ns": rng.lognormal(12, 0.5, 500 * len(LATENCY_KINDS)).astype(np.int64),
        }
    )
    summary = {
        "pnl_gross": float(gross[-1]),
        "fees": 5.0,
        "pnl_net": float(gross[-1] - 5),
        "fills": fills * len(instruments),
        "fill_ratio": None,
        "inventory": {"mean": 0.1, "max": 0.3},
        "latency": {"ack": {"p50_ns": 150_000}},
    }
    return BacktestResult(
        orders=pd.DataFrame({"time_ns": pd.Series([], dtype="int64")}),
        fills=in_time_order(fill_frames),
        positions=in_time_order(position_frames),
        equity=equity,
        market=in_time_order(markets),
        latency=latency,
        latency_histograms={},
        summary=summary,
        config={"seed": seed},
    )


def _plot_payloads(text: str) -> dict[str, list[dict]]:
    """element id -> the trace list each ``Plotly.newPlot`` call draws."""
    payloads = {}
    for found in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*(\[.*?\]),\s*\{', text, re.S):
        payloads[found.group(1)] = json.loads(found.group(2))
    return payloads


# downsampling -------------------------------------------------------------------------------------
def test_downsampling_keeps_every_bucket_extreme_and_the_ends_in_time_order() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 100_003)
    values[54_321] = 50.0  # a spike
    values[77_777] = -50.0  # a crash
    indexes = downsample_indexes(values, 1_000)
    assert len(indexes) <= 1_000
    assert indexes[0] == 0 and indexes[-1] == len(values) - 1
    assert np.all(np.diff(indexes) > 0)
    assert 54_321 in indexes and 77_777 in indexes
    assert values[indexes].max() == values.max() and values[indexes].min() == values.min()


def test_downsampling_keeps_short_series_whole_and_gaps_as_gaps() -> None:
    assert list(downsample_indexes([3.0, 1.0, 2.0], 10)) == [0, 1, 2]
    values = np.arange(10_000, dtype=np.float64)
    values[5_000:5_010] = np.nan  # no quote resting for a while
    indexes = downsample_indexes(values, 100)
    assert np.isnan(values[indexes]).any()
    with pytest.raises(ValueError):
        downsample_indexes(values, 3)


# the page -----------------------------------------------------------------------------------------
def test_report_is_byte_identical_for_the_same_result_and_loads_nothing_from_the_network(
    tmp_path: Path,
) -> None:
    first = write_report(synthetic_result(), tmp_path / "a" / "report.html")
    second = write_report(synthetic_result(), tmp_path / "b" / "report.html")
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text(encoding="utf-8")
    library = plotly.offline.get_plotlyjs()
    assert library in text  # the library itself, inline
    page = text.replace(library, "")
    assert "<script src" not in page and "http" not in page and "Plotly.newPlot" in page
    assert not list(tmp_path.rglob("*.tmp"))
    payloads = _plot_payloads(text)
    assert list(payloads) == [
        "hftkit-price-0",
        "hftkit-price-1",
        "hftkit-inventory",
        "hftkit-pnl",
        "hftkit-latency",
    ]
    assert [trace["name"] for trace in payloads["hftkit-price-0"]][:3] == ["mid", "our bid", "our ask"]
    assert len(payloads["hftkit-latency"]) == len(LATENCY_KINDS)
    # a different result gives a different page (the test above could not pass on a constant)
    assert render_report(synthetic_result(seed=4)) != first.read_text(encoding="utf-8")


def test_summary_table_formats_durations_and_missing_values() -> None:
    text = render_report(synthetic_result())
    assert "<caption>latency</caption><tr><th>ack.p50_ns</th><td>150 µs</td>" in text
    assert "<th>fill_ratio</th><td>-</td>" in text
    assert (
        "<caption>inventory</caption><tr><th>mean</th><td>0.1</td></tr><tr><th>max</th><td>0.3</td>" in text
    )


def test_large_result_is_downsampled_to_a_bounded_page() -> None:
    result = synthetic_result(samples=400_000, fills=20_000, instruments=INSTRUMENTS[:1])
    options = ReportOptions(max_points=2_000, max_markers=1_000)
    text = render_report(result, options)
    payloads = _plot_payloads(text)
    for traces in payloads.values():
        for trace in traces:
            points = trace["x"]["bdata"] if isinstance(trace["x"], dict) else trace["x"]
            assert len(points) <= 3_000, trace["name"]
    assert "downsampled to 2,000 points" in text
    assert re.search(r"one fill in 1[01] shown", text)  # ~10,000 fills a side, at most 1,000 markers
    markers = [trace for trace in payloads["hftkit-price-0"] if trace["mode"] == "markers"]
    assert len(markers) == 2 and all(len(trace["x"]) <= 1_000 for trace in markers)
    assert len(text) < 8_000_000  # plotly.js (~4.8 MB) + bounded plot data


def test_a_run_without_fills_or_data_still_gets_a_report() -> None:
    quiet = synthetic_result(fills=0)
    quiet.latency = quiet.latency.iloc[0:0]
    payloads = _plot_payloads(render_report(quiet))
    assert [trace["name"] for trace in payloads["hftkit-price-0"]] == ["mid", "our bid", "our ask"]
    assert [trace["name"] for trace in payloads["hftkit-inventory"]] == ["total (sampled)"]
    assert payloads["hftkit-latency"] == []
    empty = synthetic_result()
    for name in ("market", "fills", "positions", "equity", "latency"):
        setattr(empty, name, getattr(empty, name).iloc[0:0])
    assert list(_plot_payloads(render_report(empty))) == ["hftkit-inventory", "hftkit-pnl", "hftkit-latency"]


def test_latency_histograms_bin_like_the_raw_samples() -> None:
    samples = np.random.default_rng(5).lognormal(12, 0.4, 20_000).astype(np.int64)
    histogram = LatencyHistogram()
    histogram.record_many(int(value) for value in samples)
    raw_edges, raw_counts = latency_buckets(samples)
    edges, counts = latency_buckets(histogram)
    assert counts.sum() == raw_counts.sum() == len(samples)
    assert abs(edges[0] / raw_edges[0] - 1) < 0.01 and abs(edges[-1] / raw_edges[-1] - 1) < 0.01
    assert np.abs(counts - raw_counts).sum() < 0.05 * len(samples)  # <0.4 % bucket error moves few
    constant_edges, constant_counts = latency_buckets([200_000] * 10)  # a constant latency leg
    assert constant_counts.sum() == 10 and constant_edges[0] < 200_000 < constant_edges[-1]


def test_a_result_without_a_needed_column_is_a_clear_error() -> None:
    result = synthetic_result()
    result.market = result.market.drop(columns=["our_bid"])
    with pytest.raises(ReportError, match="market frame lacks column"):
        render_report(result)


# PNG decoding (the browser test's pixel check relies on it) ----------------------------------------
def _encode_png(image: np.ndarray, filters: list[int]) -> bytes:
    """A reference PNG encoder applying the given filter type per row (to test the decoder)."""
    height, width, channels = image.shape
    flat = image.reshape(height, width * channels).astype(np.int64)
    raw = bytearray()
    for y in range(height):
        kind, row = filters[y % len(filters)], flat[y]
        above = flat[y - 1] if y else np.zeros_like(row)
        out = []
        for x in range(len(row)):
            a = int(row[x - channels]) if x >= channels else 0
            b = int(above[x])
            c = int(above[x - channels]) if x >= channels else 0
            p = a + b - c
            paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
            predictor = {0: 0, 1: a, 2: b, 3: (a + b) >> 1, 4: paeth}[kind]
            out.append((int(row[x]) - predictor) & 0xFF)
        raw += bytes([kind, *out])

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [3, 4])
def test_png_decoder_reverses_every_filter_type(channels: int) -> None:
    image = np.random.default_rng(channels).integers(0, 256, (10, 7, channels), dtype=np.uint8)
    decoded = browser.decode_png(_encode_png(image, [0, 1, 2, 3, 4]))
    assert np.array_equal(decoded, image)


# the browser --------------------------------------------------------------------------------------
_READY = "document.querySelectorAll('.plot .js-plotly-plot .main-svg').length >= {count}"
_PLOT_BOXES = (
    "Array.from(document.querySelectorAll('.plot .js-plotly-plot')).map(p => {"
    "const r = p.getBoundingClientRect(); return [p.id, Math.round(r.x), Math.round(r.y + window.scrollY),"
    " Math.round(r.width), Math.round(r.height)]})"
)
_DRAWN = (
    "Array.from(document.querySelectorAll('.plot .js-plotly-plot')).map(p => "
    "p.querySelectorAll('.scatterlayer .trace path.js-line, .scatterlayer .trace path.point,"
    " .scatterlayer .trace path.js-fill').length)"
)


def _short_example_report(tmp_path: Path) -> Path:
    """``hftkit backtest --config ... --out ...`` on the shipped example cut to ten seconds."""
    from hftkit.app.backtest_cli import backtest_command

    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    config["range"] = {"start": "2024-08-08T23:54:30Z", "end": "2024-08-08T23:54:40Z"}
    path = tmp_path / "backtest.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert backtest_command(str(path), str(tmp_path / "results")) == 0
    return tmp_path / "results" / "report.html"


@pytest.mark.slow
@pytest.mark.parametrize("source", ["backtest", "synthetic"])
def test_report_renders_in_headless_chromium_without_errors(
    source: str, tmp_path: Path, debian_binary: Callable[[str, str], str]
) -> None:
    chromium = debian_binary("chromium", "chromium")
    # the command's own report of a real run; the synthetic result has two instruments
    if source == "backtest":
        path, plots = _short_example_report(tmp_path), 4
    else:
        path, plots = write_report(synthetic_result(), tmp_path / "report.html"), 5
    page = asyncio.run(
        browser.load_page(
            chromium,
            browser.file_url(path),
            ready=_READY.format(count=plots),
            evaluations={
                "containers": "document.querySelectorAll('.plot-container').length",
                "boxes": _PLOT_BOXES,
                "drawn": _DRAWN,
            },
            height=2_600,
        )
    )
    assert page.exceptions == [] and page.console_errors == []
    assert page.external_requests == []
    assert page.evaluations["containers"] == plots
    assert all(count > 0 for count in page.evaluations["drawn"]), page.evaluations["drawn"]
    pixels = browser.decode_png(page.screenshot).astype(np.float64)
    assert pixels.shape[:2] == (2_600, 1_280)
    for element_id, x, y, width, height in page.evaluations["boxes"]:
        assert y + height <= pixels.shape[0], f"{element_id} is below the screenshot"
        region = pixels[y : y + height, x : x + width, :3]
        # a drawn plot has axes, grid, lines and markers: many distinct, non-white pixels
        non_white = float((region.min(axis=2) < 200).mean())
        assert region.std() > 10 and non_white > 0.01, f"{element_id} looks blank"


@pytest.mark.slow
def test_browser_check_catches_script_errors_and_blank_pages(
    tmp_path: Path, debian_binary: Callable[[str, str], str]
) -> None:
    """The negative control: the checks above fail on a broken page."""
    chromium = debian_binary("chromium", "chromium")
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom');"
        "undefinedFunction();</script><div id='done'></div></body></html>",
        encoding="utf-8",
    )
    page = asyncio.run(
        browser.load_page(
            chromium,
            browser.file_url(broken),
            ready="document.getElementById('done')",
            evaluations={},
            height=400,
        )
    )
    assert any("boom" in error for error in page.console_errors)
    assert any("undefinedFunction" in error for error in page.exceptions)
    pixels = browser.decode_png(page.screenshot).astype(np.float64)
    assert pixels.std() < 1.0  # blank: what the report test would reject
