"""The backtest's HTML report: one self-contained file a user opens offline or attaches to a review.

Why one file with plotly.js inline: a report is read on a laptop, on a plane, in a ticket, months
later; a CDN link or a folder of assets breaks all of those. The price is ~4.8 MB of JavaScript per
report, paid once however large the backtest.

Why downsampled: a day of book updates is millions of points and a browser draws a few thousand
per line before it stalls. Every line is cut to at most ``max_points`` points by min/max
bucketing (each of ``max_points / 2`` equal-count buckets keeps its lowest and its highest point,
in time order), so spikes, drawdowns and inventory extremes stay visible and the file size is
bounded by the plot, not by the data. Fill markers beyond ``max_markers`` are thinned to every
k-th fill, and the plot's title says so. Latency samples are binned first (log-spaced buckets), so
a histogram costs the same for a thousand samples or a billion.

Why deterministic: the same result must give the same bytes (results folders are compared byte
for byte), so every plot's element id is fixed and nothing reads the clock or a random source.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import plotly.graph_objects as go
import plotly.io as plotly_io
import plotly.offline
from plotly.subplots import make_subplots

from hftkit.core.errors import HftkitError
from hftkit.metrics.console import format_duration

#: points per line after downsampling (min/max per bucket: half as many buckets)
DEFAULT_MAX_POINTS = 4_000
#: fill markers per plot before thinning to every k-th fill
DEFAULT_MAX_MARKERS = 5_000
#: log-spaced bins of a latency histogram built from raw samples
LATENCY_BINS = 60
#: instruments that get their own price plot (the rest are listed, not plotted)
MAX_PRICE_PLOTS = 8

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_TEMPLATE = "plotly_white"
_BUY_COLOUR = "#1a9850"
_SELL_COLOUR = "#d73027"


class ReportError(HftkitError, ValueError):
    """A result the report cannot draw (a frame lacks a column it needs), said in one line."""


# downsampling -------------------------------------------------------------------------------------
def downsample_indexes(values: npt.ArrayLike, max_points: int) -> npt.NDArray[np.int64]:
    """Indexes of about ``max_points`` points that keep each bucket's minimum and maximum.

    Buckets hold equal counts of points (``ceil(n / buckets)``), so the work is one reshape and two
    arg-reductions: O(n) with no Python loop. The first and the last point are always kept.
    NaN values are kept out of the extremes, but a bucket's first NaN is kept too, so a gap in a
    line (no quote resting) stays a gap; a line may thus get up to 1.5x ``max_points`` points.
    """
    array = np.asarray(values, dtype=np.float64)
    count = array.shape[0]
    if max_points < 4:
        raise ValueError("max_points must be at least 4")
    if count <= max_points:
        return np.arange(count, dtype=np.int64)
    buckets = (max_points - 2) // 2
    size = -(-count // buckets)  # ceil
    padded_length = buckets * size
    padded = np.full(padded_length, np.nan)
    padded[:count] = array
    matrix = padded.reshape(buckets, size)
    finite = ~np.isnan(matrix)
    lows = np.where(finite, matrix, np.inf)
    highs = np.where(finite, matrix, -np.inf)
    offsets = np.arange(buckets, dtype=np.int64) * size
    low_indexes = offsets + np.argmin(lows, axis=1)
    high_indexes = offsets + np.argmax(highs, axis=1)
    gaps = ~finite
    gap_indexes = (offsets + np.argmax(gaps, axis=1))[gaps.any(axis=1)]
    chosen = np.concatenate(([0, count - 1], low_indexes, high_indexes, gap_indexes))
    chosen = chosen[chosen < count]
    return np.unique(chosen)  # sorted, no duplicates


def _thin(count: int, max_markers: int) -> tuple[npt.NDArray[np.int64], int]:
    """Every k-th index so that at most ``max_markers`` remain; returns (indexes, k)."""
    if count <= max_markers:
        return np.arange(count, dtype=np.int64), 1
    step = -(-count // max_markers)
    return np.arange(0, count, step, dtype=np.int64), step


# inputs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportOptions:
    """How much a report draws: the knobs that bound its size and time."""

    max_points: int = DEFAULT_MAX_POINTS
    max_markers: int = DEFAULT_MAX_MARKERS
    title: str = "hftkit backtest"


def _require(frame: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ReportError(
            f"the {name} frame lacks column(s) {', '.join(missing)}"
            f" (has: {', '.join(map(str, frame.columns))})"
        )


def _times(values: pd.Series | npt.ArrayLike) -> pd.DatetimeIndex:
    """Nanosecond epoch integers (or datetimes) as UTC-naive datetimes for the x axis."""
    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        index = pd.DatetimeIndex(series)
        return index.tz_convert(None) if index.tz is not None else index
    return pd.DatetimeIndex(pd.to_datetime(series.to_numpy(dtype=np.int64), unit="ns"))


def _floats(values: Any) -> npt.NDArray[np.float64]:
    """Numbers (ints, floats, Decimals or decimal strings) as float64 for plotting only."""
    series = pd.Series(values)
    if series.dtype == object:
        return np.array([float(value) for value in series], dtype=np.float64)
    return series.to_numpy(dtype=np.float64)


def _line(
    times: pd.DatetimeIndex,
    values: npt.NDArray[np.float64],
    name: str,
    max_points: int,
    *,
    colour: str | None = None,
    shape: str = "linear",
    dash: str | None = None,
) -> tuple[go.Scatter, bool]:
    """A downsampled line trace; the flag says whether it was downsampled."""
    indexes = downsample_indexes(values, max_points)
    trace = go.Scatter(
        x=times[indexes],
        y=values[indexes],
        name=name,
        mode="lines",
        line={
            "shape": shape,
            "width": 1.2,
            **({"color": colour} if colour else {}),
            **({"dash": dash} if dash else {}),
        },
    )
    return trace, len(indexes) < len(values)


def _figure(title: str, height: int = 360, *, y_title: str = "", x_title: str = "") -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        template=_TEMPLATE,
        title={"text": title},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.18},
        hovermode="x",
    )
    figure.update_yaxes(title_text=y_title)
    figure.update_xaxes(title_text=x_title)
    return figure


def _notes(downsampled: bool, max_points: int, thinned: int = 1) -> str:
    parts = []
    if downsampled:
        parts.append(f"lines min/max-downsampled to {max_points:,} points")
    if thinned > 1:
        parts.append(f"one fill in {thinned} shown")
    return f" <sup>({'; '.join(parts)})</sup>" if parts else ""


# figures ------------------------------------------------------------------------------------------
def price_figure(
    instrument: str, market: pd.DataFrame, fills: pd.DataFrame, options: ReportOptions
) -> go.Figure:
    """Mid price with our best resting quotes (step lines, gaps where none rests) and our fills.

    ``market``: ``time_ns``, ``mid``, ``our_bid``, ``our_ask`` of one instrument; ``fills``:
    ``time_ns``, ``side`` (buy/sell), ``price``, ``quantity`` of the same instrument.
    """
    figure = _figure(f"{instrument}: mid, our quotes and fills", 440, y_title="price")
    downsampled = False
    times = _times(market["time_ns"])
    lines: tuple[tuple[str, str, str, str, str | None], ...] = (
        ("mid", "mid", "#444444", "linear", None),
        ("our_bid", "our bid", _BUY_COLOUR, "hv", "dot"),
    )
    lines += (("our_ask", "our ask", _SELL_COLOUR, "hv", "dot"),)
    for column, name, colour, shape, dash in lines:
        values = _floats(market[column])
        if not len(values) or np.isnan(values).all():
            continue
        trace, cut = _line(times, values, name, options.max_points, colour=colour, shape=shape, dash=dash)
        figure.add_trace(trace)
        downsampled |= cut
    thinned = 1
    sides = fills["side"].astype(str).str.lower() if len(fills) else fills.get("side")
    for side, colour, symbol in (
        ("buy", _BUY_COLOUR, "triangle-up"),
        ("sell", _SELL_COLOUR, "triangle-down"),
    ):
        ours = fills[sides == side] if len(fills) else fills
        if not len(ours):
            continue
        indexes, step = _thin(len(ours), options.max_markers)
        thinned = max(thinned, step)
        figure.add_trace(
            go.Scatter(
                x=_times(ours["time_ns"])[indexes],
                y=_floats(ours["price"])[indexes],
                customdata=_floats(ours["quantity"])[indexes],
                name=f"{side} fills ({len(ours):,})",
                mode="markers",
                marker={
                    "symbol": symbol,
                    "size": 8,
                    "color": colour,
                    "line": {"width": 0.5, "color": "#222"},
                },
                hovertemplate="%{y} x %{customdata}<extra></extra>",
            )
        )
    note = _notes(downsampled, options.max_points, thinned)
    figure.update_layout(title={"text": f"{html.escape(instrument)}: mid, our quotes and fills{note}"})
    return figure


def series_figure(
    title: str,
    lines: Sequence[tuple[str, pd.Series | npt.ArrayLike, npt.ArrayLike]],
    options: ReportOptions,
    *,
    y_title: str = "",
    shape: str = "linear",
) -> go.Figure:
    """Lines over time (inventory, PnL), each ``(name, time_ns, values)`` downsampled on its own."""
    figure = _figure(title, y_title=y_title)
    downsampled = False
    for name, times, values in lines:
        array = _floats(values)
        if not len(array):
            continue
        trace, cut = _line(_times(times), array, name, options.max_points, shape=shape)
        figure.add_trace(trace)
        downsampled |= cut
    figure.update_layout(title={"text": html.escape(title) + _notes(downsampled, options.max_points)})
    return figure


def _log_edges(low: float, high: float) -> npt.NDArray[np.float64]:
    """Log-spaced bucket edges; a (nearly) constant latency gets a window around it, centred."""
    low = max(low, 1.0)
    if high < low * 1.05:
        low, high = low / 1.25, high * 1.25
    return np.geomspace(low, high, LATENCY_BINS + 1)


def latency_buckets(samples: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(bucket edges in ns, counts) from raw samples, or from a ``LatencyHistogram`` (or its
    snapshot) re-binned by its buckets' middles."""
    snapshot = samples.snapshot() if hasattr(samples, "snapshot") else samples
    if hasattr(snapshot, "nonzero_buckets"):
        buckets = snapshot.nonzero_buckets()
        values = np.array([(low + high) / 2 for low, high, _ in buckets], dtype=np.float64)
        weights = np.array([count for _, _, count in buckets], dtype=np.float64)
    else:
        values = np.asarray(samples, dtype=np.float64)
        values = values[np.isfinite(values)]
        weights = None
    if not len(values):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    edges = _log_edges(float(values.min()), float(values.max()))
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges, weights=weights)
    return edges, counts.astype(np.int64)


