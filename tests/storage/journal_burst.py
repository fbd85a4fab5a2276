"""A child process for the kill -9 test: journal a burst of records, print each committed sequence.

Run as ``python journal_burst.py PATH``; it never stops on its own (the test kills it).
"""

from __future__ import annotations

import asyncio
import sys

from hftkit.core.types import OrderStatus, OrderType, Side, TimeInForce
from hftkit.storage.journal import EventJournal, OrderEvent
from hftkit.storage.journal_sqlite import SqliteJournalStore


async def main(path: str) -> None:
    journal = EventJournal(SqliteJournalStore(path), "burst-node", batch_size=500, flush_interval_s=0.01)
    await journal.open()
    reported = 0
    number = 0
    while True:
        for _ in range(250):
            number += 1
            journal.append(
                OrderEvent(
                    client_order_id=f"c{number}",
                    venue="v",
                    symbol="S",
                    side=Side.BUY,
                    order_type=OrderType.LIMIT,
                    time_in_force=TimeInForce.GTC,
                    price=number,
                    quantity=1,
                    filled=0,
                    status=OrderStatus.NEW,
                )
            )
        # A moment's idle loop, as a node has between frames. A loop that never blocks starves the
        # store's thread: each sqlite call ends by retaking the GIL, and the loop's zero-timeout
        # polls drop and retake it first every time, so no commit lands for seconds (seen in CI).
        await asyncio.sleep(0.0005)
        committed = journal.committed_sequence
        if committed != reported:
            reported = committed
            sys.stdout.write(f"{committed}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
