"""TaskSupervisor: failures logged and counted, restart policies, groups, cancel on exit."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hftkit.resilience import DuplicateTaskError, RestartPolicy, TaskState, TaskSupervisor

# A broken limiter or scheduler would hang its waiters: fail fast instead of at the global timeout.
pytestmark = pytest.mark.timeout(20)


def instant_supervisor(slept: list[float] | None = None) -> TaskSupervisor:
    async def sleep(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)
        await asyncio.sleep(0)

    return TaskSupervisor("test", sleep=sleep, uniform=lambda low, high: high)


async def test_a_failing_task_is_restarted_with_backoff_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slept: list[float] = []
    runs = 0

    async def feed() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ConnectionError(f"drop {runs}")

    async with instant_supervisor(slept) as supervisor:
        supervisor.start(
            "binance-depth", feed, group="market-data", restart=RestartPolicy.on_failure(base_delay=0.1)
        )
        status = await supervisor.wait("binance-depth")
    assert status.state is TaskState.FINISHED
    assert (status.runs, status.failures, status.restarts) == (3, 2, 2)
    assert isinstance(status.last_error, ConnectionError)
    assert slept == pytest.approx([0.1, 0.2])
    failures = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(failures) == 2
    assert all(record.exc_info is not None for record in failures)
    assert "binance-depth" in failures[0].getMessage()
    assert supervisor.failures == 2 and supervisor.restarts == 2


async def test_restarts_stop_at_the_limit_and_the_task_is_marked_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def always_fails() -> None:
        raise ValueError("bad config")

    async with instant_supervisor() as supervisor:
        supervisor.start("x", always_fails, restart=RestartPolicy.on_failure(max_restarts=2))
        status = await supervisor.wait("x")
    assert status.state is TaskState.FAILED
    assert (status.runs, status.failures, status.restarts) == (3, 3, 2)
    assert "giving up" in caplog.text


async def test_never_policy_fails_once_and_finished_tasks_report_finished() -> None:
    async def fails() -> None:
        raise RuntimeError("once")

    async def done() -> int:
        return 1

    async with instant_supervisor() as supervisor:
        supervisor.start("fails", fails)
        supervisor.start("done", done)
        assert (await supervisor.wait("fails")).state is TaskState.FAILED
        assert (await supervisor.wait("done")).state is TaskState.FINISHED
        counts = supervisor.counts()
    assert counts["failed"] == 1 and counts["finished"] == 1


async def test_always_policy_restarts_after_a_normal_return() -> None:
    runs = 0

    async def loop_body() -> None:
        nonlocal runs
        runs += 1

    async with instant_supervisor() as supervisor:
        supervisor.start("heartbeat", loop_body, restart=RestartPolicy.always(max_restarts=4))
        status = await supervisor.wait("heartbeat")
    assert runs == 5 and status.state is TaskState.FINISHED


async def test_cancel_group_leaves_other_groups_running() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async with instant_supervisor() as supervisor:
        supervisor.start("depth", forever, group="market-data")
        supervisor.start("trades", forever, group="market-data")
        supervisor.start("orders", forever, group="orders")
        await asyncio.sleep(0)
        assert await supervisor.cancel_group("market-data") == 2
        assert [s.state for s in supervisor.statuses("market-data")] == [TaskState.CANCELLED] * 2
        assert supervisor.status("orders").state is TaskState.RUNNING
        assert supervisor.groups == {"market-data", "orders"}
    assert supervisor.status("orders").state is TaskState.CANCELLED  # cancelled on exit


async def test_names_are_unique_while_running_and_factories_are_required() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async with instant_supervisor() as supervisor:
        supervisor.start("a", forever)
        with pytest.raises(DuplicateTaskError):
            supervisor.start("a", forever)
        coroutine = forever()
        with pytest.raises(TypeError, match="factory"):
            supervisor.start("b", coroutine)  # type: ignore[arg-type]
        coroutine.close()
        await supervisor.cancel("a")
        supervisor.start("a", forever)  # reusable once ended
        with pytest.raises(KeyError):
            supervisor.status("missing")
    with pytest.raises(RuntimeError, match="closed"):
        supervisor.start("c", forever)


async def test_cancelled_during_backoff_is_reported_cancelled() -> None:
    async def parked_sleep(seconds: float) -> None:
        await asyncio.Event().wait()

    async def fails() -> None:
        raise OSError

    supervisor = TaskSupervisor(sleep=parked_sleep)
    supervisor.start("x", fails, restart=RestartPolicy.on_failure())
    for _ in range(3):
        await asyncio.sleep(0)
    assert supervisor.status("x").state is TaskState.BACKING_OFF
    await supervisor.cancel("x")
    assert supervisor.status("x").state is TaskState.CANCELLED


def test_restart_policy_validation() -> None:
    with pytest.raises(ValueError):
        RestartPolicy.on_failure(max_restarts=-1)
    assert RestartPolicy.on_failure(base_delay=1, max_delay=5).delay(10, lambda low, high: high) == 5
