"""What a backtest leaves behind: a journal filled during the run, and the result built from it.

The ``Journal`` is the one place a run's facts are recorded, as plain tuples appended on the way
(cheap on the hot path); ``BacktestResult`` turns them into DataFrames once, at the end, and
``summarize`` computes the figures a quant reads first (PnL gross and net, volume, fill ratio,
inventory, drawdown, Sharpe, adverse selection). Every value comes from simulated time and
integer ticks/lots, so the same config and seed give byte-identical files.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hftkit.core.types import Instrument
from hftkit.metrics import LatencyHistogram

__all__ = ["LATENCY_KINDS", "BacktestResult", "Journal", "summarize"]

LATENCY_KINDS = ("market_data", "order_entry", "ack", "order_round_trip")
_YEAR_S = 365 * 86_400

ORDER_COLUMNS = (
    "time_ns",
    "venue",
    "symbol",
    "client_order_id",
    "event",
    "side",
    "order_type",
    "price",
    "quantity",
    "filled",
    "reason",
)
FILL_COLUMNS = (
    "time_ns",
    "receive_ns",
    "venue",
    "symbol",
    "client_order_id",
    "trade_id",
    "side",
    "price",
    "quantity",
    "notional",
    "fee",
    "fee_asset",
    "is_maker",
    "mid",
)


class _Book:
    """Running figures of one instrument: cash, position and fees in quote/base units (floats)."""

    __slots__ = ("base_per_lot", "cash", "fees", "instrument", "position", "price_per_tick")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.price_per_tick = float(instrument.tick_size)
        self.base_per_lot = float(instrument.lot_size * instrument.contract_size)
        self.cash = 0.0
        self.position = 0.0
        self.fees = 0.0


class Journal:
    """Rows of one run, appended as tuples (see the module docstring)."""

    def __init__(self, instruments: Sequence[Instrument], markout_horizons_ms: Sequence[int] = ()) -> None:
        self.instruments = {instrument.key: instrument for instrument in instruments}
        self._books = {key: _Book(instrument) for key, instrument in self.instruments.items()}
        self.horizons_ns = [int(horizon) * 1_000_000 for horizon in markout_horizons_ms]
        self.horizons_ms = [int(horizon) for horizon in markout_horizons_ms]
        self.orders: list[tuple[Any, ...]] = []
        self.fills: list[tuple[Any, ...]] = []
        self.markouts: list[list[float]] = []  # per fill, one value per horizon (NaN until known)
        self.positions: list[tuple[int, str, str, float]] = []
        self.equity: list[tuple[int, float, float, float, float]] = []
        self.market: list[tuple[Any, ...]] = []
        self.latency: dict[str, list[int]] = {kind: [] for kind in LATENCY_KINDS}
        self.pending_markouts: list[tuple[int, int, int]] = []  # (due ns, fill index, horizon index)
        self._fill_by_trade: dict[str, int] = {}
        self._prices: dict[tuple[str, str], dict[int, float]] = {}
        self._bases: dict[tuple[str, str], dict[int, float]] = {}
        self.events = 0
        self.book_events = 0
        self.counters: dict[str, int] = {}

    def price(self, key: tuple[str, str], ticks: int) -> float:
        """Ticks -> price, exact to the float nearest the decimal price (cached: prices repeat)."""
        cache = self._prices.get(key)
        if cache is None:
            cache = self._prices[key] = {}
        value = cache.get(ticks)
        if value is None:
            if len(cache) > 100_000:
                cache.clear()
            value = cache[ticks] = float(self.instruments[key].ticks.to_decimal(ticks))
        return value

    def base(self, key: tuple[str, str], lots: int) -> float:
        cache = self._bases.get(key)
        if cache is None:
            cache = self._bases[key] = {}
        value = cache.get(lots)
        if value is None:
            if len(cache) > 100_000:
                cache.clear()
            instrument = self.instruments[key]
            value = cache[lots] = float(instrument.lots.to_decimal(lots) * instrument.contract_size)
        return value

    def order_event(
        self,
        time_ns: int,
        key: tuple[str, str],
        client_order_id: str,
        event: str,
        side: str,
        order_type: str,
        price: int,
        quantity: int,
        filled: int,
        reason: str = "",
    ) -> None:
        self.orders.append(
            (
                time_ns,
                key[0],
                key[1],
                client_order_id,
                event,
                side,
                order_type,
                self.price(key, price) if price else math.nan,
                self.base(key, quantity),
                self.base(key, filled),
                reason,
            )
        )

    def fill(
        self,
        time_ns: int,
        receive_ns: int,
        key: tuple[str, str],
        client_order_id: str,
        trade_id: str,
        sign: int,
        price: int,
        quantity: int,
        fee: float,
        fee_asset: str,
        is_maker: bool,
        mid_ticks: float | None,
    ) -> None:
        book = self._books[key]
        instrument = book.instrument
        price_value = self.price(key, price)
        base = self.base(key, quantity)
        notional = price_value * base
        fee_quote = fee if fee_asset != instrument.base else fee * price_value
        book.cash -= sign * notional
        book.position += sign * base
        book.fees += fee_quote
        mid = math.nan if mid_ticks is None else mid_ticks * book.price_per_tick
        index = len(self.fills)
        self.fills.append(
            (
                time_ns,
                receive_ns,
                key[0],
                key[1],
                client_order_id,
                trade_id,
                "buy" if sign > 0 else "sell",
                price_value,
                base,
                notional,
                fee_quote,
                instrument.quote if fee_asset == instrument.base else fee_asset,
                is_maker,
                mid,
            )
        )
        self._fill_by_trade[trade_id] = index
        self.positions.append((time_ns, key[0], key[1], round(book.position, 12)))
        self.markouts.append([math.nan] * len(self.horizons_ns))
        for position, horizon in enumerate(self.horizons_ns):
            heapq.heappush(self.pending_markouts, (time_ns + horizon, index, position))

    def received(self, trade_id: str, receive_ns: int) -> None:
        """When the strategy heard of a fill (the ack latency after the venue's execution)."""
        index = self._fill_by_trade.pop(trade_id, None)
        if index is not None:
            self.fills[index] = (*self.fills[index][:1], receive_ns, *self.fills[index][2:])

    def markout(self, fill_index: int, horizon_index: int, mid_ticks: float | None) -> None:
        """The mid ``horizons[horizon_index]`` after fill ``fill_index``: record the side-signed move."""
        if mid_ticks is None:
            return
        row = self.fills[fill_index]
        key = (row[2], row[3])
        mid = mid_ticks * self._books[key].price_per_tick
        sign = 1.0 if row[6] == "buy" else -1.0
        self.markouts[fill_index][horizon_index] = sign * (mid - row[7])

    def sample(
        self,
        time_ns: int,
        tops: Mapping[tuple[str, str], tuple[int | None, int | None, int | None, int | None]],
    ) -> None:
        """An equity and market row: ``tops`` gives (bid, ask, our bid, our ask) ticks per instrument."""
        gross = fees = position = 0.0
        for key, book in self._books.items():
            bid, ask, our_bid, our_ask = tops.get(key, (None, None, None, None))
            tick = book.price_per_tick
            mid = (bid + ask) / 2 * tick if bid is not None and ask is not None else math.nan
            value = book.position * mid if book.position and not math.isnan(mid) else 0.0
            gross += book.cash + value
            fees += book.fees
            position += book.position
            self.market.append(
                (
                    time_ns,
                    key[0],
                    key[1],
                    math.nan if bid is None else bid * tick,
                    math.nan if ask is None else ask * tick,
                    mid,
                    math.nan if our_bid is None else our_bid * tick,
                    math.nan if our_ask is None else our_ask * tick,
                )
            )
        self.equity.append((time_ns, gross, fees, gross - fees, position))

    def record_latency(self, kind: str, value_ns: int) -> None:
        self.latency[kind].append(value_ns)


@dataclass
class BacktestResult:
    """DataFrames and summary of one backtest (columns: see ``hftkit.backtest``'s docstring)."""

    orders: pd.DataFrame
    fills: pd.DataFrame
    positions: pd.DataFrame
    equity: pd.DataFrame
    market: pd.DataFrame
    latency: pd.DataFrame
    latency_histograms: dict[str, LatencyHistogram]
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # the settings that ran (for reports)
    wall_seconds: float = 0.0
    events_per_second: float = 0.0

    @classmethod
    def from_journal(
        cls,
        journal: Journal,
        *,
        seed: int,
        counters: Mapping[str, int],
        config: Mapping[str, Any] | None = None,
    ) -> BacktestResult:
        orders = pd.DataFrame(journal.orders, columns=list(ORDER_COLUMNS))
        fills = pd.DataFrame(journal.fills, columns=list(FILL_COLUMNS))
        for position, horizon in enumerate(journal.horizons_ms):
            fills[f"markout_{horizon}ms"] = pd.Series(
                [row[position] for row in journal.markouts], dtype="float64"
            )
        positions = pd.DataFrame(journal.positions, columns=["time_ns", "venue", "symbol", "position"])
        equity = pd.DataFrame(journal.equity, columns=["time_ns", "pnl_gross", "fees", "equity", "position"])
        market = pd.DataFrame(
            journal.market,
            columns=["time_ns", "venue", "symbol", "bid", "ask", "mid", "our_bid", "our_ask"],
        )
        kinds: list[str] = []
        values: list[int] = []
        for kind in LATENCY_KINDS:  # column by column: a row tuple per sample is most of the cost
            samples = journal.latency[kind]
            kinds += [kind] * len(samples)
            values += samples
        latency = pd.DataFrame({"kind": pd.Series(kinds, dtype=object), "value_ns": values})
        for frame in (orders, fills, positions, equity, market):
            frame["time_ns"] = frame["time_ns"].astype("int64")
        fills["receive_ns"] = fills["receive_ns"].astype("int64")
        latency["value_ns"] = latency["value_ns"].astype("int64")
        histograms: dict[str, LatencyHistogram] = {}
        for kind in LATENCY_KINDS:
            histogram = LatencyHistogram()
            record = histogram.record
            for value in journal.latency[kind]:
                record(value if value >= 1 else 1)
            histograms[kind] = histogram
        result = cls(
            orders=orders,
            fills=fills,
            positions=positions,
            equity=equity,
            market=market,
            latency=latency,
            latency_histograms=histograms,
            summary={},
            config=dict(config or {}),
        )
        result.summary = summarize(result, journal, seed=seed, counters=counters)
        return result

    def write(self, out_dir: str | Path) -> Path:
        """Parquet per table plus ``summary.json`` into ``out_dir`` (created); returns the folder."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("orders", "fills", "positions", "equity", "market", "latency"):
            frame: pd.DataFrame = getattr(self, name)
            frame.to_parquet(folder / f"{name}.parquet", index=False, engine="pyarrow", compression="zstd")
        (folder / "summary.json").write_text(
            json.dumps(self.summary, indent=2, sort_keys=True, default=_json_default) + "\n", encoding="utf-8"
        )
        return folder


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _number(value: float) -> float | None:
    """JSON has no NaN: None stands for 'no value'; figures are rounded to stable digits."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.10g}")


