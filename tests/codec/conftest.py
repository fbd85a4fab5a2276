"""Shared fixtures: real recorded Binance frames and fresh error counters."""

from __future__ import annotations

import itertools

import pytest

from hftkit.codec import CodecErrorCounters
from hftkit.datasets import hftbacktest_file, iter_recording

RECORDING = ("spot", "btcusdt_20240808.gz")


@pytest.fixture(scope="session")
def recorded_frames() -> dict[str, list[bytes]]:
    """The first 2000 combined-stream frames of a real Binance spot recording, by stream kind."""
    frames: dict[str, list[bytes]] = {"trade": [], "depth": [], "bookTicker": [], "other": []}
    for _, body in itertools.islice(iter_recording(hftbacktest_file(*RECORDING)), 2000):
        head = body[:48]
        if b'@trade"' in head:
            frames["trade"].append(body)
        elif b"@depth" in head:
            frames["depth"].append(body)
        elif b"@bookTicker" in head:
            frames["bookTicker"].append(body)
        else:
            frames["other"].append(body)
    return frames


@pytest.fixture
def counters() -> CodecErrorCounters:
    return CodecErrorCounters()
