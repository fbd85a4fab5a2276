"""Thalex's JSON-RPC error codes, as the venue documents them: the one home for these facts.

The client classifies answers by them and the simulator answers with them; neither keeps a copy.
The adapter's own exceptions (a query that failed, a session not ready for orders) live here too.
"""

import enum

from hftkit.venues.base import OrderRejectedError, VenueError


class ThalexErrorCode(enum.IntEnum):
    ORDER_NOT_FOUND = 1
    DUPLICATE_ORDER_ID = 2
    TOO_MANY_PENDING_REQUESTS = 3
    THROTTLE_EXCEEDED = 4
    UNKNOWN_INSTRUMENT = 5
    INVALID_REQUEST = 6
    NOT_LOGGED_IN = 7
    ALREADY_SUBSCRIBED = 8
    NOT_SUBSCRIBED = 9
    INVALID_ORDER_ID = 12
    INVALID_PRICE = 13
    INVALID_QUANTITY = 14
    PRICE_NOT_ALIGNED_WITH_TICK = 15
    UNKNOWN_PRODUCT = 17
    AUTHENTICATION_FAILED = 19
    TEMPORARY_FAILURE = 20
    PROTECTION_NOT_SET = 23
    INSUFFICIENT_MARGIN = 24
    INVALID_TIME_IN_FORCE = 25
    INSUFFICIENT_FUNDS = 27
    UNAUTHORIZED = 28
    UNKNOWN_METHOD = 31
    INVALID_STATE = 37
    UNKNOWN_UNDERLYING = 40
    PRICE_COLLAR_BREACH = 43
    QUOTE_EXCEEDS_PROTECTION_SIZE = 44
    TOO_MANY_OPEN_ORDERS = 49
    PERSISTENT_SESSION = 52
    REDUCE_ONLY_MODE = 57


# -- what the adapter raises beyond hftkit.venues.base's order errors ------------------------


class VenueNotReadyError(OrderRejectedError):
    """Refused locally: the session is not logged in, protected and reconciled. Nothing was sent."""


class ThalexConnectionError(VenueError, ConnectionError):
    """A query could not complete because the session is down or dropped while it was in flight."""


class ThalexTimeoutError(VenueError, TimeoutError):
    """A query got no answer in time."""


class ThalexQueryError(VenueError):
    """The venue answered a query with an error; ``code`` is its error code."""
