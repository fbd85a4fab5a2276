"""One timer for a session's request timeouts: expiry in send order, answered ids untouched."""

from __future__ import annotations

import asyncio

import pytest

from hftkit.transport.deadlines import RequestDeadlines


async def test_requests_expire_in_send_order_after_their_timeout_and_only_once() -> None:
    expired: list[int] = []
    deadlines = RequestDeadlines(0.05, expired.append)
    deadlines.add(1)
    await asyncio.sleep(0.02)
    deadlines.add(2)
    await asyncio.sleep(0.04)
    assert expired == [1]  # 2 is not due yet
    await asyncio.sleep(0.04)
    assert expired == [1, 2] and len(deadlines) == 0
    await asyncio.sleep(0.06)
    assert expired == [1, 2]


async def test_clear_forgets_every_deadline() -> None:
    expired: list[int] = []
    deadlines = RequestDeadlines(0.02, expired.append)
    for request_id in range(5):
        deadlines.add(request_id)
    deadlines.clear()
    await asyncio.sleep(0.05)
    assert expired == []
    deadlines.add(9)  # and it works again afterwards
    await asyncio.sleep(0.05)
    assert expired == [9]


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RequestDeadlines(0, lambda request_id: None)


def test_a_millisecond_clock_does_not_make_the_sweep_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop's timers and loop.time() tick in milliseconds: a timer set inside the current
    # millisecond fires before loop.time() reaches its deadline. Re-armed for the same deadline it
    # spun, about 13 sweeps per request in the node bench; now one sweep serves many requests.
    uvloop = pytest.importorskip("uvloop")
    sweeps = 0
    sweep = RequestDeadlines._sweep

    def counted(self: RequestDeadlines) -> None:
        nonlocal sweeps
        sweeps += 1
        sweep(self)

    monkeypatch.setattr(RequestDeadlines, "_sweep", counted)
    expired: list[tuple[int, float]] = []

    async def burst() -> None:
        loop = asyncio.get_running_loop()
        sent: dict[int, float] = {}
        deadlines = RequestDeadlines(0.0105, lambda request_id: expired.append((request_id, loop.time())))
        for request_id in range(20):  # deadlines half a millisecond past the loop's tick
            sent[request_id] = loop.time()
            deadlines.add(request_id)
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert [request_id for request_id, _ in expired] == list(range(20))
        for request_id, when in expired:
            assert when - sent[request_id] >= deadlines.timeout_s - 1e-6  # never early
            assert when - sent[request_id] <= deadlines.timeout_s + deadlines.slack_s + 0.005

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(burst())
    assert 1 <= sweeps <= 20, sweeps  # at most one per request; it was dozens per request
