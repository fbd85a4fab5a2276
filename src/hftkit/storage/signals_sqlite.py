"""SQLite implementation of the signal store (``hftkit.trading.signals.SignalStore``).

Standard-library ``sqlite3``, WAL journal (readers never block the writer), one transaction
per batch, schema created on first use. Calls may come from a worker thread (the async
signal facade runs store I/O off the event loop), so the connection is shared across
threads behind a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec

from hftkit.core.errors import HftkitError
from hftkit.trading.signals import Signal, SignalKey

__all__ = ["SignalStoreError", "SqliteSignalStore"]

SCHEMA_VERSION = 1
_COLUMNS = (
    "symbol",
    "signal_type",
    "source",
    "value",
    "confidence",
    "ttl_ns",
    "created_ns",
    "updated_ns",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    symbol      TEXT    NOT NULL,
    signal_type TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    value       REAL    NOT NULL,
    confidence  REAL    NOT NULL,
    ttl_ns      INTEGER,
    created_ns  INTEGER NOT NULL,
    updated_ns  INTEGER NOT NULL,
    expires_ns  INTEGER,
    PRIMARY KEY (symbol, signal_type, source)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signals_expires ON signals (expires_ns) WHERE expires_ns IS NOT NULL;
"""

_UPSERT = """
INSERT INTO signals
    (symbol, signal_type, source, value, confidence, ttl_ns, created_ns, updated_ns, expires_ns)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (symbol, signal_type, source) DO UPDATE SET
    value = excluded.value,
    confidence = excluded.confidence,
    ttl_ns = excluded.ttl_ns,
    created_ns = excluded.created_ns,
    updated_ns = excluded.updated_ns,
    expires_ns = excluded.expires_ns
WHERE excluded.updated_ns >= signals.updated_ns
"""


class SignalStoreError(HftkitError):
    """The database holds something that is not a signal of this schema."""


class SqliteSignalStore:
    """Signals in one SQLite table keyed by (symbol, signal_type, source)."""

    def __init__(self, path: str | Path = ":memory:", timeout_seconds: float = 5.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=timeout_seconds, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self.journal_mode = self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.executescript(_SCHEMA)
            self._connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise SignalStoreError("the signal store is closed")
        return self._connection

    def save_many(self, signals: Sequence[Signal]) -> None:
        """Upsert a batch in one transaction; an older copy never overwrites a newer row."""
        rows = [
            (
                signal.symbol,
                signal.signal_type,
                signal.source,
                signal.value,
                signal.confidence,
                signal.ttl_ns,
                signal.created_ns,
                signal.updated_ns,
                signal.expires_ns,
            )
            for signal in signals
        ]
        if not rows:
            return
        with self._lock:
            database = self._db()
            database.execute("BEGIN IMMEDIATE")
            try:
                database.executemany(_UPSERT, rows)
            except BaseException:
                database.execute("ROLLBACK")
                raise
            database.execute("COMMIT")

    def load_all(self) -> list[Signal]:
        with self._lock:
            rows = (
                self._db()
                .execute(f"SELECT {', '.join(_COLUMNS)} FROM signals ORDER BY symbol, signal_type, source")
                .fetchall()
            )
        signals = []
        for row in rows:
            try:
                signals.append(msgspec.convert(dict(zip(_COLUMNS, row, strict=True)), Signal))
            except msgspec.ValidationError as error:
                raise SignalStoreError(f"malformed signal row {row!r}: {error}") from None
        return signals

    def delete_expired(self, now_ns: int) -> int:
        with self._lock:
            cursor = self._db().execute(
                "DELETE FROM signals WHERE expires_ns IS NOT NULL AND expires_ns <= ?", (now_ns,)
            )
            return cursor.rowcount

    def delete_many(self, keys: Sequence[SignalKey]) -> None:
        if not keys:
            return
        with self._lock:
            database = self._db()
            database.execute("BEGIN IMMEDIATE")
            try:
                database.executemany(
                    "DELETE FROM signals WHERE symbol = ? AND signal_type = ? AND source = ?", list(keys)
                )
            except BaseException:
                database.execute("ROLLBACK")
                raise
            database.execute("COMMIT")

    def count(self) -> int:
        with self._lock:
            return self._db().execute("SELECT COUNT(*) FROM signals").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> SqliteSignalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
