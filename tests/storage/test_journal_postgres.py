"""The PostgreSQL journal store against the real server on 127.0.0.1:5432 (database ``test``)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.storage.journal import EventJournal, OrderEvent, SessionStarted
from hftkit.storage.journal_postgres import PostgresJournalStore

pytestmark = [pytest.mark.timeout(30), pytest.mark.service]

DSN = os.environ.get("HFTKIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def order_event(number: int) -> OrderEvent:
    return OrderEvent(
        client_order_id=f"c{number}",
        venue="v",
        symbol="S",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        price=number,
        quantity=1,
        filled=0,
        status=OrderStatus.NEW,
    )


@pytest.fixture
async def table():
    asyncpg = pytest.importorskip("asyncpg")
    try:
        connection = await asyncpg.connect(DSN, timeout=2)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {DSN} is needed: {error}", pytrace=False)
        pytest.skip(f"PostgreSQL at {DSN} unavailable: {error}")
    name = f"journal_test_{uuid.uuid4().hex[:12]}"
    yield name
    await connection.execute(f"DROP TABLE IF EXISTS {name}")
    await connection.close()


async def test_two_nodes_share_one_table_and_each_reads_its_own(table: str) -> None:
    first = EventJournal(
        PostgresJournalStore(DSN, table=table), "node-a", batch_size=100, flush_interval_s=0.01
    )
    second = EventJournal(
        PostgresJournalStore(DSN, table=table), "node-b", batch_size=100, flush_interval_s=0.01
    )
    assert await first.open() == [] and await second.open() == []
    await first.commit(SessionStarted(session=1, id_prefix="a-"))
    for number in range(250):
        first.append(order_event(number))
        second.append(order_event(1000 + number))
    assert await first.flush() and await second.flush()
    assert first.committed_sequence == 251 and second.committed_sequence == 250
    await first.close()
    await second.close()

    again = EventJournal(PostgresJournalStore(DSN, table=table), "node-a")
    entries = await again.open()
    assert [entry.sequence for entry in entries] == list(range(1, 252))
    assert entries[1].record == order_event(0)
    assert again.append(order_event(7)) == 252
    await again.close()


async def test_an_unreachable_server_is_counted_and_appends_never_wait() -> None:
    store = PostgresJournalStore("postgresql://postgres@127.0.0.1:9/test", connect_timeout_s=0.2)
    journal = EventJournal(store, "node-x", batch_size=10, flush_interval_s=0.01, capacity=100)
    with pytest.raises(OSError):
        await journal.open()
    await journal.start_without_recovery(1)
    journal.writer.retry.base_delay = journal.writer.retry.max_delay = 0.001
    accepted = [journal.append(order_event(number)) for number in range(150)]
    assert accepted.count(0) == 50  # bounded: the newest past capacity are refused, counted
    for _ in range(200):
        if journal.writer.failed_batches:
            break
        await asyncio.sleep(0.01)
    status = journal.status()
    assert not status.healthy and status.committed_sequence == 0
    assert status.writer.failed_batches >= 1 and status.writer.dropped_overflow == 50
    assert status.writer.last_error is not None
    await journal.close(timeout_s=0.1)
    assert journal.status().writer.dropped_on_close == 100
