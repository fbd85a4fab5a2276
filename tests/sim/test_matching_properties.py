"""Property tests: the engine against a slow reference model, and invariants over random flows.

The reference keeps every level as a plain list of entries ordered by arrival (our orders and
background chunks alike) and scans it; the engine keeps gaps and tails. Agreement on every
trade and every level after every operation is the price-time-priority and queue-model law.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftkit.core.clock import SimulatedClock
from hftkit.core.types import ContractKind, Instrument, OrderStatus, OrderType, Side, TimeInForce
from hftkit.sim.engine.accounts import Accounts, FeeSchedule
from hftkit.sim.engine.errors import RejectReason
from hftkit.sim.engine.matching import NO_ORDER_ID, MatchingEngine, OrderResult

SYMBOL = "X"
PERP = "X-PERP"
ACCOUNTS = ("a", "b", "c")
BUY, SELL = Side.BUY, Side.SELL

# --- reference model ---------------------------------------------------------------------


@dataclass
class Entry:
    sequence: int
    quantity: int  # background lots, or remaining lots of an order
    order_id: int = NO_ORDER_ID  # NO_ORDER_ID for a background chunk
    owner: str | None = None


@dataclass
class RefOrder:
    order_id: int
    owner: str
    side: Side
    price: int
    quantity: int
    order_type: OrderType
    filled: int = 0


@dataclass
class Reference:
    """Price-time priority by brute force: levels are lists of entries in arrival order."""

    bids: dict[int, list[Entry]] = field(default_factory=dict)
    asks: dict[int, list[Entry]] = field(default_factory=dict)
    orders: dict[int, RefOrder] = field(default_factory=dict)
    sequence: int = 0
    trades: list[tuple[int, int, int, int]] = field(default_factory=list)  # buy id, sell id, price, qty

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def best(self, side: Side) -> int | None:
        levels = self.bids if side is BUY else self.asks
        live = [price for price, entries in levels.items() if entries]
        if not live:
            return None
        return max(live) if side is BUY else min(live)

    def depth(self, side: Side) -> list[tuple[int, int]]:
        levels = self.bids if side is BUY else self.asks
        rows = [(price, sum(entry.quantity for entry in entries)) for price, entries in levels.items()]
        rows = [row for row in rows if row[1]]
        return sorted(rows, reverse=side is BUY)

    def _record(self, taker_side: Side, taker_id: int, maker_id: int, price: int, quantity: int) -> None:
        if taker_side is BUY:
            self.trades.append((taker_id, maker_id, price, quantity))
        else:
            self.trades.append((maker_id, taker_id, price, quantity))
        for order_id in (taker_id, maker_id):
            if order_id != NO_ORDER_ID:
                self.orders[order_id].filled += quantity

    def _crosses(self, side: Side, price: int | None, level_price: int) -> bool:
        if price is None:
            return True
        return level_price <= price if side is BUY else level_price >= price

    def _walk(self, side: Side, price: int | None, owner: str | None):  # type: ignore[no-untyped-def]
        """Yield (level price, entry) best first, entries front to back, as a taker meets them."""
        levels = self.asks if side is BUY else self.bids
        for level_price in sorted(levels, reverse=side is SELL):
            if not self._crosses(side, price, level_price):
                return
            for entry in list(levels[level_price]):
                yield level_price, entry

    def available(self, side: Side, price: int | None, owner: str) -> int:
        return sum(entry.quantity for _, entry in self._walk(side, price, owner) if entry.owner != owner)

    def take(self, order: RefOrder, price: int | None) -> None:
        levels = self.asks if order.side is BUY else self.bids
        for level_price, entry in self._walk(order.side, price, order.owner):
            remaining = order.quantity - order.filled
            if not remaining:
                break
            if entry.owner == order.owner:  # self-trade: expire the resting order
                levels[level_price].remove(entry)
                continue
            taken = min(remaining, entry.quantity)
            self._record(order.side, order.order_id, entry.order_id, level_price, taken)
            entry.quantity -= taken
            if not entry.quantity:
                levels[level_price].remove(entry)

    def rest(self, order: RefOrder) -> None:
        levels = self.bids if order.side is BUY else self.asks
        entry = Entry(self._next(), order.quantity - order.filled, order.order_id, order.owner)
        levels.setdefault(order.price, []).append(entry)

    def remove(self, order: RefOrder) -> None:
        levels = self.bids if order.side is BUY else self.asks
        levels[order.price] = [entry for entry in levels[order.price] if entry.order_id != order.order_id]

    def is_resting(self, order: RefOrder) -> bool:
        levels = self.bids if order.side is BUY else self.asks
        return any(entry.order_id == order.order_id for entry in levels.get(order.price, []))

    def entry(self, order: RefOrder) -> Entry:
        levels = self.bids if order.side is BUY else self.asks
        return next(entry for entry in levels[order.price] if entry.order_id == order.order_id)

    def set_background(self, side: Side, price: int, size: int) -> None:
        entries = (self.bids if side is BUY else self.asks).setdefault(price, [])
        current = sum(entry.quantity for entry in entries if entry.owner is None)
        if size > current:
            entries.append(Entry(self._next(), size - current))
            return
        excess = current - size
        for entry in reversed([entry for entry in entries if entry.owner is None]):
            cut = min(excess, entry.quantity)
            entry.quantity -= cut
            excess -= cut
        entries[:] = [entry for entry in entries if entry.quantity]

    def market_trade(self, price: int, quantity: int, aggressor: Side) -> None:
        levels = self.asks if aggressor is BUY else self.bids
        for level_price in sorted(levels, reverse=aggressor is SELL):
            if (level_price >= price) if aggressor is BUY else (level_price <= price):
                break
            for entry in levels[level_price]:
                if entry.owner is not None:
                    self._record(aggressor, NO_ORDER_ID, entry.order_id, level_price, entry.quantity)
            levels[level_price] = []
        budget = quantity
        ours = 0
        for entry in list(levels.get(price, [])):
            if not budget:
                break
            taken = min(budget, entry.quantity)
            if entry.owner is not None:
                self._record(aggressor, NO_ORDER_ID, entry.order_id, price, taken)
                ours += taken
            entry.quantity -= taken
            budget -= taken
            if not entry.quantity:
                levels[price].remove(entry)
        if quantity > ours:
            self.trades.append((NO_ORDER_ID, NO_ORDER_ID, price, quantity - ours))


def merged(trades: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Join consecutive prints between the same parties at the same price (background chunks)."""
    out: list[tuple[int, int, int, int]] = []
    for trade in trades:
        if out and out[-1][:3] == trade[:3]:
            out[-1] = (*trade[:3], out[-1][3] + trade[3])
        else:
            out.append(trade)
    return out


