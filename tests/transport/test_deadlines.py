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
