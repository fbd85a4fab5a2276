"""``hftkit bench node``: tick-to-trade of the assembled node beside a minimal client, one run.

The simulator runs in its own process (``hftkit sim``, a synthetic market of a few hundred events
a second per instrument, limits wide open). For each order path, one after the other and
alternating, two workers trade against it:

* hftkit's node (``hftkit.bench.node_worker``): ``TradingNode.from_config``, its adapters, books,
  tracker, risk gate and gateway, and a strategy that answers every book or trade event with an
  IOC order while none is in flight;
* the minimal client (``hftkit.bench.minimal_client``): picows, orjson, a hand-built signed
  request, no book, no risk, the same reaction.

The simulator has a core of its own and the workers the others (see ``_cores``). Both stamp
the frame's receipt and the return of the call that wrote the order's bytes, and
both count the CPU their whole process spent per order over the same window (feed included).
The figure for each path is the median over the rounds; the minimal client is the same-run
baseline, and the targets' ratios are the median of each round's node against the client run
just before it (paired: the machine's drift between rounds moves both sides of a pair alike).
Paths: Thalex ``private/insert`` over its WebSocket, Binance spot ``order.place`` over the
WebSocket API, Binance spot ``POST /api/v3/order`` over REST.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from hftkit.bench.harness import BenchOptions, BenchResult, compare, percentile
from hftkit.bench.soak import _first_json_line, _stop

PEERS: tuple[str, ...] = ()
PATHS = ("thalex_ws", "binance_ws_api", "binance_rest")
WEBSOCKET_PATHS = ("thalex_ws", "binance_ws_api")
LABELS = {
    "thalex_ws": "Thalex WebSocket private/insert",
    "binance_ws_api": "Binance spot WebSocket API order.place",
    "binance_rest": "Binance spot REST POST /api/v3/order",
}
P50_TARGET_US = 60.0
P99_TARGET_US = 300.0
P50_RATIO_TARGET = 1.5
CPU_RATIO_TARGET = 2.0
WORKER_TIMEOUT_S = 120.0


def sim_config() -> dict[str, Any]:
    """Two venues on a synthetic market, every limit wide open: the bench measures the stacks."""
    open_limits = {
        "request_weight": 100_000_000,
        "order_windows": [[10, 100_000_000], [86_400, 1_000_000_000]],
    }
    return {
        "source": "synthetic",
        "seed": 7,
        "speed": 1,
        "venues": {
            "binance-spot": {"symbols": ["BTCUSDT"], "rate_limits": open_limits},
            "thalex": {"symbols": ["BTC-PERPETUAL"], "message_rate": 1_000_000},
        },
        "synthetic": {
            # about 300 trades and 10 depth pushes a second: the Binance reaction events
            "BTCUSDT": {"limit_rate": 100.0, "cancel_rate": 80.0, "trade_rate": 300.0, "move_rate": 2.0},
            # about 500 raw book pushes a second on the Thalex book channel
            "BTC-PERPETUAL": {
                "limit_rate": 250.0,
                "cancel_rate": 200.0,
                "trade_rate": 50.0,
                "move_rate": 2.0,
            },
        },
    }


def _cores() -> tuple[set[int], set[int]]:
    """(the simulator's cores, the workers' cores): apart when the machine has two or more.

    On one machine a write to a loopback socket wakes the simulator inside the writer's system
    call; on a shared core the writer then waits for the simulator's whole turn, a cost no remote
    venue imposes. Each side on its own core keeps that out of both figures alike."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[-1]}, set(available[:-1])


def _pinned(cores: set[int]) -> Any:
    return lambda: os.sched_setaffinity(0, cores)


