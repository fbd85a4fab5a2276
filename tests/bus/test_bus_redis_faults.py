"""The Redis Streams bus under faults, against a redis-server each test starts on a spare port:
a consumer killed and restarted resumes from its group and loses nothing; a Redis restart makes
publishers buffer within their bound (drops counted) and consumers reconnect and resync."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hftkit.bus.books import BookPublisher, BusBooks
from hftkit.bus.messages import DeltaMessage, encode, stream_name
from hftkit.bus.redis_streams import RedisStreamsBus

pytestmark = pytest.mark.service

BOOK = stream_name("book", "feedvenue", "BTCUSDT")


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"{what} not met within {timeout_s}s"
        await asyncio.sleep(0.01)


def _same_book(books: BusBooks, script) -> bool:  # type: ignore[no-untyped-def]
    book = books.book("BTCUSDT")
    return (
        books.book_synced("BTCUSDT")
        and book is not None
        and book.bids() == script.book.bids()
        and book.asks() == script.book.asks()
    )


async def test_publish_consume_round_trip_with_lag_and_pending(redis_server, market) -> None:  # type: ignore[no-untyped-def]
    script = market(seed=2)
    async with (
        RedisStreamsBus(redis_server.url, block_ms=50) as feed,
        RedisStreamsBus(redis_server.url, block_ms=50, pending_check_s=0.05) as consumer,
    ):
        received: list[int] = []
        consumer.subscribe([BOOK], lambda stream, m: received.append(m.sequence), group="g", consumer="c1")
        await asyncio.sleep(0.2)  # the group exists (created at "$": new messages only)
        for sequence in range(1, 101):
            feed.publish(BOOK, DeltaMessage(sequence, __import__("time").time_ns(), script.delta()))
        await _until(lambda: len(received) == 100, what="100 messages delivered")
        assert received == list(range(1, 101))
        status = consumer.status()
        assert status.connected and status.streams[BOOK].delivered == 100
        assert 0 < status.streams[BOOK].lag_ns < 2_000_000_000
        await _until(lambda: consumer.status().streams[BOOK].pending == 0, what="everything acknowledged")
        assert feed.status().written == 100 and feed.status().dropped == 0


async def test_killed_consumer_resumes_from_its_group_and_nothing_is_lost(redis_server, market) -> None:  # type: ignore[no-untyped-def]
    """A consumer dies with entries delivered but not acknowledged; its replacement (another member
    of the same group) claims them (XAUTOCLAIM) and reads on from the group's position: every
    sequence number reaches the group, and the rebuilt book equals the feed's."""
    script = market(seed=4)
    feed = RedisStreamsBus(redis_server.url)
    await feed.start()
    publisher = BookPublisher(feed, "feedvenue", first_sequence=0, trades=False)
    seen: set[int] = set()

    first = RedisStreamsBus(redis_server.url, block_ms=20, read_count=10)
    dying = asyncio.Event()

    def doomed(stream: str, message) -> None:  # type: ignore[no-untyped-def]
        if isinstance(message, DeltaMessage):
            if len(seen) >= 150:
                dying.set()
                raise asyncio.CancelledError  # the process dies mid-batch: this batch is never acked
            seen.add(message.sequence)

    first.subscribe([BOOK], doomed, group="strategy-1", consumer="host-a")
    await first.start()
    await asyncio.sleep(0.1)
    publisher(script.snapshot())
    for _ in range(400):
        publisher(script.delta())
    await asyncio.wait_for(dying.wait(), 5)
    await first.close()  # the reader task is already dead; nothing more is acknowledged
    for _ in range(300):  # the market goes on while no consumer runs
        publisher(script.delta())
    publisher.publish_snapshot("BTCUSDT", script.book)
    for _ in range(10):
        publisher(script.delta())

    second = RedisStreamsBus(redis_server.url, block_ms=20, claim_idle_ms=100)
    books = BusBooks(second, "feedvenue", group="strategy-1", consumer="host-b", snapshot_retry_s=0.05)
    recount: list[int] = []
    books.add_listener(lambda event: None)
    original = books.on_message

    def counting(stream: str, message) -> None:  # type: ignore[no-untyped-def]
        if isinstance(message, DeltaMessage):
            recount.append(message.sequence)
        original(stream, message)

    books.on_message = counting  # type: ignore[method-assign]
    await second.start()
    await asyncio.sleep(0.15)  # host-a's entries idle past claim_idle_ms
    await books.subscribe(["BTCUSDT"], trades=False)
    total = publisher.sequences["BTCUSDT"]
    delta_sequences = set(range(2, total + 1))  # 1 was the first snapshot (it takes a number)
    await _until(lambda: seen | set(recount) >= delta_sequences, what="every delta delivered to the group")
    assert second.status().streams[BOOK].claimed >= 1  # host-a's unacknowledged batch was taken over
    for _ in range(5):
        publisher(script.delta())
    await _until(lambda: _same_book(books, script), what="book equal to the feed's")
    await second.close()
    await feed.close()


