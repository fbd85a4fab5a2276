"""The event journal: codec, SQLite store, committed means durable (kill -9), full disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.storage.journal import (
    BalanceChange,
    EventJournal,
    FillEvent,
    JournalCorruptError,
    JournalEntry,
    OrderAction,
    OrderCommand,
    OrderEvent,
    PositionChange,
    RiskEvent,
    SessionStarted,
    SignalEvent,
    decode_entry,
    encode_entry,
    session_id_prefix,
)
from hftkit.storage.journal_sqlite import SqliteJournalStore

pytestmark = pytest.mark.timeout(30)

HERE = Path(__file__).parent


def stored_sequences(path: Path, node: str) -> tuple[list[int], str]:
    """Reopen a journal file as a restarting process would: its entries' sequences and integrity."""
    store = SqliteJournalStore(path)
    store.open_sync()
    try:
        return [entry.sequence for entry in store.read_sync(node)], store.integrity_check()
    finally:
        store.close_sync()


def order_event(number: int, status: OrderStatus = OrderStatus.NEW) -> OrderEvent:
    return OrderEvent(
        client_order_id=f"c{number}",
        venue="binance",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        price=100 + number,
        quantity=2,
        filled=0,
        status=status,
    )


EVERY_KIND = [
    SessionStarted(session=3, id_prefix="hkabcds3-", pid=42),
    OrderCommand(
        action=OrderAction.AMEND,
        client_order_id="x1",
        venue="thalex",
        symbol="P",
        side=Side.SELL,
        price=5,
        quantity=7,
    ),
    order_event(1, OrderStatus.PARTIALLY_FILLED),
    FillEvent(
        venue="thalex",
        symbol="P",
        client_order_id="x1",
        venue_order_id="v9",
        trade_id="t1",
        side=Side.SELL,
        price=5,
        quantity=3,
        fee=0.25,
        fee_asset="USD",
        is_maker=True,
    ),
    PositionChange(
        venue="thalex", symbol="P", quantity=-3, average_price="5/1", realized="-1/3", fees={"USD": 0.25}
    ),
    BalanceChange(venue="binance", asset="USDT", free="1000.12345678", locked="1"),
    RiskEvent(action="trip", source="drawdown", detail="too deep"),
    SignalEvent(
        symbol="BTCUSDT", signal_type="alpha", source="m", value=0.5, confidence=1.0, ttl_ns=5, updated_ns=9
    ),
]


def test_every_record_kind_round_trips_through_the_codec() -> None:
    for number, record in enumerate(EVERY_KIND, start=1):
        entry = JournalEntry(node="n1", sequence=number, time_ns=1_000 + number, record=record)
        node, sequence, time_ns, kind, client_order_id, body = encode_entry(entry)
        assert (node, sequence, time_ns) == ("n1", number, 1_000 + number)
        assert kind == entry.kind and client_order_id == entry.client_order_id
        assert decode_entry(node, sequence, time_ns, body) == entry


def test_a_corrupt_row_is_a_classified_error_naming_the_row() -> None:
    with pytest.raises(JournalCorruptError, match=r"\('n1', 7\)"):
        decode_entry("n1", 7, 0, b"\xc1garbage")
    wrong_shape = msgspec.msgpack.encode({"type": "fill", "venue": "v"})  # a fill missing its fields
    with pytest.raises(JournalCorruptError):
        decode_entry("n1", 8, 0, wrong_shape)


def test_session_prefixes_differ_by_node_and_session_and_fit_binance() -> None:
    prefixes = {session_id_prefix(node, session) for node in ("a", "b") for session in (1, 2, 255)}
    assert len(prefixes) == 6
    assert len(session_id_prefix("some-long-node-name", 2**31) + str(10**12)) <= 36
    with pytest.raises(ValueError):
        session_id_prefix("a", 0)