def _worker(
    module: str, path: str, seconds: float, warmup_s: float, connection: dict[str, Any]
) -> dict[str, Any]:
    started = time.time()
    completed = subprocess.run(
        [sys.executable, "-m", module, path, f"{seconds:g}", f"{warmup_s:g}"],
        input=json.dumps(connection) + "\n",
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
        check=False,
        preexec_fn=_pinned(_cores()[1]),
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{module} {path} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    figures = dict(json.loads(completed.stdout.strip().splitlines()[-1]))
    # process start (interpreter, imports, connect, sync) to the first order written
    figures["start_to_first_order_s"] = figures["first_order_wall_s"] - started
    return figures


def _client_figures(raw: dict[str, Any]) -> dict[str, float]:
    samples = raw["samples_ns"]
    orders = max(1, raw["orders"])
    return {
        "p50_us": percentile(samples, 0.5) / 1e3,
        "p99_us": percentile(samples, 0.99) / 1e3,
        "p999_us": percentile(samples, 0.999) / 1e3,
        "cpu_per_order_us": raw["cpu_s"] * 1e6 / orders,
        "system_per_order_us": raw["system_s"] * 1e6 / orders,
        "orders": raw["orders"],
        "errors": raw["errors"],
        "start_to_first_order_s": raw["start_to_first_order_s"],
    }


def _node_figures(raw: dict[str, Any]) -> dict[str, float]:
    stages = raw["stages"]
    tick = stages.get("tick_to_trade_ns", {"p50_ns": 0, "p99_ns": 0, "p999_ns": 0, "count": 0})
    figures: dict[str, float] = {
        "p50_us": tick["p50_ns"] / 1e3,
        "p99_us": tick["p99_ns"] / 1e3,
        "p999_us": tick["p999_ns"] / 1e3,
        "cpu_per_order_us": raw["cpu_s"] * 1e6 / max(1, raw["orders"]),
        "system_per_order_us": raw["system_s"] * 1e6 / max(1, raw["orders"]),
        "orders": raw["orders"],
        "stamped": tick["count"],
        "start_to_first_order_s": raw["start_to_first_order_s"],
    }
    for stage, values in stages.items():
        if stage != "tick_to_trade_ns":
            figures[f"{stage.removesuffix('_ns')}_p50_us"] = values["p50_ns"] / 1e3
    return figures


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = rounds[0].keys()
    return {key: statistics.median(item.get(key, 0.0) for item in rounds) for key in keys}


def _ratios(nodes: list[dict[str, float]], clients: list[dict[str, float]], key: str) -> list[float]:
    pairs = zip(nodes, clients, strict=True)
    return [node[key] / client[key] if client[key] else float("inf") for node, client in pairs]


def measure(seconds: float, warmup_s: float, rounds: int, paths: tuple[str, ...] = PATHS) -> dict[str, Any]:
    """Start the simulator, run the two workers per path ``rounds`` times, alternating."""
    with tempfile.TemporaryDirectory(prefix="hftkit-bench-node-") as directory:
        config_file = Path(directory) / "sim.yaml"
        config_file.write_text(yaml.safe_dump(sim_config()))
        sim = subprocess.Popen(
            [
                *(sys.executable, "-m", "hftkit.app.cli", "sim", "--config", str(config_file)),
                *("--port", "0", "--thalex-port", "0", "--control-port", "0", "--log-level", "WARNING"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            preexec_fn=_pinned(_cores()[0]),
        )
        try:
            assert sim.stdout is not None
            connection = _first_json_line(sim.stdout, "hftkit sim")
            figures: dict[str, Any] = {}
            for path in paths:
                clients, nodes = [], []
                for _ in range(rounds):
                    clients.append(
                        _client_figures(
                            _worker("hftkit.bench.minimal_client", path, seconds, warmup_s, connection)
                        )
                    )
                    nodes.append(
                        _node_figures(
                            _worker("hftkit.bench.node_worker", path, seconds, warmup_s, connection)
                        )
                    )
                figures[path] = {
                    "client": _median(clients),
                    "node": _median(nodes),
                    # each round's node against the client run right before it, then the median:
                    # a machine whose speed drifts between rounds moves both sides of a pair alike
                    "paired_p50_ratio": statistics.median(_ratios(nodes, clients, "p50_us")),
                    "paired_cpu_ratio": statistics.median(_ratios(nodes, clients, "cpu_per_order_us")),
                }
        finally:
            _stop(sim)
    return figures


def _rows(figures: dict[str, Any]) -> list[BenchResult]:
    rows: list[BenchResult] = []
    for path, measured in figures.items():
        node, client = measured["node"], measured["client"]
        ratio = measured["paired_p50_ratio"]
        websocket = path in WEBSOCKET_PATHS
        met = ratio <= P50_RATIO_TARGET and (
            not websocket or (node["p50_us"] <= P50_TARGET_US and node["p99_us"] <= P99_TARGET_US)
        )
        target = (
            f"p50 <= {P50_TARGET_US:g} us, p99 <= {P99_TARGET_US:g} us, p50 <= {P50_RATIO_TARGET}x client"
            if websocket
            else f"p50 <= {P50_RATIO_TARGET}x client"
        )
        detail = {
            "paired_p50_ratio": round(ratio, 2),
            "p99_us": round(node["p99_us"], 1),
            "p999_us": round(node["p999_us"], 1),
            "client_p99_us": round(client["p99_us"], 1),
            "client_p999_us": round(client["p999_us"], 1),
            "orders": int(node["orders"]),
            "client_orders": int(client["orders"]),
            "client_errors": int(client["errors"]),
            **{key: round(value, 1) for key, value in node.items() if key.endswith("_p50_us")},
        }
        tick = compare(
            f"node tick-to-trade p50, {LABELS[path]}",
            round(node["p50_us"], 1),
            "us",
            baseline=f"minimal client (picows, orjson, hand-built request) p50 {client['p50_us']:.1f} us",
            baseline_value=round(client["p50_us"], 1),
            target=target,
            met=met,
            **detail,
        )
        cpu_ratio = measured["paired_cpu_ratio"]
        cpu = compare(
            f"node CPU per order incl. feed, {LABELS[path]}",
            round(node["cpu_per_order_us"], 1),
            "us",
            baseline=f"minimal client {client['cpu_per_order_us']:.1f} us",
            baseline_value=round(client["cpu_per_order_us"], 1),
            target=f"<= {CPU_RATIO_TARGET}x client",
            met=cpu_ratio <= CPU_RATIO_TARGET,
            paired_cpu_ratio=round(cpu_ratio, 2),
        )
        # the ratio column shows what the targets judge: the paired one (client / node, as every
        # table's time ratios are), not the ratio of the two medians
        tick.ratio = 1 / ratio if ratio else None
        cpu.ratio = 1 / cpu_ratio if cpu_ratio else None
        rows += (tick, cpu)
        rows.append(
            compare(
                f"node start to first order, {LABELS[path]}",
                round(node["start_to_first_order_s"], 2),
                "s",
                baseline=f"minimal client {client['start_to_first_order_s']:.2f} s",
                baseline_value=round(client["start_to_first_order_s"], 2),
                scope="process start: interpreter, imports, connect, login or sync, first decision",
            )
        )
    return rows


DASHBOARD_TARGET_PERCENT = 5.0


def dashboard_cost(seconds: float) -> BenchResult:
    """The live dashboard's share of one core at its default refresh, on the built-in node (its
    in-process simulator trading) rendering to a terminal: the CPU of every render over the run."""
    import asyncio
    import io

    from rich.console import Console

    from hftkit.app import dashboard
    from hftkit.app.node import TradingNode, builtin_config

    loaded = builtin_config()
    node = TradingNode.from_config(loaded, seconds=seconds)
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    spent = {"cpu_s": 0.0, "renders": 0}

    class Measured(dashboard.Dashboard):
        def tick(self) -> None:
            started = time.thread_time()
            last = self._last
            super().tick()
            if self._last != last:
                spent["cpu_s"] += time.thread_time() - started
                spent["renders"] += 1

    refresh = loaded.node.dashboard.refresh_per_s
    started = time.monotonic()
    with Measured(node, console, refresh):
        asyncio.run(node.run())
    share = 100 * spent["cpu_s"] / (time.monotonic() - started)
    return compare(
        f"dashboard CPU at its default refresh ({refresh:g}/s), share of one core",
        round(share, 2),
        "%",
        target=f"<= {DASHBOARD_TARGET_PERCENT:g} % of one core",
        met=share <= DASHBOARD_TARGET_PERCENT,
        renders=spent["renders"],
        ms_per_render=round(1e3 * spent["cpu_s"] / max(1, spent["renders"]), 1),
    )


def run(options: BenchOptions) -> list[BenchResult]:
    seconds, warmup_s, rounds = (3.0, 1.0, 1) if options.quick else (8.0, 2.0, 3)
    rows = _rows(measure(seconds, warmup_s, rounds))
    rows.append(dashboard_cost(6.0 if options.quick else 20.0))
    return rows


if __name__ == "__main__":  # a quick look without the CLI: python -m hftkit.bench.node [path ...]
    chosen = tuple(sys.argv[1:]) or PATHS
    print(json.dumps(measure(4.0, 1.0, 1, chosen), indent=1))
