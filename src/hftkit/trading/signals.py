"""Signal manager: typed, expiring per-symbol signals with batch operations and persistence.

A signal is the latest value of one ``signal_type`` from one ``source`` for one symbol
(for example ``("BTCUSDT", "imbalance", "book_model")``). The core, ``SignalManager``, is a
synchronous in-memory store driven by an injectable Clock; ``AsyncSignalManager`` is the
asyncio facade (concurrent multi-symbol queries, a periodic cleanup task, store writes off
the event loop). Persistence goes through the small ``SignalStore`` protocol; the default
implementation is ``hftkit.storage.signals_sqlite.SqliteSignalStore``.

Timestamps are wall-clock nanoseconds (``Clock.time_ns``) because signals outlive the
process: a restart restores every signal whose expiry has not passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from hftkit.core.clock import REAL_CLOCK, Clock
from hftkit.core.errors import HftkitError

logger = logging.getLogger(__name__)

__all__ = [
    "AsyncSignalManager",
    "InvalidSignalError",
    "Signal",
    "SignalKey",
    "SignalManager",
    "SignalStore",
    "SignalUpdate",
]

SignalKey = tuple[str, str, str]
"""(symbol, signal_type, source)."""


class InvalidSignalError(HftkitError, ValueError):
    """A signal update that cannot be stored; ``field`` names the offending input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """One stored signal. ``expires_ns`` is None for a signal without a time to live."""

    symbol: str
    signal_type: str
    value: float
    confidence: float
    source: str = ""
    ttl_ns: int | None = None
    created_ns: int
    updated_ns: int

    @property
    def key(self) -> SignalKey:
        return (self.symbol, self.signal_type, self.source)

    @property
    def expires_ns(self) -> int | None:
        return None if self.ttl_ns is None else self.updated_ns + self.ttl_ns

    def is_expired(self, now_ns: int) -> bool:
        return self.ttl_ns is not None and self.updated_ns + self.ttl_ns <= now_ns


class SignalUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One input of ``upsert_many``: what a producer says, before validation and timestamps."""

    symbol: str
    signal_type: str
    value: float
    confidence: float = 1.0
    ttl_seconds: float | None = None
    source: str = ""


@runtime_checkable
class SignalStore(Protocol):
    """Where signals survive restarts. Implementations write a batch in one transaction."""

    def save_many(self, signals: Sequence[Signal]) -> None: ...

    def load_all(self) -> list[Signal]: ...

    def delete_expired(self, now_ns: int) -> int: ...

    def delete_many(self, keys: Sequence[SignalKey]) -> None: ...


def _validate(
    symbol: object,
    signal_type: object,
    value: object,
    confidence: object,
    ttl_seconds: object,
    source: object,
) -> int | None:
    """Check one update; return its ttl in ns. Raise InvalidSignalError naming the field."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise InvalidSignalError(f"signal symbol must be a non-empty string, got {symbol!r}", "symbol")
    if not isinstance(signal_type, str) or not signal_type.strip():
        raise InvalidSignalError(
            f"signal type must be a non-empty string, got {signal_type!r}", "signal_type"
        )
    if not isinstance(source, str):
        raise InvalidSignalError(f"signal source must be a string, got {source!r}", "source")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSignalError(f"signal value must be a finite number, got {value!r}", "value")
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not 0.0 <= confidence <= 1.0  # also False for NaN
    ):
        raise InvalidSignalError(f"signal confidence must lie in [0, 1], got {confidence!r}", "confidence")
    if ttl_seconds is None:
        return None
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int | float)
        or not math.isfinite(ttl_seconds)
        or ttl_seconds <= 0
    ):
        raise InvalidSignalError(
            f"signal ttl must be a positive number of seconds or None, got {ttl_seconds!r}", "ttl_seconds"
        )
    return max(1, round(ttl_seconds * 1e9))


