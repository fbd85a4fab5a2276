"""Binance request-weight and order-count accounting for the simulator, sans-I/O.

Binance counts request weight per IP in fixed one-minute windows and orders per account in
fixed 10 s and 1 d (spot) / 1 min (USD-M) windows. Going over answers 429 with
``Retry-After``; an IP that keeps sending before ``Retry-After`` runs out is banned (418),
for 2 minutes the first time and twice as long each time after, up to 3 days. All of it
reads time from a ``Clock``, so tests drive it with small limits and a simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hftkit.core.clock import Clock
from hftkit.sim.binance.params import Params
from hftkit.venues.binance.endpoints import ENDPOINTS, Market

NANOS = 1_000_000_000


def interval_suffix(seconds: int) -> str:
    """``10 -> "10S"``, ``60 -> "1M"``, ``86400 -> "1D"`` (Binance header/interval naming)."""
    for unit_seconds, letter in ((86_400, "D"), (3_600, "H"), (60, "M")):
        if seconds % unit_seconds == 0:
            return f"{seconds // unit_seconds}{letter}"
    return f"{seconds}S"


def interval_name(seconds: int) -> tuple[str, int]:
    """``exchangeInfo.rateLimits`` interval enum and intervalNum of a window length."""
    for unit_seconds, name in ((86_400, "DAY"), (3_600, "HOUR"), (60, "MINUTE")):
        if seconds % unit_seconds == 0:
            return name, seconds // unit_seconds
    return "SECOND", seconds


@dataclass(frozen=True)
class RateLimitSettings:
    """One market's limits. Defaults are Binance's published spot values."""

    request_weight: int = 6000
    request_window_s: int = 60
    order_windows: tuple[tuple[int, int], ...] = ((10, 100), (86_400, 200_000))  # (seconds, limit)
    raw_requests: int = 61_000  # per 5 minutes (published, not enforced)
    ban_initial_s: float = 120.0
    ban_max_s: float = 3 * 86_400.0

    def __post_init__(self) -> None:
        if self.request_weight <= 0 or self.request_window_s <= 0:
            raise ValueError("request weight limit and window must be positive")
        for seconds, limit in self.order_windows:
            if seconds <= 0 or limit <= 0:
                raise ValueError("order windows need a positive length and limit")
        if self.ban_initial_s <= 0 or self.ban_max_s < self.ban_initial_s:
            raise ValueError("ban durations must be positive and max >= initial")

    @property
    def weight_header(self) -> str:
        return f"X-MBX-USED-WEIGHT-{interval_suffix(self.request_window_s)}"

    def order_headers(self) -> list[str]:
        return [f"X-MBX-ORDER-COUNT-{interval_suffix(seconds)}" for seconds, _ in self.order_windows]

    def exchange_info(self) -> list[dict[str, object]]:
        """The ``rateLimits`` array of exchangeInfo."""
        interval, number = interval_name(self.request_window_s)
        limits: list[dict[str, object]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": interval,
                "intervalNum": number,
                "limit": self.request_weight,
            }
        ]
        for seconds, limit in self.order_windows:
            interval, number = interval_name(seconds)
            limits.append(
                {"rateLimitType": "ORDERS", "interval": interval, "intervalNum": number, "limit": limit}
            )
        limits.append(
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": self.raw_requests,
            }
        )
        return limits


SPOT_LIMITS = RateLimitSettings()
USDM_LIMITS = RateLimitSettings(request_weight=2400, order_windows=((10, 300), (60, 1200)))


class Verdict:
    """The limiter's answer: 0 = go on; else an HTTP status (429/418) with retry-after seconds."""

    __slots__ = ("code", "message", "retry_after_s", "status")

    def __init__(self, status: int = 0, code: int = 0, message: str = "", retry_after_s: int = 0) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


ALLOWED = Verdict()


@dataclass
class _IpState:
    window_start_ns: int = 0
    used: int = 0
    blocked_until_ns: int = 0  # end of the Retry-After of the last 429
    banned_until_ns: int = 0
    bans: int = 0


@dataclass
class _Window:
    start_ns: int = 0
    count: int = 0


