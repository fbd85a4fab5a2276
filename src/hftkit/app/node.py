"""The trading node behind ``hftkit run``: simulator, venue adapters, books, probe orders, proof.

One event loop runs everything. A ``Simulator`` replays the recorded BTCUSDT/ETHUSDT markets
(Binance spot, and the Thalex perpetuals folded from the USD-M recordings) behind its real
protocol servers; the Binance and Thalex adapters connect to it over loopback exactly as they
would to the venues. Per adapter a ``VenueMonitor`` keeps an L2 book per symbol from the
adapter's events and measures each stage; per instrument an ``OrderExerciser`` places a passive
post-only order, lets it rest, cancels it, and does it again, timing each round trip and keeping
an account of every order it sent.

The node proves rather than assumes: Binance bookTickers are checked against the rebuilt top at
equal update ids while it runs, and at the end the market is paused and every book is compared
level by level with the simulator's own book. Every order must end accounted for (cancelled,
filled or rejected, nothing left open at the venue or in the simulator's engine).

Latency as measured here. The adapters expose counters but no latency histograms, so the node
measures at its listener: **decode** is from the socket frame's receipt (``receive_ns``, stamped
by the transport on the monotonic clock) to the normalized event reaching the node (typed decode,
tick/lot conversion and the adapter's own sequencing); **book apply** is the node's
``OrderBook`` update for that event; **order round trip** is a ``place_order`` or
``cancel_order`` call to the venue's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from hftkit.book.order_book import OrderBook
from hftkit.core.types import (
    BookDelta,
    BookTicker,
    ConnectionEvent,
    Fill,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
)
from hftkit.metrics import LatencyHistogram, MetricsRegistry
from hftkit.sim.config import BINANCE_SPOT, THALEX, SimConfig, config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.venues.base import (
    OrderNotFoundError,
    OrderOutcomeUnknownError,
    OrderRejectedError,
    OrderRequest,
    VenueAdapter,
    VenueError,
    VenueEvent,
)
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import RestConfig
from hftkit.venues.binance.streams import StreamConfig
from hftkit.venues.binance.user_stream import UserStreamConfig
from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig
from hftkit.venues.thalex.auth import ThalexCredentials

__all__ = [
    "PAUSED_SPEED",
    "PROBE_PREFIX",
    "BookCheck",
    "BookMonitor",
    "NodeConfig",
    "NodeReport",
    "OrderExerciser",
    "OrderLedger",
    "TradingNode",
    "VenueMonitor",
    "binance_config",
    "binance_credentials",
    "install_fast_event_loop",
    "thalex_config",
]

# A replay speed so slow that the next recorded message is days away: the market holds still.
PAUSED_SPEED = 1e-9
PROBE_PREFIX = "node"  # client order ids of the probe orders (Binance allows [A-Za-z0-9_-]{1,36})
_perf_ns = time.perf_counter_ns
_monotonic_ns = time.monotonic_ns


def install_fast_event_loop() -> str:
    """Use uvloop when it is installed (Linux/macOS); say which loop runs."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# wiring adapters to a running simulator ---------------------------------------------------------


def binance_credentials(sim: Simulator) -> BinanceCredentials:
    credentials = _credentials(sim)
    return BinanceCredentials(credentials.binance_api_key, credentials.binance_secret_key)


def binance_config(sim: Simulator, market: Market = Market.SPOT, **changes: Any) -> BinanceConfig:
    """A ``BinanceConfig`` pointing every channel (REST, streams, user data) at the simulator.

    USD-M user data uses the ``/private`` listen-key route: with spot and USD-M on one server,
    the bare ``/ws/<key>`` path belongs to the spot market streams.
    """
    rest_url = sim.urls["binance_rest"]
    ws_url = "ws" + rest_url.removeprefix("http")
    api_key = "binance_spot_ws_api" if market is Market.SPOT else "binance_usdm_ws_api"
    settings: dict[str, Any] = {
        "market": market,
        "rest": RestConfig(base_urls=[rest_url]),
        "streams": StreamConfig(base_urls=[ws_url]),
        "user_stream": UserStreamConfig(
            websocket_api_urls=[sim.urls[api_key]],
            stream_base_urls=[ws_url],
            listen_key_path="ws" if market is Market.SPOT else "private",
        ),
    }
    settings.update(changes)
    return BinanceConfig(**settings)


