"""The live console of ``hftkit run``: what the trading node sees, measured, as rich tables.

In a terminal the tables refresh in place; in a log or CI (``Console.is_terminal`` false) the
node prints the venue table every few seconds and the whole picture once at the end, so the
output stays readable line by line. The verdict and the exit code come from the node's own
checks (books compared with the simulator's, every order accounted for).
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from hftkit.app.node import NodeConfig, NodeReport, TradingNode, install_fast_event_loop
from hftkit.metrics import LatencyHistogram
from hftkit.metrics.console import format_duration

__all__ = [
    "PLAIN_PRINT_INTERVAL_S",
    "books_table",
    "checks_table",
    "latency_table",
    "render",
    "run_node",
    "venues_table",
]

PLAIN_PRINT_INTERVAL_S = 5.0


def books_table(node: TradingNode, *, final: bool = False) -> Table:
    """One row per book: the top, the feed rate and the live checks.

    ``final``: messages per second averaged over the whole run instead of the live rate.
    """
    table = Table(title="books (the node's L2 books, from the adapters' events)")
    for column in ("venue", "symbol", "synced", "bid", "ask", "spread", "msg/s", "tickers ok/bad", "resyncs"):
        table.add_column(column, justify="left" if column in ("venue", "symbol") else "right")
    for name, monitor in node.monitors.items():
        for symbol, state in monitor.books.items():
            instrument = state.instrument
            bid, ask = state.book.best_bid_price(), state.book.best_ask_price()
            checked = state.tickers_checked
            table.add_row(
                name,
                symbol,
                "yes" if state.synced else "NO",
                instrument.ticks_to_price(bid) if bid is not None else "-",
                instrument.ticks_to_price(ask) if ask is not None else "-",
                str(ask - bid) if bid is not None and ask is not None else "-",
                f"{state.average_rate if final else state.rate:,.0f}",
                f"{checked - state.ticker_mismatches:,}/{state.ticker_mismatches}" if checked else "-",
                str(state.resyncs),
            )
    return table


def latency_table(node: TradingNode) -> Table:
    """Per venue and stage: how many were measured and their p50, p99 and maximum."""
    table = Table(title="latency per stage")
    for column in ("venue", "stage", "count", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column in ("venue", "stage") else "right")
    for name, monitor in node.monitors.items():
        stages: tuple[tuple[str, LatencyHistogram], ...] = (
            ("decode", monitor.decode),
            ("book apply", monitor.book_apply),
            ("place round trip", node.place_latency[name]),
            ("cancel round trip", node.cancel_latency[name]),
        )
        for stage, histogram in stages:
            if not histogram.count:
                table.add_row(name, stage, "0", "-", "-", "-")
                continue
            table.add_row(
                name,
                stage,
                f"{histogram.count:,}",
                format_duration(histogram.percentile(50)),
                format_duration(histogram.percentile(99)),
                format_duration(histogram.maximum),
            )
    return table


def venues_table(node: TradingNode) -> Table:
    """Per venue: messages, the probe orders' fate and reconnects."""
    table = Table(title="venues and orders")
    columns = ("venue", "messages", "sent", "acked", "cancelled", "filled", "rejected", "open", "reconnects")
    for column in columns:
        table.add_column(column, justify="left" if column == "venue" else "right")
    for name, monitor in node.monitors.items():
        ledger = node.ledgers[name]
        table.add_row(
            name,
            f"{monitor.messages:,}",
            str(ledger.sent),
            str(ledger.acknowledged),
            str(ledger.cancelled),
            str(ledger.filled),
            str(ledger.rejected),
            str(len(ledger.open) + len(ledger.unknown)),
            str(monitor.reconnects),
        )
    return table


def checks_table(report: NodeReport) -> Table:
    """The end-of-run comparison of every book with the simulator's, the market held still."""
    table = Table(title="books compared level by level with the venue's, market paused")
    for column in ("venue", "symbol", "levels", "same"):
        table.add_column(column)
    for check in report.book_checks:
        table.add_row(check.venue, check.symbol, str(check.levels), "yes" if check.matched else check.detail)
    return table


def render(node: TradingNode) -> Group:
    node.sample_rates()
    header = f"hftkit run: {node.phase}, {node.elapsed_s:.1f}s of {node.config.seconds:g}s"
    return Group(header, books_table(node), latency_table(node), venues_table(node))


def _summary(node: TradingNode, report: NodeReport) -> Group:
    notes = (
        "decode = socket frame received -> normalized event at the node (typed decode, tick/lot "
        "conversion, the adapter's sequencing); book apply = the node's book update; round trip = "
        "order call -> venue answer, over loopback"
    )
    return Group(
        books_table(node, final=True), latency_table(node), venues_table(node), checks_table(report), notes
    )


def run_node(seconds: float, speed: float = 1.0, console: Console | None = None) -> int:
    """The ``hftkit run`` command: run the node, show it, say whether it proved healthy."""
    loop_name = install_fast_event_loop()
    console = console or Console()
    if not console.is_terminal:
        console = Console(file=console.file, width=180)  # logs and CI: full-width tables, no live refresh
    try:
        config = NodeConfig(seconds=seconds, speed=speed)
    except ValueError as error:
        console.print(f"hftkit run: {error}")
        return 2
    node = TradingNode(config)
    console.print(
        f"hftkit run: simulator replaying the recorded BTCUSDT/ETHUSDT markets at x{speed:g}; Binance "
        f"and Thalex adapters over loopback; {seconds:g}s on {loop_name}"
    )
    try:
        report = _drive(node, console)
    except KeyboardInterrupt:
        console.print("hftkit run: interrupted")
        return 130
    except Exception as error:  # the command's boundary: say what failed and where, exit non-zero
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        console.print(f"hftkit run: FAILED during {node.phase}: {type(error).__name__}: {error}{where}")
        return 1
    console.print(_summary(node, report))
    for note in report.notes:
        console.print(f"note: {note}")
    if report.healthy:
        console.print(
            f"verdict: books stayed in sync with both venues and every order was accounted for "
            f"({report.elapsed_s:.1f}s)"
        )
    else:
        console.print("verdict: FAILED")
        for problem in report.problems:
            console.print(f"  - {problem}")
    sys.stdout.flush()
    return 0 if report.healthy else 1


def _drive(node: TradingNode, console: Console) -> NodeReport:
    if console.is_terminal:
        with Live(render(node), console=console, refresh_per_second=4, transient=True) as live:
            return asyncio.run(node.run(on_tick=lambda: live.update(render(node))))
    last_print = [time.monotonic()]

    def periodic() -> None:
        node.sample_rates()
        if time.monotonic() - last_print[0] >= PLAIN_PRINT_INTERVAL_S:
            last_print[0] = time.monotonic()
            console.print(f"{node.elapsed_s:.1f}s")
            console.print(venues_table(node))

    return asyncio.run(node.run(on_tick=periodic))
