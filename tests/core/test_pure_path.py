"""The pure-Python path (HFTKIT_PURE_PYTHON=1, or no C compiler) end to end, beside the default one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROGRAM = """
import json, sys
from hftkit.bench.book import load_recording
from hftkit.book.order_book import OrderBook
from hftkit.core.clock import SimulatedClock
from hftkit.core.native import NATIVE
from hftkit.resilience import TokenBucket

result = {"native": NATIVE is not None, "markets": {}}
for market in ("spot", "usdm"):
    recording = load_recording(market, "btcusdt_20240808.gz", limit=400)
    parser = recording.parser
    book = OrderBook()
    book.apply_snapshot(recording.snapshot_bids, recording.snapshot_asks)
    tops = []
    for frame in recording.frames:
        delta = parser.depth_frame(frame)
        book.apply_delta(delta.bids, delta.asks)
        tops.append([book.best_bid(), book.best_ask()])
    result["markets"][market] = {"tops": tops, "bids": book.bids(50), "asks": book.asks(50),
                                 "refills": book.window_refills}
clock = SimulatedClock()
bucket = TokenBucket(7, 5, clock)
admitted = []
for step in range(200):
    clock.advance(37_000_000)
    admitted.append(bucket.try_acquire(1 + step % 3))
result["bucket"] = [admitted, bucket.rejected]
json.dump(result, sys.stdout)
"""


def _run(pure: bool) -> dict[str, object]:
    environment = dict(os.environ)
    environment.pop("HFTKIT_PURE_PYTHON", None)
    if pure:
        environment["HFTKIT_PURE_PYTHON"] = "1"
    completed = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(completed.stdout)


def test_pure_python_path_gives_the_same_books_and_admissions_as_the_default_path() -> None:
    pure = _run(pure=True)
    default = _run(pure=False)
    assert pure["native"] is False
    assert pure["markets"] == default["markets"]
    assert pure["bucket"] == default["bucket"]
