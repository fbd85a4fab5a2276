"""Maps keyed by what a venue sends, with a bound: a counter with an "other" bucket, an LRU map.

A dict keyed by strings off the wire (event types, symbols, error codes, client order ids) grows
by whatever the venue chooses to send: a venue having a bad day, or a hostile one, turns a
diagnostic counter into a memory leak. These keep the first ``max_keys`` keys exactly, fold
the rest into one bucket (or evict the least recently used), and count what they folded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

OTHER = "<other>"
MAX_KEY_LENGTH = 64  # a venue-chosen string key is truncated to this many characters


class BoundedCounter(dict[K, int]):
    """Counts per key for at most ``max_keys`` distinct keys; later keys count under ``OTHER``.

    A plain ``dict`` to readers (``counter[kind]``, ``.get``, ``.items()``, JSON); ``add`` is
    the only way to count. ``folded`` is how many counts went to ``OTHER`` for want of room.
    String keys are cut to ``MAX_KEY_LENGTH`` characters so one key cannot be a megabyte.
    """

    __slots__ = ("folded", "max_keys")

    def __init__(self, max_keys: int = 64) -> None:
        if max_keys < 1:
            raise ValueError("a BoundedCounter needs room for at least one key")
        super().__init__()
        self.max_keys = max_keys
        self.folded = 0

    def add(self, key: K, count: int = 1) -> None:
        if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
            key = cast("K", key[:MAX_KEY_LENGTH])
        if key in self:
            self[key] += count
        elif len(self) < self.max_keys - 1 or (len(self) < self.max_keys and OTHER in self):
            self[key] = count
        else:  # the last slot is kept for the bucket
            self.folded += count
            other = cast("K", OTHER)
            self[other] = self.get(other, 0) + count

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (dict, (dict(self),))


class LruMap(OrderedDict[K, V], Generic[K, V]):
    """A mapping that keeps at most ``max_size`` entries, evicting the least recently set or read
    by ``touch``; ``evicted`` counts the evictions."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("an LruMap needs room for at least one entry")
        super().__init__()
        self.max_size = max_size
        self.evicted = 0

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            self.move_to_end(key)
        super().__setitem__(key, value)
        while len(self) > self.max_size:
            self.popitem(last=False)
            self.evicted += 1

    def touch(self, key: K) -> V | None:
        """The value of ``key`` (None if absent), marked as recently used."""
        if key not in self:
            return None
        self.move_to_end(key)
        return self[key]


__all__ = ["MAX_KEY_LENGTH", "OTHER", "BoundedCounter", "LruMap"]
