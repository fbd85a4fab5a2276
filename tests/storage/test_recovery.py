"""Recovery: a journal folded into what a restart needs, and seeded into a fresh tracker."""

from __future__ import annotations

from fractions import Fraction

from hftkit.core.clock import SimulatedClock
from hftkit.core.types import Fill, Order, OrderStatus, OrderType, Side
from hftkit.storage.journal import EventJournal, JournalEntry, RiskEvent, SessionStarted, session_id_prefix
from hftkit.storage.node_journal import NodeJournal
from hftkit.storage.recovery import recover, restore_into
from hftkit.trading.state import OrderStateTracker

PREFIX = "hk0001s1-"


class MemoryStore:
    """A store in a list (the journal's contract without a database)."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: list[JournalEntry] = []
        self.committed_sequence = 0

    async def open(self) -> None: ...

    async def write(self, batch):
        self.rows.extend(batch)
        self.committed_sequence = max(self.committed_sequence, batch[-1].sequence)

    async def read(self, node, after_sequence=0):
        return [row for row in self.rows if row.node == node and row.sequence > after_sequence]

    async def last_sequence(self, node):
        return max((row.sequence for row in self.rows if row.node == node), default=0)

    async def close(self) -> None: ...


def order(number: int, prefix: str = PREFIX, side: Side = Side.BUY) -> Order:
    return Order(
        client_order_id=f"{prefix}{number}",
        venue="sim",
        symbol="BTCUSDT",
        side=side,
        order_type=OrderType.LIMIT,
        price=100 + number,
        quantity=3,
    )


def fill(client_order_id: str, trade: str, side: Side, quantity: int, price: int = 100) -> Fill:
    return Fill(
        venue="sim",
        symbol="BTCUSDT",
        client_order_id=client_order_id,
        venue_order_id=None,
        trade_id=trade,
        side=side,
        price=price,
        quantity=quantity,
    )


async def journal_a_session(store: MemoryStore) -> tuple[NodeJournal, OrderStateTracker]:
    node = NodeJournal(EventJournal(store, "node-1", flush_interval_s=0.01))
    await node.start()
    tracker = OrderStateTracker(SimulatedClock())
    node.attach(tracker)
    return node, tracker


async def test_a_session_folds_into_orders_in_flight_ids_and_positions() -> None:
    store = MemoryStore()
    node, tracker = await journal_a_session(store)
    assert node.session == 1 and node.id_prefix.endswith("s1-")
    prefix = node.id_prefix
    first, second, third, fourth = (order(n, prefix) for n in (1, 2, 3, 4))
    for item in (first, second, third, fourth):
        tracker.submit(item)
    tracker.acknowledge(first.client_order_id, "v1")
    tracker.acknowledge(second.client_order_id, "v2")
    tracker.apply_fill(fill(second.client_order_id, "t1", Side.BUY, 3))  # second: filled
    tracker.acknowledge(third.client_order_id, "v3")
    tracker.apply_fill(fill(third.client_order_id, "t2", Side.BUY, 1))  # third: partly filled
    tracker.request_cancel(first.client_order_id)
    tracker.request_amend(third.client_order_id, 90, 5)
    node.on_kill_switch(
        type(
            "Event",
            (),
            {"action": type("A", (), {"value": "trip"})(), "source": None, "detail": "d", "first": True},
        )()
    )
    await node.journal.flush()

    state = recover(store.rows)
    assert state.sessions == 1 and state.next_session == 2
    assert state.highest_id_sequence == {prefix: 4}
    assert {o.client_order_id for o in state.in_flight} == {
        first.client_order_id,
        third.client_order_id,
        fourth.client_order_id,
    }
    assert state.orders[second.client_order_id].status is OrderStatus.FILLED
    assert state.positions[("sim", "BTCUSDT")].quantity == 4
    assert state.fills == 2 and state.kill_switch_tripped and state.gaps == 0
    kinds = [entry.kind for entry in store.rows]
    assert kinds.count("command") == 4 + 1 + 1  # four news, one cancel, one amend
    amend = next(e.record for e in store.rows if e.kind == "command" and e.record.action.value == "amend")
    assert (amend.price, amend.quantity) == (90, 5)

    fresh = OrderStateTracker(SimulatedClock())
    report = restore_into(state, fresh)
    assert report.orders_restored == 2  # first (acknowledged) and fourth (pending)
    assert report.orders_left_to_reconciliation == [third.client_order_id]
    assert fresh.get(first.client_order_id).status is OrderStatus.NEW
    assert fresh.get(first.client_order_id).venue_order_id == "v1"
    assert fresh.get(fourth.client_order_id).status is OrderStatus.PENDING_NEW
    position = fresh.positions.get("sim", "BTCUSDT")
    assert position.quantity == 4 and position.average_price == Fraction(100)


async def test_every_restart_is_a_new_session_with_a_new_id_prefix() -> None:
    store = MemoryStore()
    prefixes = []
    for expected in (1, 2, 3):
        node = NodeJournal(EventJournal(store, "node-1", flush_interval_s=0.01))
        await node.start()
        assert node.session == expected
        prefixes.append(node.id_prefix)
        await node.close()
    assert len(set(prefixes)) == 3
    sessions = [entry.record for entry in store.rows if isinstance(entry.record, SessionStarted)]
    assert [s.session for s in sessions] == [1, 2, 3]


async def test_an_unreadable_store_still_gives_a_fresh_session_and_the_node_trades() -> None:
    class Broken(MemoryStore):
        async def open(self) -> None:
            raise ConnectionRefusedError("no database")

        async def write(self, batch):
            raise ConnectionRefusedError("no database")

    node = NodeJournal(EventJournal(Broken(), "node-1", flush_interval_s=0.01))
    state = await node.start()
    assert state.entries == 0 and node.recovery_error is not None and "no database" in node.recovery_error
    assert node.session > 10**9  # time-based: cannot repeat a small journal session number
    assert node.status()["recovery_error"] == node.recovery_error
    await node.close(timeout_s=0.05)


def test_a_reset_after_a_trip_clears_the_kill_switch_and_gaps_are_counted() -> None:
    entries = [
        JournalEntry(
            node="n", sequence=1, time_ns=0, record=RiskEvent(action="trip", source="book", detail="x")
        ),
        JournalEntry(
            node="n", sequence=4, time_ns=0, record=RiskEvent(action="reset", source=None, detail="ok")
        ),
    ]
    state = recover(entries)
    assert not state.kill_switch_tripped and state.gaps == 2 and state.last_sequence == 4


async def test_a_trip_carries_over_until_a_reset_is_journaled_at_shutdown() -> None:
    store = MemoryStore()
    node, _ = await journal_a_session(store)

    class Action:
        value = "trip"

    class Trip:
        action, source, detail, first = Action(), None, "drawdown", True

    node.on_kill_switch(Trip())
    node.record_kill_switch(True, "state at shutdown")  # unchanged: nothing more journaled
    await node.close()
    assert recover(store.rows).kill_switch_tripped
    restarted, _ = await journal_a_session(store)
    restarted.record_kill_switch(False, "state at shutdown")  # an operator reset during the session
    await restarted.close()
    risk = [entry.record.action for entry in store.rows if isinstance(entry.record, RiskEvent)]
    assert risk == ["trip", "reset"]
    assert not recover(store.rows).kill_switch_tripped


def test_a_position_is_its_last_snapshot_plus_the_fills_after_it() -> None:
    from hftkit.storage.journal import FillEvent, PositionChange

    def fill_event(trade: str, side: Side, quantity: int, price: int) -> FillEvent:
        return FillEvent(
            venue="sim",
            symbol="BTCUSDT",
            client_order_id="c",
            venue_order_id=None,
            trade_id=trade,
            side=side,
            price=price,
            quantity=quantity,
            fee=0.5,
            fee_asset="USDT",
        )

    records = [
        fill_event("t0", Side.BUY, 9, 1),  # before the snapshot: already in it
        PositionChange(venue="sim", symbol="BTCUSDT", quantity=4, average_price="100", fees={"USDT": 1.0}),
        fill_event("t1", Side.BUY, 4, 110),
        fill_event("t2", Side.SELL, 2, 120),
    ]
    entries = [JournalEntry(node="n", sequence=i + 1, time_ns=0, record=r) for i, r in enumerate(records)]
    position = recover(entries).positions[("sim", "BTCUSDT")]
    assert position.quantity == 6
    assert Fraction(position.average_price) == Fraction(4 * 100 + 4 * 110, 8)  # average cost kept on a sale
    assert Fraction(position.realized) == 2 * (120 - Fraction(840, 8))
    assert position.fees == {"USDT": 2.0}


async def test_a_session_start_that_cannot_commit_falls_back_to_a_time_based_session() -> None:
    class FullDisk(MemoryStore):
        async def write(self, batch):
            raise OSError(28, "No space left on device")

    store = FullDisk()
    store.rows.append(
        JournalEntry(node="node-1", sequence=1, time_ns=0, record=SessionStarted(session=1, id_prefix="x-"))
    )
    journal = EventJournal(store, "node-1", flush_interval_s=0.01)
    journal.writer.retry.base_delay = journal.writer.retry.max_delay = 0.001
    node = NodeJournal(journal)
    original_commit = journal.commit

    async def quick_commit(record, timeout_s: float = 5.0):  # type: ignore[no-untyped-def]
        return await original_commit(record, timeout_s=0.2)

    journal.commit = quick_commit  # type: ignore[method-assign]
    await node.start()
    assert node.session > 10**9 and "not committed" in (node.recovery_error or "")
    assert node.id_prefix != session_id_prefix("node-1", 2)  # session 2 may still be handed out later
    await node.close(timeout_s=0.05)
