"""``hftkit replay run``: replay the recorded BTCUSDT/ETHUSDT streams through the market-data path.

The replays run concurrently on one event loop at a speed factor, each frame handled
synchronously from arrival to the new top of book (no queue hop), while a live table shows
books, throughput, integrity and per-stage latency. Bounded by ``--seconds``; exits 0 when
every checked bookTicker matched and no book saw a gap, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from hftkit.app.market_node import MarketPipeline, RecordedMarket, default_markets
from hftkit.app.runtime import install_event_loop
from hftkit.codec import CodecErrorCounters
from hftkit.metrics import LatencyHistogram, MetricsRegistry
from hftkit.transport.replay import RecordingReplay


class MarketDataRun:
    """The replays, their pipelines and what the display reads."""

    def __init__(self, markets: list[RecordedMarket], speed: float | None) -> None:
        self.registry = MetricsRegistry()
        self.codec_errors = CodecErrorCounters()
        self.pipelines = [MarketPipeline(market, self.registry, self.codec_errors) for market in markets]
        self.replays = [RecordingReplay(list(market.files), speed=speed, loop=True) for market in markets]
        self.started_ns = time.monotonic_ns()

    async def _drive(self, pipeline: MarketPipeline, replay: RecordingReplay) -> None:
        handle = pipeline.on_frame
        async for record in replay:
            handle(record.payload)

    async def run(self, seconds: float, on_tick: Callable[[], None] | None = None) -> None:
        tasks = [
            asyncio.create_task(self._drive(pipeline, replay), name=f"replay {pipeline.market.label}")
            for pipeline, replay in zip(self.pipelines, self.replays, strict=True)
        ]
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if on_tick is not None:
                    on_tick()
        finally:
            for replay in self.replays:
                replay.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def healthy(self) -> bool:
        for pipeline in self.pipelines:
            counters = pipeline.sync.counters
            if pipeline.statistics.ticker_mismatches or counters.gaps or counters.crossed_books:
                return False
        return True

    # display -------------------------------------------------------------------------------
    def books_table(self) -> Table:
        table = Table(title="books: snapshot + diffs, checked against every matching bookTicker")
        for column in (
            "market",
            "synced",
            "best bid",
            "best ask",
            "spread",
            "microprice",
            "imbalance",
            "msg/s",
            "diffs",
            "gaps",
            "crossed",
            "tickers ok/bad",
            "loops",
        ):
            table.add_column(column, justify="right" if column != "market" else "left")
        for pipeline, replay in zip(self.pipelines, self.replays, strict=True):
            instrument = pipeline.market.instrument
            book = pipeline.book
            bid, ask = book.best_bid(), book.best_ask()
            statistics = pipeline.statistics
            counters = pipeline.sync.counters
            mismatches = statistics.ticker_mismatches
            table.add_row(
                pipeline.market.label,
                "yes" if pipeline.sync.is_synced else "no",
                instrument.ticks_to_price(bid[0]) if bid else "-",
                instrument.ticks_to_price(ask[0]) if ask else "-",
                str(ask[0] - bid[0]) if bid and ask else "-",
                f"{instrument.ticks.to_float(1) * pipeline.microprice:.2f}" if pipeline.microprice else "-",
                f"{pipeline.imbalance:+.2f}" if pipeline.imbalance is not None else "-",
                f"{pipeline.messages_per_second:,.0f}",
                f"{statistics.depth_applied:,}",
                str(counters.gaps),
                str(counters.crossed_books),
                f"{statistics.tickers_checked - mismatches:,}/{mismatches}",
                str(replay.loops_completed),
            )
        return table

    def latency_table(self) -> Table:
        table = Table(title="per-stage latency (ns, this process, one core)")
        for column in ("stage", "count", "p50", "p90", "p99", "p99.9", "max"):
            table.add_column(column, justify="right" if column != "stage" else "left")
        stages = (
            ("typed decode", "decode_latency"),
            ("sync + book apply", "book_latency"),
            ("frame -> new top + microprice", "total_latency"),
        )
        for name, attribute in stages:
            merged = LatencyHistogram()
            for pipeline in self.pipelines:
                merged.merge(getattr(pipeline, attribute))
            if not merged.count:
                continue
            table.add_row(
                name,
                f"{merged.count:,}",
                *(f"{merged.percentile(q):,.0f}" for q in (50, 90, 99, 99.9)),
                f"{merged.maximum:,.0f}",
            )
        return table

    def summary(self) -> Group:
        frames = sum(pipeline.statistics.frames for pipeline in self.pipelines)
        elapsed = (time.monotonic_ns() - self.started_ns) / 1e9
        errors = {kind.value: count for kind, count in self.codec_errors.counts.items() if count}
        footer = (
            f"{frames:,} frames in {elapsed:.1f}s ({frames / max(elapsed, 1e-9):,.0f} frames/s across "
            f"{len(self.pipelines)} replays); codec errors: {errors or 'none'}"
        )
        return Group(self.books_table(), self.latency_table(), footer)


def run_market_data(seconds: float, speed: float | None) -> int:
    loop_name = install_event_loop()
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and CI: full-width tables, no live refresh
    pace = "full speed" if speed is None else f"x{speed:g}"
    console.print(
        f"hftkit replay run: replaying real Binance recordings at {pace} for {seconds:g}s on {loop_name}"
    )
    run = MarketDataRun(default_markets(), speed)
    if console.is_terminal:
        with Live(run.summary(), console=console, refresh_per_second=4, transient=False) as live:
            asyncio.run(run.run(seconds, on_tick=lambda: live.update(run.summary())))
            live.update(run.summary())
    else:
        last_print = [time.monotonic()]

        def periodic() -> None:
            if time.monotonic() - last_print[0] >= 5:
                last_print[0] = time.monotonic()
                console.print(run.books_table())

        asyncio.run(run.run(seconds, on_tick=periodic))
        console.print(run.summary())
    verdict = "all books consistent with the venue's tickers" if run.healthy else "INCONSISTENT BOOKS"
    console.print(f"verdict: {verdict}")
    sys.stdout.flush()
    return 0 if run.healthy else 1