def summarize(
    result: BacktestResult, journal: Journal, *, seed: int, counters: Mapping[str, int]
) -> dict[str, Any]:
    """The headline figures of a run (see ``hftkit.backtest``'s docstring for the keys)."""
    fills, orders, equity = result.fills, result.orders, result.equity
    last = equity.iloc[-1] if len(equity) else None
    pnl_gross = float(last["pnl_gross"]) if last is not None else 0.0
    fees = float(last["fees"]) if last is not None else 0.0
    sent = int((orders["event"] == "sent").sum()) if len(orders) else 0
    accepted_ids = set(orders.loc[orders["event"] == "accepted", "client_order_id"]) if len(orders) else set()
    filled_ids = set(fills["client_order_id"]) if len(fills) else set()
    accepted_quantity = (
        float(orders.loc[orders["event"] == "accepted", "quantity"].sum()) if len(orders) else 0.0
    )
    positions = equity["position"].to_numpy(dtype="float64") if len(equity) else np.zeros(1)
    curve = equity["equity"].to_numpy(dtype="float64") if len(equity) else np.zeros(1)
    drawdown = float(np.max(np.maximum.accumulate(curve) - curve)) if len(curve) else 0.0
    increments = np.diff(curve)
    sharpe = math.nan
    if len(increments) > 1 and float(np.std(increments)) > 0 and len(equity) > 1:
        interval_s = float(np.median(np.diff(equity["time_ns"].to_numpy()))) / 1e9
        sharpe = float(np.mean(increments) / np.std(increments) * math.sqrt(_YEAR_S / interval_s))
    adverse: dict[str, Any] = {}
    for horizon in journal.horizons_ms:
        column = f"markout_{horizon}ms"
        values = fills[column].dropna() if len(fills) else pd.Series(dtype="float64")
        bps = (values / fills.loc[values.index, "price"] * 1e4) if len(values) else values
        adverse[f"{horizon}ms"] = {
            "fills": len(values),
            "mean_markout": _number(float(values.mean())) if len(values) else None,
            "mean_markout_bps": _number(float(bps.mean())) if len(values) else None,
        }
    instruments: dict[str, Any] = {}
    for key in journal.instruments:
        mine = fills[(fills["venue"] == key[0]) & (fills["symbol"] == key[1])] if len(fills) else fills
        instruments[f"{key[0]}:{key[1]}"] = {
            "fills": len(mine),
            "volume": _number(float(mine["notional"].sum())) if len(mine) else 0.0,
            "fees": _number(float(mine["fee"].sum())) if len(mine) else 0.0,
            "final_position": _number(journal._books[key].position),
        }
    latency = {
        kind: {
            "count": histogram.count,
            "p50_ns": histogram.percentile(50) if histogram.count else None,
            "p99_ns": histogram.percentile(99) if histogram.count else None,
        }
        for kind, histogram in result.latency_histograms.items()
    }
    first_ns = int(equity["time_ns"].iloc[0]) if len(equity) else 0
    last_ns = int(equity["time_ns"].iloc[-1]) if len(equity) else 0
    return {
        "seed": seed,
        "pnl_gross": _number(pnl_gross),
        "fees": _number(fees),
        "pnl_net": _number(pnl_gross - fees),
        "volume": _number(float(fills["notional"].sum())) if len(fills) else 0.0,
        "volume_base": _number(float(fills["quantity"].sum())) if len(fills) else 0.0,
        "orders_sent": sent,
        "orders_accepted": len(accepted_ids),
        "orders_rejected": int((orders["event"] == "rejected").sum()) if len(orders) else 0,
        "fills": len(fills),
        "maker_fills": int(fills["is_maker"].sum()) if len(fills) else 0,
        "fill_ratio": _number(len(accepted_ids & filled_ids) / len(accepted_ids)) if accepted_ids else None,
        "quantity_fill_ratio": (
            _number(float(fills["quantity"].sum()) / accepted_quantity) if accepted_quantity else None
        ),
        "inventory": {
            "mean": _number(float(np.mean(positions))),
            "mean_abs": _number(float(np.mean(np.abs(positions)))),
            "std": _number(float(np.std(positions))),
            "min": _number(float(np.min(positions))),
            "max": _number(float(np.max(positions))),
            "final": _number(float(positions[-1])),
        },
        "max_drawdown": _number(drawdown),
        "sharpe": _number(sharpe),
        "adverse_selection": adverse,
        "events": journal.events,
        "book_events": journal.book_events,
        "simulated_seconds": _number((last_ns - first_ns) / 1e9),
        "latency": latency,
        "instruments": instruments,
        "counters": {name: int(value) for name, value in sorted(counters.items()) if value},
    }
