"""``hftkit bench trading`` rows for the smart order router: one hedge's route.

The case is the default node's hedge: a few lots against a deep USD-M book (1,000 levels a
side, its sorted window holding fewer), one venue with a taker fee and a measured latency.
Routing reads only the levels the parent can take and merges the venues' units lazily, so the
book's depth beyond them costs nothing.
"""

from __future__ import annotations

from decimal import Decimal

from hftkit.bench.harness import BenchOptions, BenchResult, compare, time_per_call
from hftkit.book.order_book import OrderBook
from hftkit.core.types import Instrument, Side
from hftkit.trading.router import RouteCandidate, SmartOrderRouter

LEVELS_PER_SIDE = 1_000
HEDGE = Decimal("0.004")  # four lots: the default node's hedges are a few lots


def route_rows(options: BenchOptions) -> list[BenchResult]:
    instrument = Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", "0.1", "0.001")
    book = OrderBook("BTCUSDT")
    touch = 600_000
    book.apply_snapshot(
        [(touch - level, 5 + level % 7) for level in range(LEVELS_PER_SIDE)],
        [(touch + 1 + level, 5 + level % 7) for level in range(LEVELS_PER_SIDE)],
    )
    router = SmartOrderRouter()
    candidates = [RouteCandidate(instrument, book, fee_bps=4.0, latency_ms=1.2)]
    decision = router.route(Side.SELL, HEDGE, candidates)
    if decision.filled != HEDGE or decision.allocations[0].limit_price != touch:
        raise AssertionError(f"router benchmark case broken: {decision.reason}")

    def route() -> object:
        return router.route(Side.SELL, HEDGE, candidates)

    microseconds = time_per_call(route, options) / 1_000
    return [
        compare(
            f"smart order router: a {HEDGE} BTC hedge against a {LEVELS_PER_SIDE:,}-level book",
            microseconds,
            "us",
            levels=LEVELS_PER_SIDE,
            lots=int(HEDGE * 1000),
        )
    ]