class SignalManager:
    """Synchronous in-memory signal store (the core); sans-I/O except through ``persist``.

    Expired signals are invisible to queries at once and removed by ``expire``: a heap of
    expiry times makes that cost proportional to what actually expires. Changes since the
    last ``persist`` are tracked so a store receives one batch per flush.
    """

    def __init__(self, clock: Clock = REAL_CLOCK, store: SignalStore | None = None) -> None:
        self._clock = clock
        self._store = store
        self._signals: dict[SignalKey, Signal] = {}
        self._by_symbol: dict[str, dict[tuple[str, str], Signal]] = {}
        self._expiries: list[tuple[int, SignalKey]] = []
        self._dirty: dict[SignalKey, Signal] = {}
        self._deleted: set[SignalKey] = set()
        self.invalid_count = 0
        self.invalid_by_field: dict[str, int] = {}
        self.expired_count = 0

    # writes --------------------------------------------------------------------------------
    def upsert(
        self,
        symbol: str,
        signal_type: str,
        value: float,
        confidence: float = 1.0,
        ttl_seconds: float | None = None,
        source: str = "",
    ) -> Signal:
        """Create or update one signal; an update keeps ``created_ns`` and restarts its ttl."""
        try:
            ttl_ns = _validate(symbol, signal_type, value, confidence, ttl_seconds, source)
        except InvalidSignalError as error:
            self._count_invalid(error.field)
            raise
        return self._apply(self._clock.time_ns(), symbol, signal_type, value, confidence, ttl_ns, source)

    def upsert_many(self, updates: Iterable[SignalUpdate]) -> list[Signal]:
        """Validate every update first, then apply all of them (none when any is invalid).

        On invalid input each bad update is counted and one InvalidSignalError reports the
        first, with the positions of all bad updates in its message.
        """
        batch = list(updates)
        ttls: list[int | None] = []
        errors: list[tuple[int, InvalidSignalError]] = []
        for index, update in enumerate(batch):
            try:
                if not isinstance(update, SignalUpdate):
                    raise InvalidSignalError(
                        f"expected a SignalUpdate, got {type(update).__name__}", "update"
                    )
                ttls.append(
                    _validate(
                        update.symbol,
                        update.signal_type,
                        update.value,
                        update.confidence,
                        update.ttl_seconds,
                        update.source,
                    )
                )
            except InvalidSignalError as error:
                self._count_invalid(error.field)
                errors.append((index, error))
        if errors:
            index, first = errors[0]
            positions = ", ".join(str(position) for position, _ in errors)
            raise InvalidSignalError(
                f"{len(errors)} invalid update(s) at {positions}; first (#{index}): {first}", first.field
            ) from first
        now = self._clock.time_ns()
        apply = self._apply
        return [
            apply(now, u.symbol, u.signal_type, u.value, u.confidence, ttl_ns, u.source)
            for u, ttl_ns in zip(batch, ttls, strict=True)
        ]

    def _apply(
        self,
        now: int,
        symbol: str,
        signal_type: str,
        value: float,
        confidence: float,
        ttl_ns: int | None,
        source: str,
    ) -> Signal:
        key = (symbol, signal_type, source)
        previous = self._signals.get(key)
        created = now if previous is None or previous.is_expired(now) else previous.created_ns
        signal = Signal(
            symbol=symbol,
            signal_type=signal_type,
            value=float(value),
            confidence=float(confidence),
            source=source,
            ttl_ns=ttl_ns,
            created_ns=created,
            updated_ns=now,
        )
        self._put(signal)
        self._dirty[key] = signal
        if self._deleted:
            self._deleted.discard(key)
        return signal

    def _put(self, signal: Signal) -> None:
        key = signal.key
        self._signals[key] = signal
        self._by_symbol.setdefault(signal.symbol, {})[(signal.signal_type, signal.source)] = signal
        if signal.ttl_ns is not None:
            heap = self._expiries
            heapq.heappush(heap, (signal.updated_ns + signal.ttl_ns, key))
            if len(heap) > 4 * len(self._signals) + 1024:
                self._compact_expiries()

    def _compact_expiries(self) -> None:
        """Drop heap entries left behind by updates (frequent updates with a long ttl pile them up)."""
        live = [(s.updated_ns + s.ttl_ns, key) for key, s in self._signals.items() if s.ttl_ns is not None]
        heapq.heapify(live)
        self._expiries = live

    def _count_invalid(self, field: str) -> None:
        self.invalid_count += 1
        self.invalid_by_field[field] = self.invalid_by_field.get(field, 0) + 1

    def remove(self, symbol: str, signal_type: str, source: str = "") -> bool:
        """Delete one signal now (and from the store at the next persist)."""
        key = (symbol, signal_type, source)
        if not self._drop(key):
            return False
        self._deleted.add(key)
        self._dirty.pop(key, None)
        return True

    def _drop(self, key: SignalKey) -> bool:
        signal = self._signals.pop(key, None)
        if signal is None:
            return False
        per_symbol = self._by_symbol[key[0]]
        del per_symbol[(key[1], key[2])]
        if not per_symbol:
            del self._by_symbol[key[0]]
        return True

    # reads ---------------------------------------------------------------------------------
    def get(self, symbol: str, signal_type: str, source: str = "") -> Signal | None:
        """The live signal, or None when absent or expired (expired ones wait for ``expire``)."""
        signal = self._signals.get((symbol, signal_type, source))
        if signal is None or signal.is_expired(self._clock.time_ns()):
            return None
        return signal

    def query(self, symbol: str, signal_type: str | None = None) -> list[Signal]:
        """Live signals of a symbol, optionally of one type, ordered by (type, source)."""
        per_symbol = self._by_symbol.get(symbol)
        if not per_symbol:
            return []
        now = self._clock.time_ns()
        return [
            signal
            for (kind, _), signal in sorted(per_symbol.items())
            if (signal_type is None or kind == signal_type) and not signal.is_expired(now)
        ]

    def query_many(self, symbols: Iterable[str], signal_type: str | None = None) -> dict[str, list[Signal]]:
        """``query`` for several symbols at once (every requested symbol is a key)."""
        return {symbol: self.query(symbol, signal_type) for symbol in symbols}

    def symbols(self) -> list[str]:
        return sorted(self._by_symbol)

    def __len__(self) -> int:
        return len(self._signals)

    # expiry and persistence ------------------------------------------------------------------
    def expire(self, now_ns: int | None = None) -> list[Signal]:
        """Remove every signal whose ttl has run out by ``now_ns``; return them."""
        now = self._clock.time_ns() if now_ns is None else now_ns
        heap = self._expiries
        removed = []
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            signal = self._signals.get(key)
            # a newer update may have pushed the expiry out: its own heap entry handles it
            if signal is not None and signal.expires_ns == expires:
                self._drop(key)
                self._dirty.pop(key, None)
                removed.append(signal)
        self.expired_count += len(removed)
        return removed

    def take_changes(self) -> tuple[list[Signal], list[SignalKey]]:
        """Changes since the last call: signals to save and keys to delete (for a flusher)."""
        saved = list(self._dirty.values())
        deleted = list(self._deleted)
        self._dirty.clear()
        self._deleted.clear()
        return saved, deleted

    def persist(self) -> int:
        """Write pending changes and drop expired rows in the store; return signals saved.

        On a store error the changes are kept for the next attempt and the error propagates.
        """
        if self._store is None:
            return 0
        saved, deleted = self.take_changes()
        try:
            _write_changes(self._store, saved, deleted, self._clock.time_ns())
        except Exception:
            self.requeue(saved, deleted)
            raise
        return len(saved)

    def requeue(self, saved: Sequence[Signal], deleted: Sequence[SignalKey]) -> None:
        """Put back changes whose write failed, unless newer changes superseded them."""
        for signal in saved:
            if self._signals.get(signal.key) is signal:
                self._dirty.setdefault(signal.key, signal)
        for key in deleted:
            if key not in self._signals:
                self._deleted.add(key)

    def now_ns(self) -> int:
        return self._clock.time_ns()

    def restore(self, now_ns: int | None = None) -> int:
        """Load the store's unexpired signals (on startup); return how many were restored."""
        if self._store is None:
            return 0
        now = self._clock.time_ns() if now_ns is None else now_ns
        restored = self.apply_loaded(self._store.load_all(), now)
        self._store.delete_expired(now)
        return restored

    def apply_loaded(self, signals: Iterable[Signal], now_ns: int) -> int:
        """Adopt signals loaded from a store, skipping expired ones and ones we hold newer."""
        restored = 0
        for signal in signals:
            if signal.is_expired(now_ns):
                continue
            current = self._signals.get(signal.key)
            if current is not None and current.updated_ns >= signal.updated_ns:
                continue
            self._put(signal)
            restored += 1
        return restored

    @property
    def store(self) -> SignalStore | None:
        return self._store


