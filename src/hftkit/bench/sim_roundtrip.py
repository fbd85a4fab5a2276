"""``hftkit bench sim`` rows: order round trips through the simulator's real protocol servers.

An in-process ``Simulator`` runs the Binance-compatible and the Thalex-compatible venues on
loopback with a seeded synthetic market moving underneath. One client, one order in flight at
a time (a strategy waiting for each acknowledgement), places a passive limit order far from
the touch and cancels it, over and over:

* REST: signed ``POST /api/v3/order`` + ``DELETE /api/v3/order`` built with hftkit's own
  ``RequestBuilder`` and sent with an aiohttp session (keep-alive).
* WebSocket: Thalex JSON-RPC ``private/insert`` + ``private/cancel`` on one logged-in session.

Client and server share one event loop and one core, so each figure is the whole stack's
cost (signing, HTTP/WS framing both ways, parsing, matching, accounting, event fan-out).
Baseline: the published reference of 200-350 orders/s end to end for the simulator this
replaces; the upper end is the figure we compare with.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import orjson

from hftkit.bench.harness import BenchOptions, BenchResult, compare, percentile
from hftkit.core.secrets import Secret
from hftkit.core.types import OrderType, Side, TimeInForce
from hftkit.sim.config import BINANCE_SPOT, THALEX, config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.build import RequestBuilder
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.thalex.auth import ThalexCredentials, make_login_token

PEERS: tuple[str, ...] = ()

BASELINE = "200-350 orders/s end to end (published)"
BASELINE_ORDERS_PER_S = 350.0
LATENCY_BASELINE = "2857 us per order (derived: one order at a time at 350 orders/s)"
PASSIVE_OFFSET_TICKS = 500  # far below the best bid: the order rests and never fills
SYMBOL = "BTCUSDT"
PERPETUAL = "BTC-PERPETUAL"


def bench_config(seed: int = 11) -> Any:
    """Synthetic market, limits wide open (the bench measures the stack, not the limiter)."""
    return config_from_mapping(
        {
            "source": "synthetic",
            "seed": seed,
            "speed": 1,
            "venues": {
                BINANCE_SPOT: {
                    "symbols": [SYMBOL],
                    "rate_limits": {
                        "request_weight": 100_000_000,
                        "order_windows": [[10, 100_000_000], [86_400, 1_000_000_000]],
                    },
                },
                THALEX: {"symbols": [PERPETUAL], "message_rate": 1_000_000},
            },
        },
        "<bench>",
    )


class _Figures:
    def __init__(self) -> None:
        self.place_ns: list[int] = []
        self.cancel_ns: list[int] = []
        self.elapsed_ns = 0
        self.orders = 0
        self.failures = 0

    @property
    def orders_per_s(self) -> float:
        return self.orders / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0


async def _rest_round_trips(sim: Simulator, count: int, warmup: int) -> _Figures:
    assert sim.credentials is not None
    venue = sim.venues[BINANCE_SPOT]
    instrument = venue.instruments[SYMBOL]
    builder = RequestBuilder(
        Market.SPOT, BinanceCredentials(sim.credentials.binance_api_key, sim.credentials.binance_secret_key)
    )
    base = sim.urls["binance_rest"]
    figures = _Figures()
    ids = itertools.count()
    async with aiohttp.ClientSession() as session:

        async def send(request: Any) -> int:
            url = f"{base}{request.path}?{request.query}"
            async with session.request(request.method, url, headers=request.headers) as response:
                await response.read()
                return response.status

        for index in range(warmup + count):
            best = venue.engine.best_bid(SYMBOL)
            price = (best[0] if best else 5_000_000) - PASSIVE_OFFSET_TICKS
            client_id = f"bench-{next(ids)}"
            place = builder.new_order(
                instrument,
                client_id,
                Side.BUY,
                OrderType.LIMIT,
                instrument.min_quantity * 100,
                price,
                TimeInForce.GTC,
            )
            started = time.perf_counter_ns()
            placed_status = await send(place)
            placed = time.perf_counter_ns()
            cancel_status = await send(builder.cancel_order(instrument, client_order_id=client_id))
            done = time.perf_counter_ns()
            if placed_status != 200 or cancel_status != 200:
                figures.failures += 1
            if index >= warmup:
                figures.place_ns.append(placed - started)
                figures.cancel_ns.append(done - placed)
                figures.elapsed_ns += done - started
                figures.orders += 1
    return figures


async def _thalex_round_trips(sim: Simulator, count: int, warmup: int) -> _Figures:
    assert sim.credentials is not None and sim.credentials.thalex_private_key_file is not None
    with open(sim.credentials.thalex_private_key_file, "rb") as handle:
        private_key = handle.read()
    token = make_login_token(ThalexCredentials(sim.credentials.thalex_key_id, Secret(private_key)))
    venue = sim.venues[THALEX]
    instrument = venue.instruments[PERPETUAL]
    figures = _Figures()
    request_ids = itertools.count(1)
    async with aiohttp.ClientSession() as session, session.ws_connect(sim.urls["thalex_ws"]) as ws:

        async def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
            request_id = next(request_ids)
            await ws.send_bytes(orjson.dumps({"method": method, "params": params, "id": request_id}))
            while True:  # skip notifications until our answer comes
                message = await ws.receive()
                if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    raise ConnectionError(f"Thalex socket closed: {message.type}")
                answer = orjson.loads(message.data)
                if answer.get("id") == request_id:
                    return answer

        login = await rpc("public/login", {"token": token})
        if "result" not in login:
            raise ConnectionError(f"Thalex login refused: {login}")
        amount = float(instrument.lots_to_quantity(instrument.min_quantity * 10))
        for index in range(warmup + count):
            best = venue.engine.best_bid(PERPETUAL)
            price = float(instrument.ticks_to_price((best[0] if best else 60_000) - PASSIVE_OFFSET_TICKS))
            client_id = index + 1
            started = time.perf_counter_ns()
            placed = await rpc(
                "private/insert",
                {
                    "direction": "buy",
                    "instrument_name": PERPETUAL,
                    "order_type": "limit",
                    "price": price,
                    "amount": amount,
                    "client_order_id": client_id,
                },
            )
            placed_ns = time.perf_counter_ns()
            canceled = await rpc("private/cancel", {"client_order_id": client_id})
            done = time.perf_counter_ns()
            if "result" not in placed or "result" not in canceled:
                figures.failures += 1
            if index >= warmup:
                figures.place_ns.append(placed_ns - started)
                figures.cancel_ns.append(done - placed_ns)
                figures.elapsed_ns += done - started
                figures.orders += 1
    return figures


def _rows(transport: str, figures: _Figures, count: int) -> list[BenchResult]:
    round_trips = [place + cancel for place, cancel in zip(figures.place_ns, figures.cancel_ns, strict=True)]
    detail = {
        "orders": figures.orders,
        "failures": figures.failures,
        "place_p50_us": round(percentile(figures.place_ns, 0.5) / 1e3, 1),
        "place_p99_us": round(percentile(figures.place_ns, 0.99) / 1e3, 1),
        "cancel_p50_us": round(percentile(figures.cancel_ns, 0.5) / 1e3, 1),
        "cancel_p99_us": round(percentile(figures.cancel_ns, 0.99) / 1e3, 1),
        "scope": "client + server in one process and event loop, loopback",
    }
    rate = figures.orders_per_s
    return [
        compare(
            f"sim {transport} order round trips (place + cancel)",
            rate,
            "orders/s",
            baseline=BASELINE,
            baseline_value=BASELINE_ORDERS_PER_S,
            target="> 350 orders/s",
            met=rate > BASELINE_ORDERS_PER_S and figures.failures == 0,
            **detail,
        ),
        compare(
            f"sim {transport} place+cancel latency p50",
            percentile(round_trips, 0.5) / 1e3,
            "us",
            baseline=LATENCY_BASELINE,
            baseline_value=1e6 / BASELINE_ORDERS_PER_S,
        ),
        compare(
            f"sim {transport} place+cancel latency p99",
            percentile(round_trips, 0.99) / 1e3,
            "us",
            baseline=LATENCY_BASELINE,
            baseline_value=1e6 / BASELINE_ORDERS_PER_S,
        ),
    ]


async def _measure(options: BenchOptions) -> list[BenchResult]:
    count = 50 if options.quick else 2_000
    warmup = 5 if options.quick else 100
    async with Simulator(bench_config()) as sim:
        await sim.wait_seeded()
        rest = await _rest_round_trips(sim, count, warmup)
        websocket = await _thalex_round_trips(sim, count, warmup)
    return [
        *_rows("REST (Binance spot)", rest, count),
        *_rows("WebSocket (Thalex JSON-RPC)", websocket, count),
    ]


def run(options: BenchOptions) -> list[BenchResult]:
    return asyncio.run(_measure(options))


__all__ = ["PEERS", "run"]