# --- operations ----------------------------------------------------------------------------

prices = st.integers(97, 102)
sizes = st.integers(1, 12)
sides = st.sampled_from([BUY, SELL])
accounts = st.sampled_from(ACCOUNTS)
order_kinds = st.sampled_from(
    [
        (OrderType.LIMIT, TimeInForce.GTC),
        (OrderType.LIMIT, TimeInForce.GTC),
        (OrderType.LIMIT, TimeInForce.IOC),
        (OrderType.LIMIT, TimeInForce.FOK),
        (OrderType.MARKET, TimeInForce.IOC),
        (OrderType.LIMIT_MAKER, TimeInForce.GTC),
    ]
)


def operation_lists(prices: st.SearchStrategy[int]) -> st.SearchStrategy[list]:
    place = st.tuples(st.just("place"), accounts, sides, order_kinds, prices, sizes)
    return st.lists(
        st.one_of(
            place,
            place,
            st.tuples(st.just("cancel"), accounts, st.integers(0, 30)),
            st.tuples(st.just("amend"), accounts, st.integers(0, 30), prices, st.integers(0, 14)),
            st.tuples(st.just("background"), sides, prices, st.integers(0, 15)),
            st.tuples(st.just("nudge"), sides, prices, st.integers(-6, 6)),
            st.tuples(st.just("trade"), sides, prices, sizes),
            st.tuples(st.just("cancel_all"), accounts),
        ),
        min_size=15,
        max_size=60,
    )


