"""The simulator's control endpoint: a small JSON HTTP API on 127.0.0.1 for tests and operators.

Routes:

* ``GET /status``: venues, symbols, update ids and best prices, connections, replay position
  and loops per market driver.
* ``GET /faults``: each venue's fault profile and the counters of what was injected.
* ``PUT|POST /faults/<venue>``: a JSON profile name (``"flaky"``), ``{"profile": "hostile"}``,
  or settings (``{"http_error_probability": 0.2}``, applied on top of the current profile).
  Bad input answers 400 with the error; an unknown venue 404.
* ``POST /replay/<venue>/speed``: ``{"speed": 10}`` (or ``"max"``) for the drivers of a venue.
* ``POST /connections/<venue>/drop``: close every client connection of the server in front of a
  venue (a network failure as the clients see it); answers how many were closed.
* ``GET /changes``: every change made through this endpoint, in order.

It binds loopback only: it can break the venues on purpose, so it is never exposed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol, cast

import orjson
from aiohttp import web

from hftkit.sim.config import parse_speed
from hftkit.sim.engine.faults import FaultConfigError, FaultProfile

logger = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class Controllable(Protocol):
    """What the control endpoint drives: the running ``Simulator`` (``runner``), seen from below."""

    @property
    def venues(self) -> Mapping[str, object]:
        """The running venues by name (only the names are read here)."""
        ...

    @property
    def faults(self) -> Mapping[str, object]:
        """Each venue's fault injector by venue name (only the names are read here)."""
        ...

    @property
    def fault_profile_names(self) -> Mapping[str, str]: ...

    @property
    def change_log(self) -> list[dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...

    def fault_status(self) -> dict[str, Any]: ...

    def set_faults(self, venue: str, value: str | Mapping[str, Any]) -> FaultProfile: ...

    def set_speed(self, venue: str, speed: float) -> list[str]: ...

    async def drop_connections(self, venue: str) -> int: ...


class ControlServer:
    """HTTP control of one ``Simulator`` (fault profiles, replay speed, status)."""

    def __init__(self, simulator: Controllable) -> None:
        self.simulator = simulator
        self.app = web.Application()
        self.app.router.add_get("/status", self._status)
        self.app.router.add_get("/faults", self._faults)
        self.app.router.add_put("/faults/{venue}", self._set_faults)
        self.app.router.add_post("/faults/{venue}", self._set_faults)
        self.app.router.add_post("/replay/{venue}/speed", self._set_speed)
        self.app.router.add_get("/changes", self._changes)
        self.app.router.add_post("/connections/{venue}/drop", self._drop_connections)
        self._runner: web.AppRunner | None = None
        self.requests = 0
        self.rejected = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on loopback (``host`` must be a loopback name); return the base URL."""
        if host not in LOOPBACK:
            raise ValueError(f"the control endpoint binds loopback only, not {host!r}")
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # a TCPSite's server is the asyncio.Server that loop.create_server made (aiohttp types it abstractly)
        server = cast(asyncio.Server | None, site._server)
        assert server is not None
        bound = server.sockets[0].getsockname()[1]
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # handlers -----------------------------------------------------------------------------------------
    async def _status(self, request: web.Request) -> web.Response:
        self.requests += 1
        return _json(self.simulator.status())

    async def _faults(self, request: web.Request) -> web.Response:
        self.requests += 1
        return _json(self.simulator.fault_status())

    async def _changes(self, request: web.Request) -> web.Response:
        self.requests += 1
        return _json(self.simulator.change_log)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise ValueError("a JSON body is required")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"the body is not JSON: {error}") from None

    async def _set_faults(self, request: web.Request) -> web.Response:
        self.requests += 1
        venue = request.match_info["venue"]
        if venue not in self.simulator.faults:
            self.rejected += 1
            return _error(404, f"unknown venue {venue!r}; running: {', '.join(self.simulator.faults)}")
        try:
            body = await self._body(request)
            if not isinstance(body, str | dict):
                raise ValueError("expected a profile name or an object of fault settings")
            profile = self.simulator.set_faults(venue, body)
        except (ValueError, FaultConfigError, TypeError) as error:
            self.rejected += 1
            logger.info("control: refused fault change for %s: %s", venue, error)
            return _error(400, str(error))
        return _json(
            {
                "venue": venue,
                "profile": self.simulator.fault_profile_names[venue],
                "settings": profile.as_dict(),
            }
        )

    async def _drop_connections(self, request: web.Request) -> web.Response:
        self.requests += 1
        venue = request.match_info["venue"]
        if venue not in self.simulator.venues:
            self.rejected += 1
            return _error(404, f"unknown venue {venue!r}; running: {', '.join(self.simulator.venues)}")
        return _json({"venue": venue, "dropped": await self.simulator.drop_connections(venue)})

    async def _set_speed(self, request: web.Request) -> web.Response:
        self.requests += 1
        venue = request.match_info["venue"]
        if venue not in self.simulator.venues:
            self.rejected += 1
            return _error(404, f"unknown venue {venue!r}; running: {', '.join(self.simulator.venues)}")
        try:
            body = await self._body(request)
            value = body.get("speed") if isinstance(body, dict) else body
            if value is None:
                raise ValueError('expected {"speed": <factor or "max">}')
            speed = parse_speed(value)
            drivers = self.simulator.set_speed(venue, speed)
        except (ValueError, TypeError) as error:
            self.rejected += 1
            logger.info("control: refused speed change for %s: %s", venue, error)
            return _error(400, str(error))
        return _json({"venue": venue, "speed": "max" if speed == float("inf") else speed, "drivers": drivers})


__all__ = ["ControlServer"]
