"""``hftkit bench bus``: publish -> consume of book deltas, in-process beside Redis Streams.

Figures (same run, same delta: 3 bid and 3 ask levels of a real-sized book delta):

- in-process: ns a subscriber's handler costs when reached through ``InProcessBus.publish``
  above calling it directly (target: the bus adds <= 1 us per event).
- Redis Streams latency: one delta every millisecond, ``publish`` (in this process) -> the
  writer's ``XADD`` -> a consumer in another process (as a strategy node is) blocked in
  ``XREADGROUP BLOCK`` -> decoded in its handler, which takes ``time.time_ns()`` against the
  message's ``published_ns`` (one host, one clock); p50 and p99 over loopback (targets: p50 <=
  150 us, p99 <= 1 ms); baseline: a redis-py ``PING`` round trip (the floor of any command
  from asyncio Python).
- Redis Streams throughput: deltas/s from the first ``publish`` to the last one decoded by the
  consumer, the writer pipelining up to 1000 ``XADD`` per round trip (target >= 100,000/s).

Redis: ``HFTKIT_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0); when nothing answers
there, a ``redis-server`` on a spare loopback port (Debian's package) is started for the run.
The streams used are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from hftkit.bench.harness import BenchOptions, BenchResult, compare, percentile, time_per_call
from hftkit.bus.memory import InProcessBus
from hftkit.bus.messages import DeltaMessage, stream_name
from hftkit.core.types import BookDelta

PEERS = ("redis",)

ADDED_TARGET_NS = 1000.0
P50_TARGET_US = 150.0
P99_TARGET_US = 1000.0
RATE_TARGET = 100_000.0


def _delta(index: int) -> BookDelta:
    return BookDelta(
        venue="binance_usdm",
        symbol="BTCUSDT",
        bids=[(6_180_000 - index % 7, 120), (6_179_990, 0), (6_179_950, 4)],
        asks=[(6_180_010 + index % 5, 80), (6_180_020, 0), (6_180_100, 17)],
        first_update_id=index,
        last_update_id=index,
        previous_update_id=index - 1,
        event_time_ms=1_723_100_000_000 + index,
        receive_ns=time.monotonic_ns(),
    )


# in-process -----------------------------------------------------------------------------------------
def in_process_figures(options: BenchOptions) -> list[BenchResult]:
    bus = InProcessBus()
    stream = stream_name("book", "bench", "BTCUSDT")
    received = [0]

    def handler(name: str, message: Any) -> None:
        received[0] += 1

    bus.subscribe([stream], handler, group="bench", consumer="bench")
    message = DeltaMessage(1, time.time_ns(), _delta(1))
    publish = bus.publish
    through_bus = time_per_call(lambda: publish(stream, message), options)
    direct = time_per_call(lambda: handler(stream, message), options)
    added = max(0.0, through_bus - direct)
    return [
        compare(
            "in-process bus: cost added per delta (publish -> handler)",
            added,
            "ns",
            baseline="the handler called directly",
            baseline_value=direct,
            target="<= 1 us",
            met=added <= ADDED_TARGET_NS,
            through_bus_ns=round(through_bus, 1),
        )
    ]


# Redis ----------------------------------------------------------------------------------------------
def _answers(url: str) -> bool:
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _redis_url() -> Iterator[str | None]:
    url = os.environ.get("HFTKIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    if _answers(url):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 5
            while not _answers(url) and time.monotonic() < deadline:
                time.sleep(0.02)
            yield url
        finally:
            process.kill()
            process.wait(5)


_CONSUMER = """
import asyncio, json, sys, time
from hftkit.bus.redis_streams import RedisStreamsBus

async def main():
    url, stream, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bus = RedisStreamsBus(url, block_ms=100)
    done = asyncio.Event()
    latencies = []

    def handler(name, message):
        latencies.append((time.time_ns() - message.published_ns) / 1000)
        if len(latencies) >= count:
            done.set()

    bus.subscribe([stream], handler, group="bench", consumer="latency")
    await bus.start()
    await asyncio.sleep(0.3)
    print("ready", flush=True)
    await asyncio.wait_for(done.wait(), 120)
    await bus.close()
    print(json.dumps(latencies), flush=True)

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


async def _latency_run(url: str, samples: int) -> list[float]:
    """Publish one delta per millisecond; the other process reports each one's latency."""
    import sys

    from hftkit.bus.redis_streams import RedisStreamsBus

    stream = stream_name("book", f"bench{os.getpid()}", "LATENCY")
    warmup = 50
    consumer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CONSUMER, url, stream, str(samples + warmup),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert consumer.stdout is not None
    publisher = RedisStreamsBus(url, maxlen=max(samples * 2, 10_000))
    try:
        await publisher.start()
        line = await asyncio.wait_for(consumer.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"the consumer process did not start: {line!r}")
        for index in range(samples + warmup):
            publisher.publish(stream, DeltaMessage(index, time.time_ns(), _delta(index)))
            await asyncio.sleep(0.001)
        output = await asyncio.wait_for(consumer.stdout.readline(), 60)
        await consumer.wait()
    finally:
        if consumer.returncode is None:
            consumer.kill()
        await publisher.close()
    latencies: list[float] = json.loads(output)
    return latencies[warmup:]


