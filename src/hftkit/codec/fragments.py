"""Pre-serialized JSON pieces, reused inside larger payloads, in a bounded LRU cache with a TTL.

Two shapes of piece:

* ``JsonFragment``: a whole JSON value (a subscription message, a params object). Its
  ``fragment`` is placed as a value in a dict given to orjson (``encode_json``), its ``raw`` as a
  ``msgspec.Raw`` field of a Struct given to msgspec: both copy the bytes in verbatim.
* ``ObjectMembers``: the constant members of an object (``"symbol":"BTCUSDT","type":"LIMIT"``);
  ``render`` appends the changing members (price, quantity, client id) and closes the object.

Every piece is checked to be valid JSON when it enters the cache, so anything spliced from it is
valid JSON too; the splice itself does no parsing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from hftkit.codec.decode import decode_json
from hftkit.codec.encode import ENCODE_FAILURES, encode_json
from hftkit.codec.errors import CodecErrorCounters
from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError


class JsonFragment:
    """One valid JSON value, pre-encoded, ready to splice through orjson or msgspec."""

    __slots__ = ("fragment", "json", "raw")

    def __init__(self, json: bytes) -> None:
        self.json = json
        self.fragment = orjson.Fragment(json)
        self.raw = msgspec.Raw(json)

    @classmethod
    def from_value(cls, value: Any, counters: CodecErrorCounters | None = None) -> JsonFragment:
        """Encode ``value`` once (valid by construction)."""
        return cls(encode_json(value, counters=counters))

    @classmethod
    def from_json(cls, json: bytes | str, counters: CodecErrorCounters | None = None) -> JsonFragment:
        """Adopt already-encoded JSON after checking it parses (raises a counted ``CodecError``)."""
        encoded = json.encode("utf-8") if isinstance(json, str) else bytes(json)
        decode_json(encoded, counters)
        return cls(encoded)

    @property
    def size(self) -> int:
        return len(self.json)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonFragment) and other.json == self.json

    def __hash__(self) -> int:
        return hash(self.json)

    def __repr__(self) -> str:
        return f"JsonFragment({self.json[:60]!r}{'...' if len(self.json) > 60 else ''})"


class DuplicateMemberError(HftkitError, ValueError):
    """A changing member would repeat a constant one: JSON with duplicate keys means different
    things to different parsers, so it is never produced."""


class ObjectMembers:
    """The constant members of a JSON object, pre-encoded; ``render`` adds the changing ones."""

    __slots__ = ("_closed", "_head", "keys", "members")

    def __init__(self, constant: Mapping[str, Any], counters: CodecErrorCounters | None = None) -> None:
        encoded = encode_json(dict(constant), counters=counters)
        self.members: bytes = encoded[1:-1]
        """The members without braces, e.g. ``b'"symbol":"BTCUSDT","type":"LIMIT"'``."""
        self.keys: frozenset[str] = frozenset(constant)
        self._head = b"{" + self.members + b"," if self.members else b"{"
        self._closed = b"{" + self.members + b"}"

    def render(self, changing: Mapping[str, Any], counters: CodecErrorCounters | None = None) -> bytes:
        """The whole object: constant members first, then ``changing`` (encoded now).

        Worth it when the constant part is large or costly to build; for a handful of short
        members orjson encoding the whole dict is as fast (see ``hftkit bench core``).
        """
        if not self.keys.isdisjoint(changing):
            repeated = sorted(self.keys.intersection(changing))
            raise DuplicateMemberError(f"members {repeated} are already constant in this object")
        try:
            tail = orjson.dumps(changing)
        except ENCODE_FAILURES:
            # Structs inside, a non-dict mapping, or a classified error.
            tail = encode_json(changing if isinstance(changing, dict) else dict(changing), counters=counters)
        if len(tail) == 2:  # b"{}": nothing changing
            return self._closed
        if not self.members:
            return tail
        return self._head + tail[1:]

    @property
    def size(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"ObjectMembers({self.members[:60]!r}{'...' if len(self.members) > 60 else ''})"


CachedPiece = JsonFragment | ObjectMembers


@dataclass(frozen=True, slots=True)
class FragmentCacheStats:
    """A snapshot of a cache's counters. ``expirations`` are entries dropped for age (each such
    lookup also counts as a miss); ``evictions`` are entries dropped to respect ``max_entries``."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int
    max_entries: int
    total_bytes: int

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class FragmentCache:
    """Bounded LRU of pre-serialized pieces keyed by anything hashable, with an optional TTL.

    ``ttl_ns`` is measured on ``clock.monotonic_ns()`` from the moment a piece is stored (a hit
    does not extend it): use it for pieces that go stale, like a listen key or a session token.
    """

    __slots__ = (
        "_clock",
        "_entries",
        "_total_bytes",
        "counters",
        "evictions",
        "expirations",
        "hits",
        "max_entries",
        "misses",
        "ttl_ns",
    )

    def __init__(
        self,
        max_entries: int = 1024,
        ttl_ns: int | None = None,
        clock: Clock = REAL_CLOCK,
        counters: CodecErrorCounters | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if ttl_ns is not None and ttl_ns <= 0:
            raise ValueError(f"ttl_ns must be positive or None, got {ttl_ns}")
        self.max_entries = max_entries
        self.ttl_ns = ttl_ns
        self.counters = counters
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[CachedPiece, int]] = OrderedDict()
        self._total_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def get(self, key: Hashable) -> CachedPiece | None:
        """The piece stored under ``key`` if present and fresh (counted as a hit), else None (a miss)."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if self.ttl_ns is not None and self._clock.monotonic_ns() >= entry[1]:
            self._remove(key)
            self.expirations += 1
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, piece: CachedPiece) -> CachedPiece:
        """Store ``piece`` (replacing any older one), evicting least recently used pieces to fit."""
        if key in self._entries:
            self._remove(key)
        expires_at = self._clock.monotonic_ns() + self.ttl_ns if self.ttl_ns is not None else 0
        self._entries[key] = (piece, expires_at)
        self._total_bytes += piece.size
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
        return piece

    def put_value(self, key: Hashable, value: Any) -> JsonFragment:
        """Encode ``value`` and store it as a ``JsonFragment``."""
        piece = JsonFragment.from_value(value, self.counters)
        self.put(key, piece)
        return piece

    def put_json(self, key: Hashable, json: bytes | str) -> JsonFragment:
        """Store already-encoded JSON after checking that it parses."""
        piece = JsonFragment.from_json(json, self.counters)
        self.put(key, piece)
        return piece

    def put_members(self, key: Hashable, constant: Mapping[str, Any]) -> ObjectMembers:
        """Encode the constant members of an object and store them."""
        piece = ObjectMembers(constant, self.counters)
        self.put(key, piece)
        return piece

    def fragment(self, key: Hashable, build: Callable[[], Any]) -> JsonFragment:
        """The ``JsonFragment`` under ``key``, encoding ``build()`` on a miss."""
        piece = self.get(key)
        if piece is None:
            return self.put_value(key, build())
        if not isinstance(piece, JsonFragment):
            raise TypeError(f"key {key!r} holds {type(piece).__name__}, not JsonFragment")
        return piece

    def object_members(self, key: Hashable, build: Callable[[], Mapping[str, Any]]) -> ObjectMembers:
        """The ``ObjectMembers`` under ``key``, encoding ``build()`` on a miss."""
        piece = self.get(key)
        if piece is None:
            return self.put_members(key, build())
        if not isinstance(piece, ObjectMembers):
            raise TypeError(f"key {key!r} holds {type(piece).__name__}, not ObjectMembers")
        return piece

    def invalidate(self, key: Hashable) -> bool:
        """Drop ``key``; return whether it was present."""
        if key not in self._entries:
            return False
        self._remove(key)
        return True

    def purge_expired(self) -> int:
        """Drop every expired piece now (lookups drop them lazily anyway); return how many."""
        if self.ttl_ns is None:
            return 0
        now = self._clock.monotonic_ns()
        stale = [key for key, (_, expires_at) in self._entries.items() if now >= expires_at]
        for key in stale:
            self._remove(key)
        self.expirations += len(stale)
        return len(stale)

    def clear(self) -> None:
        """Drop every piece (not counted as evictions: nothing was pushed out)."""
        self._entries.clear()
        self._total_bytes = 0

    def _remove(self, key: Hashable) -> None:
        piece, _ = self._entries.pop(key)
        self._total_bytes -= piece.size

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether a fresh piece is stored under ``key``, without touching recency or counters."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        return self.ttl_ns is None or self._clock.monotonic_ns() < entry[1]

    @property
    def stats(self) -> FragmentCacheStats:
        return FragmentCacheStats(
            hits=self.hits,
            misses=self.misses,
            evictions=self.evictions,
            expirations=self.expirations,
            size=len(self._entries),
            max_entries=self.max_entries,
            total_bytes=self._total_bytes,
        )