def simple_engine(fees: FeeSchedule | None = None, funds: int = 10**7) -> MatchingEngine:
    """Tick 1, lot 1, 2 decimals per asset: one lot is 100 units of B, one notional unit 100 of Q.

    Each account gets ``funds`` Q and ``funds // 50`` B (so buying power near 100 lots at 100).
    """
    engine = MatchingEngine(Accounts(default_decimals=2, fees=fees or FeeSchedule()), clock=SimulatedClock())
    engine.add_instrument(Instrument("sim", SYMBOL, "B", "Q", "1", "1"))
    engine.add_instrument(Instrument("sim", PERP, "B", "Q", "1", "1", kind=ContractKind.PERPETUAL))
    for name in ACCOUNTS:
        engine.accounts.deposit(name, "Q", funds * 100)
        engine.accounts.deposit(name, "B", funds // 50 * 100)
    return engine


def engine_trades(result: OrderResult | object) -> list[tuple[int, int, int, int]]:
    trades = getattr(result, "trades", [])
    return [(trade.buy_order_id, trade.sell_order_id, trade.price, trade.quantity) for trade in trades]


def crosses_book(engine: MatchingEngine, side: Side, price: int) -> bool:
    opposite = engine.best_ask(SYMBOL) if side is BUY else engine.best_bid(SYMBOL)
    return opposite is not None and (opposite[0] <= price if side is BUY else opposite[0] >= price)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operation_lists(prices))
def test_engine_agrees_with_the_reference_on_every_trade_and_level(steps) -> None:  # type: ignore[no-untyped-def]
    check_against_reference(steps)


def one_sided_lists() -> st.SearchStrategy[list]:
    """Bids only at two prices, background growing and shrinking, sells arriving: queue stress."""
    prices = st.integers(99, 100)
    resting = st.just((OrderType.LIMIT, TimeInForce.GTC))
    return st.lists(
        st.one_of(
            st.tuples(st.just("place"), accounts, st.just(BUY), resting, prices, sizes),
            st.tuples(st.just("background"), st.just(BUY), prices, st.integers(0, 20)),
            st.tuples(st.just("nudge"), st.just(BUY), prices, st.integers(-6, 6)),
            st.tuples(st.just("nudge"), st.just(BUY), prices, st.integers(-6, 6)),
            st.tuples(st.just("trade"), st.just(SELL), prices, sizes),
            st.tuples(st.just("place"), accounts, st.just(SELL), order_kinds, prices, sizes),
            st.tuples(st.just("cancel"), accounts, st.integers(0, 30)),
            st.tuples(st.just("amend"), accounts, st.integers(0, 30), prices, st.integers(0, 14)),
        ),
        min_size=10,
        max_size=50,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one_sided_lists())
def test_queue_positions_agree_with_the_reference_on_a_crowded_touch(steps) -> None:  # type: ignore[no-untyped-def]
    check_against_reference(steps)


