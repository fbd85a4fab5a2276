"""Thalex market-data views of a ``SimVenue``, sans-I/O: mark, index, ticker, lwt, book rows.

Exact where Thalex is exact: best prices and sizes come from the venue's integer ticks and lots
through the instrument grids. The mark price is the mid of the best prices (else the one side,
else the last trade, else the index) and the index is the one set by the replay driver, else
the mark of the underlying's first instrument, so a simulator without an index feed still
answers ``public/index`` and ``price_index.*`` sensibly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hftkit.core.types import ContractKind, Instrument, Side
from hftkit.sim.engine.matching import TradePrint
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex import wire as wire


def book_level(instrument: Instrument, price: int, size: int) -> list[int | float]:
    """``[price, amount, outright_amount]`` (the simulator has no implied liquidity)."""
    amount = wire.amount_number(instrument, size)
    return [wire.price_number(instrument, price), amount, amount]


class ThalexMarketViews:
    """Market data of one venue in Thalex shapes."""

    def __init__(self, venue: SimVenue) -> None:
        self.venue = venue
        self.engine = venue.engine
        self.index_prices: dict[str, Decimal] = {}

    def now_seconds(self) -> float:
        return wire.seconds(self.engine.clock.time_ns())

    def underlyings(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for symbol, instrument in self.venue.instruments.items():
            found.setdefault(wire.underlying_of(instrument), []).append(symbol)
        return found

    def mark(self, instrument: Instrument) -> Decimal | None:
        symbol = instrument.symbol
        bid = self.engine.best_bid(symbol)
        ask = self.engine.best_ask(symbol)
        ticks = instrument.tick_size
        if bid is not None and ask is not None:
            return (bid[0] + ask[0]) * ticks / 2
        if bid is not None:
            return bid[0] * ticks
        if ask is not None:
            return ask[0] * ticks
        trades = self.venue.recent_trades(symbol, 1)
        if trades:
            return trades[-1].price * ticks
        return self.index_prices.get(wire.underlying_of(instrument))

    def index_price(self, underlying: str) -> Decimal | None:
        price = self.index_prices.get(underlying)
        if price is not None:
            return price
        instruments = self.venue.instruments
        for symbol in self.underlyings().get(underlying, []):
            mark = self.mark(instruments[symbol])
            if mark is not None:
                return mark
        return None

    def index(self, underlying: str) -> dict[str, Any]:
        price = self.index_price(underlying)
        return {
            "index_name": underlying,
            "price": wire.decimal_number(price) if price is not None else None,
            "timestamp": self.now_seconds(),
        }

    def ticker(self, instrument: Instrument) -> dict[str, Any]:
        symbol = instrument.symbol
        now = self.engine.clock.time_ns()
        bid = self.engine.best_bid(symbol)
        ask = self.engine.best_ask(symbol)
        statistics = self.venue.ticker(symbol, now)
        traded = statistics.count > 0
        mark = self.mark(instrument)
        index = self.index_price(wire.underlying_of(instrument))
        price = wire.price_number
        ticker: dict[str, Any] = {
            "best_bid_price": price(instrument, bid[0]) if bid else None,
            "best_bid_amount": wire.amount_number(instrument, bid[1]) if bid else None,
            "best_ask_price": price(instrument, ask[0]) if ask else None,
            "best_ask_amount": wire.amount_number(instrument, ask[1]) if ask else None,
            "last_price": price(instrument, statistics.last_price) if statistics.last_price else None,
            "mark_price": wire.decimal_number(mark) if mark is not None else None,
            "mark_timestamp": wire.seconds(now),
            "index": wire.decimal_number(index) if index is not None else None,
            "delta": 1,
            "volume_24h": wire.amount_number(instrument, statistics.volume),
            "value_24h": wire.decimal_number(instrument.notional(1, 1) * statistics.quote_volume),
            "low_price_24h": price(instrument, statistics.low_price) if traded else None,
            "high_price_24h": price(instrument, statistics.high_price) if traded else None,
            "change_24h": (
                wire.decimal_number((statistics.last_price - statistics.open_price) * instrument.tick_size)
                if traded
                else 0
            ),
            "open_interest": wire.amount_number(instrument, self.open_interest(symbol)),
        }
        if instrument.kind is ContractKind.PERPETUAL:  # the simulator charges no funding
            ticker["funding_rate"] = 0
            ticker["funding_mark"] = 0
            ticker["realised_funding_24h"] = 0
            ticker["average_funding_rate_24h"] = 0
        return ticker

    def open_interest(self, symbol: str) -> int:
        """Lots held long over every account (the replayed market's account included)."""
        total = 0
        for account in self.venue.accounts:
            position = account.positions.get(symbol)
            if position is not None and position.quantity > 0:
                total += position.quantity
        return total

    def lwt(self, instrument: Instrument) -> dict[str, Any]:
        """The lightweight ticker: ``b``/``a`` levels, ``m`` mark, ``l`` last (keys left out when unknown)."""
        bid = self.engine.best_bid(instrument.symbol)
        ask = self.engine.best_ask(instrument.symbol)
        mark = self.mark(instrument)
        trades = self.venue.recent_trades(instrument.symbol, 1)
        payload: dict[str, Any] = {}
        if bid is not None:
            payload["b"] = book_level(instrument, *bid)
        if ask is not None:
            payload["a"] = book_level(instrument, *ask)
        if mark is not None:
            payload["m"] = wire.decimal_number(mark)
        if trades:
            payload["l"] = wire.price_number(instrument, trades[-1].price)
        return payload

    def book(self, instrument: Instrument, levels: int = 5) -> dict[str, Any]:
        """``public/book``: up to ``levels`` levels a side, the last price and the time."""
        depth = self.venue.depth(instrument.symbol, levels)
        trades = self.venue.recent_trades(instrument.symbol, 1)
        return {
            "bids": [book_level(instrument, price, size) for price, size in depth.bids],
            "asks": [book_level(instrument, price, size) for price, size in depth.asks],
            "last": wire.price_number(instrument, trades[-1].price) if trades else None,
            "time": self.now_seconds(),
        }

    def book_trade(self, trade: TradePrint) -> list[Any]:
        """A trade inside a ``book.*`` push: ``[price, amount, direction, time, implied_taker]``."""
        instrument = self.venue.instruments[trade.symbol]
        return [
            wire.price_number(instrument, trade.price),
            wire.amount_number(instrument, trade.quantity),
            "buy" if trade.aggressor is Side.BUY else "sell",
            wire.seconds(trade.time_ns),
            False,
        ]

    def recent_trade(self, trade: TradePrint) -> list[Any]:
        """A ``recent_trades.*`` row: ``[price, amount, direction, time, instrument, implied_taker]``."""
        row = self.book_trade(trade)
        row.insert(4, trade.symbol)
        return row


__all__ = ["ThalexMarketViews", "book_level"]
