"""A strategy template: quote one level each side, ``offset_ticks`` behind the touch.

Edit the callbacks; each returns a ``Decision`` (desired quotes, orders, timers) or None. A
strategy never awaits and never touches a socket, so it is tested by calling its methods.
"""

from __future__ import annotations

import msgspec

from hftkit.book.order_book import OrderBook
from hftkit.core.types import Quote, Side
from hftkit.trading.strategy import Decision, Strategy, Subscription


class MyStrategyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the config's ``params`` may set; a misspelt key is a config error."""

    venue: str
    symbol: str
    size: int = 1  # lots
    offset_ticks: int = 5


class MyStrategy(Strategy):
    config_type = MyStrategyParams

    def __init__(self, params: MyStrategyParams, name: str = "my_strategy") -> None:
        super().__init__(name)
        self.params = params

    def subscriptions(self) -> list[Subscription]:
        return [Subscription(self.params.venue, (self.params.symbol,))]

    def on_book(self, venue: str, symbol: str, book: OrderBook) -> Decision | None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        offset = self.params.offset_ticks
        quotes = (
            Quote(Side.BUY, bid[0] - offset, self.params.size),
            Quote(Side.SELL, ask[0] + offset, self.params.size),
        )
        return Decision(quotes={(venue, symbol): quotes})
