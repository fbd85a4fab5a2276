"""The simulated event loop: asyncio code runs unchanged, in simulated time, deterministically."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.backtest.loop import SimulatedLoop, SimulationStalledError


def test_sleep_timeout_and_tasks_run_in_simulated_time_without_waiting():
    loop = SimulatedLoop()
    seen: list[tuple[str, int]] = []

    async def main() -> int:
        await asyncio.sleep(1.5)
        seen.append(("slept", loop.now_ns()))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.25):
                await asyncio.sleep(60)
        seen.append(("timed out", loop.now_ns()))
        child = asyncio.get_running_loop().create_task(asyncio.sleep(0.1, "child"))
        seen.append((await child, loop.now_ns()))
        return 7

    assert loop.run_until_complete(main()) == 7
    assert seen == [("slept", 1_500_000_000), ("timed out", 1_750_000_000), ("child", 1_850_000_000)]


def test_timers_due_together_fire_in_the_order_they_were_set():
    loop = SimulatedLoop()
    fired: list[int] = []
    for index in range(50):
        loop.call_later(0.001, fired.append, index)
    loop.call_later(0.0005, fired.append, -1)
    loop.advance_to(1_000_000)
    assert fired == [-1, *range(50)]
    assert loop.now_ns() == 1_000_000


def test_cancelling_many_timers_from_a_timer_never_runs_one_twice():
    # regression: compacting the heap while advance_to walked it ran timers a second time
    loop = SimulatedLoop()
    runs: dict[int, int] = {}
    handles = []

    def tick(index: int) -> None:
        runs[index] = runs.get(index, 0) + 1
        if index == 0:
            for handle in handles[1:900]:
                handle.cancel()

    for index in range(1000):
        handles.append(loop.call_at_ns(10 + index, tick, index))
    loop.advance_to(10_000)
    loop.advance_to(20_000)
    assert runs == {index: 1 for index in [0, *range(900, 1000)]}
    assert loop.next_timer_ns() is None


def test_advance_runs_only_what_is_due_and_leaves_the_clock_at_the_target():
    loop = SimulatedLoop()
    fired: list[int] = []
    loop.call_at_ns(500, fired.append, 500)
    loop.call_at_ns(1500, fired.append, 1500)
    loop.advance_to(1000)
    assert fired == [500] and loop.now_ns() == 1000
    assert loop.next_timer_ns() == 1500


def test_a_backtest_cannot_open_a_socket():
    loop = SimulatedLoop()

    async def connect() -> None:
        await asyncio.open_connection("127.0.0.1", 9)

    with pytest.raises(NotImplementedError, match="no sockets"):
        loop.run_until_complete(connect())


def test_waiting_on_something_nothing_can_finish_is_reported_not_hung():
    loop = SimulatedLoop()

    async def forever() -> None:
        await loop.create_future()

    with pytest.raises(SimulationStalledError):
        loop.run_until_complete(forever())


def test_a_feedback_loop_at_one_instant_is_stopped_with_the_reason():
    loop = SimulatedLoop(max_callbacks_per_instant=100_000)

    def again() -> None:
        loop.call_soon(again)

    loop.call_soon(again)
    with pytest.raises(SimulationStalledError, match="feedback loop"):
        loop.advance_to(1)


def test_scheduled_calls_and_timers_share_one_order():
    # schedule_ns (the venue's deliveries) and call_at_ns timers due together run in the order set
    loop = SimulatedLoop()
    fired: list[str] = []
    loop.schedule_ns(200, fired.append, "scheduled first")
    loop.call_at_ns(200, fired.append, "timer second")
    loop.schedule_ns(200, fired.append, "scheduled third")
    loop.schedule_ns(100, fired.append, "earlier")
    cancelled = loop.call_at_ns(150, fired.append, "cancelled")
    cancelled.cancel()
    assert loop.next_timer_ns() == 100
    loop.advance_to(1000)
    assert fired == ["earlier", "scheduled first", "timer second", "scheduled third"]
    assert loop.next_timer_ns() is None
    loop.schedule_ns(1500, fired.append, "scheduled")
    loop.call_at_ns(1400, fired.append, "timer")
    assert loop.next_timer_ns() == 1400
    loop.advance_to(1450)
    assert fired[-1] == "timer" and loop.next_timer_ns() == 1500
    loop.close()
    assert loop.next_timer_ns() is None


def test_a_scheduled_call_runs_at_its_time_and_what_it_starts_runs_before_the_next():
    loop = SimulatedLoop()
    seen: list[tuple[str, int]] = []

    async def child() -> None:
        seen.append(("task", loop.now_ns()))

    def deliver(name: str) -> None:
        seen.append((name, loop.now_ns()))
        asyncio.get_running_loop().create_task(child())  # the loop is the running one here

    loop.schedule_ns(300, deliver, "first")
    loop.schedule_ns(300, deliver, "second")
    loop.schedule_ns(10, deliver, "past")  # set after the clock passed it: runs at once
    loop.advance_to(50)
    loop.schedule_ns(10, deliver, "late")
    loop.advance_to(400)
    assert seen == [
        ("past", 10),
        ("task", 10),
        ("late", 50),
        ("task", 50),
        ("first", 300),
        ("task", 300),
        ("second", 300),
        ("task", 300),
    ]
    assert loop.now_ns() == 400


def test_a_scheduled_call_that_raises_is_reported_and_the_run_goes_on():
    loop = SimulatedLoop()
    fired: list[int] = []

    def broken() -> None:
        raise ValueError("venue bug")

    loop.schedule_ns(100, broken)
    loop.schedule_ns(100, fired.append, 1)
    loop.advance_to(200)
    assert fired == [1]
    assert len(loop.errors) == 1 and isinstance(loop.errors[0]["exception"], ValueError)


def test_scheduled_calls_count_towards_the_feedback_loop_guard():
    loop = SimulatedLoop(max_callbacks_per_instant=1000)

    def again() -> None:
        loop.schedule_ns(loop.now_ns(), again)

    loop.schedule_ns(5, again)
    with pytest.raises(SimulationStalledError, match="feedback loop"):
        loop.advance_to(10)
