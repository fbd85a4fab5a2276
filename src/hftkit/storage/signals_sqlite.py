"""The signal store (``hftkit.trading.signals.SignalStore``), folded into the event journal.

Signals live in the journal's SQLite database: every save and removal is appended to the
journal table as a ``SignalEvent`` (under the stream ``<node id>/signals``, numbered apart from
the node's own sequence so the two writers never contend for numbers), and the current value
of each signal is kept beside it in a ``signals`` table, in the same transaction, so a restart
loads the signals with one indexed read instead of replaying their history.

``SqliteSignalStore(path)`` opens (or creates) that database on its own, as the seed's store did;
``SqliteSignalStore(journal_store)`` shares an open :class:`SqliteJournalStore` (one file per
node for orders, fills and signals). The protocol is synchronous (the async signal facade calls
it from a worker thread), so the connection is shared behind the journal store's lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec

from hftkit.core.errors import HftkitError
from hftkit.storage.journal import JournalEntry, SignalEvent
from hftkit.storage.journal_sqlite import SqliteJournalStore
from hftkit.trading.signals import Signal, SignalKey

__all__ = ["SignalStoreError", "SqliteSignalStore"]

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
    """Signals journaled, with their current values in a table keyed by (symbol, signal_type, source)."""

    def __init__(
        self,
        database: str | Path | SqliteJournalStore = ":memory:",
        timeout_seconds: float = 5.0,
        *,
        node_id: str = "node",
    ) -> None:
        if isinstance(database, SqliteJournalStore):
            self._journal, self._owns_journal = database, False
        else:  # a standalone signal store keeps the seed's durability: WAL, synchronous=NORMAL
            self._journal = SqliteJournalStore(database, synchronous="normal", busy_timeout_s=timeout_seconds)
            self._owns_journal = True
        self._journal.open_sync()
        self.path = self._journal.path
        self.stream = f"{node_id}/signals"
        self.journal_mode = self._journal.journal_mode
        self._closed = False
        with self._journal.lock:
            self._journal.connection().executescript(_SCHEMA)
        self._next_sequence = self._journal.last_sequence_sync(self.stream) + 1

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise SignalStoreError("the signal store is closed")
        return self._journal.connection()

    def _transaction(
        self, statement: str, rows: Sequence[tuple[object, ...]], events: list[SignalEvent]
    ) -> None:
        """Apply ``statement`` to ``rows`` and journal ``events``, all in one transaction."""
        now_ns = max((event.updated_ns for event in events if isinstance(event.updated_ns, int)), default=0)
        first = self._next_sequence
        entries = [
            JournalEntry(node=self.stream, sequence=first + index, time_ns=now_ns, record=event)
            for index, event in enumerate(events)
        ]
        with self._journal.lock:
            database = self._db()
            database.execute("BEGIN IMMEDIATE")
            try:
                database.executemany(statement, rows)
                self._journal.insert_in_transaction(database, entries)
            except BaseException:
                database.execute("ROLLBACK")
                raise
            database.execute("COMMIT")
            self._next_sequence += len(entries)

    def save_many(self, signals: Sequence[Signal]) -> None:
        """Upsert a batch in one transaction; an older copy never overwrites a newer row."""
        if not signals:
            return
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
        events = [
            SignalEvent(
                symbol=signal.symbol,
                signal_type=signal.signal_type,
                source=signal.source,
                value=signal.value,
                confidence=signal.confidence,
                ttl_ns=signal.ttl_ns,
                created_ns=signal.created_ns,
                updated_ns=signal.updated_ns,
            )
            for signal in signals
        ]
        self._transaction(_UPSERT, rows, events)

    def load_all(self) -> list[Signal]:
        with self._journal.lock:
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
        """Drop expired current values (their history stays in the journal)."""
        with self._journal.lock:
            cursor = self._db().execute(
                "DELETE FROM signals WHERE expires_ns IS NOT NULL AND expires_ns <= ?", (now_ns,)
            )
            return cursor.rowcount

    def delete_many(self, keys: Sequence[SignalKey]) -> None:
        if not keys:
            return
        events = [
            SignalEvent(symbol=symbol, signal_type=signal_type, source=source, deleted=True)
            for symbol, signal_type, source in keys
        ]
        self._transaction(
            "DELETE FROM signals WHERE symbol = ? AND signal_type = ? AND source = ?", list(keys), events
        )

    def history(self) -> list[JournalEntry]:
        """Every journaled save and removal, in order (for audits and tests)."""
        if self._closed:
            raise SignalStoreError("the signal store is closed")
        return self._journal.read_sync(self.stream)

    def count(self) -> int:
        with self._journal.lock:
            return self._db().execute("SELECT COUNT(*) FROM signals").fetchone()[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_journal:
            self._journal.close_sync()

    def __enter__(self) -> SqliteSignalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
