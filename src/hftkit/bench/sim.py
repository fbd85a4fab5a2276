"""``hftkit bench sim``: matching-engine throughput and per-operation latency, in process.

Workload (seeded, identical for every engine measured): one BTCUSDT-like instrument with
20 levels of background liquidity around a fixed mid, four funded accounts, and a stream of
60 % passive limit orders within 10 ticks of the touch, 30 % cancels of a random open order
and 10 % marketable orders (market / IOC limit through the touch). Every 50 operations the
background is restored with one depth diff (work included in the time, not in the count).

Baseline: the same stream through ``NaiveMatcher``, an unsorted-list matcher that scans for the
best price on every match and for the order on every cancel (how a first simulator is often
written). The issue's reference figure for the existing end-to-end simulator is 200-350
orders/s; that figure includes network round trips, so it is quoted in the detail only.

The suite also runs ``sim_roundtrip`` (orders over loopback) and ``sim_stream`` (the market-data
push of a simulator process replaying at full speed, and its idle cost).
"""

from __future__ import annotations

import gc
import random
import time

from hftkit.bench.harness import BenchOptions, BenchResult, compare, percentile, time_per_item
from hftkit.core.types import Instrument, OrderType, Side, TimeInForce
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.matching import MatchingEngine

PEERS: tuple[str, ...] = ()

SYMBOL = "BTCUSDT"
MID = 5_000_000  # ticks of 0.01 = 50,000.00
ACCOUNTS = ("alpha", "beta", "gamma", "delta")
BACKGROUND_LEVELS = 20
RESTORE_EVERY = 50
MAX_OPEN_PER_ACCOUNT = 50  # a place beyond this first cancels one (the book stays in a steady state)

PLACE, CANCEL, MARKET, IOC = 0, 1, 2, 3


def make_workload(count: int, seed: int = 7) -> list[tuple[int, int, Side, int, int, float]]:
    """Operations as ``(kind, account index, side, price, quantity, pick)``; ``pick`` in [0, 1)
    selects the open order a cancel targets."""
    generator = random.Random(seed)
    operations = []
    for _ in range(count):
        draw = generator.random()
        pick = generator.random()
        side = Side.BUY if generator.random() < 0.5 else Side.SELL
        account = generator.randrange(len(ACCOUNTS))
        quantity = generator.randrange(10, 200)
        offset = generator.randrange(10)
        if draw < 0.6:
            price = MID - 1 - offset if side is Side.BUY else MID + 1 + offset
            operations.append((PLACE, account, side, price, quantity, pick))
        elif draw < 0.9:
            operations.append((CANCEL, account, side, 0, 0, pick))
        elif draw < 0.95:
            operations.append((MARKET, account, side, 0, quantity, 0.0))
        else:
            price = MID + 3 if side is Side.BUY else MID - 3
            operations.append((IOC, account, side, price, quantity, 0.0))
    return operations


def background_levels(seed: int = 11) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    generator = random.Random(seed)
    bids = [(MID - 1 - index, generator.randrange(100, 2000)) for index in range(BACKGROUND_LEVELS)]
    asks = [(MID + 1 + index, generator.randrange(100, 2000)) for index in range(BACKGROUND_LEVELS)]
    return bids, asks


def make_engine() -> MatchingEngine:
    accounts = Accounts(keep_ledger=False)
    engine = MatchingEngine(accounts, order_history_limit=10_000)
    engine.add_instrument(Instrument("sim", SYMBOL, "BTC", "USDT", "0.01", "0.00001", "5"))
    for name in ACCOUNTS:
        accounts.deposit(name, "USDT", accounts.to_units("USDT", "1000000000"))
        accounts.deposit(name, "BTC", accounts.to_units("BTC", "100000"))
    bids, asks = background_levels()
    engine.apply_depth(SYMBOL, bids, asks)
    return engine


def run_engine(engine: MatchingEngine, operations: list, latencies: list[int] | None = None) -> int:
    """Drive the engine through ``operations``; return how many order operations ran.

    A place by an account already holding MAX_OPEN_PER_ACCOUNT order ids first cancels one of
    them (counted as an operation), so the book holds a steady few hundred orders.
    """
    bids, asks = background_levels()
    place = engine.place
    cancel = engine.cancel
    restore = engine.apply_depth
    open_ids: list[list[int]] = [[] for _ in ACCOUNTS]
    names = ACCOUNTS
    limit, market, ioc = OrderType.LIMIT, OrderType.MARKET, TimeInForce.IOC
    clock = time.perf_counter_ns
    count = len(operations)
    for index, (kind, account, side, price, quantity, pick) in enumerate(operations):
        if index % RESTORE_EVERY == 0:
            restore(SYMBOL, bids, asks)
        if kind == PLACE and len(open_ids[account]) >= MAX_OPEN_PER_ACCOUNT:
            ids = open_ids[account]
            position = int(pick * len(ids))
            target = ids[position]
            ids[position] = ids[-1]
            ids.pop()
            cancel(names[account], SYMBOL, order_id=target)
            count += 1
        start = clock() if latencies is not None else 0
        if kind == PLACE:
            result = place(names[account], SYMBOL, side, limit, quantity, price)
            if result.order is not None and result.order.level is not None:
                open_ids[account].append(result.order.order_id)
        elif kind == CANCEL:
            ids = open_ids[account]
            if ids:
                position = int(pick * len(ids))
                target = ids[position]
                ids[position] = ids[-1]
                ids.pop()
                cancel(names[account], SYMBOL, order_id=target)
        elif kind == MARKET:
            place(names[account], SYMBOL, side, market, quantity)
        else:
            place(names[account], SYMBOL, side, limit, quantity, price, ioc)
        if latencies is not None:
            latencies.append(clock() - start)
    return count


