"""The shared journal store: PostgreSQL through asyncpg, for several nodes writing one database.

Rows are the SQLite store's rows (same codec, same key: ``(node, sequence)``), in one table every
node shares. A batch is one transaction (``executemany`` inside ``BEGIN``/``COMMIT``);
``committed_sequence`` moves only after the commit returned, and with PostgreSQL's default
``synchronous_commit = on`` a commit is on disk.

The connection is made lazily and remade after a failure: a database that is down when the
node starts, or goes away later, fails the writes (the writer counts them, retries with backoff
behind its circuit breaker and keeps the records buffered) instead of stopping the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from hftkit.storage.journal import JournalEntry, JournalError, decode_entry, encode_entry

__all__ = ["PostgresJournalStore"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresJournalStore:
    """Journal rows in one PostgreSQL table shared by every node (``table``, default ``hftkit_journal``)."""

    def __init__(self, dsn: str, *, table: str = "hftkit_journal", connect_timeout_s: float = 2.0) -> None:
        if not _IDENTIFIER.match(table):
            raise JournalError(f"journal table name {table!r} is not a plain SQL identifier")
        self.dsn = dsn
        self.table = table
        self.connect_timeout_s = connect_timeout_s
        self.name = f"postgres:{table}"
        self.committed_sequence = 0
        self._connection: Any = None
        self._lock = asyncio.Lock()
        self._insert = (
            f"INSERT INTO {table} (node, sequence, time_ns, kind, client_order_id, body) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (node, sequence) DO NOTHING"
        )

    async def _connect(self) -> Any:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        import asyncpg  # imported here: a node on SQLite never loads the PostgreSQL client

        self._connection = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        await self._connection.execute(
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                node            TEXT   NOT NULL,
                sequence        BIGINT NOT NULL,
                time_ns         BIGINT NOT NULL,
                kind            TEXT   NOT NULL,
                client_order_id TEXT,
                body            BYTEA  NOT NULL,
                PRIMARY KEY (node, sequence)
            )"""
        )
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already gone
                connection.terminate()

    async def open(self) -> None:
        async with self._lock:
            try:
                await self._connect()
            except BaseException:
                await self._drop_connection()
                raise

    async def write(self, batch: Sequence[JournalEntry]) -> None:
        if not batch:
            return
        rows = [encode_entry(entry) for entry in batch]
        async with self._lock:
            try:
                connection = await self._connect()
                async with connection.transaction():
                    await connection.executemany(self._insert, rows)
            except BaseException:
                await self._drop_connection()  # a broken connection is not reused
                raise
        highest = max(entry.sequence for entry in batch)
        if highest > self.committed_sequence:
            self.committed_sequence = highest

    async def read(self, node: str, after_sequence: int = 0) -> list[JournalEntry]:
        async with self._lock:
            try:
                connection = await self._connect()
                rows = await connection.fetch(
                    f"SELECT node, sequence, time_ns, body FROM {self.table} "
                    "WHERE node = $1 AND sequence > $2 ORDER BY sequence",
                    node,
                    after_sequence,
                )
            except BaseException:
                await self._drop_connection()
                raise
        return [decode_entry(row[0], row[1], row[2], bytes(row[3])) for row in rows]

    async def last_sequence(self, node: str) -> int:
        async with self._lock:
            connection = await self._connect()
            value = await connection.fetchval(f"SELECT MAX(sequence) FROM {self.table} WHERE node = $1", node)
        return int(value or 0)

    async def close(self) -> None:
        async with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and not connection.is_closed():
                await connection.close()