def _write_changes(
    store: SignalStore, saved: Sequence[Signal], deleted: Sequence[SignalKey], now_ns: int
) -> None:
    if saved:
        store.save_many(saved)
    if deleted:
        store.delete_many(deleted)
    store.delete_expired(now_ns)


class AsyncSignalManager:
    """Asyncio facade over ``SignalManager``: gathered multi-symbol queries, store I/O in a
    worker thread (never on the event loop), and an optional periodic expire-and-flush task.
    """

    def __init__(self, manager: SignalManager) -> None:
        self.manager = manager
        self._cleanup: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.cleanup_errors = 0

    async def upsert(
        self,
        symbol: str,
        signal_type: str,
        value: float,
        confidence: float = 1.0,
        ttl_seconds: float | None = None,
        source: str = "",
    ) -> Signal:
        return self.manager.upsert(symbol, signal_type, value, confidence, ttl_seconds, source)

    async def upsert_many(self, updates: Iterable[SignalUpdate]) -> list[Signal]:
        return self.manager.upsert_many(updates)

    async def get(self, symbol: str, signal_type: str, source: str = "") -> Signal | None:
        return self.manager.get(symbol, signal_type, source)

    async def query(self, symbol: str, signal_type: str | None = None) -> list[Signal]:
        return self.manager.query(symbol, signal_type)

    async def query_many(
        self, symbols: Iterable[str], signal_type: str | None = None
    ) -> dict[str, list[Signal]]:
        """Look up every symbol concurrently (one awaitable per symbol, gathered)."""
        wanted = list(dict.fromkeys(symbols))
        results = await asyncio.gather(*(self.query(symbol, signal_type) for symbol in wanted))
        return dict(zip(wanted, results, strict=True))

    async def restore(self) -> int:
        """Load unexpired signals from the store; the reads run in a worker thread."""
        store = self.manager.store
        if store is None:
            return 0
        loaded = await asyncio.to_thread(store.load_all)
        now = self.manager.now_ns()
        restored = self.manager.apply_loaded(loaded, now)
        await asyncio.to_thread(store.delete_expired, now)
        return restored

    async def flush(self) -> int:
        """Hand pending changes to the store in a worker thread; return signals saved."""
        store = self.manager.store
        if store is None:
            return 0
        async with self._flush_lock:
            saved, deleted = self.manager.take_changes()
            now = self.manager.now_ns()
            try:
                await asyncio.to_thread(_write_changes, store, saved, deleted, now)
            except BaseException:
                self.manager.requeue(saved, deleted)
                raise
            return len(saved)

    def start_cleanup(self, interval_seconds: float = 1.0) -> asyncio.Task[None]:
        """Start the periodic task that expires signals and flushes changes to the store."""
        if not math.isfinite(interval_seconds) or interval_seconds <= 0:
            raise ValueError(f"cleanup interval must be positive, got {interval_seconds!r}")
        if self._cleanup is not None and not self._cleanup.done():
            raise RuntimeError("the signal cleanup task is already running")
        self._cleanup = asyncio.get_running_loop().create_task(
            self._run_cleanup(interval_seconds), name="signal-cleanup"
        )
        return self._cleanup

    async def _run_cleanup(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                expired = self.manager.expire()
                if expired:
                    logger.debug("expired %d signals", len(expired))
                await self.flush()
            except Exception:
                self.cleanup_errors += 1
                logger.exception("signal cleanup failed; retrying at the next interval")

    async def aclose(self) -> None:
        """Stop the cleanup task and write what is pending."""
        task, self._cleanup = self._cleanup, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.manager.expire()
        await self.flush()