class NaiveMatcher:
    """The baseline: one unsorted list per side, linear scans for the best price and for cancels.

    It matches with the same price-time rules (background as resting orders of the market),
    without accounts, so the comparison flatters the baseline.
    """

    def __init__(self) -> None:
        self.bids: list[list[int]] = []  # [price, sequence, quantity, order id, owner]
        self.asks: list[list[int]] = []
        self.sequence = 0

    def set_level(self, is_bid: bool, price: int, size: int) -> None:
        book = self.bids if is_bid else self.asks
        book[:] = [order for order in book if not (order[0] == price and order[4] == -1)]
        if size:
            self.sequence += 1
            book.append([price, self.sequence, size, -1, -1])

    def place(self, owner: int, is_buy: bool, price: int | None, quantity: int, rest: bool) -> int:
        book = self.asks if is_buy else self.bids
        while quantity and book:
            if is_buy:
                best = min(book, key=lambda order: (order[0], order[1]))
                if price is not None and best[0] > price:
                    break
            else:
                best = min(book, key=lambda order: (-order[0], order[1]))
                if price is not None and best[0] < price:
                    break
            taken = min(quantity, best[2])
            best[2] -= taken
            quantity -= taken
            if not best[2]:
                book.remove(best)
        self.sequence += 1
        if quantity and rest and price is not None:
            resting = [price, self.sequence, quantity, self.sequence, owner]
            (self.bids if is_buy else self.asks).append(resting)
            return self.sequence
        return -1

    def cancel(self, order_id: int) -> bool:
        for book in (self.bids, self.asks):
            for order in book:
                if order[3] == order_id:
                    book.remove(order)
                    return True
        return False


def run_naive(operations: list) -> int:
    bids, asks = background_levels()
    matcher = NaiveMatcher()
    open_ids: list[list[int]] = [[] for _ in ACCOUNTS]
    count = len(operations)
    for index, (kind, account, side, price, quantity, pick) in enumerate(operations):
        if index % RESTORE_EVERY == 0:
            for level_price, size in bids:
                matcher.set_level(True, level_price, size)
            for level_price, size in asks:
                matcher.set_level(False, level_price, size)
        if kind == PLACE and len(open_ids[account]) >= MAX_OPEN_PER_ACCOUNT:
            ids = open_ids[account]
            position = int(pick * len(ids))
            target = ids[position]
            ids[position] = ids[-1]
            ids.pop()
            matcher.cancel(target)
            count += 1
        is_buy = side is Side.BUY
        if kind == PLACE:
            order_id = matcher.place(account, is_buy, price, quantity, True)
            if order_id >= 0:
                open_ids[account].append(order_id)
        elif kind == CANCEL:
            ids = open_ids[account]
            if ids:
                position = int(pick * len(ids))
                target = ids[position]
                ids[position] = ids[-1]
                ids.pop()
                matcher.cancel(target)
        elif kind == MARKET:
            matcher.place(account, is_buy, None, quantity, False)
        else:
            matcher.place(account, is_buy, price, quantity, False)
    return count


def run(options: BenchOptions) -> list[BenchResult]:
    """Matching engine in process, order round trips over loopback REST and WebSocket, then the
    market-data push and idle cost of a simulator process replaying at full speed."""
    from hftkit.bench import sim_roundtrip, sim_stream

    return [*matching_rows(options), *sim_roundtrip.run(options), *sim_stream.run(options)]


def matching_rows(options: BenchOptions) -> list[BenchResult]:
    count = 2_000 if options.quick else 30_000
    operations = make_workload(count)

    def engine_batch() -> int:
        return run_engine(make_engine(), operations)

    def naive_batch() -> int:
        return run_naive(operations)

    engine_ns = time_per_item(engine_batch, options)
    naive_ns = time_per_item(naive_batch, options)
    engine_rate = 1e9 / engine_ns
    naive_rate = 1e9 / naive_ns

    latencies: list[int] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        run_engine(make_engine(), operations, latencies)
    finally:
        if gc_was_enabled:
            gc.enable()
    engine = make_engine()
    run_engine(engine, operations)
    depth = engine.depth(SYMBOL)
    detail = {
        "operations": count,
        "mix": "60% place near touch, 30% cancel, 5% market, 5% IOC through touch",
        "resting_orders_at_end": sum(len(engine.open_orders(name)) for name in ACCOUNTS),
        "book_levels_at_end": len(depth.bids) + len(depth.asks),
        "reference": "existing end-to-end simulator: 200-350 orders/s (includes network round trips)",
    }
    return [
        compare(
            "matching engine: mixed orders/s (1 instrument, background liquidity)",
            engine_rate,
            "orders/s",
            baseline="naive list-scan matcher, same workload",
            baseline_value=naive_rate,
            target=">= 100,000 orders/s",
            met=engine_rate >= 100_000,
            **detail,
        ),
        compare(
            "matching engine: per-operation latency p50",
            percentile(latencies, 0.50) / 1000,
            "us",
            samples=len(latencies),
        ),
        compare(
            "matching engine: per-operation latency p99",
            percentile(latencies, 0.99) / 1000,
            "us",
            samples=len(latencies),
        ),
    ]