@dataclass
class RequestWeightLimiter:
    """Per-IP weight in fixed windows, 429 then escalating 418 bans."""

    settings: RateLimitSettings
    clock: Clock
    _ips: dict[str, _IpState] = field(default_factory=dict)
    rejected: int = 0
    banned: int = 0

    def _state(self, ip: str, now: int) -> _IpState:
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _IpState()
        window = self.settings.request_window_s * NANOS
        start = now - now % window
        if state.window_start_ns != start:
            state.window_start_ns = start
            state.used = 0
        return state

    def used(self, ip: str) -> int:
        return self._state(ip, self.clock.time_ns()).used

    def charge(self, ip: str, weight: int) -> Verdict:
        """Count a request's weight; say whether it may be served."""
        now = self.clock.time_ns()
        state = self._state(ip, now)
        settings = self.settings
        if now < state.banned_until_ns:
            self.banned += 1
            return self._ban_verdict(state, now)
        if now < state.blocked_until_ns:
            # kept sending during Retry-After: ban, doubling each time
            duration = min(settings.ban_initial_s * 2**state.bans, settings.ban_max_s)
            state.bans += 1
            state.banned_until_ns = now + int(duration * NANOS)
            state.blocked_until_ns = 0
            self.banned += 1
            return self._ban_verdict(state, now)
        state.used += weight
        if state.used > settings.request_weight:
            window_end = state.window_start_ns + settings.request_window_s * NANOS
            state.blocked_until_ns = window_end
            self.rejected += 1
            interval, number = interval_name(settings.request_window_s)
            return Verdict(
                429,
                -1003,
                f"Too much request weight used; current limit is {settings.request_weight} request weight "
                f"per {number} {interval}. Please use WebSocket Streams for live updates to avoid polling "
                "the API.",
                _ceil_seconds(window_end - now),
            )
        return ALLOWED

    @staticmethod
    def _ban_verdict(state: _IpState, now: int) -> Verdict:
        until_ms = state.banned_until_ns // 1_000_000
        return Verdict(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until_ms}. Please use WebSocket Streams "
            "for live updates to avoid bans.",
            _ceil_seconds(state.banned_until_ns - now),
        )


@dataclass
class OrderRateLimiter:
    """Orders per account in each configured window (Binance counts orders per account)."""

    settings: RateLimitSettings
    clock: Clock
    _accounts: dict[str, list[_Window]] = field(default_factory=dict)
    rejected: int = 0

    def _windows(self, account: str, now: int) -> list[_Window]:
        windows = self._accounts.get(account)
        if windows is None:
            windows = self._accounts[account] = [_Window() for _ in self.settings.order_windows]
        for window, (seconds, _limit) in zip(windows, self.settings.order_windows, strict=True):
            length = seconds * NANOS
            start = now - now % length
            if window.start_ns != start:
                window.start_ns = start
                window.count = 0
        return windows

    def counts(self, account: str) -> list[int]:
        return [window.count for window in self._windows(account, self.clock.time_ns())]

    def charge(self, account: str, counts: tuple[int, ...] | None = None) -> Verdict:
        """Count one order request in every window (``counts``: what it costs per window, in
        order; a USD-M batch costs 5 in the 10 s window and 1 in the minute's)."""
        now = self.clock.time_ns()
        windows = self._windows(account, now)
        costs = counts or (1,) * len(windows)
        for window, (seconds, limit), cost in zip(windows, self.settings.order_windows, costs, strict=True):
            if window.count + cost > limit:
                self.rejected += 1
                interval, number = interval_name(seconds)
                unit = interval if number == 1 else f"{number} {interval}"
                return Verdict(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {limit} orders per {unit}.",
                    _ceil_seconds(window.start_ns + seconds * NANOS - now),
                )
        for window, cost in zip(windows, costs, strict=True):
            window.count += cost
        return ALLOWED


def _ceil_seconds(nanoseconds: int) -> int:
    return max(1, -(-nanoseconds // NANOS))


__all__ = [
    "ALLOWED",
    "SPOT_LIMITS",
    "USDM_LIMITS",
    "OrderRateLimiter",
    "RateLimitSettings",
    "RequestWeightLimiter",
    "Verdict",
    "interval_name",
    "interval_suffix",
]


# request weights that depend on the params (REST and WebSocket API share them) ----------------

Weight = int | Callable[[Params], int]


def weight_of(weight: Weight, params: Params) -> int:
    """A route's weight for these params; malformed params weigh 1 (the handler refuses them)."""
    if isinstance(weight, int):
        return weight
    try:
        return weight(params)
    except (ValueError, TypeError):
        return 1


def endpoint_weight(market: Market, name: str) -> Weight:
    """Reuse the client-side weight table (endpoints.py) so both sides count the same."""
    endpoint = ENDPOINTS[market][name]
    return lambda params: endpoint.weight_for(params.values)


def per_symbols(single: int, some: int, every: int) -> Weight:
    """``symbol`` weighs ``single``; ``symbols`` ``single`` each up to 20, then ``some``; none: ``every``."""

    def weight(params: Params) -> int:
        if "symbol" in params:
            return single
        raw = params.get("symbols")
        if raw is None:
            return every
        count = raw.count(",") + 1
        return single * count if count <= 20 else some if count <= 100 else every

    return weight


def per_symbol_capped(each: int, cap: int) -> Weight:
    """Rolling-window ticker: ``each`` per symbol, at most ``cap`` (one symbol without ``symbols``)."""

    def weight(params: Params) -> int:
        raw = params.get("symbols")
        count = 1 if raw is None else raw.count(",") + 1
        return min(each * count, cap)

    return weight


def with_symbol(with_symbol_weight: int, without: int) -> Weight:
    return lambda params: with_symbol_weight if "symbol" in params else without
