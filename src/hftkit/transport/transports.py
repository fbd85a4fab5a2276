"""The transports an adapter is built on, chosen once at construction (as httpx takes a transport).

The defaults are the real ones (aiohttp for REST, warm HTTP/1.1 connections for orders, picows
for WebSockets). A test, or a user testing their own code, passes in-memory ones instead (see
``hftkit.testing``): the adapter and everything under it run unchanged, with no sockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hftkit.transport.http1 import LeanHttpPool, OrderPoolFactory
from hftkit.transport.websocket import WebSocketConnect, picows_connect

if TYPE_CHECKING:  # aiohttp loads with the REST client that uses it: a WebSocket-only venue never does
    from hftkit.transport.http import HttpTransport


@dataclass(frozen=True)
class Transports:
    """Where an adapter's bytes go. Resolved when the adapter is built, never per request."""

    http: HttpTransport | None = None  # None: the client opens (and owns) an ``HttpSession``
    order_pool: OrderPoolFactory = LeanHttpPool
    websocket: WebSocketConnect = picows_connect


REAL_TRANSPORTS = Transports()

__all__ = ["REAL_TRANSPORTS", "Transports"]
