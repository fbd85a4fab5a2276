"""The live dashboard of ``hftkit run``: what the node trades and how fast, as rich tables.

It renders from snapshots (the metrics registry's and the node's own figures) at a bounded rate
(``dashboard.refresh_per_s``), never from the hot path. In a terminal the tables refresh in
place; in a log or CI the node prints the instrument table every few seconds and the whole
picture once at the end. ``--no-dashboard`` switches to structured JSON logs instead.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

from hftkit.metrics.console import format_duration
from hftkit.metrics.registry import MetricKind

if TYPE_CHECKING:
    from hftkit.app.node import NodeSummary, TradingNode

#: the stages of the hot path, in order, as (histogram name, label shown); tick-to-trade per
#: venue is frame -> decision -> send -> bytes written
STAGES = (
    ("node_decode_ns", "decode"),
    ("book_apply_ns", "book"),
    ("event_to_decision_ns", "strategy"),
    ("risk_check_ns", "risk"),
    ("frame_to_decision_ns", "frame -> decision"),
    ("decision_to_send_ns", "decision -> send"),
    ("send_to_written_ns", "send -> written"),
    ("tick_to_trade_ns", "tick-to-trade"),
    ("order_round_trip_ns", "round trip"),
    ("cancel_round_trip_ns", "cancel round trip"),
    ("amend_round_trip_ns", "amend round trip"),
    ("gc_pause_ns", "gc pause"),
)
_STAGE_ORDER = {name: index for index, (name, _) in enumerate(STAGES)}
_STAGE_LABELS = dict(STAGES)
PLAIN_PRINT_INTERVAL_S = 5.0


def instruments_table(node: TradingNode) -> Table:
    """Per venue and instrument: top of book and our quotes, position, PnL, fees, orders."""
    table = Table(title="instruments")
    columns = (
        "venue",
        "symbol",
        "bid",
        "ask",
        "our bid",
        "our ask",
        "position",
        "realized",
        "unrealized",
        "fees",
        "fills",
        "sent/acked/rejected",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("venue", "symbol") else "right", no_wrap=True)
    for row in node.instrument_rows():
        table.add_row(*row)
    return table


def latency_table(node: TradingNode) -> Table:
    """Per stage and label: count, p50, p99, p99.9 and max (from one registry snapshot)."""
    table = Table(title="latency per stage")
    for column in ("stage", "of", "count", "p50", "p99", "p99.9", "max"):
        table.add_column(column, justify="left" if column in ("stage", "of") else "right", no_wrap=True)
    # only the stages' histograms: a whole-registry snapshot copies every metric
    stages = sorted(
        (
            (_STAGE_ORDER[key.name], str(key), key, metric)
            for key, kind, metric in node.metrics.items()
            if key.name in _STAGE_ORDER and kind is MetricKind.HISTOGRAM
        ),
        key=lambda item: item[:2],
    )
    for _, _, key, metric in stages:
        histogram = metric.snapshot()  # type: ignore[union-attr]
        if not histogram.count:
            continue
        of = ",".join(str(value) for value in key.label_dict.values()) or "all"
        p50, p99, p999 = histogram.percentiles((50, 99, 99.9))
        table.add_row(
            _STAGE_LABELS[key.name],
            of,
            f"{histogram.count:,}",
            format_duration(p50),
            format_duration(p99),
            format_duration(p999),
            format_duration(histogram.maximum),
        )
    return table


def venues_table(node: TradingNode) -> Table:
    """Per venue: connection, reconnects, resyncs, rate-limit budget used, breakers."""
    table = Table(title="venues")
    for column in ("venue", "connected", "reconnects", "resyncs", "rate budget used", "breakers"):
        table.add_column(column, justify="left" if column == "venue" else "right", no_wrap=True)
    for row in node.venue_rows():
        table.add_row(*row)
    return table


def render(node: TradingNode) -> Group:
    seconds = f" of {node.seconds:g}s" if node.seconds is not None else ""
    switch = "TRIPPED" if node.engine is not None and node.engine.risk.tripped else "clear"
    header = f"hftkit run: {node.phase}, {node.elapsed_s:.1f}s{seconds}; kill switch {switch}"
    journal = node.journal_line()
    if journal:
        header += f"\n{journal}"
    storage = node.storage_line()
    if storage:
        header += f"\n{storage}"
    bus = node.bus_line()
    if bus:
        header += f"\n{bus}"
    return Group(header, instruments_table(node), venues_table(node), latency_table(node))


def summary_view(node: TradingNode, summary: NodeSummary) -> Group:
    parts: list[RenderableType] = [instruments_table(node), venues_table(node), latency_table(node)]
    if summary.data:
        parts.append("data: " + "; ".join(summary.data))
    verdict = summary.verdict
    checks = Table(title="verdict")
    checks.add_column("check")
    checks.add_column("holds", justify="right")
    for name, held in verdict.checks.items():
        checks.add_row(name, "yes" if held else "NO")
    parts.append(checks)
    for note in verdict.notes:
        parts.append(f"note: {note}")
    for problem in verdict.problems:
        parts.append(f"  - {problem}")
    outcome = "PASSED" if verdict.passed else "FAILED"
    parts.append(f"verdict: {outcome} ({summary.elapsed_s:.1f}s, stopped by {summary.stopped_by})")
    return Group(*parts)


class Dashboard:
    """Drives the display from the node's run-loop ticks, at most ``refresh_per_s`` renders a second."""

    def __init__(self, node: TradingNode, console: Console, refresh_per_s: float = 1.0) -> None:
        self.node = node
        self.console = console
        self.interval_s = 1.0 / max(0.1, refresh_per_s)
        self._live: Live | None = None
        self._last = 0.0

    def __enter__(self) -> Dashboard:
        if self.console.is_terminal:
            self._live = Live(console=self.console, auto_refresh=False, transient=True)
            self._live.__enter__()
        self.node.add_tick(self.tick)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.__exit__(None, None, None)

    def tick(self) -> None:
        now = time.monotonic()
        if self._live is not None:
            if now - self._last >= self.interval_s:
                self._last = now
                self._live.update(render(self.node), refresh=True)
        elif now - self._last >= PLAIN_PRINT_INTERVAL_S and self.node.phase == "running":
            self._last = now
            self.console.print(f"{self.node.elapsed_s:.1f}s")
            self.console.print(instruments_table(self.node))


def plain_console(console: Console | None = None) -> Console:
    """Logs and CI: full-width tables, no live refresh."""
    console = console or Console()
    return console if console.is_terminal else Console(file=console.file, width=200)


__all__ = [
    "STAGES",
    "Dashboard",
    "instruments_table",
    "latency_table",
    "plain_console",
    "render",
    "summary_view",
]
