"""hftkit's side of ``hftkit bench node``: the real node, one minimal strategy, one order path.

The node is built the way a user builds it (``TradingNode.from_config`` from a typed config whose
venue is a ``testnet`` venue with every URL pointed at the simulator in another process), with
its adapters, books, tracker, risk gate and gateway. The strategy answers every book or trade
event with an IOC buy far under the market (it expires unfilled) while no order of its own is in
flight, exactly as the minimal client does. Tick-to-trade is the gateway's own histogram: the
triggering frame's receive stamp to the adapter's report that the order's bytes are written.

Run by ``hftkit.bench.node`` as ``python -m hftkit.bench.node_worker PATH SECONDS WARMUP`` with
the simulator's connection line (JSON) on stdin; prints one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec
import yaml

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Order, OrderIntent, Side, TimeInForce, Trade
from hftkit.trading.execution import ExecutionReport
from hftkit.trading.strategy import Decision, Strategy, Subscription

PRICE_FACTOR_PER_MILLE = 995  # the minimal client's 0.995: an IOC buy that never fills
STAGES = ("frame_to_decision_ns", "decision_to_send_ns", "send_to_written_ns", "tick_to_trade_ns")


class IocParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    symbol: str
    trades: bool = True
    quantity: str = "0.001"  # the minimal client's size: above every minimum notional here


class IocOnEveryEvent(Strategy):
    """One IOC order per book or trade event while none of ours is in flight."""

    config_type = IocParams

    def __init__(self, params: IocParams, name: str = "ioc") -> None:
        super().__init__(name)
        self.params = params
        self.in_flight = False
        self.decisions = 0
        self.lots: int | None = None

    def subscriptions(self) -> Sequence[Subscription]:
        return (
            Subscription(self.params.venue, (self.params.symbol,), books=True, trades=self.params.trades),
        )

    def _order(self, book: OrderBook | None) -> Decision | None:
        if self.in_flight or book is None:
            return None
        best = book.best_bid()
        if best is None:
            return None
        if self.lots is None:
            instrument = self.context.instrument(self.params.venue, self.params.symbol)
            self.lots = max(instrument.min_quantity, instrument.quantity_to_lots(self.params.quantity))
        self.in_flight = True
        self.decisions += 1
        return Decision(
            orders=[
                OrderIntent(
                    venue=self.params.venue,
                    symbol=self.params.symbol,
                    side=Side.BUY,
                    quantity=self.lots,
                    price=best[0] * PRICE_FACTOR_PER_MILLE // 1000,
                    time_in_force=TimeInForce.IOC,
                )
            ]
        )

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        return self._order(book)

    def on_trade(self, trade: Trade) -> Decision | None:
        return self._order(self.context.book(trade.venue, trade.symbol))

    def on_order_update(self, order: Order) -> Decision | None:
        if order.status.is_terminal:
            self.in_flight = False
        return None

    def on_execution(self, report: ExecutionReport) -> Decision | None:
        self.in_flight = False
        return None


def node_config(path: str, connection: dict[str, Any]) -> dict[str, Any]:
    """A node with one venue (testnet, URLs on the simulator) and the IOC strategy."""
    urls, credentials = connection["urls"], connection["credentials"]
    rest = urls["binance_rest"]
    if path == "thalex_ws":
        venue: dict[str, Any] = {
            "kind": "thalex",
            "environment": "testnet",
            "key_id": credentials["thalex_key_id"],
            "private_key_file": credentials["thalex_private_key_file"],
            "url": urls["thalex_ws"],
        }
        params = {"venue": "thalex", "symbol": "BTC-PERPETUAL"}
    else:
        venue = {
            "kind": "binance",
            "market": "spot",
            "environment": "testnet",
            "api_key": "${HFTKIT_BENCH_API_KEY}",
            "api_secret": "${HFTKIT_BENCH_API_SECRET}",
            "rest_url": rest,
            "stream_url": "ws" + rest.removeprefix("http"),
            "websocket_api_url": urls["binance_spot_ws_api"],
            "order_transport": "websocket_api" if path == "binance_ws_api" else "rest",
        }
        params = {"venue": "binance", "symbol": "BTCUSDT"}
    return {
        "venues": {params["venue"]: venue},
        "strategies": [{"name": "ioc", "path": "hftkit.bench.node_worker:IocOnEveryEvent", "params": params}],
        "metrics": {"enabled": False},
        "dashboard": {"enabled": False},
        "logging": {"level": "WARNING"},
    }


def _histograms(node: Any, venue: str) -> dict[str, Any]:
    found = {}
    for stage in STAGES:
        histogram = node.metrics.get(stage, venue=venue)
        if histogram is not None:
            found[stage] = histogram
    return found


async def _run(path: str, seconds: float, warmup_s: float, connection: dict[str, Any]) -> dict[str, Any]:
    from hftkit.app.config import load_text
    from hftkit.app.node import TradingNode

    venue = "thalex" if path == "thalex_ws" else "binance"
    loaded = load_text(yaml.safe_dump(node_config(path, connection)), "<bench node>")
    node = TradingNode.from_config(loaded, seconds=warmup_s + seconds + 30)
    marks: dict[str, Any] = {}

    async def window() -> None:
        while node.engine is None or node.phase != "running":
            await asyncio.sleep(0.001)
        while not node.engine.gateway.counters["orders_sent"]:
            await asyncio.sleep(0.001)
        marks["first_order_wall_s"] = time.time()
        await asyncio.sleep(warmup_s)
        gateway = node.engine.gateway
        histograms = _histograms(node, venue)
        marks["start_times"] = os.times()
        marks["start"] = (
            time.process_time(),
            gateway.counters["orders_sent"],
            {stage: histogram.snapshot() for stage, histogram in histograms.items()},
        )
        await asyncio.sleep(seconds)
        marks["end_times"] = os.times()
        marks["end"] = (
            time.process_time(),
            gateway.counters["orders_sent"],
            {stage: histogram.snapshot() for stage, histogram in histograms.items()},
        )
        node.request_stop("bench window over")

    measuring = asyncio.ensure_future(window())
    summary = await node.run()
    await measuring
    cpu_start, sent_start, snapshots_start = marks["start"]
    cpu_end, sent_end, snapshots_end = marks["end"]
    stages = {}
    for stage, snapshot in snapshots_end.items():
        window_snapshot = snapshot.since(snapshots_start[stage])
        stages[stage] = {
            "count": window_snapshot.count,
            "p50_ns": window_snapshot.p50,
            "p99_ns": window_snapshot.p99,
            "p999_ns": window_snapshot.p999,
        }
    strategy = cast(IocOnEveryEvent, node.strategies[0])  # the config above names this one strategy
    return {
        "first_order_wall_s": marks["first_order_wall_s"],
        "orders": sent_end - sent_start,
        "cpu_s": cpu_end - cpu_start,
        "system_s": marks["end_times"].system - marks["start_times"].system,
        "seconds": seconds,
        "stages": stages,
        "decisions": strategy.decisions,
        "passed": summary.verdict.passed,
        "problems": summary.verdict.problems[:5],
    }


def main() -> None:
    path, seconds, warmup_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    connection = json.loads(sys.stdin.readline())
    credentials = connection["credentials"]
    os.environ["HFTKIT_BENCH_API_KEY"] = credentials["binance_api_key"]
    os.environ["HFTKIT_BENCH_API_SECRET"] = credentials["binance_secret_key"]
    from hftkit.app.runtime import install_event_loop

    install_event_loop(True)
    figures = asyncio.run(_run(path, seconds, warmup_s, connection))
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
