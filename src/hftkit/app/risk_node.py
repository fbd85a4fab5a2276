"""The firm-wide risk node (``hftkit risk --config FILE``): one view over every node, one kill switch.

Every node with the bus enabled publishes a ``NodeReport`` (positions and PnL per instrument)
every ``bus.report_interval_s`` on ``hftkit:report:all:all``. The risk node reads them all in
its own consumer group, keeps the latest report per node (``FirmRisk``, sans-I/O), and checks
the config's ``bus.risk`` limits every ``CHECK_INTERVAL_S``: total PnL per quote asset against
``max_loss``, net position per base asset over every node and venue against ``max_position``,
and (with ``trip_on_stale``) nodes silent longer than ``max_report_age_s``. On the first breach
it publishes a ``KillSwitchMessage`` on ``hftkit:control:all:all``; every node trips its own
kill switch on it (cancel everything, quote nothing) within ``hftkit.app.node_bus.kill_bound_s``.
Re-arming is each node's operator's decision, never the bus's.

``hftkit risk --config FILE --kill REASON`` publishes a trip at once (an operator's big red button).
A trip stands for nodes started later (they obey the control stream's latest ``trip``) until
``--reset REASON`` publishes a ``reset``; running nodes stay tripped until their operators re-arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hftkit.app.config import FirmRiskConfig, RiskNodeConfig
from hftkit.app.node_bus import CONTROL_STREAM, REPORT_STREAM, NodeBusLink
from hftkit.app.operations import Health, OperationsServer
from hftkit.app.runtime import install_stop_signals, remove_stop_signals
from hftkit.bus.messages import KillSwitchMessage, NodeReport
from hftkit.metrics import MetricsRegistry

_log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.05


@dataclass
class FirmView:
    """The firm now: PnL per quote asset, net position per base asset, the nodes and their age."""

    pnl: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    nodes: dict[str, float] = field(default_factory=dict)  # node id -> seconds since its last report
    tripped_nodes: list[str] = field(default_factory=list)


class FirmRisk:
    """Latest report per node and the firm-wide limits over them (no I/O, no clock of its own)."""

    def __init__(self, limits: FirmRiskConfig) -> None:
        self.limits = limits
        self._max_loss = {asset: Decimal(text) for asset, text in limits.max_loss.items()}
        self._max_position = {asset: Decimal(text) for asset, text in limits.max_position.items()}
        self.reports: dict[str, NodeReport] = {}
        self.invalid_reports = 0

    def on_report(self, report: NodeReport) -> None:
        last = self.reports.get(report.node_id)
        if last is None or report.published_ns >= last.published_ns:
            self.reports[report.node_id] = report

    def view(self, now_ns: int) -> FirmView:
        view = FirmView()
        for node_id, report in self.reports.items():
            view.nodes[node_id] = (now_ns - report.published_ns) / 1e9
            if report.kill_switch_tripped:
                view.tripped_nodes.append(node_id)
            for figure in report.positions:
                try:
                    pnl = Decimal(figure.realized_pnl) + Decimal(figure.unrealized_pnl)
                    quantity = Decimal(figure.quantity)
                except ArithmeticError:
                    self.invalid_reports += 1
                    continue
                view.pnl[figure.quote] = view.pnl.get(figure.quote, Decimal(0)) + pnl
                view.positions[figure.base] = view.positions.get(figure.base, Decimal(0)) + quantity
        return view

    def breaches(self, view: FirmView) -> list[str]:
        found = []
        for asset, bound in self._max_loss.items():
            pnl = view.pnl.get(asset, Decimal(0))
            if pnl < -bound:
                found.append(f"firm PnL {pnl} {asset} below -{bound}")
        for asset, bound in self._max_position.items():
            position = view.positions.get(asset, Decimal(0))
            if abs(position) > bound:
                found.append(f"firm net position {position} {asset} beyond {bound}")
        if self.limits.trip_on_stale:
            for node_id, age in view.nodes.items():
                if age > self.limits.max_report_age_s:
                    found.append(f"node {node_id} silent for {age:.1f}s")
        return found


class RiskNode:
    """Reads every node's reports, trips the firm-wide kill switch (see the module docstring)."""

    def __init__(
        self, config: RiskNodeConfig, *, seconds: float | None = None, metrics_port: int | None = None
    ):
        self.config = config
        self.seconds = seconds if seconds is not None else config.seconds
        self.metrics_port = config.metrics.port if metrics_port is None else metrics_port
        self.metrics = MetricsRegistry()
        self.risk = FirmRisk(config.bus.risk)
        self.link: NodeBusLink | None = None
        self.tripped_reason: str | None = None
        self.stop_requested: asyncio.Event | None = None
        self.phase = "starting"

    def request_stop(self, reason: str = "stop") -> None:
        if self.stop_requested is not None:
            self.stop_requested.set()

    def _on_report(self, stream: str, message: Any) -> None:
        if isinstance(message, NodeReport) and message.role != "risk":  # risk nodes hold no positions
            self.risk.on_report(message)

    def trip(self, reason: str) -> None:
        """Publish a firm-wide trip (once per run)."""
        if self.tripped_reason is not None or self.link is None:
            return
        self.tripped_reason = reason
        _log.error("FIRM-WIDE KILL SWITCH: %s", reason)
        self.link.bus.publish(
            CONTROL_STREAM, KillSwitchMessage("trip", self.config.bus.node_id, reason, time.time_ns())
        )

    def health(self) -> Health:
        reasons = []
        if self.link is not None and not self.link.bus.status().connected:
            reasons.append("bus unreachable")
        if self.phase != "running":
            reasons.append(f"risk node is {self.phase}")
        return Health(not reasons, tuple(reasons), {}, "tripped" if self.tripped_reason else "clear")

    def check(self) -> FirmView:
        view = self.risk.view(time.time_ns())
        breaches = self.risk.breaches(view)
        if breaches:
            self.trip("; ".join(breaches))
        for asset, value in view.pnl.items():
            self.metrics.gauge("firm_pnl", "PnL over every node", asset=asset).set(float(value))
        for asset, value in view.positions.items():
            self.metrics.gauge("firm_position", "net position over every node", asset=asset).set(float(value))
        for node_id, age in view.nodes.items():
            self.metrics.gauge("firm_report_age_seconds", "since the node's last report", node=node_id).set(
                age
            )
        self.metrics.gauge("firm_kill_switch_tripped", "1 once the risk node tripped").set(
            1.0 if self.tripped_reason else 0.0
        )
        return view

    async def run(self, *, kill: str | None = None, reset: str | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        installed = install_stop_signals(loop, self.request_stop)
        try:
            async with contextlib.AsyncExitStack() as stack:
                self.link = link = NodeBusLink(self.config.bus, self.metrics, role="risk")
                link.bus.subscribe(
                    [REPORT_STREAM],
                    self._on_report,
                    group=f"{self.config.bus.node_id}.reports",
                    consumer=self.config.bus.node_id,
                )
                await link.start()
                stack.push_async_callback(link.close)
                if kill is not None:
                    self.trip(kill)
                    return {"tripped": kill}
                if reset is not None:
                    link.bus.publish(
                        CONTROL_STREAM,
                        KillSwitchMessage("reset", self.config.bus.node_id, reset, time.time_ns()),
                    )
                    return {"reset": reset}
                if self.config.metrics.enabled:
                    await stack.enter_async_context(
                        OperationsServer(
                            self.metrics, self.health, host=self.config.metrics.host, port=self.metrics_port
                        )
                    )
                self.phase = "running"
                deadline = None if self.seconds is None else time.monotonic() + self.seconds
                view = FirmView()
                while not self.stop_requested.is_set():
                    view = self.check()
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop_requested.wait(), CHECK_INTERVAL_S)
                self.phase = "stopping"
                return {
                    "tripped": self.tripped_reason,
                    "pnl": {asset: str(value) for asset, value in view.pnl.items()},
                    "positions": {asset: str(value) for asset, value in view.positions.items()},
                    "nodes": sorted(view.nodes),
                }
        finally:
            remove_stop_signals(loop, installed)
            self.phase = "done"


def risk_command(
    config_path: str,
    *,
    seconds: float | None,
    metrics_port: int | None,
    kill: str | None,
    reset: str | None = None,
) -> int:
    """``hftkit risk``: exit 0 after a run without a trip, 3 after a trip, 2 on a refused config."""
    from hftkit.app import logs
    from hftkit.app.config import ConfigError, load_risk_node

    try:
        config = load_risk_node(config_path)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr, flush=True)
        return 2
    logs.configure(config.logging.level, config.logging.format)
    node = RiskNode(config, seconds=seconds, metrics_port=metrics_port)
    try:
        result = asyncio.run(node.run(kill=kill, reset=reset))
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result), flush=True)
    return 3 if result.get("tripped") and kill is None and reset is None else 0


__all__ = ["CHECK_INTERVAL_S", "FirmRisk", "FirmView", "RiskNode", "risk_command"]