def thalex_config(sim: Simulator, **changes: Any) -> ThalexConfig:
    """A ``ThalexConfig`` logged in with the simulator's generated key."""
    credentials = _credentials(sim)
    if credentials.thalex_private_key_file is None:
        raise ValueError("the simulator has no Thalex private key file")
    private_key = Path(credentials.thalex_private_key_file).read_bytes()
    settings: dict[str, Any] = {
        "url": sim.urls["thalex_ws"],
        "credentials": ThalexCredentials(credentials.thalex_key_id, private_key),
    }
    settings.update(changes)
    return ThalexConfig(**settings)


def _credentials(sim: Simulator) -> Any:
    if sim.credentials is None:
        raise RuntimeError("the simulator is not started")
    return sim.credentials


# configuration -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeConfig:
    """What the node runs and how hard it exercises the venues."""

    seconds: float = 20.0
    speed: float = 1.0  # replay speed of the recordings (1 = as recorded)
    binance_symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    thalex_symbols: tuple[str, ...] = ("BTC-PERPETUAL", "ETH-PERPETUAL")
    order_interval_s: float = 0.5  # between probe orders of one instrument
    order_rest_s: float = 0.2  # how long a probe order rests before it is cancelled
    passive_offset_bps: int = 100  # probe price distance from the touch: it never fills
    probe_notional: str = "20"  # quote currency per probe order (at least the venue minimum)
    compare_levels: int = 20  # levels per side compared with the simulator's book at the end
    sync_timeout_s: float = 10.0  # for every book's first sync
    settle_timeout_s: float = 5.0  # for orders and books to settle at the end
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("seconds", "speed", "order_interval_s", "sync_timeout_s", "settle_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"NodeConfig.{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.order_rest_s) and self.order_rest_s >= 0):
            raise ValueError(f"NodeConfig.order_rest_s must be >= 0, got {self.order_rest_s!r}")
        if not 1 <= self.passive_offset_bps < 10_000:
            raise ValueError("NodeConfig.passive_offset_bps must lie in 1..9999")
        if self.compare_levels < 1:
            raise ValueError("NodeConfig.compare_levels must be >= 1")
        if Decimal(self.probe_notional) <= 0:
            raise ValueError("NodeConfig.probe_notional must be positive")
        if not self.binance_symbols and not self.thalex_symbols:
            raise ValueError("NodeConfig needs at least one symbol")

    def simulator_config(self) -> SimConfig:
        venues: dict[str, Any] = {}
        if self.binance_symbols:
            venues[BINANCE_SPOT] = {"symbols": list(self.binance_symbols)}
        if self.thalex_symbols:
            venues[THALEX] = {"symbols": list(self.thalex_symbols)}
        return config_from_mapping(
            {"venues": venues, "speed": self.speed, "seed": self.seed, "source": "replay"}, "<hftkit run>"
        )


# books -------------------------------------------------------------------------------------------