async def test_the_journal_numbers_commits_and_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "node.journal"
    journal = EventJournal(SqliteJournalStore(path), "n1", batch_size=3, flush_interval_s=0.01)
    assert await journal.open() == []
    session = await journal.commit(SessionStarted(session=1, id_prefix="p-"))
    assert session == 1 and journal.committed_sequence == 1
    sequences = [journal.append(record) for record in EVERY_KIND]
    assert sequences == list(range(2, 2 + len(EVERY_KIND)))
    assert await journal.flush()
    assert journal.committed_sequence == journal.last_sequence == 1 + len(EVERY_KIND)
    status = journal.status()
    assert status.healthy and status.writer.written == 1 + len(EVERY_KIND)
    await journal.close()

    reopened = EventJournal(SqliteJournalStore(path), "n1")
    entries = await reopened.open()
    assert [entry.record for entry in entries[1:]] == EVERY_KIND
    assert reopened.append(order_event(99)) == 2 + len(EVERY_KIND)  # numbering continues
    other = await reopened.store.read("another-node")  # type: ignore[attr-defined]
    assert other == []
    await reopened.close()


@pytest.mark.parametrize(("chosen", "pragma"), [(None, 2), ("full", 2), ("normal", 1)])
def test_commits_wait_for_fsync_unless_the_config_chose_normal(
    tmp_path: Path, chosen: Literal["full", "normal"] | None, pragma: int
) -> None:
    store = (
        SqliteJournalStore(tmp_path / "n.journal")
        if chosen is None
        else (SqliteJournalStore(tmp_path / "n.journal", synchronous=chosen))
    )
    store.open_sync()
    try:
        assert store.connection().execute("PRAGMA synchronous").fetchone()[0] == pragma
    finally:
        store.close_sync()


async def test_a_full_disk_is_counted_reported_and_never_blocks_appends(tmp_path: Path) -> None:
    store = SqliteJournalStore(tmp_path / "full.journal", max_page_count=12)  # a few tens of KiB
    journal = EventJournal(store, "n1", batch_size=50, flush_interval_s=0.005, capacity=2_000)
    await journal.open()
    journal.writer.retry.base_delay = journal.writer.retry.max_delay = 0.001
    started = time.perf_counter()
    accepted = [journal.append(order_event(number)) for number in range(3_000)]
    assert time.perf_counter() - started < 1.0  # appends never wait for the disk
    assert accepted.count(0) == 1_000  # past the bound, the newest are refused and counted
    for _ in range(400):
        if journal.writer.failed_batches:
            break
        await asyncio.sleep(0.005)
    status = journal.status()
    assert not status.healthy and status.writer.failed_batches >= 1
    assert status.writer.dropped_overflow == 1_000
    assert "full" in (status.writer.last_error or "")
    committed = journal.committed_sequence
    assert 0 < committed < 2_000  # some batches fit, then the disk filled
    await journal.close(timeout_s=0.2)
    stored, integrity = stored_sequences(tmp_path / "full.journal", "n1")
    assert stored == list(range(1, committed + 1))  # a gap-free committed prefix
    assert integrity == "ok"


@pytest.mark.timeout(120)  # the loop below waits up to 60 s on a slow disk: outlast it
def test_kill_9_mid_burst_keeps_every_record_reported_committed(tmp_path: Path) -> None:
    path = tmp_path / "burst.journal"
    environment = {**os.environ, "PYTHONPATH": str(HERE.parents[1] / "src")}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "journal_burst.py"), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    reported = 0
    try:
        assert child.stdout is not None
        # enough committed batches that the kill lands mid-burst (each commit is an fsync: a busy
        # disk makes this slow, so wait on the count, bounded generously, not on a fixed time)
        deadline = time.monotonic() + 60
        while reported < 5_000 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported = int(line)
        child.send_signal(signal.SIGKILL)  # mid-burst: records are being appended and committed
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert reported >= 5_000, (reported, child.stderr.read().decode()[-2000:] if child.stderr else "")
    sequences, integrity = stored_sequences(path, "burst-node")
    assert integrity == "ok"
    assert sequences[:reported] == list(range(1, reported + 1))  # every reported record is there
    assert sequences == list(range(1, len(sequences) + 1))  # and nothing after a hole