def latency_figure(latencies: Mapping[str, Any]) -> go.Figure:
    """One histogram per latency kind (small multiples: kinds differ by orders of magnitude).

    Drawn as step lines over log-spaced bucket edges on a log axis in microseconds; bars of
    varying width on a log axis mislead the eye. A kind with no samples gets an empty panel.
    """
    names = list(latencies) or ["no latency samples"]
    columns = 2 if len(names) > 1 else 1
    rows = -(-len(names) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=names, horizontal_spacing=0.08)
    figure.update_layout(
        template=_TEMPLATE,
        title={"text": "latency (log axis, µs)"},
        height=80 + 260 * rows,
        margin={"l": 60, "r": 20, "t": 70, "b": 40},
        showlegend=False,
    )
    for number, name in enumerate(names):
        row, column = number // columns + 1, number % columns + 1
        edges, counts = latency_buckets(latencies.get(name, ()))
        if len(counts):
            # a step line over the edges draws the histogram on a log axis
            x = np.repeat(edges / 1_000.0, 2)[1:-1]
            y = np.repeat(counts.astype(np.float64), 2)
            total = int(counts.sum())
            figure.add_trace(
                go.Scatter(x=x, y=y, name=f"{name} ({total:,})", mode="lines", fill="tozeroy"),
                row=row,
                col=column,
            )
        figure.update_xaxes(type="log", row=row, col=column)
    return figure


