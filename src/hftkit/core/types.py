"""Value types of the whole system: enums, instruments, orders, fills, book and trade events.

Events are frozen ``msgspec.Struct`` values (cheap to build, hashable, encodable without
glue). Prices are integer ticks and quantities integer lots of their Instrument.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from fractions import Fraction
from math import ceil

import msgspec

from hftkit.core.numbers import DecimalGrid, Rounding


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: position change per lot filled."""
        return 1 if self is Side.BUY else -1


class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"
    LIMIT_MAKER = "limit_maker"  # post-only: never takes liquidity


class TimeInForce(enum.Enum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


_TERMINAL_VALUES = frozenset({"filled", "canceled", "rejected", "expired"})
_OPEN_VALUES = frozenset({"new", "partially_filled", "pending_cancel", "pending_amend"})


class OrderStatus(enum.Enum):
    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    PENDING_AMEND = "pending_amend"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # the request's outcome is not known yet (timeout, disconnect)

    # plain attributes of each member, not properties: read on every order event (a property
    # is a Python call, and set membership of an enum a second one for its hash)
    is_terminal: bool
    is_open: bool

    def __init__(self, value: str) -> None:
        self.is_terminal = value in _TERMINAL_VALUES
        self.is_open = value in _OPEN_VALUES


class ContractKind(enum.Enum):
    SPOT = "spot"
    PERPETUAL = "perpetual"
    FUTURE = "future"
    OPTION = "option"


class Instrument:
    """A tradable instrument and its grids: tick size for prices, lot size for quantities.

    Conversion between wire strings and integer ticks/lots happens here and nowhere else.
    Not a Struct: it holds precomputed grids and is shared by reference, never serialized
    on the hot path (``to_dict``/``from_dict`` exist for config and storage).
    """

    __slots__ = (
        "base",
        "contract_size",
        "kind",
        "lot_size",
        "lots",
        "max_quantity",
        "min_notional",
        "min_notional_product",
        "min_quantity",
        "quote",
        "symbol",
        "tick_size",
        "ticks",
        "venue",
    )

    def __init__(
        self,
        venue: str,
        symbol: str,
        base: str,
        quote: str,
        tick_size: str,
        lot_size: str,
        min_notional: str = "0",
        kind: ContractKind = ContractKind.SPOT,
        min_quantity: str | None = None,
        max_quantity: str | None = None,
        contract_size: str = "1",
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.base = base
        self.quote = quote
        self.kind = kind
        self.ticks = DecimalGrid(tick_size)
        self.lots = DecimalGrid(lot_size)
        self.tick_size = self.ticks.step
        self.lot_size = self.lots.step
        self.min_notional = Decimal(min_notional)
        self.min_quantity = self.lots.to_steps(min_quantity, Rounding.UP) if min_quantity else 1
        self.max_quantity = self.lots.to_steps(max_quantity, Rounding.DOWN) if max_quantity else None
        self.contract_size = Decimal(contract_size)
        # notional = ticks * lots * tick * lot * contract >= min_notional  <=>
        # ticks * lots >= ceil(min_notional / (tick * lot * contract)), exactly (Fractions, once)
        scale = Fraction(self.tick_size) * Fraction(self.lot_size) * Fraction(self.contract_size)
        self.min_notional_product = ceil(Fraction(self.min_notional) / scale)

    @property
    def key(self) -> tuple[str, str]:
        return (self.venue, self.symbol)

    # prices -------------------------------------------------------------------------------
    def price_to_ticks(self, text: str, rounding: Rounding = Rounding.EXACT) -> int:
        return self.ticks.to_steps(text, rounding)

    def ticks_to_price(self, ticks: int) -> str:
        return self.ticks.to_text(ticks)

    # quantities ---------------------------------------------------------------------------
    def quantity_to_lots(self, text: str, rounding: Rounding = Rounding.EXACT) -> int:
        return self.lots.to_steps(text, rounding)

    def lots_to_quantity(self, lots: int) -> str:
        return self.lots.to_text(lots)

    # checks -------------------------------------------------------------------------------
    def notional(self, price_ticks: int, quantity_lots: int) -> Decimal:
        """Exact price * quantity * contract size in quote currency."""
        return self.ticks.to_decimal(price_ticks) * self.lots.to_decimal(quantity_lots) * self.contract_size

    def meets_minimums(self, price_ticks: int, quantity_lots: int) -> bool:
        """True when the order clears the venue's minimum quantity and minimum notional (and its
        maximum quantity): integer comparisons only, no Decimal on the order path."""
        if quantity_lots < self.min_quantity:
            return False
        if self.max_quantity is not None and quantity_lots > self.max_quantity:
            return False
        return price_ticks * quantity_lots >= self.min_notional_product

    def to_dict(self) -> dict[str, str]:
        return {
            "venue": self.venue,
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "tick_size": self.ticks.step_text,
            "lot_size": self.lots.step_text,
            "min_notional": str(self.min_notional),
            "kind": self.kind.value,
            "min_quantity": self.lots.to_text(self.min_quantity),
            "max_quantity": "" if self.max_quantity is None else self.lots.to_text(self.max_quantity),
            "contract_size": str(self.contract_size),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Instrument:
        return cls(
            venue=data["venue"],
            symbol=data["symbol"],
            base=data["base"],
            quote=data["quote"],
            tick_size=data["tick_size"],
            lot_size=data["lot_size"],
            min_notional=data.get("min_notional", "0"),
            kind=ContractKind(data.get("kind", "spot")),
            min_quantity=data.get("min_quantity") or None,
            max_quantity=data.get("max_quantity") or None,
            contract_size=data.get("contract_size", "1"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instrument) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.venue, self.symbol))  # not via ``key``: one Python call, not two

    def __repr__(self) -> str:
        return (
            f"Instrument({self.venue}:{self.symbol} tick={self.ticks.step_text} "
            f"lot={self.lots.step_text} kind={self.kind.value})"
        )


class OrderIntent(msgspec.Struct, frozen=True, kw_only=True):
    """A new order wanted: a strategy's own order, or one rung of a quote ladder (``level``).

    Integer ticks/lots of the instrument. The gateway turns it into a tracked ``Order``, which is
    sent to the venue as an ``OrderRequest``; ``tag`` travels to the execution reports.
    """

    venue: str
    symbol: str
    side: Side
    quantity: int
    price: int = 0
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.IOC
    reduce_only: bool = False
    tag: str = ""
    level: int = 0  # the quote ladder's rung (0 at the touch); 0 for a strategy's own order


class Order(msgspec.Struct, kw_only=True):
    """One order as we know it. Mutable: the state tracker moves it through its lifecycle."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.GTC
    price: int = 0  # ticks; 0 for market orders
    quantity: int  # lots
    filled: int = 0  # lots
    status: OrderStatus = OrderStatus.PENDING_NEW
    venue_order_id: str | None = None
    reduce_only: bool = False
    created_ns: int = 0
    updated_ns: int = 0

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of one of our orders. Deduplicated by (venue, trade_id)."""

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str | None
    trade_id: str
    side: Side
    price: int  # ticks
    quantity: int  # lots
    fee: float = 0.0  # accounting only, never a key
    fee_asset: str = ""
    is_maker: bool = False
    event_time_ms: int = 0
    receive_ns: int = 0


class Quote(msgspec.Struct, frozen=True):
    """One desired resting order of a quote ladder: the quoting service makes it real."""

    side: Side
    price: int  # ticks
    size: int  # lots
    level: int = 0


class BookLevel(msgspec.Struct, frozen=True, array_like=True):
    price: int  # ticks
    size: int  # lots


class BookDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One depth message: level changes (size 0 deletes) or, when ``is_snapshot``, a full book.

    ``first_update_id``/``last_update_id``/``previous_update_id`` carry the venue's sequence
    numbers so a synchronizer can check continuity; -1 where a venue has none.
    """

    venue: str
    symbol: str
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    first_update_id: int = -1
    last_update_id: int = -1
    previous_update_id: int = -1
    is_snapshot: bool = False
    event_time_ms: int = 0
    receive_ns: int = 0


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    symbol: str
    trade_id: int
    price: int  # ticks
    size: int  # lots
    aggressor: Side  # side of the taker
    event_time_ms: int = 0
    receive_ns: int = 0


class BookTicker(msgspec.Struct, frozen=True, kw_only=True):
    venue: str
    symbol: str
    update_id: int
    bid_price: int
    bid_size: int
    ask_price: int
    ask_size: int
    event_time_ms: int = 0
    receive_ns: int = 0


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A venue's word on one of our orders: its status and cumulative fill, normalized.

    The one shape of an order's news, whatever carried it: an execution report, an order push, a
    query answer or a row of an open-orders snapshot. The state tracker consumes it as it is.

    ``filled`` is cumulative (lots), so a duplicate or reordered update can never add a fill
    twice; the fill itself, when there is one, comes as a separate Fill event.
    """

    venue: str
    symbol: str
    client_order_id: str
    venue_order_id: str | None
    status: OrderStatus
    side: Side
    price: int  # ticks
    quantity: int  # lots
    filled: int  # cumulative lots
    reason: str = ""
    event_time_ms: int = 0
    receive_ns: int = 0
    order_type: OrderType = OrderType.LIMIT  # lets an order unknown locally be adopted as it is
    time_in_force: TimeInForce = TimeInForce.GTC
    average_fill_price: int | None = None  # ticks, for synthetic fills when the venue gives it


class FeeCharge(msgspec.Struct, frozen=True, kw_only=True):
    """A fee the venue reports after the fill it belongs to was delivered without one.

    Thalex pushes an order's fills (no fee) before the trade history entry (with the fee); the
    adapter delivers the fill at once and the fee as this event, once per trade.
    """

    venue: str
    symbol: str
    client_order_id: str
    trade_id: str
    fee: float
    fee_asset: str
    receive_ns: int = 0


class BalanceUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Balance of one asset. Decimal: balances are accounting values, never hot-path keys."""

    venue: str
    asset: str
    free: Decimal
    locked: Decimal = Decimal(0)
    event_time_ms: int = 0


class PositionUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Net position of one derivatives instrument as the venue reports it."""

    venue: str
    symbol: str
    quantity: int  # signed lots
    entry_price: Decimal
    event_time_ms: int = 0


class ConnectionEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A feed or session changed state; consumers stop trusting books until ``synced``."""

    venue: str
    stream: str
    state: str  # connected / disconnected / synced / resyncing
    reason: str = ""
    receive_ns: int = 0
