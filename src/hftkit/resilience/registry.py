"""Per-endpoint rate-limit governance built from a declarative table of endpoint weights.

A venue's whole budget reads as data in one place (its windows and what each endpoint
costs); adapters then ask the registry by endpoint name and never hand-count weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hftkit.resilience.errors import UnknownEndpointError
from hftkit.resilience.weighted import Priority, WeightedLimiter, WindowCosts


@dataclass(frozen=True, slots=True)
class EndpointLimit:
    """The limiter an endpoint draws from and its resolved costs there."""

    endpoint: str
    limiter_name: str
    limiter: WeightedLimiter
    costs: WindowCosts
    default_priority: int

    def try_acquire(self, priority: int | None = None) -> bool:
        return self.limiter.try_acquire(self.costs, self.default_priority if priority is None else priority)

    async def acquire(self, priority: int | None = None) -> None:
        await self.limiter.acquire(self.costs, self.default_priority if priority is None else priority)


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One row of the table: ``costs`` per window name, optionally another limiter and priority."""

    costs: Mapping[str, int]
    limiter: str = "default"
    priority: int = Priority.NORMAL


class LimiterRegistry:
    """Endpoint name -> (limiter, costs). Unknown endpoints are an error, never ungoverned."""

    def __init__(self) -> None:
        self._limiters: dict[str, WeightedLimiter] = {}
        self._endpoints: dict[str, EndpointLimit] = {}

    @classmethod
    def from_table(
        cls,
        limiters: Mapping[str, WeightedLimiter] | WeightedLimiter,
        endpoints: Mapping[str, EndpointSpec | Mapping[str, int]],
    ) -> LimiterRegistry:
        """Build from ``{"POST /api/v3/order": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1}, ...}``.

        A bare mapping row draws from the limiter named ``"default"`` (a single limiter given
        instead of a mapping gets that name).
        """
        registry = cls()
        if isinstance(limiters, WeightedLimiter):
            limiters = {"default": limiters}
        for name, limiter in limiters.items():
            registry.add_limiter(name, limiter)
        for endpoint, spec in endpoints.items():
            if not isinstance(spec, EndpointSpec):
                spec = EndpointSpec(costs=spec)
            registry.add_endpoint(endpoint, spec.costs, limiter=spec.limiter, priority=spec.priority)
        return registry

    def add_limiter(self, name: str, limiter: WeightedLimiter) -> None:
        if name in self._limiters:
            raise ValueError(f"limiter {name!r} is already registered")
        self._limiters[name] = limiter

    def add_endpoint(
        self,
        endpoint: str,
        costs: Mapping[str, int],
        *,
        limiter: str = "default",
        priority: int = Priority.NORMAL,
    ) -> EndpointLimit:
        if endpoint in self._endpoints:
            raise ValueError(f"endpoint {endpoint!r} is already registered")
        found = self._limiters.get(limiter)
        if found is None:
            raise KeyError(f"endpoint {endpoint!r} names limiter {limiter!r}, which is not registered")
        entry = EndpointLimit(endpoint, limiter, found, found.costs(costs), int(priority))
        self._endpoints[endpoint] = entry
        return entry

    def get(self, endpoint: str) -> EndpointLimit:
        entry = self._endpoints.get(endpoint)
        if entry is None:
            raise UnknownEndpointError(f"endpoint {endpoint!r} has no rate-limit entry; add it to the table")
        return entry

    def limiter(self, name: str = "default") -> WeightedLimiter:
        return self._limiters[name]

    def try_acquire(self, endpoint: str, priority: int | None = None) -> bool:
        return self.get(endpoint).try_acquire(priority)

    async def acquire(self, endpoint: str, priority: int | None = None) -> None:
        await self.get(endpoint).acquire(priority)

    def block_for(self, seconds: float) -> None:
        """Block every limiter (an IP ban or a 429 whose scope is not known)."""
        for limiter in self._limiters.values():
            limiter.block_for(seconds)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self._endpoints)

    @property
    def limiters(self) -> Mapping[str, WeightedLimiter]:
        return dict(self._limiters)

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self._endpoints
