"""The bus on Redis Streams: several processes or hosts share market data, reports and control.

Publishing: ``publish`` encodes the message (MessagePack) and appends it to a bounded buffer;
one writer task drains the buffer as soon as it is woken, sending everything waiting in one
pipeline of ``XADD ... MAXLEN ~ maxlen`` (approximate trimming: O(1) amortized, whole macro
nodes): one entry per stream, field ``m`` holding one message or, when several of a stream
were waiting, field ``b`` holding them as one MessagePack array (``join_encoded``). Under load
the per-entry costs of Redis and of redis-py are paid once per batch, not once per message;
one message at a time still goes out at once.

While Redis is down the buffer keeps at most ``buffer_messages``; older messages are dropped
and counted (``dropped``): fresh market data is worth more than old, and a consumer detects
the hole through the stream's sequence numbers and resyncs. Writing resumes, with the
buffer's contents in order, when Redis answers again (``reconnects``).

(``hftkit.storage.writer.BatchingWriter`` is not used here: it flushes on size or on a timer,
which adds up to a flush interval of latency to every message; the bus writes at once.)

Consuming: one task per subscription reads its streams with ``XREADGROUP ... BLOCK`` as a
member of a consumer group, hands each message to the handler, and acknowledges them
(``XACK``) in the same pipeline as its next read, so an acknowledgement costs no round trip.
At start, and after every reconnect, a consumer first re-reads its own pending entries (delivered
before a crash, never acknowledged) and takes over other members' entries idle longer than
``claim_idle_ms`` (``XAUTOCLAIM``: a consumer that died), so nothing delivered to the group is
silently lost. A Redis that restarted without its data has lost the groups: they are made
again (``NOGROUP``) and reading goes on from the new streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hftkit.bus.base import BusStatus, Handler, StreamStatus
from hftkit.bus.messages import BusMessage, decode, decode_many, encode, join_encoded

_log = logging.getLogger(__name__)

FIELD = b"m"  # a stream entry's field: one encoded message
BATCH_FIELD = b"b"  # or: several of the same stream, as one MessagePack array
_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, ConnectionError)


class RedisStreamsBus:
    """``MessageBus`` on Redis Streams (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        maxlen: int = 100_000,
        buffer_messages: int = 100_000,
        batch_messages: int = 1000,
        block_ms: int = 100,
        read_count: int = 1000,
        claim_idle_ms: int = 1000,
        pending_check_s: float = 1.0,
        retry_min_s: float = 0.05,
        retry_max_s: float = 1.0,
        start_id: str = "$",
    ) -> None:
        if buffer_messages < 1 or batch_messages < 1 or maxlen < 1:
            raise ValueError("maxlen, buffer_messages and batch_messages must be at least 1")
        self.url = url
        self.maxlen = maxlen
        self.capacity = buffer_messages
        self.batch_messages = batch_messages
        self.block_ms = block_ms
        self.read_count = read_count
        self.claim_idle_ms = claim_idle_ms
        self.pending_check_s = pending_check_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.start_id = start_id  # where a new group starts: "$" new messages only, "0" everything kept
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._subscriptions: list[tuple[list[str], Handler, str, str]] = []
        self._client: Any = None
        self._streams: dict[str, StreamStatus] = {}
        self._started = False
        self._closing = False
        self.writer_connected = False
        self._writer_down = False  # the last write failed: close() does not wait for it
        self.readers_down = 0  # reader tasks that cannot reach Redis now
        self.published = 0
        self.written = 0
        self.dropped = 0
        self.reconnects = 0
        self.decode_errors = 0
        self.handler_errors = 0
        self.last_error: str | None = None

    def _new_client(self) -> Any:
        # no socket timeout: a blocking XREADGROUP waits up to block_ms on purpose; connects are bounded
        # and no retries inside the client: this bus's loops retry, count and buffer themselves
        return redis_asyncio.Redis.from_url(
            self.url, socket_connect_timeout=1.0, socket_keepalive=True, retry=Retry(NoBackoff(), 0)
        )

    # lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the writer and every subscription's reader; Redis being down is not an error."""
        if self._started:
            return
        self._started = True
        self._client = self._new_client()
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name="bus:writer")
        for subscription in self._subscriptions:
            self._start_reader(*subscription)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Write what is buffered (bounded by ``timeout_s``; the rest is counted dropped), stop."""
        if self._closing:
            return
        self._closing = True
        deadline = time.monotonic() + timeout_s
        while (self._outbox or self._in_flight) and not self._writer_down and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.002)
        # readers stop after their current blocking read (cancelling one mid-read can stall the
        # client's teardown); the writer waits on its event and is cancelled at once
        if self._readers:
            await asyncio.wait(self._readers, timeout=self.block_ms / 1000 + 1.0)
        for task in [*self._readers, *([self._writer] if self._writer else [])]:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 1.0)
        if self._outbox:
            self.dropped += len(self._outbox)
            _log.warning("bus: %d messages not written at close", len(self._outbox))
            self._outbox.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aclose(), 1.0)

    async def __aenter__(self) -> RedisStreamsBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # publishing -----------------------------------------------------------------------------------
    def publish(self, stream: str, message: BusMessage) -> bool:
        outbox = self._outbox
        if self._closing:
            self.dropped += 1
            return False
        self.published += 1
        if len(outbox) + self._in_flight >= self.capacity:
            self.dropped += 1  # drop the oldest: fresh data is worth more; the consumer sees the gap
            if not outbox:
                return False
            outbox.popleft()
        outbox.append((stream, encode(message)))
        self._wake.set()
        return True

    async def _write_loop(self) -> None:
        outbox, wake = self._outbox, self._wake
        delay = self.retry_min_s
        failed = False
        while True:
            if not outbox:
                wake.clear()
                await wake.wait()
            count = min(len(outbox), self.batch_messages)
            batch = [outbox.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                if count == 1:  # one message alone: no pipeline object to build
                    stream, data = batch[0]
                    await self._client.xadd(stream, {FIELD: data}, maxlen=self.maxlen, approximate=True)
                else:
                    by_stream: dict[str, list[bytes]] = {}
                    for stream, data in batch:
                        by_stream.setdefault(stream, []).append(data)
                    pipe = self._client.pipeline(transaction=False)
                    maxlen = self.maxlen
                    for stream, items in by_stream.items():
                        fields = {FIELD: items[0]} if len(items) == 1 else {BATCH_FIELD: join_encoded(items)}
                        pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
                    await pipe.execute()
            except _DOWN as error:
                self._in_flight = 0
                self._down(error)
                self.writer_connected = False
                self._writer_down = failed = True
                outbox.extendleft(reversed(batch))  # back at the head, in order
                while len(outbox) > self.capacity:  # the bound still holds
                    outbox.popleft()
                    self.dropped += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except ResponseError as error:  # refused by Redis (e.g. out of memory): counted, skipped
                self._in_flight = 0
                self.dropped += count
                self.last_error = f"{type(error).__name__}: {error}"
                _log.error("bus: Redis refused %d messages: %s", count, error)
                await asyncio.sleep(delay)
                continue
            self._in_flight = 0
            self.written += count
            delay = self.retry_min_s
            if failed:
                failed = False
                self.reconnects += 1
                _log.info("bus: Redis at %s reachable again (writer)", self.url)
            self.writer_connected = True
            self._writer_down = False

    def _down(self, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        if text != self.last_error:
            _log.warning("bus: Redis at %s unreachable: %s", self.url, error)
        self.last_error = text

    @property
    def connected(self) -> bool:
        """The writer's last write succeeded and every reader reaches Redis."""
        return (self.writer_connected or not self.written) and not self.readers_down

    # consuming ------------------------------------------------------------------------------------
    def subscribe(self, streams: Sequence[str], handler: Handler, *, group: str, consumer: str) -> None:
        names = list(dict.fromkeys(streams))
        for name in names:
            self._streams.setdefault(name, StreamStatus())
        subscription = (names, handler, group, consumer)
        self._subscriptions.append(subscription)
        if self._started and not self._closing:
            self._start_reader(*subscription)

    def _start_reader(self, streams: list[str], handler: Handler, group: str, consumer: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._read_loop(streams, handler, group, consumer), name=f"bus:reader:{group}:{consumer}"
        )
        self._readers.append(task)

    async def _ensure_groups(self, client: Any, streams: list[str], group: str) -> None:
        for stream in streams:
            try:
                await client.xgroup_create(stream, group, id=self.start_id, mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    async def _read_loop(self, streams: list[str], handler: Handler, group: str, consumer: str) -> None:
        client = self._new_client()
        delay = self.retry_min_s
        failed = False
        try:
            while not self._closing:
                try:
                    await self._ensure_groups(client, streams, group)
                    # recover first: our own unacknowledged entries, then dead members' ones
                    for stream in streams:
                        await self._read_own_pending(client, stream, handler, group, consumer)
                        await self._claim(client, stream, handler, group, consumer)
                    if failed:
                        failed = False
                        self.reconnects += 1
                        self.readers_down -= 1
                        _log.info("bus: Redis at %s reachable again (%s/%s)", self.url, group, consumer)
                    delay = self.retry_min_s
                    await self._read_new(client, streams, handler, group, consumer)
                except _DOWN as error:
                    self._down(error)
                    if not failed:
                        failed = True
                        self.readers_down += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
                except ResponseError as error:
                    if "NOGROUP" in str(error):  # Redis lost the group (restart without data): remake it
                        continue
                    self.last_error = f"{type(error).__name__}: {error}"
                    _log.error("bus: reading %s failed: %s", streams, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), 1.0)

    async def _read_new(
        self, client: Any, streams: list[str], handler: Handler, group: str, consumer: str
    ) -> None:
        positions = dict.fromkeys(streams, ">")
        next_pending_check = 0.0
        acks: dict[str, list[Any]] = {}
        while not self._closing:
            pipe = client.pipeline(transaction=False)
            for stream, ids in acks.items():  # the last read's entries, handled: acknowledged now
                pipe.xack(stream, group, *ids)
            pipe.xreadgroup(group, consumer, positions, count=self.read_count, block=self.block_ms)
            answer = (await pipe.execute())[-1]
            acks = {}
            for stream_name, entries in answer or ():
                stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                acks[stream] = self._deliver(stream, entries, handler)
            now = time.monotonic()
            if now >= next_pending_check:
                next_pending_check = now + self.pending_check_s
                for stream in streams:
                    summary = await client.xpending(stream, group)
                    self._streams[stream].pending = int(summary.get("pending", 0) or 0)

    async def _read_own_pending(
        self, client: Any, stream: str, handler: Handler, group: str, consumer: str
    ) -> None:
        cursor = "0"
        while True:
            answer = await client.xreadgroup(group, consumer, {stream: cursor}, count=self.read_count)
            entries = answer[0][1] if answer else []
            entries = [entry for entry in entries if entry[1]]  # trimmed entries come back empty
            if not entries:
                return
            await client.xack(stream, group, *self._deliver(stream, entries, handler))
            cursor = entries[-1][0]

    async def _claim(self, client: Any, stream: str, handler: Handler, group: str, consumer: str) -> None:
        cursor = "0-0"
        while True:
            answer = await client.xautoclaim(
                stream, group, consumer, self.claim_idle_ms, start_id=cursor, count=self.read_count
            )
            cursor, entries = answer[0], [entry for entry in answer[1] if entry[1]]
            if entries:
                self._streams[stream].claimed += len(entries)
                await client.xack(stream, group, *self._deliver(stream, entries, handler))
            if cursor in (b"0-0", "0-0"):
                return

    def _deliver(self, stream: str, entries: list[Any], handler: Handler) -> list[Any]:
        """Decode and hand on ``entries``; returns their ids, to acknowledge (bad ones included)."""
        status = self._streams.get(stream)
        if status is None:
            status = self._streams[stream] = StreamStatus()
        ids = []
        now = time.time_ns()
        last_published = 0
        for entry_id, fields in entries:
            ids.append(entry_id)
            try:
                if fields and FIELD in fields:
                    messages = [decode(fields[FIELD])]
                elif fields and BATCH_FIELD in fields:
                    messages = decode_many(fields[BATCH_FIELD])
                else:
                    self.decode_errors += 1
                    continue
            except (msgspec.DecodeError, msgspec.ValidationError):
                self.decode_errors += 1
                continue
            for message in messages:
                status.delivered += 1
                last_published = message.published_ns
                try:
                    handler(stream, message)
                except Exception:
                    self.handler_errors += 1
                    _log.exception("bus subscriber of %s failed", stream)
        if last_published:
            lag = now - last_published
            status.lag_ns = lag
            if lag > status.max_lag_ns:
                status.max_lag_ns = lag
        return ids

    # reading --------------------------------------------------------------------------------------
    async def latest(self, stream: str) -> BusMessage | None:
        """The newest entry of ``stream`` (None: empty, undecodable, or Redis unreachable)."""
        try:
            entries = await self._client.xrevrange(stream, count=1)
        except _DOWN as error:
            self._down(error)
            return None
        if not entries:
            return None
        fields = entries[0][1]
        try:
            if FIELD in fields:
                return decode(fields[FIELD])
            return decode_many(fields[BATCH_FIELD])[-1] if BATCH_FIELD in fields else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.decode_errors += 1
            return None

    def status(self) -> BusStatus:
        return BusStatus(
            kind=self.kind,
            connected=self.connected,
            published=self.published,
            written=self.written,
            dropped=self.dropped,
            buffered=len(self._outbox) + self._in_flight,
            capacity=self.capacity,
            reconnects=self.reconnects,
            decode_errors=self.decode_errors,
            handler_errors=self.handler_errors,
            last_error=self.last_error,
            streams={
                name: StreamStatus(**{key: getattr(item, key) for key in item.__struct_fields__})
                for name, item in self._streams.items()
            },
        )


__all__ = ["FIELD", "RedisStreamsBus"]
