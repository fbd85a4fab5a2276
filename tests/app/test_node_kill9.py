"""kill -9 of a journaling node mid-run, then a restart from its journal against the same venue.

The venue (the simulator's Thalex server) runs in the test process so that it outlives the node;
the node runs as a real process (``hftkit run``) configured as a remote Thalex venue at the
simulator's URL, with its journal on. The first node is SIGKILLed while it quotes and fills;
the restarted node reads the journal, must not reuse a client order id, and its verdict
(positions equal the venue's, nothing left resting, every order accounted for) must hold.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from hftkit.sim.config import THALEX, config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.storage.journal import (
    FillEvent,
    OrderAction,
    OrderCommand,
    SessionStarted,
    decode_segment,
)
from hftkit.storage.journal_sqlite import SqliteJournalStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
venues:
  thalex:
    kind: thalex
    environment: testnet
    url: {url}
    key_id: {key_id}
    private_key_file: {key_file}
    cancel_on_disconnect_s: null   # the killed node's quotes stay at the venue
strategies:
  - name: maker
    path: hftkit.strategies.market_maker:MarketMaker
    params:
      venue: thalex
      symbol: BTC-PERPETUAL
      size_per_level: 2
      max_position: 10
      gamma: 0.1
      kappa: 1.5
      levels: 1
      initial_volatility: 0.5
risk:
  instruments:
    - venue: thalex
      symbol: BTC-PERPETUAL
      limits: {{max_position: "0.02", max_book_age_ms: 1500, book_health: reject}}
metrics:
  enabled: false
dashboard:
  enabled: false
journal:
  enabled: true
  node_id: killed-node
  flush_interval_s: 0.02
"""


def committed_records(path: Path) -> list[object]:
    """Read the journal read-only while its writer may still be alive."""
    if not path.exists():
        return []
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = database.execute(
            "SELECT first_sequence, body FROM journal_segments WHERE node = 'killed-node' "
            "ORDER BY first_sequence"
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        database.close()
    return [entry.record for first, body in rows for entry in decode_segment("killed-node", first, body)]


async def run_node(config: Path, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hftkit.app.cli",
        "run",
        "--config",
        str(config),
        "--seconds",
        str(seconds),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


async def test_kill_9_mid_run_then_restart_from_the_journal(tmp_path: Path) -> None:
    sim_config = config_from_mapping(
        {"venues": {THALEX: {"symbols": ["BTC-PERPETUAL"]}}, "speed": 4, "seed": 7}
    )
    journal_path = tmp_path / "state" / "killed-node.journal.sqlite"
    async with Simulator(sim_config) as sim:
        await sim.wait_seeded()
        credentials = sim.credentials
        assert credentials is not None and credentials.thalex_private_key_file is not None
        config = tmp_path / "node.yaml"
        config.write_text(
            CONFIG.format(
                url=sim.urls["thalex_ws"],
                key_id=credentials.thalex_key_id,
                key_file=credentials.thalex_private_key_file,
            ),
            encoding="utf-8",
        )
        first = await run_node(config, 120)
        deadline = time.monotonic() + 60
        records: list[object] = []
        while time.monotonic() < deadline:
            records = committed_records(journal_path)
            if sum(isinstance(record, FillEvent) for record in records) >= 2:
                break
            if first.returncode is not None:
                break
            await asyncio.sleep(0.1)
        if first.returncode is not None:
            _, errors = await first.communicate()
            pytest.fail(f"the first node exited early: {errors.decode()[-2000:]}")
        first.send_signal(signal.SIGKILL)  # mid-run: quoting, filling, journaling
        await first.wait()
        assert first.returncode == -signal.SIGKILL
        assert sum(isinstance(record, FillEvent) for record in records) >= 2, "the first node never filled"

        store = SqliteJournalStore(journal_path)
        store.open_sync()
        try:
            assert store.integrity_check() == "ok"
            survived = store.read_sync("killed-node")
        finally:
            store.close_sync()
        assert [entry.sequence for entry in survived] == list(range(1, len(survived) + 1))  # no holes
        assert len(survived) >= len(records)  # all it had committed when we last looked is there

        second = await run_node(config, 4)
        output, errors = await asyncio.wait_for(second.communicate(), 90)
        assert second.returncode in (0, 1), errors.decode()[-2000:]
        summary = json.loads(output)
        checks = summary["verdict"]["checks"]
        assert checks["positions equal the venue's"], summary["verdict"]
        assert checks["no order resting, every order accounted for"], summary["verdict"]
        assert second.returncode == 0, summary["verdict"]

    after = committed_records(journal_path)
    sessions = [record for record in after if isinstance(record, SessionStarted)]
    assert [session.session for session in sessions] == [1, 2]
    new_ids = [
        r.client_order_id for r in after if isinstance(r, OrderCommand) and r.action is OrderAction.NEW
    ]
    assert len(set(new_ids)) == len(new_ids), "a client order id was used twice"
    assert any(client_id.startswith(sessions[1].id_prefix) for client_id in new_ids), "no order after restart"
