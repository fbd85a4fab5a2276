"""An async TTL cache with single flight: one load per missing key however many callers wait.

Concurrent callers of a missing key share one in-flight load; its exception reaches every
waiter and is never cached, so the next call tries again. The load runs in its own task, so
one impatient (cancelled) caller does not cancel the load the others are waiting for.
Entries expire ``ttl`` seconds after their load finished; the least recently used entry is
evicted beyond ``max_size``.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hftkit.core.clock import REAL_CLOCK, Clock

_V = TypeVar("_V")
_NS_PER_SECOND = 1_000_000_000


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_failures: int = 0
    joined: int = 0
    """Misses that joined a load already in flight instead of starting one."""
    evictions: int = 0
    expirations: int = 0


class AsyncTTLCache(Generic[_V]):
    """Key -> value with expiry, LRU bound and single-flight loading."""

    def __init__(self, ttl: float, max_size: int = 1024, clock: Clock = REAL_CLOCK) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive seconds")
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.ttl_ns = round(ttl * _NS_PER_SECOND)
        self.max_size = max_size
        self._now = clock.monotonic_ns
        self._entries: OrderedDict[Hashable, tuple[int, _V]] = OrderedDict()
        self._in_flight: dict[Hashable, asyncio.Task[_V]] = {}
        self.stats = CacheStats()

    def peek(self, key: Hashable) -> tuple[bool, _V | None]:
        """(found, value) without loading; an expired entry is dropped and reads as missing."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self._now():
            del self._entries[key]
            self.stats.expirations += 1
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    async def get_or_load(self, key: Hashable, loader: Callable[[], Awaitable[_V]]) -> _V:
        """The cached value, or the result of one shared ``loader()`` call."""
        found, value = self.peek(key)
        if found:
            self.stats.hits += 1
            return value  # type: ignore[return-value]
        self.stats.misses += 1
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, loader))
            task.add_done_callback(_retrieve_exception)
            self._in_flight[key] = task
            self.stats.loads += 1
        else:
            self.stats.joined += 1
        return await asyncio.shield(task)

    async def _load(self, key: Hashable, loader: Callable[[], Awaitable[_V]]) -> _V:
        task = asyncio.current_task()
        try:
            value = await loader()
        except BaseException:
            self.stats.load_failures += 1
            raise
        finally:
            owner = self._in_flight.get(key)
            if owner is task:
                del self._in_flight[key]
            else:
                owner = None  # invalidated while loading: do not store a result nobody asked to keep
        if owner is not None:
            self._store(key, value)
        return value

    def _store(self, key: Hashable, value: _V) -> None:
        self._entries[key] = (self._now() + self.ttl_ns, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)
            self.stats.evictions += 1

    def put(self, key: Hashable, value: _V) -> None:
        """Store a value known from elsewhere (e.g. pushed by a stream)."""
        self._store(key, value)

    def invalidate(self, key: Hashable) -> None:
        """Forget ``key``; a load in flight still answers its waiters but is not stored."""
        self._entries.pop(key, None)
        self._in_flight.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._in_flight.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # Every waiter got the error; if all of them were cancelled, nobody is left to read it.
    if not task.cancelled():
        task.exception()


def _default_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    return (args, tuple(sorted(kwargs.items()))) if kwargs else args


def ttl_cache(
    ttl: float,
    max_size: int = 1024,
    *,
    clock: Clock = REAL_CLOCK,
    key: Callable[..., Hashable] | None = None,
) -> Callable[[Callable[..., Awaitable[_V]]], Callable[..., Awaitable[_V]]]:
    """Decorate an async function; the wrapper exposes ``.cache`` (stats, invalidate, clear).

    Arguments must be hashable (or give ``key=`` to build the key from them); an unhashable
    argument raises ``TypeError`` naming the function.
    """

    def decorate(function: Callable[..., Awaitable[_V]]) -> Callable[..., Awaitable[_V]]:
        cache: AsyncTTLCache[_V] = AsyncTTLCache(ttl, max_size, clock)

        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> _V:
            cache_key = key(*args, **kwargs) if key is not None else _default_key(args, kwargs)
            try:
                hash(cache_key)
            except TypeError as error:
                raise TypeError(
                    f"ttl_cache on {function.__qualname__}: arguments must be hashable ({error}); pass key="
                ) from None
            return await cache.get_or_load(cache_key, lambda: function(*args, **kwargs))

        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return decorate
