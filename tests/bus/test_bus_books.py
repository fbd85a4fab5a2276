"""Books from the bus: snapshot + numbered deltas through BookSynchronizer, resync on a gap."""

from __future__ import annotations

import asyncio

from hftkit.bus.books import BookPublisher, BusBooks
from hftkit.bus.memory import InProcessBus
from hftkit.bus.messages import DeltaMessage, stream_name
from hftkit.core.types import BookDelta, ConnectionEvent


async def _settle(condition, timeout_s: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_late_consumer_syncs_from_the_latest_snapshot_and_follows(market) -> None:  # type: ignore[no-untyped-def]
    script = market(seed=3)
    bus = InProcessBus()
    publisher = BookPublisher(bus, "feedvenue", first_sequence=1000)
    publisher(script.snapshot())
    for _ in range(50):
        publisher(script.delta())
    publisher.publish_snapshot("BTCUSDT", script.book)  # periodic snapshot at the current sequence
    books = BusBooks(bus, "feedvenue", group="g", consumer="c", snapshot_retry_s=0.01)
    events: list[object] = []
    books.add_listener(events.append)
    await books.subscribe(["BTCUSDT"])
    await asyncio.sleep(0.02)  # the snapshot fetch runs: loaded, waiting for the delta that bridges it
    assert not books.book_synced("BTCUSDT")  # a snapshot at n is synced by delta n + 1, as on a venue
    publisher(script.delta())
    await _settle(lambda: books.book_synced("BTCUSDT"))
    for _ in range(199):
        publisher(script.delta())
    book = books.book("BTCUSDT")
    assert book is not None and book.bids() == script.book.bids() and book.asks() == script.book.asks()
    assert any(isinstance(event, BookDelta) and event.is_snapshot for event in events)
    assert (
        sum(1 for event in events if isinstance(event, BookDelta) and not event.is_snapshot) == 199
    )  # the bridging one: the snapshot event
    await books.close()


async def test_a_gap_is_detected_by_the_venue_rules_and_resynced_from_a_snapshot(market) -> None:  # type: ignore[no-untyped-def]
    script = market(seed=5)
    bus = InProcessBus()
    publisher = BookPublisher(bus, "feedvenue", first_sequence=0)
    books = BusBooks(bus, "feedvenue", group="g", consumer="c", snapshot_retry_s=0.01)
    events: list[object] = []
    books.add_listener(events.append)
    await books.subscribe(["BTCUSDT"])
    publisher(script.snapshot())
    publisher(script.delta())
    await _settle(lambda: books.book_synced("BTCUSDT"))
    for _ in range(20):
        publisher(script.delta())
    # one delta never reaches the bus: the next one is a gap
    lost = script.delta()
    publisher.sequences["BTCUSDT"] += 1
    del lost
    publisher(script.delta())
    assert not books.book_synced("BTCUSDT")
    counters = books.counters("BTCUSDT")
    assert counters is not None and counters.gaps == 1
    assert any(isinstance(event, ConnectionEvent) and event.state == "resyncing" for event in events)
    publisher(script.delta())  # buffered while the snapshot is awaited
    publisher.publish_snapshot("BTCUSDT", script.book)
    publisher(script.delta())
    await _settle(lambda: books.book_synced("BTCUSDT"))
    book = books.book("BTCUSDT")
    assert book is not None and book.bids() == script.book.bids() and book.asks() == script.book.asks()
    await books.close()


async def test_a_restarted_feed_numbers_above_its_past_so_consumers_resync(market) -> None:  # type: ignore[no-untyped-def]
    script = market(seed=9)
    bus = InProcessBus()
    first = BookPublisher(bus, "feedvenue", first_sequence=10)
    books = BusBooks(bus, "feedvenue", group="g", consumer="c", snapshot_retry_s=0.01)
    await books.subscribe(["BTCUSDT"], trades=False)
    first(script.snapshot())
    first(script.delta())
    await _settle(lambda: books.book_synced("BTCUSDT"))
    restarted = BookPublisher(bus, "feedvenue")  # default: the start time in microseconds
    assert restarted.sequences.get("BTCUSDT") is None
    restarted(script.snapshot())  # the restarted adapter syncs again: a snapshot first
    restarted(script.delta())
    await _settle(lambda: books.book_synced("BTCUSDT") and books.book("BTCUSDT").bids() == script.book.bids())  # type: ignore[union-attr]
    assert books.book("BTCUSDT").asks() == script.book.asks()  # type: ignore[union-attr]
    await books.close()


async def test_messages_of_other_streams_and_kinds_are_counted_not_applied(market) -> None:  # type: ignore[no-untyped-def]
    bus = InProcessBus()
    books = BusBooks(bus, "feedvenue", group="g", consumer="c")
    await books.subscribe(["BTCUSDT"])
    books.on_message("hftkit:book:x:y", DeltaMessage(1, 0, market().delta()))
    assert books.foreign_messages == 1
    assert stream_name("book", "feedvenue", "BTCUSDT") in bus.status().streams
    await books.close()
