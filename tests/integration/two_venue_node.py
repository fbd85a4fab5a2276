"""The market maker + hedger node on two simulated venues: one assembly shared by the tests.

One ``Simulator`` replays the recorded USD-M BTCUSDT market into its Binance USD-M venue and,
folded to 1 USD buckets, into its Thalex BTC-PERPETUAL. The real adapters connect to its protocol
servers; a ``TradingEngine`` runs the Avellaneda-Stoikov ``MarketMaker`` on Thalex and a
``CrossVenueHedger`` that flattens the BTC exposure on Binance through the router and the
execution engine. The helpers below read the simulator's own state, the ground truth a verdict
compares the node with.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from hftkit.app.sim_wiring import binance_config, binance_credentials, thalex_config
from hftkit.core.types import Side
from hftkit.sim.config import BINANCE_USDM, THALEX, SimConfig, config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.strategies import CrossVenueHedger, HedgerConfig, MarketMaker, MarketMakerConfig
from hftkit.trading.engine import TradingEngine
from hftkit.trading.execution import ExecutionConfig
from hftkit.trading.risk import InstrumentLimits
from hftkit.venues.binance.adapter import BinanceAdapter
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.thalex.adapter import ThalexAdapter

PERPETUAL = "BTC-PERPETUAL"
FUTURE = "BTCUSDT"
MAKER_VENUE = "thalex"
HEDGE_VENUE = "binance_usdm"
MAX_BOOK_AGE_MS = 1_500
# (adapter name, simulator venue, symbol) of every instrument the node trades
INSTRUMENTS = ((MAKER_VENUE, THALEX, PERPETUAL), (HEDGE_VENUE, BINANCE_USDM, FUTURE))


def simulator_config(*, seed: int = 7, faults: str = "none", speed: float = 10) -> SimConfig:
    """Both venues replaying the recorded market ``speed`` times faster, under one fault profile."""
    return config_from_mapping(
        {
            "venues": {BINANCE_USDM: {"symbols": [FUTURE]}, THALEX: {"symbols": [PERPETUAL]}},
            "speed": speed,
            "seed": seed,
            "faults": faults,
        },
        "<integration>",
    )


@dataclass
class TwoVenueNode:
    """The node's parts, not started: ``await node.manager.start()`` connects and trades."""

    sim: Simulator
    account: str
    binance: BinanceAdapter
    thalex: ThalexAdapter
    maker: MarketMaker
    hedger: CrossVenueHedger
    manager: TradingEngine


def build_node(sim: Simulator) -> TwoVenueNode:
    """Adapters, the maker on Thalex, the hedger on Binance USD-M and the manager that runs them."""
    account = sim.credentials.account  # type: ignore[union-attr]
    binance = BinanceAdapter(binance_credentials(sim), binance_config(sim, Market.USDM))
    thalex = ThalexAdapter(thalex_config(sim))
    maker = MarketMaker(
        MarketMakerConfig(
            venue=MAKER_VENUE,
            symbol=PERPETUAL,
            size_per_level=2,  # 0.002 BTC
            max_position=10,
            gamma=0.1,
            kappa=1.5,
            levels=1,
            initial_volatility=0.5,
            inventory_group="BTC",
        ),
        name="maker",
    )
    hedger = CrossVenueHedger(
        HedgerConfig(
            group="BTC",
            hedge_on=((HEDGE_VENUE, FUTURE),),
            watch=((MAKER_VENUE, PERPETUAL),),
            threshold=Decimal("0.001"),  # any hedge is >= 0.002 BTC: above USD-M's 100 USDT minimum
            cooldown_s=0.2,
            check_interval_s=0.2,
            slippage_bps=20.0,
        )
    )
    limits = InstrumentLimits(max_book_age_ms=MAX_BOOK_AGE_MS)
    manager = TradingEngine.build(
        [binance, thalex],
        [maker, hedger],
        instrument_limits={(MAKER_VENUE, PERPETUAL): limits, (HEDGE_VENUE, FUTURE): limits},
        execution=ExecutionConfig(latency_budget_us=None),
    )
    return TwoVenueNode(sim, account, binance, thalex, maker, hedger, manager)


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}")
        await asyncio.sleep(0.005)


async def watchdog(manager: TradingEngine, period_s: float = 0.05) -> None:
    """The periodic book-staleness sweep a node runs beside the strategies."""
    while True:
        manager.risk.check_books()
        await asyncio.sleep(period_s)


def resting(sim: Simulator, venue: str, account: str) -> Counter[tuple[Side, int]]:
    """What rests in the simulator's matching engine for us: (side, price) -> orders."""
    return Counter(
        (Side.BUY if order.is_buy else Side.SELL, order.price)
        for order in sim.venues[venue].engine.open_orders(account)
    )


def tracked(manager: TradingEngine, venue: str, symbol: str) -> Counter[tuple[Side, int]]:
    return Counter((order.side, order.price) for order in manager.tracker.open_orders(venue, symbol))


def sim_position(sim: Simulator, venue: str, account: str, symbol: str) -> int:
    return sim.venues[venue].accounts.get(account).position(symbol).quantity
