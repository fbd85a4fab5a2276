"""The parity test's strategy: a quoter whose decisions depend on the public book only.

It quotes one bid ``offset_ticks`` below the best bid and one ask as far above the best ask, on
every book update, and logs each decision. Inventory never changes a decision (the risk gate
caps the position), so the same market gives the same decisions whatever the latency; the market
maker's own decisions also lean on its fills and on its own orders in the book, whose timing is
exactly what differs between a backtest and a live session.
"""

from __future__ import annotations

from dataclasses import dataclass

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Quote, Side
from hftkit.trading.strategy import Decision, Strategy, Subscription


@dataclass(frozen=True)
class ParityQuoterConfig:
    venue: str
    symbol: str
    size: int = 2
    offset_ticks: int = 3


def _public_best(levels: list[tuple[int, int]], ours: dict[tuple[Side, int], int], side: Side) -> int | None:
    """The best price with someone else's volume: the venue's book shows our orders too."""
    for price, size in levels:
        if size > ours.get((side, price), 0):
            return price
    return None


class ParityQuoter(Strategy):
    config_type = ParityQuoterConfig

    def __init__(self, config: ParityQuoterConfig, name: str = "quoter") -> None:
        super().__init__(name)
        self.config = config
        self.log: list[tuple[int, int]] = []  # (bid, ask) of every decision, in order

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(self.config.venue, (self.config.symbol,))]

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        ours: dict[tuple[Side, int], int] = {}
        for order in self.context.open_orders(venue, symbol):  # in flight included
            key = (order.side, order.price)
            ours[key] = ours.get(key, 0) + order.remaining
        bid = _public_best(book.bids(8), ours, Side.BUY)
        ask = _public_best(book.asks(8), ours, Side.SELL)
        if bid is None or ask is None:
            return None
        offset = self.config.offset_ticks
        ladder = (
            Quote(Side.BUY, bid - offset, self.config.size),
            Quote(Side.SELL, ask + offset, self.config.size),
        )
        self.log.append((ladder[0].price, ladder[1].price))
        return Decision(quotes={(venue, symbol): ladder})