async def _redis_run(url: str, samples: int, count: int) -> dict[str, Any]:
    import redis.asyncio as redis_asyncio

    from hftkit.bus.redis_streams import RedisStreamsBus

    tag = f"bench{os.getpid()}"
    latency_stream = stream_name("book", tag, "LATENCY")
    rate_stream = stream_name("book", tag, "RATE")
    publisher = RedisStreamsBus(url, maxlen=max(count, 10_000), buffer_messages=count)
    consumer = RedisStreamsBus(url, block_ms=100, read_count=1000)
    arrived = asyncio.Event()
    received = [0]
    last_ns = [0]
    sent = [0]
    round_trips: list[float] = []
    ping_pong = stream_name("book", tag, "PINGPONG")

    def on_ping_pong(name: str, message: Any) -> None:
        round_trips.append((time.perf_counter_ns() - sent[0]) / 1000)
        arrived.set()

    def on_rate(name: str, message: Any) -> None:
        received[0] += 1
        if received[0] == count:
            last_ns[0] = time.perf_counter_ns()
            arrived.set()

    consumer.subscribe([rate_stream], on_rate, group="bench", consumer="c2")
    consumer.subscribe([ping_pong], on_ping_pong, group="bench", consumer="c3")
    client = redis_asyncio.Redis.from_url(url)
    try:
        await publisher.start()
        await consumer.start()
        await asyncio.sleep(0.3)  # groups created
        pings = []
        for _ in range(min(samples, 2000)):
            started = time.perf_counter_ns()
            await client.ping()
            pings.append((time.perf_counter_ns() - started) / 1000)
        deltas = [DeltaMessage(index, time.time_ns(), _delta(index)) for index in range(count)]
        latencies = await _latency_run(url, samples)
        for index in range(samples + 50):  # one at a time, consumer on this loop; 50 warm up
            arrived.clear()
            sent[0] = time.perf_counter_ns()
            publisher.publish(ping_pong, deltas[index % count])
            await asyncio.wait_for(arrived.wait(), 5)
        del round_trips[:50]
        arrived.clear()
        started = time.perf_counter_ns()
        publish = publisher.publish
        for start in range(0, count, 1000):
            for message in deltas[start : start + 1000]:
                publish(rate_stream, message)
            await asyncio.sleep(0)  # the writer and the reader run between chunks
        await asyncio.wait_for(arrived.wait(), 60)
        elapsed = (last_ns[0] - started) / 1e9
        return {
            "latencies": latencies,
            "round_trips": round_trips,
            "pings": pings,
            "rate": count / elapsed,
            "dropped": publisher.status().dropped,
        }
    finally:
        await consumer.close()
        await publisher.close()
        with contextlib.suppress(Exception):
            await client.delete(latency_stream, rate_stream, ping_pong)
        await client.aclose()


def redis_figures(options: BenchOptions) -> list[BenchResult]:
    samples, count = (300, 20_000) if options.quick else (3000, 200_000)
    with _redis_url() as url:
        if url is None:
            return [
                compare(
                    "Redis Streams: skipped (no Redis answering and no redis-server on PATH)",
                    0.0,
                    "us",
                    met=None,
                )
            ]
        run: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]
        try:
            import uvloop

            run = uvloop.run
        except ImportError:  # pragma: no cover - uvloop is in the lock
            run = asyncio.run
        found = run(_redis_run(url, samples, count))
    latencies, pings = found["latencies"], found["pings"]
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    ping50, ping99 = percentile(pings, 0.50), percentile(pings, 0.99)
    return [
        compare(
            "Redis Streams: publish -> consume latency p50 (consumer in another process)",
            p50,
            "us",
            baseline="redis-py PING round trip p50",
            baseline_value=ping50,
            target="<= 150 us",
            met=p50 <= P50_TARGET_US,
            samples=len(latencies),
        ),
        compare(
            "Redis Streams: publish -> consume latency p99",
            p99,
            "us",
            baseline="redis-py PING round trip p99",
            baseline_value=ping99,
            target="<= 1 ms",
            met=p99 <= P99_TARGET_US,
        ),
        compare(
            "Redis Streams: publish -> consume p50, consumer on the publisher's loop, one at a time",
            percentile(found["round_trips"], 0.50),
            "us",
            baseline="redis-py PING round trip p50",
            baseline_value=ping50,
            target="<= 150 us",
            met=percentile(found["round_trips"], 0.50) <= P50_TARGET_US,
            p99_us=round(percentile(found["round_trips"], 0.99), 1),
        ),
        compare(
            "Redis Streams: deltas/s, one stream, pipelined XADD",
            found["rate"],
            "msg/s",
            target=">= 100,000/s",
            met=found["rate"] >= RATE_TARGET,
            messages=count,
            dropped=found["dropped"],
        ),
    ]


def run(options: BenchOptions) -> list[BenchResult]:
    return [*in_process_figures(options), *redis_figures(options)]


__all__ = ["run"]
