"""Issue 17 item 12: a stream that stalls behind a live connection is noticed from its cadence.

The simulator's stall fault keeps every connection open and answering (pongs, RPC answers on
Thalex) while its streams send nothing. Before, books said synced for the whole stall (30 s of
stale timeout on Binance, forever on Thalex, whose pongs and answers kept the socket fresh).
"""

from __future__ import annotations

import asyncio

import pytest
from cases import CASES, VenueCase
from suite import WAIT_S, Harness, simulator_for, wait_until

from hftkit.core.types import ConnectionEvent
from hftkit.transport.websocket import WebSocketConfig
from hftkit.venues.binance.streams import StreamConfig
from hftkit.venues.thalex.adapter import ThalexConfig

# detection within 2 s by default; the bound allows for a loaded machine's scheduling, and
# stays far below the 30 s that passed before
DETECTED_WITHIN_S = 4.0


def test_stall_detection_is_on_by_default_and_within_two_seconds() -> None:
    streams = StreamConfig()
    thalex = ThalexConfig()
    # a stall shows after the timeout plus at most one check interval (a quarter of it)
    assert 0 < streams.stall_timeout_s * 1.25 <= 2.0
    assert 0 < thalex.stall_timeout_s * 1.25 <= 2.0
    assert WebSocketConfig(urls=("ws://x",)).stall_timeout_s == 0  # opt-in for other sockets


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_a_stalled_stream_unsyncs_the_book_and_it_recovers_after(case: VenueCase) -> None:
    async with simulator_for(case) as sim:
        harness = Harness(case, sim)
        try:
            await harness.start()
            harness.mover.start(0.02)
            loop = asyncio.get_running_loop()
            stalled_at: list[float] = []

            def on_event(event: object) -> None:
                if (
                    isinstance(event, ConnectionEvent)
                    and event.state == "resyncing"
                    and event.reason.startswith("stalled")
                    and not stalled_at
                ):
                    stalled_at.append(loop.time())

            harness.recorder.hooks.append(on_event)
            began = loop.time()
            sim.set_faults(case.sim_venue, {"stall_every_s": 0.01, "stall_duration_s": 60.0})
            await wait_until(lambda: bool(stalled_at), "the stall to be noticed", timeout_s=WAIT_S)
            assert stalled_at[0] - began < DETECTED_WITHIN_S
            assert not harness.synced()
            sim.set_faults(case.sim_venue, "none")
            await wait_until(harness.synced, "the book to resync", between=harness.mover.step)
            await harness.settle_book()
            assert harness.books_agree()
        finally:
            await harness.close()