def check_against_reference(steps: list) -> None:
    engine = simple_engine()
    reference = Reference()
    open_ids: dict[str, list[int]] = {name: [] for name in ACCOUNTS}
    for step in steps:
        reference.trades = []
        kind = step[0]
        result: object = None
        if kind == "place":
            _, owner, side, (order_type, tif), price, quantity = step
            result = engine.place(owner, SYMBOL, side, order_type, quantity, price, tif)
            assert isinstance(result, OrderResult)
            limit_price = None if order_type is OrderType.MARKET else price
            would_cross = reference.best(side.opposite) is not None and (
                limit_price is None or reference.available(side, limit_price, "") > 0
            )
            if order_type is OrderType.LIMIT_MAKER and would_cross:
                assert result.reason is RejectReason.WOULD_TAKE
                continue
            assert result.accepted and result.order is not None
            order = RefOrder(result.order.order_id, owner, side, price, quantity, order_type)
            reference.orders[order.order_id] = order
            if tif is TimeInForce.FOK and reference.available(side, limit_price, owner) < quantity:
                assert result.status is OrderStatus.EXPIRED and result.filled == 0
            else:
                reference.take(order, limit_price)
                if order.filled < quantity and tif is TimeInForce.GTC and order_type is not OrderType.MARKET:
                    reference.rest(order)
                    open_ids[owner].append(order.order_id)
            assert result.filled == order.filled
        elif kind == "cancel":
            _, owner, pick = step
            ids = open_ids[owner]
            if not ids:
                continue
            order_id = ids.pop(pick % len(ids))
            result = engine.cancel(owner, SYMBOL, order_id=order_id)
            order = reference.orders[order_id]
            is_open = reference.is_resting(order)
            assert isinstance(result, OrderResult) and result.accepted == is_open
            if is_open:
                reference.remove(order)
        elif kind == "amend":
            _, owner, pick, price, quantity = step
            ids = open_ids[owner]
            if not ids:
                continue
            order_id = ids[pick % len(ids)]
            order = reference.orders[order_id]
            is_open = reference.is_resting(order)
            result = engine.amend(owner, SYMBOL, order_id=order_id, price=price, quantity=quantity)
            assert isinstance(result, OrderResult)
            if not is_open:
                assert result.reason is RejectReason.UNKNOWN_ORDER
                ids.remove(order_id)
                continue
            if quantity <= order.filled:
                assert result.status is OrderStatus.CANCELED
                reference.remove(order)
                ids.remove(order_id)
                continue
            crossing = reference.available(order.side, price, owner + "-nobody") > 0
            if order.order_type is OrderType.LIMIT_MAKER and crossing:
                assert result.reason is RejectReason.WOULD_TAKE
                continue
            assert result.accepted
            if price == order.price and quantity <= order.quantity:
                reference.entry(order).quantity -= order.quantity - quantity
                order.quantity = quantity
            else:
                reference.remove(order)
                order.price, order.quantity = price, quantity
                reference.take(order, price)
                if order.filled < order.quantity:
                    reference.rest(order)
        elif kind in ("background", "nudge"):
            _, side, price, size = step
            if kind == "nudge":  # a small change relative to the current background
                size = max(0, engine.background_size(SYMBOL, side, price) + size)
            if size and crosses_book(engine, side, price):
                continue
            result = engine.set_background(SYMBOL, side, price, size)
            reference.set_background(side, price, size)
        elif kind == "trade":
            _, aggressor, price, size = step
            result = engine.apply_market_trade(SYMBOL, price, size, aggressor)
            reference.market_trade(price, size, aggressor)
        else:
            _, owner = step
            result = engine.cancel_all(owner, SYMBOL)
            for order_id in open_ids[owner]:
                order = reference.orders[order_id]
                reference.remove(order)
            open_ids[owner] = []
        assert merged(engine_trades(result)) == merged(reference.trades), step
        snapshot = engine.depth(SYMBOL)
        assert snapshot.bids == reference.depth(BUY), step
        assert snapshot.asks == reference.depth(SELL), step
        for order_id, order in reference.orders.items():
            engine_order = engine.get_order(order.owner, order_id=order_id)
            assert engine_order is not None and engine_order.filled == order.filled
        for name in ACCOUNTS:
            open_ids[name] = [order_id for order_id in open_ids[name] if _is_resting(engine, name, order_id)]
        assert engine.audit() == []


