"""A node's side of the bus: making the bus from config, books from the bus, reports, kill switch.

Every node with ``bus.enabled`` (strategy, feed, risk) gets a ``NodeBusLink``: it starts the
bus, reads the firm-wide control stream in a consumer group of its own (so every node receives
every kill message) and trips the node's kill switch on a ``trip``, publishes the node's
positions and PnL every ``report_interval_s`` for the risk node, and exports the bus's state
(lag and pending entries per stream, reconnects, buffered and dropped messages) to the node's
metrics registry, which ``/metrics`` and the dashboard read.

How late a node obeys the kill switch: the control reader blocks on ``XREADGROUP ... BLOCK``,
which returns as soon as the message is added, so a connected node trips one Redis round trip
after the risk node publishes (milliseconds on a LAN); the stated bound is ``block_ms`` + 100 ms
(``KILL_BOUND_S``), measured by the tests. A node that cannot reach Redis cannot hear the
switch: its ``bus_connected`` gauge and ``/health`` say so.

``BusMarketVenue`` (``market_data: bus``) combines a venue's real adapter, for orders and the
account, with ``hftkit.bus.books.BusBooks`` for the books: the engine reads ``book()`` and
``book_synced()`` and receives ``BookDelta`` events exactly as from a venue adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hftkit.app.config import BusConfig
from hftkit.book.order_book import OrderBook
from hftkit.bus.base import MessageBus
from hftkit.bus.books import BusBooks
from hftkit.bus.messages import (
    BalanceMessage,
    BusNameError,
    FillMessage,
    KillSwitchMessage,
    NodeReport,
    OrderMessage,
    PositionFigure,
    PositionMessage,
    stream_name,
)
from hftkit.core.types import (
    BalanceUpdate,
    BookDelta,
    BookTicker,
    Fill,
    Instrument,
    OrderUpdate,
    PositionUpdate,
    Trade,
)
from hftkit.metrics import MetricsRegistry
from hftkit.venues.base import EventListener, VenueAdapter, VenueStatus

_log = logging.getLogger(__name__)

CONTROL_STREAM = stream_name("control")
REPORT_STREAM = stream_name("report")
_MARKET_EVENTS = (BookDelta, Trade, BookTicker)


def kill_bound_s(config: BusConfig) -> float:
    """The stated bound between the kill message's publication and a connected node's trip."""
    return config.block_ms / 1000 + 0.1


def make_bus(config: BusConfig) -> MessageBus:
    """The configured bus (not started)."""
    if config.backend == "in_process":
        from hftkit.bus.memory import InProcessBus

        return InProcessBus(track_lag=True)
    try:
        from hftkit.bus.redis_streams import RedisStreamsBus
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] != "redis":
            raise
        raise ModuleNotFoundError(
            "bus.backend: redis needs the Redis client: pip install 'hftkit[redis]'", name=error.name
        ) from error

    return RedisStreamsBus(
        config.url,
        maxlen=config.maxlen,
        buffer_messages=config.buffer_messages,
        block_ms=config.block_ms,
        claim_idle_ms=config.claim_idle_ms,
    )


def export_bus_metrics(metrics: MetricsRegistry, bus: MessageBus) -> None:
    """The bus's state as gauges (read at the dashboard's pace, never on the hot path)."""
    status = bus.status()
    for name, value, help_text in (
        ("bus_connected", 1.0 if status.connected else 0.0, "1 while the bus is reachable"),
        ("bus_published", status.published, "messages accepted by publish"),
        ("bus_written", status.written, "messages the bus accepted (XADD answered)"),
        ("bus_dropped", status.dropped, "messages lost: publish buffer full, or unwritten at close"),
        ("bus_buffered", status.buffered, "messages waiting for the bus"),
        ("bus_reconnects", status.reconnects, "connections to the bus re-established"),
        ("bus_decode_errors", status.decode_errors, "entries that were not bus messages"),
        ("bus_handler_errors", status.handler_errors, "subscriber callbacks that raised"),
    ):
        metrics.gauge(name, help_text).set(float(value))
    for stream, item in status.streams.items():
        metrics.gauge("bus_lag_seconds", "publish -> consume, last message", stream=stream).set(
            item.lag_ns / 1e9
        )
        metrics.gauge("bus_pending", "delivered to the group, not acknowledged", stream=stream).set(
            float(item.pending)
        )
        metrics.gauge("bus_delivered", "messages handed to this node", stream=stream).set(
            float(item.delivered)
        )
        metrics.gauge("bus_claimed", "pending entries taken over from dead consumers", stream=stream).set(
            float(item.claimed)
        )


def bus_line(bus: MessageBus | None) -> str:
    """The bus in one line for the dashboard ("" without a bus)."""
    if bus is None:
        return ""
    status = bus.status()
    worst = max(status.streams.values(), key=lambda item: item.lag_ns, default=None)
    pending = sum(item.pending for item in status.streams.values())
    lag = "-" if worst is None else f"{worst.lag_ns / 1e6:.2f} ms"
    state = "ok" if status.connected else f"DOWN ({status.last_error or 'unreachable'})"
    return (
        f"bus {status.kind} {state}: {len(status.streams)} streams, max lag {lag}, {pending} pending, "
        f"{status.buffered} buffered, {status.dropped} dropped, {status.reconnects} reconnects"
    )


class NodeBusLink:
    """One node's bus: control stream (kill switch), reports, metrics (see the module docstring)."""

    def __init__(
        self,
        config: BusConfig,
        metrics: MetricsRegistry,
        *,
        role: str,
        bus: MessageBus | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.role = role
        self.node_id = config.node_id
        self.bus = bus if bus is not None else make_bus(config)
        self._clock_ns = clock_ns
        self._kill_handlers: list[Callable[[str], None]] = []
        self._figures: Callable[[], list[PositionFigure]] | None = None
        self._tripped: Callable[[], bool] = lambda: False
        self._task: asyncio.Task[None] | None = None
        self.kills_received = 0
        self.unpublishable = 0  # account events whose venue/symbol cannot be a stream name
        self.last_kill: KillSwitchMessage | None = None
        self._standing: KillSwitchMessage | None = None  # a trip published before this node started

    async def start(self) -> None:
        """Start the bus; a firm-wide trip standing when the node starts (the control stream's
        latest message is a ``trip``, not yet followed by a ``reset``) is obeyed at once."""
        self.bus.subscribe(
            [CONTROL_STREAM], self._on_control, group=f"{self.node_id}.control", consumer=self.node_id
        )
        await self.bus.start()
        standing = await self.bus.latest(CONTROL_STREAM)
        if isinstance(standing, KillSwitchMessage) and standing.action == "trip":
            self._standing = standing
        self._task = asyncio.get_running_loop().create_task(self._periodic(), name="bus:node-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publish_report()  # the last word: positions at the end
        await self.bus.close()

    def on_kill(self, handler: Callable[[str], None]) -> None:
        """``handler(reason)`` runs when a firm-wide ``trip`` arrives (at once for a standing one)."""
        self._kill_handlers.append(handler)
        standing = self._standing
        if standing is not None:
            handler(f"firm-wide kill switch from {standing.origin} (standing): {standing.reason}")

    def report_with(self, figures: Callable[[], list[PositionFigure]], tripped: Callable[[], bool]) -> None:
        self._figures = figures
        self._tripped = tripped

    def _on_control(self, stream: str, message: Any) -> None:
        if not isinstance(message, KillSwitchMessage):
            return
        self.last_kill = message
        if message.action != "trip":
            _log.warning(
                "firm-wide kill switch %s from %s: %s", message.action, message.origin, message.reason
            )
            return
        self.kills_received += 1
        latency = self._clock_ns() - message.published_ns
        self.metrics.gauge("bus_kill_latency_seconds", "kill message published -> obeyed here").set(
            latency / 1e9
        )
        reason = f"firm-wide kill switch from {message.origin}: {message.reason}"
        for handler in self._kill_handlers:
            try:
                handler(reason)
            except Exception:
                _log.exception("kill switch handler failed")

    def account_listener(self) -> Callable[[Any], None]:
        """An adapter listener publishing this node's order updates, fills, positions and
        balances (``bus.publish_account``): one encode and one buffer append per event."""
        bus, node_id, clock_ns = self.bus, self.node_id, self._clock_ns
        names: dict[tuple[str, str, str], str] = {}

        def name(kind: str, venue: str, key: str) -> str:
            found = names.get((kind, venue, key))
            if found is None:
                found = names[(kind, venue, key)] = stream_name(kind, venue, key)
            return found

        def listener(event: Any) -> None:
            try:
                publish(event)
            except BusNameError:  # a symbol the stream scheme cannot carry: counted, never raised
                self.unpublishable += 1

        def publish(event: Any) -> None:
            kind = type(event)
            if kind is OrderUpdate:
                bus.publish(
                    name("order", event.venue, event.symbol), OrderMessage(node_id, clock_ns(), event)
                )
            elif kind is Fill:
                bus.publish(name("fill", event.venue, event.symbol), FillMessage(node_id, clock_ns(), event))
            elif kind is PositionUpdate:
                message = PositionMessage(node_id, clock_ns(), event)
                bus.publish(name("position", event.venue, event.symbol), message)
            elif kind is BalanceUpdate:
                bus.publish(
                    name("balance", event.venue, event.asset), BalanceMessage(node_id, clock_ns(), event)
                )

        return listener

    def publish_report(self) -> None:
        figures = self._figures() if self._figures is not None else []
        self.bus.publish(
            REPORT_STREAM,
            NodeReport(self.node_id, self.role, self._clock_ns(), self._tripped(), figures),
        )

    async def _periodic(self) -> None:
        interval = self.config.report_interval_s
        while True:
            try:
                self.publish_report()
                export_bus_metrics(self.metrics, self.bus)
            except Exception:
                _log.exception("bus report failed")
            await asyncio.sleep(interval)


class BusMarketVenue:
    """A ``VenueAdapter``: books and trades from the bus, orders and the account from ``orders``."""

    def __init__(self, orders: VenueAdapter, market: BusBooks) -> None:
        self.orders = orders
        self.market = market
        self.name = orders.name
        self.capabilities = orders.capabilities
        self.dropped_market_events = 0

    def __getattr__(self, name: str) -> Any:  # place_order_now and other optional extras
        return getattr(self.orders, name)

    @property
    def order_written(self) -> Callable[[str, int], None] | None:
        return self.orders.order_written

    @order_written.setter
    def order_written(self, hook: Callable[[str, int], None] | None) -> None:
        self.orders.order_written = hook

    async def __aenter__(self) -> BusMarketVenue:
        await self.orders.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.market.close()
        finally:
            await self.orders.__aexit__(*exc_info)

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        return self.orders.instruments

    def add_listener(self, listener: EventListener) -> None:
        self.market.add_listener(listener)

        def account_only(event: Any) -> None:
            if isinstance(event, _MARKET_EVENTS):
                self.dropped_market_events += 1  # the bus is this node's market data
                return
            listener(event)

        self.orders.add_listener(account_only)

    async def subscribe(self, symbols: Sequence[str], *, books: bool = True, trades: bool = True) -> None:
        await self.market.subscribe(symbols, books=books, trades=trades)

    def book(self, symbol: str) -> OrderBook | None:
        return self.market.book(symbol)

    def book_synced(self, symbol: str) -> bool:
        return self.market.book_synced(symbol)

    def status(self) -> VenueStatus:
        return self.orders.status()

    async def place_order(self, request: Any) -> Any:
        return await self.orders.place_order(request)

    async def place_orders(self, requests: Sequence[Any]) -> Any:
        return await self.orders.place_orders(requests)

    async def amend_order(self, request: Any) -> Any:
        return await self.orders.amend_order(request)

    async def cancel_order(self, symbol: str, client_order_id: str) -> Any:
        return await self.orders.cancel_order(symbol, client_order_id)

    async def cancel_all(self, symbol: str | None = None) -> int:
        return await self.orders.cancel_all(symbol)

    async def mass_quote(self, quotes: Sequence[Any]) -> Any:
        return await self.orders.mass_quote(quotes)

    async def open_orders(self, symbol: str | None = None) -> Any:
        return await self.orders.open_orders(symbol)

    async def query_order(self, symbol: str, client_order_id: str) -> Any:
        return await self.orders.query_order(symbol, client_order_id)

    async def balances(self) -> Any:
        return await self.orders.balances()

    async def positions(self) -> Any:
        return await self.orders.positions()


def bus_market_adapters(
    adapters: dict[str, VenueAdapter], bus: MessageBus, config: BusConfig
) -> dict[str, VenueAdapter]:
    """``market_data: bus``: each venue's books from the bus (streams of the same venue name)."""
    return {
        name: BusMarketVenue(
            adapter, BusBooks(bus, name, group=f"{config.node_id}.market", consumer=config.node_id)
        )
        for name, adapter in adapters.items()
    }


__all__ = [
    "CONTROL_STREAM",
    "REPORT_STREAM",
    "BusMarketVenue",
    "NodeBusLink",
    "bus_line",
    "bus_market_adapters",
    "export_bus_metrics",
    "kill_bound_s",
    "make_bus",
]