# summary ------------------------------------------------------------------------------------------
def format_summary_value(key: str, value: Any) -> str:
    """A summary figure for people: durations in time units, ratios and money to 4-6 figures."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float, Decimal, np.integer, np.floating)):
        number = float(value)
        if key.endswith("_ns"):
            return format_duration(number)
        if not math.isfinite(number):
            return str(number)
        if isinstance(value, (int, np.integer)):
            return f"{int(value):,}"
        if isinstance(value, Decimal):
            return str(value)
        return f"{number:,.6g}"
    return str(value)


def _flatten(summary: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def summary_table(summary: Mapping[str, Any]) -> str:
    """The top-level figures in one table, then one table per section (inventory, latency...),
    side by side: a summary of 60 figures fits on one screen."""
    headline = {key: value for key, value in summary.items() if not isinstance(value, Mapping)}
    sections = [("", headline)] + [
        (key, value) for key, value in summary.items() if isinstance(value, Mapping)
    ]
    tables = []
    for title, values in sections:
        if not values:
            continue
        rows = "".join(
            f"<tr><th>{html.escape(key)}</th><td>{html.escape(format_summary_value(key, value))}</td></tr>"
            for key, value in _flatten(values)
        )
        caption = f"<caption>{html.escape(title)}</caption>" if title else ""
        tables.append(f'<table class="summary">{caption}{rows}</table>')
    return f'<div class="summary">{"".join(tables)}</div>'


# page ---------------------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
div.summary { display: flex; flex-wrap: wrap; gap: 8px 40px; align-items: flex-start; }
table.summary { border-collapse: collapse; font-size: 13px; }
table.summary caption { text-align: left; font-weight: 600; padding-bottom: 2px; }
table.summary th { text-align: left; font-weight: 500; padding: 3px 16px 3px 0; color: #555; }
table.summary td { text-align: right; padding: 3px 0; font-variant-numeric: tabular-nums; }
.plot { width: 100%; min-height: 360px; }
p.note { color: #666; font-size: 12px; }
"""


