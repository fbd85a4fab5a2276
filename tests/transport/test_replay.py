"""Recording replay: pacing against an injected clock, looping, and real recorded files."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from pathlib import Path

import pytest

from hftkit.core.clock import SimulatedClock
from hftkit.datasets import hftbacktest_file, iter_recording, shared_data_dir
from hftkit.transport.feed import FeedQueue, OverflowPolicy
from hftkit.transport.replay import RecordingReplay, ReplayRecord

LIVENESS_S = 30.0
START_NS = 1_723_161_254_000_000_000
OFFSETS_NS = [0, 0, 5_000_000, 20_000_000, 1_020_000_000]  # gaps: 0, 5 ms, 15 ms, 1 s


class FakeSleep:
    """Records each requested wait and moves the clock by it (plus an optional overshoot)."""

    def __init__(self, clock: SimulatedClock, overshoot_ns: int = 0) -> None:
        self.clock = clock
        self.overshoot_ns = overshoot_ns
        self.waits_ns: list[int] = []

    async def __call__(self, seconds: float) -> None:
        waited = round(seconds * 1e9)
        self.waits_ns.append(waited)
        if waited:
            self.clock.advance(waited + self.overshoot_ns)

    @property
    def pacing_waits(self) -> list[int]:
        return [wait for wait in self.waits_ns if wait]


def write_recording(path: Path, offsets_ns: list[int] = OFFSETS_NS) -> list[ReplayRecord]:
    records = [
        ReplayRecord(START_NS + offset, b'{"stream":"x@trade","data":{"t":%d}}' % index)
        for index, offset in enumerate(offsets_ns)
    ]
    text = b"".join(b"%d %s\n" % (record.timestamp_ns, record.payload) for record in records)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text))
    else:
        path.write_bytes(text)
    return records


async def collect(replay: RecordingReplay) -> list[ReplayRecord]:
    return [record async for record in replay]


@pytest.mark.parametrize("speed", [1.0, 10.0, 0.5])
async def test_pacing_follows_recorded_timestamps_scaled_by_speed(tmp_path, speed) -> None:
    expected = write_recording(tmp_path / "trades.gz")
    clock = SimulatedClock(start_ns=7_000)
    sleep = FakeSleep(clock)
    replay = RecordingReplay(tmp_path / "trades.gz", speed=speed, clock=clock, sleep=sleep)
    assert await collect(replay) == expected
    gaps = [later - earlier for earlier, later in itertools.pairwise(OFFSETS_NS) if later != earlier]
    assert sleep.pacing_waits == [round(gap / speed) for gap in gaps]
    assert clock.monotonic_ns() - 7_000 == round(OFFSETS_NS[-1] / speed)
    assert (replay.emitted, replay.loops_completed, replay.max_lag_ns) == (5, 1, 0)


async def test_schedule_is_anchored_so_sleep_overshoot_does_not_accumulate(tmp_path) -> None:
    write_recording(tmp_path / "trades.txt")
    clock = SimulatedClock()
    sleep = FakeSleep(clock, overshoot_ns=2_000_000)  # every sleep oversleeps by 2 ms
    await collect(RecordingReplay(tmp_path / "trades.txt", speed=1.0, clock=clock, sleep=sleep))
    # each wait is shortened by the previous overshoot; the run ends one overshoot late, not three
    assert sleep.pacing_waits == [5_000_000, 13_000_000, 998_000_000]
    assert clock.monotonic_ns() == OFFSETS_NS[-1] + 2_000_000


async def test_a_replay_that_falls_behind_emits_without_sleeping_and_reports_its_lag(tmp_path) -> None:
    write_recording(tmp_path / "trades.txt")
    clock = SimulatedClock()
    sleep = FakeSleep(clock, overshoot_ns=30_000_000)  # the 5 ms sleep overshoots past the next due time
    replay = RecordingReplay(tmp_path / "trades.txt", speed=1.0, clock=clock, sleep=sleep)
    await collect(replay)
    assert sleep.pacing_waits == [5_000_000, 985_000_000]
    assert replay.max_lag_ns == 15_000_000


async def test_as_fast_as_possible_only_yields_to_the_loop(tmp_path) -> None:
    expected = write_recording(tmp_path / "trades.txt", list(range(0, 10_000_000_000, 1_000_000_000)))
    sleep = FakeSleep(SimulatedClock())
    replay = RecordingReplay(tmp_path / "trades.txt", speed=None, sleep=sleep, yield_every=3)
    assert await collect(replay) == expected
    assert sleep.waits_ns == [0, 0, 0]  # one yield per 3 records, never a pacing wait


async def test_plain_json_lines_replay_without_waits(tmp_path) -> None:
    path = tmp_path / "messages.jsonl"
    path.write_bytes(b'{"a":1}\n\n{"a":2}\n')
    sleep = FakeSleep(SimulatedClock())
    records = await collect(RecordingReplay(path, sleep=sleep))
    assert records == [ReplayRecord(0, b'{"a":1}'), ReplayRecord(0, b'{"a":2}')]
    assert sleep.pacing_waits == []


async def test_loop_restarts_and_re_anchors_the_schedule_until_stopped(tmp_path) -> None:
    expected = write_recording(tmp_path / "trades.txt", [0, 10_000_000, 30_000_000])
    clock = SimulatedClock()
    sleep = FakeSleep(clock)
    replay = RecordingReplay(tmp_path / "trades.txt", loop=True, clock=clock, sleep=sleep)
    received = []
    async for record in replay:
        received.append(record)
        if len(received) == 7:
            replay.stop()
    assert received == expected * 2 + expected[:1]
    assert replay.loops_completed == 2
    assert sleep.pacing_waits == [10_000_000, 20_000_000] * 2  # no wait across the restart


async def test_several_files_play_back_to_back_on_one_schedule(tmp_path) -> None:
    first = write_recording(tmp_path / "part1.txt", [0, 1_000_000])
    second = write_recording(tmp_path / "part2.txt", [3_000_000])
    clock = SimulatedClock()
    sleep = FakeSleep(clock)
    replay = RecordingReplay([tmp_path / "part1.txt", tmp_path / "part2.txt"], clock=clock, sleep=sleep)
    assert await collect(replay) == first + second
    assert sleep.pacing_waits == [1_000_000, 2_000_000]


async def test_pump_applies_back_pressure_through_a_block_queue_and_closes_it(tmp_path) -> None:
    expected = write_recording(tmp_path / "trades.txt", list(range(0, 50_000_000, 1_000_000)))
    queue: FeedQueue[int] = FeedQueue(4, OverflowPolicy.BLOCK)
    replay = RecordingReplay(tmp_path / "trades.txt", speed=None)
    pumping = asyncio.ensure_future(replay.pump(queue, lambda record: record.timestamp_ns))
    received = [item async for item in queue]
    assert await pumping == 50
    assert received == [record.timestamp_ns for record in expected]
    assert queue.dropped == 0 and queue.high_water_mark == 4


async def test_pump_stops_when_the_queue_is_closed_under_it(tmp_path) -> None:
    write_recording(tmp_path / "trades.txt", list(range(0, 50_000_000, 1_000_000)))
    queue: FeedQueue[ReplayRecord] = FeedQueue(4, OverflowPolicy.BLOCK)
    replay = RecordingReplay(tmp_path / "trades.txt", speed=None)
    pumping = asyncio.ensure_future(replay.pump(queue))
    await queue.get()
    queue.close(drain=False)
    accepted = await asyncio.wait_for(pumping, LIVENESS_S)
    assert 1 <= accepted < 50


def test_bad_arguments_are_refused(tmp_path) -> None:
    write_recording(tmp_path / "trades.txt")
    with pytest.raises(FileNotFoundError):
        RecordingReplay(tmp_path / "missing.gz")
    for speed in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            RecordingReplay(tmp_path / "trades.txt", speed=speed)
    with pytest.raises(ValueError):
        RecordingReplay([])


# --- real recordings ----------------------------------------------------------------------------


def recorded(market: str, name: str) -> Path:
    shared_data_dir()  # required: fails with where it looked
    return hftbacktest_file(market, name)


async def test_a_real_recording_arrives_whole_and_in_order_through_a_dropping_queue(tmp_path) -> None:
    path = recorded("spot", "ethusdt_20240808.gz")
    expected = list(iter_recording(path))
    queue: FeedQueue[ReplayRecord] = FeedQueue(1_024, OverflowPolicy.DROP_OLDEST)
    replay = RecordingReplay(path, speed=None, yield_every=64)
    pumping = asyncio.ensure_future(replay.pump(queue))
    received = [(record.timestamp_ns, record.payload) async for record in queue]
    assert await pumping == len(expected) == 33_618
    assert queue.dropped == 0  # the consumer keeps up because the replay yields every 64 records
    assert received == expected


async def test_a_real_recording_slice_replays_in_real_time_with_asyncio_sleep(tmp_path) -> None:
    source = recorded("usdm", "btcusdt_20240808.gz")
    head = list(itertools.islice(iter_recording(source), 40))
    path = tmp_path / "slice.gz"
    path.write_bytes(gzip.compress(b"".join(b"%d %s\n" % line for line in head)))
    replay = RecordingReplay(path, speed=50.0)  # real clock and real asyncio.sleep
    records = await asyncio.wait_for(collect(replay), LIVENESS_S)
    assert [(record.timestamp_ns, record.payload) for record in records] == head
    assert replay.slept_ns > 0