class BookMonitor:
    """The node's L2 book of one instrument, built from the adapter's events, and its checks."""

    __slots__ = (
        "_rate_count",
        "_rate_ns",
        "average_rate",
        "book",
        "crossed",
        "deltas",
        "instrument",
        "last_update_id",
        "messages",
        "pending_tickers",
        "rate",
        "resyncs",
        "run_start",
        "snapshots",
        "synced",
        "ticker_mismatches",
        "tickers_checked",
        "trades",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.book = OrderBook(instrument.symbol)
        self.synced = False
        self.last_update_id = -1
        self.messages = 0
        self.deltas = 0
        self.snapshots = 0
        self.trades = 0
        self.resyncs = 0
        self.crossed = 0
        self.tickers_checked = 0
        self.ticker_mismatches = 0
        self.pending_tickers: dict[int, tuple[int, int]] = {}
        self.rate = 0.0  # live, between display samples
        self.average_rate = 0.0  # over the whole running phase, set when it ends
        self.run_start = (0, 0)  # (monotonic ns, messages) when the running phase began
        self._rate_ns = 0
        self._rate_count = 0

    def apply(self, delta: BookDelta) -> bool:
        """Apply one book event; False when it cannot be applied (no snapshot since the last loss)."""
        book = self.book
        if delta.is_snapshot:
            book.apply_snapshot(delta.bids, delta.asks, delta.last_update_id)
            self.synced = True
            self.snapshots += 1
            self.pending_tickers.clear()
        elif self.synced:
            book.apply_delta(delta.bids, delta.asks)
            self.deltas += 1
        else:
            return False
        self.last_update_id = delta.last_update_id
        if book.is_crossed():
            self.crossed += 1
        return True

    def lose_sync(self) -> None:
        if self.synced:
            self.resyncs += 1
        self.synced = False
        self.pending_tickers.clear()

    def check_ticker(self, ticker: BookTicker) -> None:
        """Compare the venue's top with ours when both describe the same update id."""
        update_id = ticker.update_id
        if update_id < 0 or not self.synced:
            return
        top = (ticker.bid_price, ticker.ask_price)
        if update_id == self.last_update_id:
            self._compare(top)
        elif update_id > self.last_update_id:
            pending = self.pending_tickers
            if len(pending) > 10_000:
                pending.clear()  # the book stopped advancing: never grow without bound
            pending[update_id] = top

    def after_delta(self) -> None:
        pending = self.pending_tickers
        if not pending:
            return
        top = pending.pop(self.last_update_id, None)
        if top is not None:
            self._compare(top)
        for stale in [key for key in pending if key < self.last_update_id]:
            del pending[stale]

    def _compare(self, top: tuple[int, int]) -> None:
        self.tickers_checked += 1
        bid, ask = self.book.best_bid_price(), self.book.best_ask_price()
        if (bid, ask) != top:
            self.ticker_mismatches += 1

    def sample_rate(self, now_ns: int) -> float:
        """Messages per second since the previous sample (kept when samples come too close)."""
        if not self._rate_ns:
            self._rate_ns, self._rate_count = now_ns, self.messages
            return self.rate
        elapsed = now_ns - self._rate_ns
        if elapsed >= 500_000_000:
            self.rate = (self.messages - self._rate_count) * 1e9 / elapsed
            self._rate_ns, self._rate_count = now_ns, self.messages
        return self.rate


class VenueMonitor:
    """The node's listener on one adapter: books, message counts, latency, reconnects, orders."""

    def __init__(self, adapter: VenueAdapter, symbols: Sequence[str], registry: MetricsRegistry) -> None:
        self.adapter = adapter
        self.name = adapter.name
        instruments = adapter.instruments
        self.books: dict[str, BookMonitor] = {symbol: BookMonitor(instruments[symbol]) for symbol in symbols}
        self.decode: LatencyHistogram = registry.histogram("node_decode_ns", venue=self.name)
        self.book_apply: LatencyHistogram = registry.histogram("node_book_apply_ns", venue=self.name)
        self.messages = 0
        self.reconnects = 0
        self._connected_streams: set[str] = set()
        self._dropped_streams: set[str] = set()
        self.closed = False  # the node stopped observing (adapters shutting down): figures are final
        self.events: Counter[str] = Counter()
        self.orders: dict[str, OrderUpdate] = {}  # latest update per client order id
        self.fills: list[Fill] = []
        self.ignored = 0  # events of symbols the node does not follow

    def __call__(self, event: VenueEvent) -> None:
        if self.closed:
            return
        arrived = _monotonic_ns()
        self.messages += 1
        kind = type(event)
        if kind is BookDelta:
            self._on_book(event, arrived)  # type: ignore[arg-type]
        elif kind is BookTicker or kind is Trade:
            state = self.books.get(event.symbol)  # type: ignore[union-attr]
            if state is None:
                self.ignored += 1
                return
            state.messages += 1
            if event.receive_ns:  # type: ignore[union-attr]
                self.decode.record(arrived - event.receive_ns)  # type: ignore[union-attr]
            if kind is Trade:
                state.trades += 1
            else:
                state.check_ticker(event)  # type: ignore[arg-type]
        elif kind is OrderUpdate:
            self.orders[event.client_order_id] = event  # type: ignore[union-attr]
        elif kind is Fill:
            self.fills.append(event)  # type: ignore[arg-type]
        elif kind is ConnectionEvent:
            self._on_connection(event)  # type: ignore[arg-type]
        self.events[kind.__name__] += 1

    def _on_book(self, delta: BookDelta, arrived: int) -> None:
        state = self.books.get(delta.symbol)
        if state is None:
            self.ignored += 1
            return
        state.messages += 1
        if delta.receive_ns:
            self.decode.record(arrived - delta.receive_ns)
        started = _perf_ns()
        applied = state.apply(delta)
        self.book_apply.record(_perf_ns() - started)
        if applied:
            state.after_delta()

    def _on_connection(self, event: ConnectionEvent) -> None:
        stream_name = event.stream
        if event.state == "connected":
            # a stream connecting again is a reconnect; the first connect of each is the start
            # (a session may have connected before the node listened: its drop says it was up)
            if stream_name in self._connected_streams or stream_name in self._dropped_streams:
                self.reconnects += 1
            self._connected_streams.add(stream_name)
            return
        if event.state == "disconnected":
            self._dropped_streams.add(stream_name)
        if event.state in ("disconnected", "resyncing"):
            # both adapters name the book's stream (``btcusdt@depth``, ``book.BTC-PERPETUAL...``)
            stream = event.stream.lower()
            for symbol, state in self.books.items():
                if symbol.lower() in stream:
                    state.lose_sync()

    @property
    def synced(self) -> bool:
        return all(state.synced for state in self.books.values())


# orders ------------------------------------------------------------------------------------------


@dataclass
class OrderLedger:
    """Every probe order of one venue, from request to a known end."""

    sent: int = 0
    acknowledged: int = 0
    cancelled: int = 0
    filled: int = 0
    rejected: int = 0
    never_created: int = 0  # an unknown outcome the venue settled as "no such order"
    failures: int = 0  # requests that failed with an error other than a venue answer
    skipped: int = 0  # cycles without a synced two-sided book
    open: dict[str, str] = field(default_factory=dict)  # client id -> symbol, not yet closed
    unknown: dict[str, str] = field(default_factory=dict)  # client id -> symbol, outcome unknown
    incidents: list[str] = field(default_factory=list)  # rejects and failed calls, for the log

    @property
    def closed(self) -> int:
        return self.cancelled + self.filled + self.rejected + self.never_created

    @property
    def accounted(self) -> bool:
        return not self.open and not self.unknown and self.sent == self.closed

    def close(self, client_order_id: str, status: OrderStatus) -> None:
        """Record an order's end once; a second word on an order already closed changes nothing."""
        was_open = self.open.pop(client_order_id, None) is not None
        was_unknown = self.unknown.pop(client_order_id, None) is not None
        if not (was_open or was_unknown):
            return
        if status is OrderStatus.FILLED:
            self.filled += 1
        elif status is OrderStatus.REJECTED:
            self.rejected += 1
        else:
            self.cancelled += 1  # CANCELED and EXPIRED: the order left the book unfilled or partly


class OrderExerciser:
    """Passive post-only probe orders on one instrument: place, rest, cancel, time both calls."""

    def __init__(
        self,
        adapter: VenueAdapter,
        monitor: VenueMonitor,
        symbol: str,
        ledger: OrderLedger,
        place_latency: LatencyHistogram,
        cancel_latency: LatencyHistogram,
        config: NodeConfig,
        prefix: str,
    ) -> None:
        self.adapter = adapter
        self.monitor = monitor
        self.symbol = symbol
        self.instrument = adapter.instruments[symbol]
        self.ledger = ledger
        self.place_latency = place_latency
        self.cancel_latency = cancel_latency
        self.config = config
        self.prefix = prefix
        self._sequence = 0

    async def run(self, stop: asyncio.Event) -> None:
        side = Side.BUY
        while not stop.is_set():
            await self.cycle(side)
            side = side.opposite
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.order_interval_s)

    def probe_price(self, side: Side) -> int | None:
        """A price ``passive_offset_bps`` behind our side's touch, on the tick grid."""
        book = self.monitor.books[self.symbol]
        bid, ask = book.book.best_bid_price(), book.book.best_ask_price()
        if not book.synced or bid is None or ask is None:
            return None
        offset = self.config.passive_offset_bps
        if side is Side.BUY:
            return max(1, bid * (10_000 - offset) // 10_000)
        return -(-ask * (10_000 + offset) // 10_000)

    def probe_quantity(self, price: int) -> int:
        """The fewest lots worth ``probe_notional`` that clear the venue's minimums."""
        instrument = self.instrument
        per_lot = instrument.notional(price, 1)
        wanted = max(Decimal(self.config.probe_notional), instrument.min_notional * Decimal("1.1"))
        lots = max(instrument.min_quantity, math.ceil(wanted / per_lot))
        if instrument.max_quantity is not None:
            lots = min(lots, instrument.max_quantity)
        return lots

    async def cycle(self, side: Side) -> None:
        price = self.probe_price(side)
        ledger = self.ledger
        if price is None:
            ledger.skipped += 1
            return
        self._sequence += 1
        client_order_id = f"{self.prefix}{self._sequence}"
        request = OrderRequest(
            client_order_id=client_order_id,
            symbol=self.symbol,
            side=side,
            quantity=self.probe_quantity(price),
            price=price,
            order_type=OrderType.LIMIT_MAKER,
            time_in_force=TimeInForce.GTC,
        )
        ledger.sent += 1
        ledger.open[client_order_id] = self.symbol
        started = _perf_ns()
        try:
            update = await self.adapter.place_order(request)
        except OrderRejectedError as error:
            ledger.close(client_order_id, OrderStatus.REJECTED)
            ledger.incidents.append(f"{self.adapter.name} {client_order_id} rejected: {error}")
            return
        except OrderOutcomeUnknownError:
            del ledger.open[client_order_id]
            ledger.unknown[client_order_id] = self.symbol  # settled at the end, never re-sent
            return
        except (VenueError, OSError) as error:
            del ledger.open[client_order_id]
            ledger.unknown[client_order_id] = self.symbol
            ledger.failures += 1
            ledger.incidents.append(f"{self.adapter.name} {client_order_id} place failed: {error!r}")
            return
        self.place_latency.record(_perf_ns() - started)
        ledger.acknowledged += 1
        if update.status.is_terminal:
            ledger.close(client_order_id, update.status)
            return
        if self.config.order_rest_s:
            await asyncio.sleep(self.config.order_rest_s)
        await self.cancel(client_order_id)

    async def cancel(self, client_order_id: str) -> None:
        ledger = self.ledger
        started = _perf_ns()
        try:
            update = await self.adapter.cancel_order(self.symbol, client_order_id)
        except OrderNotFoundError:
            await settle_order(self.adapter, self.symbol, client_order_id, ledger)  # closed meanwhile
            return
        except (VenueError, OSError) as error:
            ledger.failures += 1
            ledger.incidents.append(f"{self.adapter.name} {client_order_id} cancel failed: {error!r}")
            return  # still in ``open``: settled at the end
        self.cancel_latency.record(_perf_ns() - started)
        if update.status.is_terminal:
            ledger.close(client_order_id, update.status)
        else:  # the venue did not say it is gone: it stays open and is settled at the end
            ledger.incidents.append(f"{self.adapter.name} {client_order_id}: cancel answered {update.status}")


async def settle_order(adapter: VenueAdapter, symbol: str, client_order_id: str, ledger: OrderLedger) -> None:
    """Learn a probe order's end from the venue; cancel it if it is somehow still open."""
    try:
        found = await adapter.query_order(symbol, client_order_id)
    except (VenueError, OSError) as error:
        ledger.incidents.append(f"{adapter.name} {client_order_id}: query failed: {error!r}")
        return
    if found is None:
        if client_order_id in ledger.unknown:
            ledger.unknown.pop(client_order_id)
            ledger.never_created += 1
        else:
            ledger.incidents.append(
                f"{adapter.name} {client_order_id}: acknowledged, yet unknown to the venue"
            )
        return
    if found.status.is_terminal:
        ledger.close(client_order_id, found.status)
        return
    try:
        cancelled = await adapter.cancel_order(symbol, client_order_id)
    except (VenueError, OSError) as error:
        ledger.incidents.append(f"{adapter.name} {client_order_id}: cancel while settling failed: {error!r}")
        return
    if cancelled.status.is_terminal:
        ledger.close(client_order_id, cancelled.status)
    else:
        ledger.incidents.append(f"{adapter.name} {client_order_id}: still {cancelled.status} after a cancel")


# the node ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookCheck:
    """One book compared level by level with the simulator's book while the market held still."""

    venue: str
    symbol: str
    matched: bool
    levels: int
    detail: str = ""


@dataclass
class NodeReport:
    """What the run proved; ``problems`` lists every reason it is not healthy."""

    elapsed_s: float = 0.0
    loop: str = ""
    book_checks: list[BookCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth reading, not failures (a reject, a retry)

    @property
    def healthy(self) -> bool:
        return not self.problems


class TradingNode:
    """Simulator + Binance and Thalex adapters + monitors + probe orders, for a bounded time."""

    def __init__(self, config: NodeConfig | None = None, *, sim_config: SimConfig | None = None) -> None:
        self.config = config = config or NodeConfig()
        self.sim_config = sim_config or config.simulator_config()
        self.registry = MetricsRegistry()
        self.sim: Simulator | None = None
        self.adapters: dict[str, VenueAdapter] = {}
        self.monitors: dict[str, VenueMonitor] = {}
        self.ledgers: dict[str, OrderLedger] = {}
        self.place_latency: dict[str, LatencyHistogram] = {}
        self.cancel_latency: dict[str, LatencyHistogram] = {}
        self.report = NodeReport()
        self.phase = "starting"
        self.started_ns = 0
        self._sim_venues: dict[str, str] = {}  # adapter name -> simulator venue

    # run -------------------------------------------------------------------------------------
    async def run(self, on_tick: Callable[[], None] | None = None, tick_s: float = 0.25) -> NodeReport:
        """Run for ``config.seconds`` (after every book synced), then settle, verify and stop."""
        self.started_ns = _monotonic_ns()
        self.report = report = NodeReport(loop=type(asyncio.get_running_loop()).__module__.split(".")[0])
        config = self.config
        async with Simulator(self.sim_config) as sim, contextlib.AsyncExitStack() as stack:
            self.sim = sim
            await sim.wait_seeded()
            adapters = await self._connect(sim, stack)
            await self._wait_synced()
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(exerciser.run(stop), name=f"node:orders:{exerciser.prefix}")
                for exerciser in self._exercisers(adapters)
            ]
            self.phase = "running"
            self._mark_rates(start=True)
            try:
                deadline = time.monotonic() + config.seconds
                while time.monotonic() < deadline:
                    await asyncio.sleep(min(tick_s, max(0.0, deadline - time.monotonic())))
                    for task in tasks:
                        if task.done() and not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    if on_tick is not None:
                        on_tick()
            finally:
                stop.set()
                self._mark_rates(start=False)
                self.phase = "settling"
                if tasks:
                    _, pending = await asyncio.wait(tasks, timeout=config.settle_timeout_s)
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
            await self._settle_orders(adapters, report)
            self.phase = "verifying"
            await self._verify_books(sim, report)
            self._final_checks(sim, report)
            for monitor in self.monitors.values():
                monitor.closed = True
        report.elapsed_s = (_monotonic_ns() - self.started_ns) / 1e9
        self.phase = "done"
        return report

    async def _connect(self, sim: Simulator, stack: contextlib.AsyncExitStack) -> dict[str, VenueAdapter]:
        config = self.config
        adapters: dict[str, VenueAdapter] = {}
        wanted: list[tuple[VenueAdapter, tuple[str, ...], str]] = []
        if config.binance_symbols:
            binance = BinanceAdapter(binance_credentials(sim), binance_config(sim, Market.SPOT))
            wanted.append((binance, config.binance_symbols, BINANCE_SPOT))
        if config.thalex_symbols:
            thalex = ThalexAdapter(thalex_config(sim), metrics=self.registry)
            wanted.append((thalex, config.thalex_symbols, THALEX))
        for adapter, symbols, sim_venue in wanted:
            await stack.enter_async_context(adapter)  # type: ignore[arg-type]
            monitor = VenueMonitor(adapter, symbols, self.registry)
            adapter.add_listener(monitor)
            self.monitors[adapter.name] = monitor
            self.ledgers[adapter.name] = OrderLedger()
            self.place_latency[adapter.name] = self.registry.histogram(
                "node_order_round_trip_ns", venue=adapter.name, request="place"
            )
            self.cancel_latency[adapter.name] = self.registry.histogram(
                "node_order_round_trip_ns", venue=adapter.name, request="cancel"
            )
            self._sim_venues[adapter.name] = sim_venue
            adapters[adapter.name] = self.adapters[adapter.name] = adapter
            await adapter.subscribe(list(symbols), books=True, trades=True)
        return adapters

    async def _wait_synced(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.sync_timeout_s
        while not all(monitor.synced for monitor in self.monitors.values()):
            if loop.time() > deadline:
                missing = [
                    f"{name}:{symbol}"
                    for name, monitor in self.monitors.items()
                    for symbol, state in monitor.books.items()
                    if not state.synced
                ]
                raise TimeoutError(f"books not synced within {self.config.sync_timeout_s:g}s: {missing}")
            await asyncio.sleep(0.01)

    def _exercisers(self, adapters: Mapping[str, VenueAdapter]) -> list[OrderExerciser]:
        exercisers = []
        session = f"{_monotonic_ns() // 1_000_000 % 100_000:05d}"
        for index, (name, adapter) in enumerate(adapters.items()):
            monitor = self.monitors[name]
            for offset, symbol in enumerate(monitor.books):
                exercisers.append(
                    OrderExerciser(
                        adapter,
                        monitor,
                        symbol,
                        self.ledgers[name],
                        self.place_latency[name],
                        self.cancel_latency[name],
                        self.config,
                        prefix=f"{PROBE_PREFIX}{session}v{index}s{offset}n",
                    )
                )
        return exercisers

    async def _settle_orders(self, adapters: Mapping[str, VenueAdapter], report: NodeReport) -> None:
        for name, adapter in adapters.items():
            ledger = self.ledgers[name]
            for client_order_id, symbol in [*ledger.open.items(), *ledger.unknown.items()]:
                await settle_order(adapter, symbol, client_order_id, ledger)
            try:
                still_open = [
                    order.client_order_id
                    for order in await adapter.open_orders()
                    if order.client_order_id.startswith(PROBE_PREFIX)
                ]
            except (VenueError, OSError) as error:
                report.problems.append(f"{name}: open orders unavailable at the end: {error!r}")
                continue
            if still_open:
                report.problems.append(f"{name}: probe orders still open at the venue: {still_open}")

    async def _verify_books(self, sim: Simulator, report: NodeReport) -> None:
        """Pause the market, let the feeds drain, compare every book with the simulator's."""
        for venue in sim.venues:
            sim.set_speed(venue, PAUSED_SPEED)
        levels = self.config.compare_levels
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.settle_timeout_s
        while True:
            checks = [
                self._compare_book(sim, name, symbol, state, levels)
                for name, monitor in self.monitors.items()
                for symbol, state in monitor.books.items()
            ]
            if all(check.matched for check in checks) or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        report.book_checks = checks
        for check in checks:
            if not check.matched:
                report.problems.append(
                    f"book {check.venue}:{check.symbol} differs from the venue: {check.detail}"
                )

    def _compare_book(
        self, sim: Simulator, name: str, symbol: str, state: BookMonitor, levels: int
    ) -> BookCheck:
        engine = sim.venues[self._sim_venues[name]].engine
        venue_book = engine.depth(symbol, levels)
        if not state.synced:
            return BookCheck(name, symbol, False, 0, "not synced")
        ours_bids, ours_asks = state.book.bids(levels), state.book.asks(levels)
        for side, ours, theirs in (("bid", ours_bids, venue_book.bids), ("ask", ours_asks, venue_book.asks)):
            theirs = [tuple(level) for level in theirs]
            if ours != theirs:
                for depth, (mine, venue) in enumerate(zip(ours, theirs, strict=False)):
                    if mine != venue:
                        return BookCheck(
                            name, symbol, False, depth, f"{side} level {depth}: {mine} != {venue}"
                        )
                return BookCheck(name, symbol, False, 0, f"{side}s: {len(ours)} levels != {len(theirs)}")
        return BookCheck(name, symbol, True, min(len(ours_bids), len(ours_asks)))

    def _final_checks(self, sim: Simulator, report: NodeReport) -> None:
        account = _credentials(sim).account
        for name, monitor in self.monitors.items():
            ledger = self.ledgers[name]
            if ledger.acknowledged == 0:
                report.problems.append(f"{name}: no probe order was acknowledged")
            if ledger.cancelled == 0:
                report.problems.append(f"{name}: no probe order was cancelled")
            if not ledger.accounted:
                report.problems.append(
                    f"{name}: orders not accounted for: sent {ledger.sent}, closed {ledger.closed}, "
                    f"open {sorted(ledger.open)}, unknown {sorted(ledger.unknown)}"
                )
            (report.notes if ledger.accounted else report.problems).extend(ledger.incidents[:5])
            resting = sim.venues[self._sim_venues[name]].engine.open_orders(account)
            if resting:
                report.problems.append(f"{name}: {len(resting)} orders still rest in the simulator")
            for symbol, state in monitor.books.items():
                if state.ticker_mismatches:
                    report.problems.append(
                        f"book {name}:{symbol}: {state.ticker_mismatches} of {state.tickers_checked} "
                        "bookTickers disagree with the rebuilt top"
                    )
                if state.crossed:
                    report.problems.append(f"book {name}:{symbol}: crossed {state.crossed} times")
                if state.resyncs and not monitor.reconnects:
                    # with every connection up, a resync means the feed had a gap: out of sync meanwhile
                    report.problems.append(
                        f"book {name}:{symbol}: resynced {state.resyncs} times without a reconnect"
                    )

    # what the display reads ------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return (_monotonic_ns() - self.started_ns) / 1e9 if self.started_ns else 0.0

    def _mark_rates(self, *, start: bool) -> None:
        """Average messages per second of each book over the running phase (the market is
        paused afterwards, so the live rate would read zero in the final summary)."""
        now = _monotonic_ns()
        for monitor in self.monitors.values():
            for state in monitor.books.values():
                if start:
                    state.run_start = (now, state.messages)
                else:
                    started_ns, messages = state.run_start
                    elapsed = now - started_ns
                    state.average_rate = (state.messages - messages) * 1e9 / elapsed if elapsed > 0 else 0.0

    def sample_rates(self) -> None:
        now = _monotonic_ns()
        for monitor in self.monitors.values():
            for state in monitor.books.values():
                state.sample_rate(now)
