"""Checks of a rebuilt book against what the venue itself says its top of book is.

A venue's best bid/ask message (Binance ``bookTicker``) stamped with a book update id must equal
the book rebuilt up to that id, price and size: the one check that catches a book that drifted
although every sequence id chained. The synchronizer (live), the recording verifier and the
market-data node all ask it here, so they agree on what a match is.
"""

from __future__ import annotations

from hftkit.book.order_book import Level


def top_matches(
    bid: Level | None, ask: Level | None, bid_price: int, bid_size: int, ask_price: int, ask_size: int
) -> bool:
    """True when the venue's best bid and ask equal the book's top ``bid``/``ask`` (None: empty side).

    A venue price of 0 stands for an empty side (its size then says nothing).
    """
    if bid is None:
        if bid_price:
            return False
    elif bid[0] != bid_price or bid[1] != bid_size:
        return False
    if ask is None:
        return not ask_price
    return ask[0] == ask_price and ask[1] == ask_size


__all__ = ["top_matches"]
