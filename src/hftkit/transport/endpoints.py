"""Choosing among a venue's base URLs: measure them, use the fastest, fail over on errors.

Binance publishes several equivalent hosts (api, api1..api4, api-gcp); their latency from a
given machine differs and any one can fail. Sans-I/O: the shell feeds it latency samples
and errors, and asks which URL to use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hftkit.core.clock import REAL_CLOCK, Clock


@dataclass
class EndpointHealth:
    url: str
    latency_ns: float | None = None  # exponentially weighted moving average
    samples: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    unavailable_until_ns: int = 0


class EndpointSelector:
    """Picks the healthy base URL with the lowest smoothed latency.

    An endpoint that fails ``failures_to_eject`` times in a row is set aside for
    ``cooldown_s``; if every endpoint is set aside the least recently ejected one is used
    rather than none.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        smoothing: float = 0.2,
        failures_to_eject: int = 1,
        cooldown_s: float = 30.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if not urls:
            raise ValueError("EndpointSelector needs at least one URL")
        if not 0 < smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        self._endpoints = {url: EndpointHealth(url) for url in urls}
        self._order = list(urls)
        self._smoothing = smoothing
        self._failures_to_eject = failures_to_eject
        self._cooldown_ns = int(cooldown_s * 1e9)
        self._clock = clock
        self.failovers = 0
        self._current = self._order[0]

    @property
    def endpoints(self) -> list[EndpointHealth]:
        return [self._endpoints[url] for url in self._order]

    def current(self) -> str:
        """The URL to use now."""
        now = self._clock.monotonic_ns()
        healthy = [health for health in self.endpoints if health.unavailable_until_ns <= now]
        if not healthy:
            choice = min(self.endpoints, key=lambda health: health.unavailable_until_ns)
        else:
            measured = [health for health in healthy if health.latency_ns is not None]
            if measured:
                choice = min(measured, key=lambda health: health.latency_ns or 0.0)
            else:
                choice = healthy[0]
        if choice.url != self._current:
            self.failovers += 1
            self._current = choice.url
        return choice.url

    def record_latency(self, url: str, latency_ns: int) -> None:
        health = self._endpoints[url]
        if health.latency_ns is None:
            health.latency_ns = float(latency_ns)
        else:
            health.latency_ns += self._smoothing * (latency_ns - health.latency_ns)
        health.samples += 1
        health.consecutive_errors = 0

    def record_error(self, url: str) -> None:
        health = self._endpoints[url]
        health.errors += 1
        health.consecutive_errors += 1
        if health.consecutive_errors >= self._failures_to_eject:
            health.unavailable_until_ns = self._clock.monotonic_ns() + self._cooldown_ns
