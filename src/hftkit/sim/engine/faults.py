"""Fault injection for the simulator's venues: what to break, decided sans-I/O and counted.

Each venue server owns a ``FaultInjector`` and asks it at the points where a real venue
misbehaves: before answering a request (latency, 5xx, timeout, 429 storm), before sending a
stream message (latency, malformed frame, dropped / duplicated / reordered depth update),
while a connection is open (disconnect every N s or at random, stalls) and before acking an
order (delayed ack). Decisions come from a seeded random source, so a test run is
reproducible, and every injected fault is counted by kind, so a test can compare what was
injected with what the client noticed. The profile can be replaced at run time (the
control endpoint does that).
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError

logger = logging.getLogger(__name__)


class FaultKind(enum.Enum):
    REQUEST_LATENCY = "request_latency"
    HTTP_ERROR = "http_error"  # a 5xx answer (outcome unknown for orders: the order may exist)
    REQUEST_TIMEOUT = "request_timeout"  # no answer at all until the client gives up
    RATE_LIMIT = "rate_limit"  # a 429 storm
    STREAM_LATENCY = "stream_latency"
    MALFORMED_FRAME = "malformed_frame"
    DEPTH_DROPPED = "depth_dropped"
    DEPTH_DUPLICATED = "depth_duplicated"
    DEPTH_REORDERED = "depth_reordered"
    DISCONNECT = "disconnect"
    STALL = "stall"
    DELAYED_ACK = "delayed_ack"


class FaultConfigError(HftkitError, ValueError):
    """A fault profile with an unknown field or an out-of-range value."""


@dataclass(frozen=True)
class FaultProfile:
    """Probabilities are per event (0..1); times are seconds. All zero = a well-behaved venue."""

    request_latency_s: float = 0.0
    request_jitter_s: float = 0.0
    http_error_probability: float = 0.0
    request_timeout_probability: float = 0.0
    request_timeout_s: float = 30.0
    rate_limit_probability: float = 0.0  # chance that a request starts a 429 storm
    rate_limit_storm_s: float = 2.0  # how long a storm lasts
    stream_latency_s: float = 0.0
    stream_jitter_s: float = 0.0
    malformed_frame_probability: float = 0.0
    depth_drop_probability: float = 0.0
    depth_duplicate_probability: float = 0.0
    depth_reorder_probability: float = 0.0
    disconnect_every_s: float = 0.0  # 0 = never on a schedule
    disconnect_probability_per_s: float = 0.0  # random disconnects
    stall_every_s: float = 0.0
    stall_duration_s: float = 0.0
    ack_delay_s: float = 0.0
    ack_delay_probability: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value != value or value < 0:
                raise FaultConfigError(f"fault setting {item.name} must be a number >= 0, got {value!r}")
            if item.name.endswith("probability") and value > 1:
                raise FaultConfigError(f"fault setting {item.name} is a probability (0..1), got {value}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> FaultProfile:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise FaultConfigError(
                f"unknown fault settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**settings)

    def updated(self, settings: Mapping[str, Any]) -> FaultProfile:
        return FaultProfile.from_mapping({**asdict(self), **settings})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile(),
    "flaky": FaultProfile(
        request_latency_s=0.002,
        request_jitter_s=0.003,
        http_error_probability=0.02,
        stream_jitter_s=0.002,
        depth_drop_probability=0.01,
        disconnect_probability_per_s=0.05,
        ack_delay_s=0.05,
        ack_delay_probability=0.05,
    ),
    "hostile": FaultProfile(
        request_latency_s=0.005,
        request_jitter_s=0.01,
        http_error_probability=0.05,
        request_timeout_probability=0.01,
        request_timeout_s=5.0,
        rate_limit_probability=0.01,
        stream_jitter_s=0.005,
        malformed_frame_probability=0.01,
        depth_drop_probability=0.02,
        depth_duplicate_probability=0.02,
        depth_reorder_probability=0.02,
        disconnect_every_s=5.0,
        stall_every_s=7.0,
        stall_duration_s=1.0,
        ack_delay_s=0.2,
        ack_delay_probability=0.1,
    ),
}


class DepthAction(enum.Enum):
    SEND = "send"
    DROP = "drop"
    DUPLICATE = "duplicate"
    HOLD = "hold"  # keep it back and send it after the next one (a reorder)


@dataclass(frozen=True)
class RequestFault:
    """What to do with one request: wait ``delay_s`` first, then answer ``status`` (0 = normally)."""

    delay_s: float = 0.0
    status: int = 0  # 500/503 for an HTTP error, 429 for a rate-limit storm
    timeout: bool = False  # never answer (hold the request for request_timeout_s, then drop it)


NO_REQUEST_FAULT = RequestFault()


class FaultInjector:
    """Seeded fault decisions for one venue, with counters per kind."""

    def __init__(
        self, profile: FaultProfile | None = None, *, seed: int = 0, clock: Clock = REAL_CLOCK
    ) -> None:
        self.profile = profile or FaultProfile()
        self._random = random.Random(seed)
        self._clock = clock
        self.counts: dict[FaultKind, int] = dict.fromkeys(FaultKind, 0)
        self._storm_until_ns = 0
        self._stall_until_ns = 0
        self._next_stall_ns = 0
        self._schedule_stall(clock.monotonic_ns())

    def set_profile(self, profile: FaultProfile) -> None:
        """Replace the profile at run time; counters keep counting."""
        self.profile = profile
        self._storm_until_ns = 0
        self._schedule_stall(self._clock.monotonic_ns())
        logger.info("fault profile changed: %s", {k: v for k, v in profile.as_dict().items() if v})

    def snapshot(self) -> dict[str, int]:
        return {kind.value: count for kind, count in self.counts.items()}

    def _count(self, kind: FaultKind) -> None:
        self.counts[kind] += 1

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    def _latency(self, base: float, jitter: float) -> float:
        if jitter > 0:
            return base + self._random.uniform(0, jitter)
        return base

    # requests ----------------------------------------------------------------------------
    def request(self) -> RequestFault:
        """Decide the fate of one incoming request (REST call or RPC message)."""
        profile = self.profile
        now = self._clock.monotonic_ns()
        delay = self._latency(profile.request_latency_s, profile.request_jitter_s)
        if delay:
            self._count(FaultKind.REQUEST_LATENCY)
        if now < self._storm_until_ns:
            self._count(FaultKind.RATE_LIMIT)
            return RequestFault(delay, 429)
        if self._chance(profile.rate_limit_probability):
            self._storm_until_ns = now + int(profile.rate_limit_storm_s * 1e9)
            self._count(FaultKind.RATE_LIMIT)
            return RequestFault(delay, 429)
        if self._chance(profile.request_timeout_probability):
            self._count(FaultKind.REQUEST_TIMEOUT)
            return RequestFault(profile.request_timeout_s, 0, timeout=True)
        if self._chance(profile.http_error_probability):
            self._count(FaultKind.HTTP_ERROR)
            return RequestFault(delay, self._random.choice((500, 502, 503)))
        return RequestFault(delay) if delay else NO_REQUEST_FAULT

    def storm_retry_after_s(self) -> int:
        """Seconds left in the current 429 storm (at least 1), for a Retry-After header."""
        remaining = (self._storm_until_ns - self._clock.monotonic_ns()) / 1e9
        return max(1, int(remaining + 0.999))

    def ack_delay(self) -> float:
        """Extra seconds before an order's acknowledgement is sent (0 = none)."""
        profile = self.profile
        if profile.ack_delay_s and self._chance(profile.ack_delay_probability):
            self._count(FaultKind.DELAYED_ACK)
            return profile.ack_delay_s
        return 0.0

    # streams -----------------------------------------------------------------------------
    def stream_delay(self) -> float:
        profile = self.profile
        delay = self._latency(profile.stream_latency_s, profile.stream_jitter_s)
        if delay:
            self._count(FaultKind.STREAM_LATENCY)
        return delay

    def corrupt_frame(self) -> bool:
        """True: send a malformed frame instead of (before) the real one."""
        if self._chance(self.profile.malformed_frame_probability):
            self._count(FaultKind.MALFORMED_FRAME)
            return True
        return False

    def depth_action(self) -> DepthAction:
        """What to do with one depth update: send, drop (a gap), duplicate, or hold (reorder)."""
        profile = self.profile
        if self._chance(profile.depth_drop_probability):
            self._count(FaultKind.DEPTH_DROPPED)
            return DepthAction.DROP
        if self._chance(profile.depth_duplicate_probability):
            self._count(FaultKind.DEPTH_DUPLICATED)
            return DepthAction.DUPLICATE
        if self._chance(profile.depth_reorder_probability):
            self._count(FaultKind.DEPTH_REORDERED)
            return DepthAction.HOLD
        return DepthAction.SEND

    # connections -------------------------------------------------------------------------
    def disconnect_after_s(self) -> float | None:
        """For a new connection: seconds until the server drops it (None = not planned).

        The scheduled period and the random rate combine: whichever comes first.
        """
        profile = self.profile
        candidates = []
        if profile.disconnect_every_s > 0:
            candidates.append(profile.disconnect_every_s)
        if profile.disconnect_probability_per_s > 0:
            candidates.append(self._random.expovariate(profile.disconnect_probability_per_s))
        return min(candidates) if candidates else None

    def count_disconnect(self) -> None:
        """Called by the server when it actually drops a connection for a fault."""
        self._count(FaultKind.DISCONNECT)

    def stalled(self) -> bool:
        """True while the venue is in a stall: streams stay open but send nothing."""
        profile = self.profile
        if profile.stall_every_s <= 0 or profile.stall_duration_s <= 0:
            return False
        now = self._clock.monotonic_ns()
        if now < self._stall_until_ns:
            return True
        if now >= self._next_stall_ns:
            self._stall_until_ns = now + int(profile.stall_duration_s * 1e9)
            self._schedule_stall(now)
            self._count(FaultKind.STALL)
            return True
        return False

    def _schedule_stall(self, now: int) -> None:
        every = self.profile.stall_every_s
        self._next_stall_ns = now + int(every * 1e9) if every > 0 else 0


def profile_named(name: str) -> FaultProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise FaultConfigError(f"unknown fault profile {name!r}; known: {', '.join(PROFILES)}") from None


__all__ = [
    "NO_REQUEST_FAULT",
    "PROFILES",
    "DepthAction",
    "FaultConfigError",
    "FaultInjector",
    "FaultKind",
    "FaultProfile",
    "RequestFault",
    "profile_named",
]
