"""The pooled HTTP session and endpoint selection, against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from hftkit.core import SimulatedClock
from hftkit.transport.endpoints import EndpointSelector
from hftkit.transport.http import (
    ConnectFailedError,
    ConnectionLostError,
    HttpConfig,
    HttpSession,
    RequestTimeoutError,
    TransportError,
)


@pytest.fixture
async def server():
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {"query": request.query_string, "body": body.decode(), "key": request.headers.get("X-Key", "")},
            headers={"X-MBX-USED-WEIGHT-1M": "7"},
        )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="late")

    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.05)
        return web.Response(text="never")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/drop", drop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_query_is_sent_exactly_as_encoded_for_signing(server):
    async with HttpSession(headers={"X-Key": "k"}) as http:
        response = await http.request(
            "POST", f"{server}/echo", query="symbol=BTCUSDT&price=1.10%2B", body=b"a=1"
        )
    assert response.ok
    assert response.headers["x-mbx-used-weight-1m"] == "7"
    assert json.loads(response.body) == {"query": "symbol=BTCUSDT&price=1.10%2B", "body": "a=1", "key": "k"}
    assert response.elapsed_ns > 0


async def test_refused_connection_is_known_not_sent():
    async with HttpSession(HttpConfig(connect_timeout_s=1)) as http:
        with pytest.raises(ConnectFailedError) as caught:
            await http.request("GET", "http://127.0.0.1:1/x")
    assert caught.value.maybe_sent is False


async def test_timeout_leaves_the_outcome_unknown(server):
    async with HttpSession() as http:
        with pytest.raises(RequestTimeoutError) as caught:
            await http.request("GET", f"{server}/slow", timeout_s=0.05)
    assert caught.value.maybe_sent is True
    assert http.failures == 1


async def test_connection_dropped_mid_request_leaves_the_outcome_unknown(server):
    async with HttpSession() as http:
        with pytest.raises(ConnectionLostError) as caught:
            await http.request("GET", f"{server}/drop")
    assert caught.value.maybe_sent


async def test_request_on_a_closed_session_is_a_clear_error():
    with pytest.raises(TransportError, match="not open"):
        await HttpSession().request("GET", "http://127.0.0.1:1/")


def test_selector_prefers_the_fastest_healthy_endpoint_and_fails_over():
    clock = SimulatedClock()
    selector = EndpointSelector(["a", "b", "c"], smoothing=1.0, cooldown_s=10, clock=clock)
    assert selector.current() == "a"
    selector.record_latency("a", 900)
    selector.record_latency("b", 300)
    selector.record_latency("c", 600)
    assert selector.current() == "b"
    selector.record_error("b")
    assert selector.current() == "c"
    clock.advance_seconds(11)
    assert selector.current() == "b"
    assert selector.failovers == 3


def test_selector_with_every_endpoint_down_still_answers():
    clock = SimulatedClock()
    selector = EndpointSelector(["a", "b"], clock=clock)
    selector.record_error("a")
    clock.advance(1)
    selector.record_error("b")
    assert selector.current() == "a"
