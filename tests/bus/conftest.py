"""A private redis-server per test (spare port, no persistence) that a test may stop and restart."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

from hftkit.book.order_book import OrderBook
from hftkit.core.types import BookDelta


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``; ``stop()``/``start()`` keep the port (a restart)."""

    def __init__(self, binary: str, port: int, directory: str, host: str = "127.0.0.1") -> None:
        self.binary = binary
        self.port = port
        self.host = host
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            "--protected-mode", "no",
        ]  # fmt: skip

    def start(self, timeout_s: float = 5.0) -> None:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


@pytest.fixture
def redis_server(debian_binary: Callable[[str, str], str]) -> Iterator[RedisServer]:
    binary = debian_binary("redis-server", "redis-server")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, spare_port(), directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class MarketScript:
    """Seeded random deltas on a never-crossed book (bids 900-999, asks 1001-1100), and the
    reference book they build."""

    def __init__(self, seed: int = 1, venue: str = "feedvenue", symbol: str = "BTCUSDT") -> None:
        self.random = random.Random(seed)
        self.venue = venue
        self.symbol = symbol
        self.book = OrderBook(symbol)
        self.update_id = 0

    def snapshot(self) -> BookDelta:
        bids = [(price, self.random.randint(1, 50)) for price in range(950, 1000)]
        asks = [(price, self.random.randint(1, 50)) for price in range(1001, 1051)]
        self.update_id += 1
        self.book.apply_snapshot(bids, asks, self.update_id)
        return BookDelta(
            venue=self.venue, symbol=self.symbol, bids=bids, asks=asks, last_update_id=self.update_id,
            is_snapshot=True,
        )  # fmt: skip

    def delta(self) -> BookDelta:
        choose = self.random
        bids = [(choose.randint(900, 999), choose.choice((0, choose.randint(1, 80)))) for _ in range(3)]
        asks = [(choose.randint(1001, 1100), choose.choice((0, choose.randint(1, 80)))) for _ in range(3)]
        bids = list(dict(bids).items())
        asks = list(dict(asks).items())
        self.update_id += 1
        self.book.apply_delta(bids, asks)
        return BookDelta(
            venue=self.venue, symbol=self.symbol, bids=bids, asks=asks,
            first_update_id=self.update_id, last_update_id=self.update_id,
        )  # fmt: skip


@pytest.fixture
def market() -> type[MarketScript]:
    """The seeded market script class (tests build as many as they need)."""
    return MarketScript
