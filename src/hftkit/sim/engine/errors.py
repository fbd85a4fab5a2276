"""Venue-neutral reject reasons of the matching engine and their venue error codes, as data.

The engine says *why* it refused (``RejectReason``); each server turns that into its venue's
own wire error with one table lookup, so the Binance-compatible and the Thalex-compatible
servers refuse the same things for the same reasons.
"""

from __future__ import annotations

import enum

from hftkit.core.errors import HftkitError
from hftkit.venues.thalex.errors import ThalexErrorCode


class RejectReason(enum.Enum):
    """Why an order operation was refused. Nothing in the book or the accounts changed."""

    UNKNOWN_SYMBOL = "unknown_symbol"
    PRICE_OFF_TICK = "price_off_tick"  # detected at the edge, where the decimal string is parsed
    PRICE_OUT_OF_RANGE = "price_out_of_range"  # price <= 0, or a LIMIT without a price
    QUANTITY_OFF_STEP = "quantity_off_step"  # detected at the edge
    QUANTITY_OUT_OF_RANGE = "quantity_out_of_range"  # below min / above max quantity, or <= 0
    MIN_NOTIONAL = "min_notional"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    UNKNOWN_ORDER = "unknown_order"  # unknown, closed, or owned by another account
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    WOULD_TAKE = "would_take"  # post-only order that would take liquidity (or cannot be repriced)
    INVALID_TIME_IN_FORCE = "invalid_time_in_force"  # e.g. post-only with IOC/FOK


class CloseReason(enum.Enum):
    """Why an accepted order left the book; servers map it to Binance status / Thalex delete_reason."""

    FILLED = "filled"
    CANCELED = "canceled"  # client cancel (Thalex client_cancel)
    BULK_CANCELED = "bulk_canceled"  # cancel-all (Thalex client_bulk_cancel)
    EXPIRED = "expired"  # IOC / FOK / market remainder (Thalex immediate_cancel)
    SELF_TRADE_PREVENTION = "self_trade_prevention"  # Binance EXPIRED_IN_MATCH
    AMENDED_TO_FILLED = "amended_to_filled"  # amend to a total <= filled (Thalex deletes the order)


class SimulatorConfigurationError(HftkitError, ValueError):
    """An instrument or asset set-up the simulator cannot account for exactly."""


FILTER_FAILURE = -1013
NEW_ORDER_REJECTED = -2010
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013

# Binance: (code, exact msg). Clients such as ccxt match the message text first, so it is verbatim.
BINANCE_ERRORS: dict[RejectReason, tuple[int, str]] = {
    RejectReason.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
    RejectReason.PRICE_OFF_TICK: (FILTER_FAILURE, "Filter failure: PRICE_FILTER"),
    RejectReason.PRICE_OUT_OF_RANGE: (FILTER_FAILURE, "Filter failure: PRICE_FILTER"),
    RejectReason.QUANTITY_OFF_STEP: (FILTER_FAILURE, "Filter failure: LOT_SIZE"),
    RejectReason.QUANTITY_OUT_OF_RANGE: (FILTER_FAILURE, "Filter failure: LOT_SIZE"),
    RejectReason.MIN_NOTIONAL: (FILTER_FAILURE, "Filter failure: NOTIONAL"),
    RejectReason.INSUFFICIENT_BALANCE: (
        NEW_ORDER_REJECTED,
        "Account has insufficient balance for requested action.",
    ),
    RejectReason.UNKNOWN_ORDER: (CANCEL_REJECTED, "Unknown order sent."),
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: (NEW_ORDER_REJECTED, "Duplicate order sent."),
    RejectReason.WOULD_TAKE: (NEW_ORDER_REJECTED, "Order would immediately match and take."),
    RejectReason.INVALID_TIME_IN_FORCE: (-1115, "Invalid timeInForce."),
}

# An order lookup (GET /api/v3/order) of an unknown order answers -2013, not the cancel's -2011.
BINANCE_QUERY_UNKNOWN_ORDER: tuple[int, str] = (NO_SUCH_ORDER, "Order does not exist.")

# Thalex: (error.code, message) of the JSON-RPC error object. The codes are ThalexErrorCode members
# (their one home; a documented fact the simulator may import). ``None`` means Thalex does not answer
# with an error: a post-only order that would take (with reject_post_only) is reported as an order
# with status "cancelled" and delete_reason "immediate_cancel".
THALEX_ERRORS: dict[RejectReason, tuple[ThalexErrorCode, str] | None] = {
    RejectReason.UNKNOWN_SYMBOL: (ThalexErrorCode.UNKNOWN_INSTRUMENT, "unknown instrument"),
    RejectReason.PRICE_OFF_TICK: (
        ThalexErrorCode.PRICE_NOT_ALIGNED_WITH_TICK,
        "price not aligned with tick size",
    ),
    RejectReason.PRICE_OUT_OF_RANGE: (ThalexErrorCode.INVALID_PRICE, "price must be positive"),
    RejectReason.QUANTITY_OFF_STEP: (
        ThalexErrorCode.INVALID_QUANTITY,
        "amount not aligned with volume tick size",
    ),
    RejectReason.QUANTITY_OUT_OF_RANGE: (ThalexErrorCode.INVALID_QUANTITY, "invalid amount"),
    RejectReason.MIN_NOTIONAL: (ThalexErrorCode.INVALID_QUANTITY, "order value below minimum"),
    RejectReason.INSUFFICIENT_BALANCE: (ThalexErrorCode.INSUFFICIENT_FUNDS, "insufficient funds"),
    RejectReason.UNKNOWN_ORDER: (ThalexErrorCode.ORDER_NOT_FOUND, "order not found"),
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: (ThalexErrorCode.DUPLICATE_ORDER_ID, "duplicate client order id"),
    RejectReason.WOULD_TAKE: None,
    RejectReason.INVALID_TIME_IN_FORCE: (ThalexErrorCode.INVALID_TIME_IN_FORCE, "invalid time in force"),
}

# Thalex delete_reason of a closed order.
THALEX_DELETE_REASONS: dict[CloseReason, str] = {
    CloseReason.FILLED: "filled",
    CloseReason.CANCELED: "client_cancel",
    CloseReason.BULK_CANCELED: "client_bulk_cancel",
    CloseReason.EXPIRED: "immediate_cancel",
    CloseReason.SELF_TRADE_PREVENTION: "self_trade_prevention",
    CloseReason.AMENDED_TO_FILLED: "client_cancel",
}


def binance_error(reason: RejectReason, *, query: bool = False) -> tuple[int, str]:
    """The Binance ``(code, msg)`` for a reject; ``query`` selects the order-lookup wording."""
    if query and reason is RejectReason.UNKNOWN_ORDER:
        return BINANCE_QUERY_UNKNOWN_ORDER
    return BINANCE_ERRORS[reason]


def thalex_error(reason: RejectReason) -> tuple[ThalexErrorCode, str] | None:
    """The Thalex ``(code, message)`` for a reject, or None when Thalex reports a cancelled order."""
    return THALEX_ERRORS[reason]


class SimulatorInputError(HftkitError, ValueError):
    """Replayed market data the simulator cannot apply (unknown symbol, negative size, bad price)."""
