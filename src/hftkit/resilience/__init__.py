"""Governing outbound calls: rate limits, retries, circuit breakers, caches, supervised tasks.

Cores are synchronous and read an injectable ``Clock``; the async shells only add waiting.
"""

from hftkit.resilience.batcher import RequestBatcher
from hftkit.resilience.breaker import BreakerRegistry, CircuitBreaker, CircuitState
from hftkit.resilience.cache import AsyncTTLCache, CacheStats, ttl_cache
from hftkit.resilience.concurrency import (
    DEFAULT_TIMEOUT_SECONDS,
    default_timeout,
    gather_bounded,
    set_default_timeout,
    with_timeout,
)
from hftkit.resilience.errors import (
    BatchResultMismatchError,
    CapacityExceededError,
    CircuitOpenError,
    DuplicateTaskError,
    OperationTimeoutError,
    ResilienceError,
    UnknownEndpointError,
    UnknownWindowError,
)
from hftkit.resilience.registry import EndpointLimit, EndpointSpec, LimiterRegistry
from hftkit.resilience.retry import RetryPolicy, retry_after_hint
from hftkit.resilience.supervisor import RestartMode, RestartPolicy, TaskState, TaskStatus, TaskSupervisor
from hftkit.resilience.token_bucket import TokenBucket
from hftkit.resilience.weighted import (
    Priority,
    RateWindow,
    WeightedLimiter,
    WindowCosts,
    WindowUsage,
    parse_interval_code,
)

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "AsyncTTLCache",
    "BatchResultMismatchError",
    "BreakerRegistry",
    "CacheStats",
    "CapacityExceededError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "DuplicateTaskError",
    "EndpointLimit",
    "EndpointSpec",
    "LimiterRegistry",
    "OperationTimeoutError",
    "Priority",
    "RateWindow",
    "RequestBatcher",
    "ResilienceError",
    "RestartMode",
    "RestartPolicy",
    "RetryPolicy",
    "TaskState",
    "TaskStatus",
    "TaskSupervisor",
    "TokenBucket",
    "UnknownEndpointError",
    "UnknownWindowError",
    "WeightedLimiter",
    "WindowCosts",
    "WindowUsage",
    "default_timeout",
    "gather_bounded",
    "parse_interval_code",
    "retry_after_hint",
    "set_default_timeout",
    "ttl_cache",
    "with_timeout",
]
