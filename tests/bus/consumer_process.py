"""A strategy side in its own process, for the kill -9 test: BusBooks on a RedisStreamsBus.

argv: redis url, consumer name, log file (each delta sequence handled, one per line, flushed),
stop file (when it appears: write the book to the out file and exit), out file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from hftkit.bus.books import BusBooks
from hftkit.bus.messages import DeltaMessage
from hftkit.bus.redis_streams import RedisStreamsBus


async def main() -> None:
    url, consumer, log_path, stop_path, out_path = sys.argv[1:6]
    bus = RedisStreamsBus(url, block_ms=20, read_count=20, claim_idle_ms=200)
    books = BusBooks(bus, "feedvenue", group="strategy-1", consumer=consumer, snapshot_retry_s=0.05)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - kept open for the process's life
    handle = books.on_message

    def logging_handler(stream: str, message: object) -> None:
        handle(stream, message)  # type: ignore[arg-type]
        if isinstance(message, DeltaMessage):
            log.write(f"{message.sequence}\n")

    books.on_message = logging_handler  # type: ignore[method-assign]
    await bus.start()
    await books.subscribe(["BTCUSDT"], trades=False)
    print("ready", flush=True)
    stop = Path(stop_path)
    while not stop.exists():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    book = books.book("BTCUSDT")
    assert book is not None
    Path(out_path).write_text(
        json.dumps({"synced": books.book_synced("BTCUSDT"), "bids": book.bids(), "asks": book.asks()})
    )
    await books.close()
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