def _is_resting(engine: MatchingEngine, account: str, order_id: int) -> bool:
    order = engine.get_order(account, order_id=order_id)
    return order is not None and order.is_open


# --- invariants with fees, tight balances, crossing data and perpetuals --------------------

symbols = st.sampled_from([SYMBOL, PERP])
any_ops = st.lists(
    st.one_of(
        st.tuples(st.just("place"), symbols, accounts, sides, order_kinds, prices, sizes),
        st.tuples(st.just("cancel"), symbols, accounts, st.integers(0, 30)),
        st.tuples(st.just("amend"), symbols, accounts, st.integers(0, 30), prices, st.integers(0, 14)),
        st.tuples(st.just("background"), symbols, sides, prices, st.integers(0, 15)),
        st.tuples(st.just("trade"), symbols, sides, prices, sizes),
        st.tuples(st.just("cancel_all"), st.sampled_from([SYMBOL, PERP, None]), accounts),
    ),
    min_size=15,
    max_size=60,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_ops, st.integers(0, 5000), st.integers(-100, 100), st.integers(0, 500))
def test_matching_conserves_value_and_keeps_every_invariant(steps, funds, maker_ppm, taker_ppm) -> None:  # type: ignore[no-untyped-def]
    engine = simple_engine(FeeSchedule(maker_ppm * 100, taker_ppm * 100), funds=funds)
    accounts = engine.accounts
    totals = accounts.totals()
    update_ids = {SYMBOL: 0, PERP: 0}
    for step in steps:
        kind = step[0]
        results: list = []
        if kind == "place":
            _, symbol, owner, side, (order_type, tif), price, quantity = step
            result = engine.place(owner, symbol, side, order_type, quantity, price, tif)
            results.append(result)
            if result.accepted:
                order = result.order
                assert order is not None
                if tif is not TimeInForce.GTC or order_type is OrderType.MARKET:
                    assert not order.is_open and order.level is None  # IOC / FOK / market never rest
                if tif is TimeInForce.FOK:
                    assert order.filled in (0, quantity)
                own = [execution.quantity for execution in result.executions if execution.order is order]
                assert sum(own) == order.filled
        elif kind in ("cancel", "amend"):
            symbol, owner, pick = step[1], step[2], step[3]
            candidates = engine.open_orders(owner, symbol)
            if not candidates:
                continue
            order = candidates[pick % len(candidates)]
            if kind == "cancel":
                balance = accounts.get(owner).balance(order.reserve_asset) if order.reserve_asset else None
                before = None if balance is None else (balance.free, balance.locked, order.reserved)
                result = engine.cancel(owner, symbol, order_id=order.order_id)
                assert result.accepted and order.reserved == 0
                if balance is not None and before is not None:
                    free, locked, reserved = before
                    assert (balance.free, balance.locked) == (free + reserved, locked - reserved)
            else:
                result = engine.amend(owner, symbol, order_id=order.order_id, price=step[4], quantity=step[5])
            results.append(result)
        elif kind == "background":
            _, symbol, side, price, size = step
            results.append(engine.set_background(symbol, side, price, size))
        elif kind == "trade":
            _, symbol, side, price, size = step
            results.append(engine.apply_market_trade(symbol, price, size, side))
        else:
            _, symbol, owner = step
            outcome = engine.cancel_all(owner, symbol)
            for update in outcome.book_updates:
                update_ids[update.symbol] += 1
                assert update.update_id == update_ids[update.symbol]
        for result in results:
            update = result.book_update
            if update is not None:
                update_ids[update.symbol] += 1
                assert update.update_id == update_ids[update.symbol]
        assert accounts.totals() == totals, step
        assert accounts.net_positions().get(PERP, 0) == 0
        assert engine.audit() == [], step
        for account in accounts:
            for order in engine.open_orders(account.name):
                assert 0 <= order.filled < order.quantity
    for entry in accounts.ledger:
        assert entry.quantity > 0
