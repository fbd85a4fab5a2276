"""The replay's pass cache and its wait for a client: later passes play what the first decoded.

A looping replay decodes its files once; the passes after that must be indistinguishable from
decoding again (the same engine events in the same order, the same counts in the status), the
cache must give up cleanly past its limit, and at speed max a driver with nobody attached must
idle instead of spinning.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
from pathlib import Path

import pytest

from hftkit.core.types import ContractKind, Instrument
from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.book import BookSide
from hftkit.sim.engine.market import AS_FAST_AS_POSSIBLE, ReplayDriver, VenueSink
from hftkit.sim.engine.matching import BookUpdate, MatchingEngine, TradePrint
from hftkit.sim.engine.venue import SimEvent, SimVenue

USDM_BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.1", "0.001", "100", kind=ContractKind.PERPETUAL)


def short_recording(tmp_path: Path, count: int = 2_500) -> Path:
    """The first lines of the USD-M day, plus a malformed line and a line of an unknown stream."""
    lines = [
        body
        for _, body in itertools.islice(
            iter_recording(hftbacktest_file("usdm", "btcusdt_20240808.gz")), count
        )
    ]
    lines.insert(len(lines) // 2, b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate"')
    lines.insert(len(lines) // 3, b'{"stream":"btcusdt@kline_1m","data":{}}')
    path = tmp_path / "btcusdt_short.gz"
    with gzip.open(path, "wb") as handle:
        for index, body in enumerate(lines):
            handle.write(b"%d " % (1_000_000 + index) + body + b"\n")
    return path


def replay(
    path: Path, passes: int, cache_limit: int | None
) -> tuple[list[tuple[object, ...]], dict[str, object], ReplayDriver]:
    venue = SimVenue("binance-usdm", MatchingEngine(Accounts()))
    venue.add_instrument(USDM_BTC)
    events: list[tuple[object, ...]] = []

    def listen(event: SimEvent) -> None:
        if isinstance(event, BookUpdate):
            events.append(("book", event.update_id, tuple(event.bids), tuple(event.asks)))
        elif isinstance(event, TradePrint):
            events.append(("trade", event.trade_id, event.price, event.quantity, event.aggressor))

    venue.add_listener(listen)
    driver = ReplayDriver(
        "usdm", [path], USDM_BTC, [VenueSink(venue, "BTCUSDT")], speed=AS_FAST_AS_POSSIBLE, max_passes=passes
    )
    if cache_limit is not None:
        driver.cache.limit = cache_limit
    asyncio.run(driver.run())
    status = driver.snapshot()
    return events, status, driver


def test_cached_passes_replay_exactly_what_decoding_again_gives(tmp_path: Path) -> None:
    path = short_recording(tmp_path)
    cached_events, cached_status, cached = replay(path, 3, None)
    decoded_events, decoded_status, decoded = replay(path, 3, 0)  # a limit of 0: gives up at once
    assert cached.cache.usable and not decoded.cache.usable
    assert len(cached_events) > 2_000
    assert cached_events == decoded_events
    assert cached_status == decoded_status
    problems = cached_status["decode_problems"]
    assert isinstance(problems, dict)
    assert problems == {"malformed": 3, "unknown_stream": 3}  # one of each per pass, cached or not
    assert cached_status["total_messages"] == 3 * int(str(cached_status["position"]))


def test_a_pass_cut_short_is_not_kept_half_recorded(tmp_path: Path) -> None:
    path = short_recording(tmp_path)
    venue = SimVenue("binance-usdm", MatchingEngine(Accounts()))
    venue.add_instrument(USDM_BTC)
    driver = ReplayDriver("usdm", [path], USDM_BTC, [VenueSink(venue, "BTCUSDT")], speed=AS_FAST_AS_POSSIBLE)

    async def cut_then_finish() -> None:
        task = asyncio.create_task(driver.run_pass())
        await asyncio.sleep(0)  # the first yield: a few steps recorded
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not driver.cache.usable
        await driver.run_pass()

    asyncio.run(cut_then_finish())
    assert driver.cache.usable
    steps = driver.cache.steps
    assert steps is not None
    assert sum(messages for _, messages, _ in steps) == driver.snapshot()["position"]


def test_at_speed_max_a_driver_waits_for_a_client_and_runs_once_one_attaches(tmp_path: Path) -> None:
    path = short_recording(tmp_path, 1_000)
    venue = SimVenue("binance-usdm", MatchingEngine(Accounts()))
    venue.add_instrument(USDM_BTC)
    driver = ReplayDriver(
        "usdm", [path], USDM_BTC, [VenueSink(venue, "BTCUSDT")], speed=AS_FAST_AS_POSSIBLE, max_passes=1
    )
    attached = False
    driver.audience = lambda: attached

    async def scenario() -> None:
        nonlocal attached
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(0.3)
        waiting_at = driver.snapshot()["total_messages"]
        assert driver.snapshot()["waiting_for_client"] is True
        await asyncio.sleep(0.3)
        assert driver.snapshot()["total_messages"] == waiting_at  # idle, not spinning
        attached = True
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    status = driver.snapshot()
    assert status["loops"] == 1 and status["waiting_for_client"] is False


def test_a_paced_driver_keeps_its_clock_with_nobody_attached(tmp_path: Path) -> None:
    path = short_recording(tmp_path, 300)  # data stamps 1 us apart: at 1x the pass takes 0.3 ms
    venue = SimVenue("binance-usdm", MatchingEngine(Accounts()))
    venue.add_instrument(USDM_BTC)
    driver = ReplayDriver("usdm", [path], USDM_BTC, [VenueSink(venue, "BTCUSDT")], speed=1.0, max_passes=1)
    driver.audience = lambda: False
    asyncio.run(asyncio.wait_for(driver.run(), 10))
    assert driver.snapshot()["loops"] == 1 and driver.snapshot()["waiting_for_client"] is False


@pytest.mark.parametrize("is_bid", [True, False])
def test_prices_through_is_the_best_first_prefix_up_to_a_price(is_bid: bool) -> None:
    side = BookSide(is_bid)
    for price in range(100, 200, 3):
        side.add(price)
    for limit in range(95, 205):
        for inclusive in (True, False):
            if is_bid:
                expected = [p for p in side.prices_best_first() if p > limit or (inclusive and p == limit)]
            else:
                expected = [p for p in side.prices_best_first() if p < limit or (inclusive and p == limit)]
            assert side.prices_through(limit, inclusive) == expected
