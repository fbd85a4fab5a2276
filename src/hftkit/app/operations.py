"""The node's operations endpoint: Prometheus ``/metrics`` and ``/health`` on 127.0.0.1.

``/health`` answers liveness and readiness separately, as orchestrators expect: live while the
event loop answers at all; ready only when every venue's books are synced and the kill switch
is clear (HTTP 503 otherwise, with the reasons). ``/metrics`` is the node's registry in the
Prometheus text format, rendered at scrape time so recording never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from hftkit.metrics import MetricsRegistry

if TYPE_CHECKING:  # the server loads aiohttp's when it starts: ``Health`` is read every 50 ms without it
    from aiohttp import web

CONTENT_TYPE_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Health:
    """Readiness and why not: ``reasons`` names each venue not synced and a tripped kill switch."""

    ready: bool
    reasons: tuple[str, ...] = ()
    venues: dict[str, bool] = field(default_factory=dict)
    kill_switch: str = "clear"
    storage: dict[str, Any] = field(default_factory=dict)  # journal/sinks: counted, never "not ready"

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "live": True,
                "ready": self.ready,
                "reasons": list(self.reasons),
                "venues": self.venues,
                "kill_switch": self.kill_switch,
                "storage": self.storage,
            }
        )


class OperationsServer:
    """aiohttp server for ``/metrics``, ``/health``, ``/health/live`` and ``/health/ready``."""

    def __init__(
        self,
        metrics: MetricsRegistry,
        health: Callable[[], Health],
        *,
        host: str = "127.0.0.1",
        port: int = 9464,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.scrapes = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._ready)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/health/live", self._live)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # an ephemeral port: read back the one the OS chose
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OperationsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from hftkit.metrics.prometheus import prometheus_text

        self.scrapes += 1
        return web.Response(
            body=prometheus_text(self.metrics), headers={"Content-Type": CONTENT_TYPE_PROMETHEUS}
        )

    async def _ready(self, request: web.Request) -> web.Response:
        from aiohttp import web

        health = self.health()
        return web.Response(
            body=health.as_json(), status=200 if health.ready else 503, content_type="application/json"
        )

    async def _live(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(body=b'{"live":true}', content_type="application/json")


__all__ = ["CONTENT_TYPE_PROMETHEUS", "Health", "OperationsServer"]
