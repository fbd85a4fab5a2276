"""Signals persist through the journal: same database, journaled history, current values beside it."""

from __future__ import annotations

from pathlib import Path

from hftkit.core.clock import SimulatedClock
from hftkit.storage.journal import EventJournal, SessionStarted, SignalEvent
from hftkit.storage.journal_sqlite import SqliteJournalStore
from hftkit.storage.recovery import recover
from hftkit.storage.signals_sqlite import SqliteSignalStore
from hftkit.trading.signals import SignalManager


async def test_signals_and_the_node_journal_share_one_file_and_streams_stay_apart(tmp_path: Path) -> None:
    store = SqliteJournalStore(tmp_path / "node.journal.sqlite")
    journal = EventJournal(store, "n1", flush_interval_s=0.01)
    await journal.open()
    signals = SqliteSignalStore(store, node_id="n1")
    manager = SignalManager(SimulatedClock(), signals)
    manager.upsert("BTCUSDT", "alpha", 0.25, source="m")
    manager.upsert("ETHUSDT", "alpha", 0.5)
    assert manager.persist() == 2
    manager.remove("ETHUSDT", "alpha")
    manager.persist()
    await journal.commit(SessionStarted(session=1, id_prefix="p-"))
    assert journal.committed_sequence == 1  # the node's numbering is its own

    history = signals.history()
    assert [entry.node for entry in history] == ["n1/signals"] * 3
    assert [entry.sequence for entry in history] == [1, 2, 3]
    assert all(isinstance(entry.record, SignalEvent) for entry in history)
    assert history[-1].record.deleted and history[-1].record.symbol == "ETHUSDT"
    folded = recover(history)
    assert list(folded.signals) == [("BTCUSDT", "alpha", "m")]
    assert [s.symbol for s in signals.load_all()] == ["BTCUSDT"]
    signals.close()
    await journal.close()

    reopened = SqliteSignalStore(tmp_path / "node.journal.sqlite", node_id="n1")
    assert [s.value for s in reopened.load_all()] == [0.25]
    reopened.save_many(manager.query("BTCUSDT"))
    assert [entry.sequence for entry in reopened.history()] == [1, 2, 3, 4]  # numbering continues
    reopened.close()