async def test_redis_restart_buffers_within_bound_counts_drops_and_consumers_resync(
    redis_server, market
) -> None:  # type: ignore[no-untyped-def]
    script = market(seed=6)
    feed = RedisStreamsBus(redis_server.url, buffer_messages=50, retry_max_s=0.1)
    await feed.start()
    publisher = BookPublisher(feed, "feedvenue", first_sequence=0, trades=False)
    consumer = RedisStreamsBus(redis_server.url, block_ms=20, retry_max_s=0.1)
    books = BusBooks(consumer, "feedvenue", group="strategy-1", consumer="host-b", snapshot_retry_s=0.05)
    await consumer.start()
    await books.subscribe(["BTCUSDT"], trades=False)
    await asyncio.sleep(0.1)
    publisher(script.snapshot())
    for _ in range(20):
        publisher(script.delta())
    await _until(lambda: _same_book(books, script), what="initial sync")

    redis_server.stop()
    await asyncio.sleep(0.3)  # both sides notice
    for _ in range(200):
        publisher(script.delta())
    await _until(lambda: not feed.status().connected, what="the publisher noticing")
    status = feed.status()
    assert status.buffered <= 50
    assert status.dropped >= 150  # a full buffer drops the oldest, counted
    assert status.published == 221

    redis_server.start()  # empty: no persistence, the streams and groups are gone
    await _until(lambda: feed.status().buffered == 0, what="the buffer flushed after the restart")
    assert feed.status().reconnects >= 1
    publisher.publish_snapshot("BTCUSDT", script.book)  # the periodic snapshot
    for _ in range(5):
        publisher(script.delta())
    await _until(lambda: _same_book(books, script), what="book resynced after the restart")
    assert consumer.status().reconnects >= 1
    counters = books.counters("BTCUSDT")
    assert counters is not None and counters.resyncs >= 1  # the dropped deltas were a gap, not silence
    await consumer.close()
    await feed.close()


async def test_an_entry_that_is_not_a_bus_message_is_counted_acknowledged_and_skipped(
    redis_server, market
) -> None:  # type: ignore[no-untyped-def]
    import redis.asyncio as redis_asyncio

    script = market(seed=8)
    async with RedisStreamsBus(redis_server.url, block_ms=20, pending_check_s=0.02) as consumer:
        received: list[int] = []
        consumer.subscribe([BOOK], lambda stream, m: received.append(m.sequence), group="g", consumer="c")
        await asyncio.sleep(0.2)
        client = redis_asyncio.Redis.from_url(redis_server.url)
        await client.xadd(BOOK, {b"m": b"\xc1 not msgpack"})
        await client.xadd(BOOK, {b"other": b"x"})
        await client.xadd(BOOK, {b"m": encode(DeltaMessage(7, 1, script.delta()))})
        await client.aclose()
        await _until(lambda: received == [7], what="the good message after two bad ones")
        assert consumer.status().decode_errors == 2
        await _until(lambda: consumer.status().streams[BOOK].pending == 0, what="bad entries acknowledged")


@pytest.mark.slow
async def test_a_consumer_process_killed_with_sigkill_resumes_from_its_group(
    redis_server, market, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The strategy side's process is SIGKILLed mid-stream and started again under the same
    consumer name: it re-reads its unacknowledged entries, then the group's new ones. Every
    delta reaches it at least once across the two lives, and its book equals the feed's."""
    import json
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script_path = Path(__file__).with_name("consumer_process.py")
    log, stop, out = tmp_path / "handled.log", tmp_path / "stop", tmp_path / "book.json"
    feed = RedisStreamsBus(redis_server.url)
    await feed.start()
    publisher = BookPublisher(feed, "feedvenue", first_sequence=0, trades=False)
    script = market(seed=11)

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, str(script_path), redis_server.url, "host-a", str(log), str(stop), str(out)],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdout.readline().strip() == b"ready"
        return process

    first = start()
    await asyncio.sleep(0.2)
    publisher(script.snapshot())
    for index in range(3000):
        publisher(script.delta())
        if index % 100 == 0:
            await asyncio.sleep(0.005)
        if index == 1500:
            first.send_signal(signal.SIGKILL)  # mid-stream, mid-batch: no goodbye, no ack
            first.wait(5)
    handled_before = set(map(int, log.read_text().split()))
    assert 0 < len(handled_before) < 3000
    second = start()
    publisher.publish_snapshot("BTCUSDT", script.book)
    for _ in range(20):
        publisher(script.delta())
    everything = set(range(2, publisher.sequences["BTCUSDT"] + 1))  # 1 is the first snapshot
    deadline = asyncio.get_running_loop().time() + 15
    while set(map(int, log.read_text().split())) < everything:
        assert asyncio.get_running_loop().time() < deadline, "deltas lost across the kill"
        await asyncio.sleep(0.05)
    stop.touch()
    assert second.wait(10) == 0
    book = json.loads(out.read_text())
    assert book["synced"]
    assert [tuple(level) for level in book["bids"]] == script.book.bids()
    assert [tuple(level) for level in book["asks"]] == script.book.asks()
    await feed.close()
