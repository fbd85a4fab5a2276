"""A node journals, stops abruptly, restarts from its journal against the same venue.

The simulator is started by the test so that it outlives the first node (a venue does not stop
when a node dies). The first node is cancelled mid-run without its shutdown: no cancel-all, no
verification, and its journal writer is killed without the final flush, so the tail of the
journal is lost as in a crash. The second node must not reuse a client order id, must settle
the orders the first left behind, and must end with positions equal to the venue's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from hftkit.app import config as node_config
from hftkit.app.node import TradingNode
from hftkit.sim.runner import Simulator
from hftkit.storage.journal import FillEvent, OrderAction, OrderCommand, SessionStarted
from hftkit.storage.journal_sqlite import SqliteJournalStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]

JOURNAL = """
journal:
  enabled: true
  node_id: restart-node
  flush_interval_s: 0.02
"""


def load(tmp_path: Path) -> node_config.LoadedConfig:
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text = text.replace("  speed: 1\n", "  speed: 4\n") + JOURNAL
    path = tmp_path / "node.yaml"
    path.write_text(text, encoding="utf-8")
    return node_config.load(path)


def committed_fill(path: Path) -> bool:
    """Whether the journal has committed a fill yet (the writer commits every ``flush_interval_s``,
    later on a loaded machine: a crash loses what it has not)."""
    if not path.exists():
        return False
    store = SqliteJournalStore(path)
    store.open_sync()
    try:
        return any(isinstance(entry.record, FillEvent) for entry in store.read_sync("restart-node"))
    finally:
        store.close_sync()


def journal_records(path: Path) -> list[object]:
    store = SqliteJournalStore(path)
    store.open_sync()
    try:
        assert store.integrity_check() == "ok"
        return [entry.record for entry in store.read_sync("restart-node")]
    finally:
        store.close_sync()


async def test_a_restarted_node_continues_from_its_journal_and_matches_the_venue(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    journal_path = tmp_path / "state" / "restart-node.journal.sqlite"
    sim_config = TradingNode.from_config(loaded, metrics_port=0).simulator_config()
    assert sim_config is not None
    async with Simulator(sim_config) as sim:
        first = TradingNode.from_config(loaded, seconds=60, metrics_port=0, simulator=sim)
        run = asyncio.create_task(first.run())
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (
            first.phase != "running" or sum(first._fills.values()) < 3 or not committed_fill(journal_path)
        ):
            await asyncio.sleep(0.05)
        assert sum(first._fills.values()) >= 3, "the first node did not trade"
        assert committed_fill(journal_path), "the first node's journal committed no fill"
        assert first.journal is not None and first.journal.session == 1
        # the crash: the journal's writer dies with what it buffered, the node without its shutdown
        writer = first.journal.journal.writer
        assert writer._task is not None
        writer._task.cancel()
        first.journal.close = _no_close  # type: ignore[method-assign]
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        before = journal_records(journal_path)
        first_ids = [
            r.client_order_id for r in before if isinstance(r, OrderCommand) and r.action is OrderAction.NEW
        ]
        assert first_ids and len(set(first_ids)) == len(first_ids)

        second = TradingNode.from_config(loaded, seconds=4, metrics_port=0, simulator=sim)
        summary = await second.run()
        assert second.journal is not None and second.journal.session == 2
        recovered = second.journal.recovered
        assert recovered is not None and recovered.entries == len(before)
        assert recovered.fills >= 1 and recovered.positions  # what the first node journaled
        assert recovered.in_flight  # quotes resting when it died: restored, then settled
        assert summary.verdict.checks["positions equal the venue's"], summary.verdict.as_json()
        assert summary.verdict.checks["no order resting, every order accounted for"], (
            summary.verdict.as_json()
        )

    after = journal_records(journal_path)
    sessions = [r for r in after if isinstance(r, SessionStarted)]
    assert [s.session for s in sessions] == [1, 2] and sessions[0].id_prefix != sessions[1].id_prefix
    new_ids = [
        r.client_order_id for r in after if isinstance(r, OrderCommand) and r.action is OrderAction.NEW
    ]
    second_ids = new_ids[len(first_ids) :]
    assert second_ids, "the restarted node sent no order"
    assert len(set(new_ids)) == len(new_ids)  # no client order id was used twice
    assert all(client_id.startswith(sessions[1].id_prefix) for client_id in second_ids)


async def _no_close(timeout_s: float = 5.0) -> None:
    """The crashed node's journal never gets its final flush."""


async def test_an_unreachable_postgres_journal_is_reported_and_the_node_keeps_trading(tmp_path: Path) -> None:
    text = (ROOT / "src/hftkit/app/templates/default.yaml").read_text(encoding="utf-8")
    text = text.replace("  speed: 1\n", "  speed: 4\n") + (
        "journal:\n"
        "  enabled: true\n"
        "  node_id: shared-node\n"
        "  backend: postgres\n"
        "  dsn: postgresql://postgres@127.0.0.1:9/test\n"  # nothing listens on port 9
        "  buffer_records: 5000\n"
    )
    (tmp_path / "node.yaml").write_text(text, encoding="utf-8")
    node = TradingNode.from_config(node_config.load(tmp_path / "node.yaml"), seconds=5, metrics_port=0)
    summary = await node.run()
    fills = {item.venue: item.fills for item in summary.instruments}
    assert sum(fills.values()) > 0, summary.as_json()  # it traded
    assert summary.verdict.passed, summary.verdict.as_json()
    assert node.journal is not None and node.journal.recovery_error is not None
    storage = node.health().storage["journal"]
    assert storage["recovery_error"] and not storage["healthy"]
    assert storage["committed_sequence"] == 0 and storage["writer"]["failed_batches"] >= 1
    assert storage["writer"]["open_failures"] == 1 and storage["store"] == "postgres:hftkit_journal"
    assert b'"storage"' in node.health().as_json()
    assert node.journal_line().startswith("journal DEGRADED")


async def test_a_full_disk_under_the_journal_is_reported_and_the_node_keeps_trading(tmp_path, monkeypatch):
    original = SqliteJournalStore.__init__

    def tiny(self, path, **options):  # type: ignore[no-untyped-def]
        original(self, path, **{**options, "max_page_count": 6})  # a few KiB: full within seconds

    monkeypatch.setattr(SqliteJournalStore, "__init__", tiny)
    node = TradingNode.from_config(load(tmp_path), seconds=5, metrics_port=0)
    summary = await node.run()
    fills = {item.venue: item.fills for item in summary.instruments}
    assert sum(fills.values()) > 0, summary.as_json()  # it traded on
    assert summary.verdict.passed, summary.verdict.as_json()
    assert node.journal is not None and node.journal.recovery_error is None
    storage = node.health().storage["journal"]
    assert not storage["healthy"] and storage["writer"]["failed_batches"] >= 1
    assert "full" in storage["writer"]["last_error"]
    assert 0 < storage["committed_sequence"] < storage["last_sequence"]