def render_html(
    title: str,
    summary: Mapping[str, Any],
    figures: Sequence[tuple[str, go.Figure]],
    notes: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
) -> str:
    """The whole page: plotly.js once, inline; each figure under a fixed element id."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>summary</h2>",
        summary_table(summary),
    ]
    parts.extend(f'<p class="note">{html.escape(note)}</p>' for note in notes)
    if settings:
        text = json.dumps(settings, indent=1, sort_keys=True, default=str)
        parts.append(f"<details><summary>settings</summary><pre>{html.escape(text)}</pre></details>")
    for element_id, figure in figures:
        parts.append(
            '<div class="plot">'
            + plotly_io.to_html(
                figure,
                include_plotlyjs=False,
                full_html=False,
                div_id=element_id,
                config=_PLOT_CONFIG,
                default_height=f"{figure.layout.height or 360}px",
            )
            + "</div>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html(path: str | os.PathLike[str], text: str) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a report."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return target


# the report ---------------------------------------------------------------------------------------
_NEEDED = {
    "market": ("time_ns", "venue", "symbol", "mid", "our_bid", "our_ask"),
    "fills": ("time_ns", "venue", "symbol", "side", "price", "quantity"),
    "positions": ("time_ns", "venue", "symbol", "position"),
    "equity": ("time_ns", "pnl_gross", "fees", "equity", "position"),
    "latency": ("kind", "value_ns"),
}


def _by_instrument(frame: pd.DataFrame, columns: Sequence[str]) -> dict[tuple[str, str], pd.DataFrame]:
    """``columns`` of the frame's rows per (venue, symbol), instruments in order of first row.

    One grouping pass for the row positions, then only the needed columns are gathered: comparing
    string columns once per instrument, or copying whole groups, costs a full scan each."""
    if not len(frame):
        return {}
    groups = frame.groupby(["venue", "symbol"], sort=False, observed=True).indices
    arrays = {column: frame[column].to_numpy() for column in columns}
    return {
        (str(venue), str(symbol)): pd.DataFrame({column: array[rows] for column, array in arrays.items()})
        for (venue, symbol), rows in sorted(groups.items(), key=lambda item: int(item[1][0]))
    }


def build_figures(result: Any, options: ReportOptions) -> tuple[list[tuple[str, go.Figure]], list[str]]:
    """(element id, figure) pairs in page order, and notes for the reader (what was left out)."""
    for name, columns in _NEEDED.items():
        _require(getattr(result, name), name, columns)
    equity = result.equity
    markets = _by_instrument(result.market, ("time_ns", "mid", "our_bid", "our_ask"))
    fills = _by_instrument(result.fills, ("time_ns", "side", "price", "quantity"))
    positions = _by_instrument(result.positions, ("time_ns", "position"))
    keys = list(dict.fromkeys([*markets, *fills, *positions]))
    figures: list[tuple[str, go.Figure]] = []
    notes: list[str] = []
    empty_market = pd.DataFrame({column: [] for column in ("time_ns", "mid", "our_bid", "our_ask")})
    empty_fills = pd.DataFrame({column: [] for column in ("time_ns", "side", "price", "quantity")})
    for number, key in enumerate(keys[:MAX_PRICE_PLOTS]):
        label = f"{key[0]}:{key[1]}"
        market, traded = markets.get(key, empty_market), fills.get(key, empty_fills)
        figures.append((f"hftkit-price-{number}", price_figure(label, market, traded, options)))
    if len(keys) > MAX_PRICE_PLOTS:
        left_out = ", ".join(f"{venue}:{symbol}" for venue, symbol in keys[MAX_PRICE_PLOTS:])
        notes.append(
            f"price plots are drawn for the first {MAX_PRICE_PLOTS} instruments; not drawn: {left_out}"
        )
    inventory_lines: list[tuple[str, Any, Any]] = [
        (f"{key[0]}:{key[1]}", positions[key]["time_ns"], positions[key]["position"])
        for key in keys
        if key in positions
    ]
    if len(inventory_lines) != 1:  # several instruments (or none traded): the sampled total too
        inventory_lines.append(("total (sampled)", equity["time_ns"], equity["position"]))
    figures.append(
        ("hftkit-inventory", series_figure("inventory (base units)", inventory_lines, options, shape="hv"))
    )
    pnl_lines = [
        ("gross", equity["time_ns"], equity["pnl_gross"]),
        ("net of fees", equity["time_ns"], equity["equity"]),
        ("fees", equity["time_ns"], equity["fees"]),
    ]
    figures.append(("hftkit-pnl", series_figure("PnL (quote units, marked to mid)", pnl_lines, options)))
    latency = result.latency
    values = latency["value_ns"].to_numpy()
    groups = latency.groupby("kind", sort=False, observed=True).indices if len(latency) else {}
    kinds = {
        str(kind): values[rows] for kind, rows in sorted(groups.items(), key=lambda item: int(item[1][0]))
    }
    figures.append(("hftkit-latency", latency_figure(kinds)))
    return figures, notes


def render_report(result: Any, options: ReportOptions | None = None) -> str:
    """The report of ``result`` (a ``BacktestResult``) as HTML text."""
    options = options or ReportOptions()
    figures, notes = build_figures(result, options)
    settings = getattr(result, "config", None) or {}
    return render_html(options.title, result.summary, figures, notes, settings)


def write_report(result: Any, path: str | os.PathLike[str], options: ReportOptions | None = None) -> Path:
    """Write the HTML report of ``result`` to ``path`` (e.g. ``out_dir / "report.html"``)."""
    return write_html(path, render_report(result, options))
