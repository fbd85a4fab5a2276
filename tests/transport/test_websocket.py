"""The reconnecting WebSocket against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType, web

from hftkit.transport.websocket import (
    ConnectionState,
    DisconnectReason,
    ReconnectingWebSocket,
    WebSocketClosedError,
    WebSocketConfig,
)


class ScriptedServer:
    """A WebSocket server whose behaviour each test scripts: echo, stall, close."""

    def __init__(self) -> None:
        self.connections = 0
        self.received: list[str] = []
        self.mode = "echo"
        self.sockets: list[web.WebSocketResponse] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self.connections += 1
        self.sockets.append(socket)
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            self.received.append(message.data)
            if self.mode == "echo":
                await socket.send_str(message.data)
        return socket

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_get("/ws", self.handler)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for socket in self.sockets:
            await socket.close()
        assert self.runner is not None
        await self.runner.cleanup()


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def fast_config(url: str, **overrides) -> WebSocketConfig:
    settings = dict(urls=[url], reconnect_base_delay_s=0.01, reconnect_max_delay_s=0.05, stale_timeout_s=0)
    settings.update(overrides)
    return WebSocketConfig(**settings)


async def test_messages_reach_the_handler_with_receive_timestamps():
    received: list[tuple[bytes, int]] = []
    async with ScriptedServer() as server:
        config = fast_config(server.url)
        async with ReconnectingWebSocket(
            config, lambda payload, ns: received.append((payload, ns))
        ) as socket:
            await socket.wait_connected(5)
            socket.send('{"method":"SUBSCRIBE"}')
            socket.send(b"second")
            await wait_until(lambda: len(received) == 2)
    assert [payload for payload, _ in received] == [b'{"method":"SUBSCRIBE"}', b"second"]
    assert received[0][1] <= received[1][1]


async def test_peer_close_triggers_reconnect_and_resubscribe():
    subscriptions = 0
    states: list[tuple[ConnectionState, DisconnectReason | None]] = []

    def subscribe(socket: ReconnectingWebSocket) -> None:
        nonlocal subscriptions
        subscriptions += 1
        socket.send(f"subscribe {subscriptions}")

    async with ScriptedServer() as server:
        config = fast_config(server.url)
        socket = ReconnectingWebSocket(
            config,
            lambda payload, ns: None,
            on_connected=subscribe,
            on_state=lambda s, r: states.append((s, r)),
        )
        async with socket:
            await wait_until(lambda: server.received == ["subscribe 1"])
            await server.sockets[0].close()
            await wait_until(lambda: server.received == ["subscribe 1", "subscribe 2"])
            assert socket.stats.connects == 2
            assert socket.stats.disconnect_reasons == {"peer_closed": 1}
    assert (ConnectionState.DISCONNECTED, DisconnectReason.PEER_CLOSED) in states
    assert states[-1] == (ConnectionState.CLOSED, DisconnectReason.CLOSED)


async def test_stalled_socket_is_detected_and_replaced():
    async with ScriptedServer() as server:
        server.mode = "silent"
        config = fast_config(server.url, stale_timeout_s=0.1, ping_idle_s=0)
        async with ReconnectingWebSocket(config, lambda payload, ns: None) as socket:
            await wait_until(lambda: server.connections >= 2)
            assert socket.stats.stale_reconnects >= 1
            assert socket.stats.disconnect_reasons.get("stale", 0) >= 1


async def test_connection_is_renewed_before_its_maximum_age():
    async with ScriptedServer() as server:
        config = fast_config(server.url, max_connection_age_s=0.1)
        async with ReconnectingWebSocket(config, lambda payload, ns: None) as socket:
            await wait_until(lambda: server.connections >= 2)
            assert socket.stats.age_reconnects >= 1


async def test_requested_reconnect_counts_and_reconnects():
    async with ScriptedServer() as server:
        async with ReconnectingWebSocket(fast_config(server.url), lambda payload, ns: None) as socket:
            await socket.wait_connected(5)
            socket.reconnect()
            await wait_until(lambda: server.connections == 2 and socket.state is ConnectionState.CONNECTED)
            assert socket.stats.requested_reconnects == 1
            assert socket.stats.disconnect_reasons == {"requested": 1}


async def test_handler_exception_is_counted_and_the_feed_continues():
    seen: list[bytes] = []

    def handler(payload: bytes, receive_ns: int) -> None:
        if payload == b"bad":
            raise ValueError("malformed")
        seen.append(payload)

    async with ScriptedServer() as server:
        async with ReconnectingWebSocket(fast_config(server.url), handler) as socket:
            await socket.wait_connected(5)
            socket.send("bad")
            socket.send("good")
            await wait_until(lambda: seen == [b"good"])
            assert socket.stats.handler_errors == 1
            assert socket.stats.connects == 1


async def test_unreachable_url_fails_over_to_the_next_one():
    async with ScriptedServer() as server:
        config = WebSocketConfig(
            urls=["ws://127.0.0.1:1/ws", server.url], reconnect_base_delay_s=0.01, stale_timeout_s=0
        )
        async with ReconnectingWebSocket(config, lambda payload, ns: None) as socket:
            await socket.wait_connected(5)
            assert socket.stats.connect_failures == 1
            assert socket.url == server.url


async def test_send_while_disconnected_is_a_clear_error():
    socket = ReconnectingWebSocket(WebSocketConfig(urls=["ws://127.0.0.1:1/ws"]), lambda payload, ns: None)
    with pytest.raises(WebSocketClosedError):
        socket.send("x")


def test_config_needs_a_url():
    with pytest.raises(ValueError):
        WebSocketConfig(urls=[])


async def test_loss_during_on_connected_is_reported_at_once():
    states: list[tuple[ConnectionState, DisconnectReason | None]] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_login(socket: ReconnectingWebSocket) -> None:
        if socket.stats.connects == 1:
            started.set()
            await release.wait()

    async with ScriptedServer() as server:
        socket = ReconnectingWebSocket(
            fast_config(server.url),
            lambda payload, ns: None,
            on_connected=slow_login,
            on_state=lambda state, reason: states.append((state, reason)),
        )
        async with socket:
            await started.wait()
            await server.sockets[0].close()
            await wait_until(lambda: (ConnectionState.DISCONNECTED, DisconnectReason.PEER_CLOSED) in states)
            release.set()
            await wait_until(lambda: socket.stats.connects == 2 and socket.state is ConnectionState.CONNECTED)


async def test_a_stream_silent_past_its_cadence_is_replaced_although_pongs_still_come():
    """Issue 17 item 12: pings kept a stalled stream 'fresh'; its silence is what counts."""
    async with ScriptedServer() as server:
        server.mode = "silent"
        config = fast_config(server.url, ping_idle_s=0.02, ping_reply_timeout_s=0.02, stall_timeout_s=0.2)
        async with ReconnectingWebSocket(config, lambda payload, ns: None) as socket:
            await socket.wait_connected(5)
            await server.sockets[-1].send_str("one message, then silence")
            await wait_until(lambda: socket.stats.stall_reconnects >= 1)
            assert socket.stats.disconnect_reasons.get("stalled", 0) >= 1


async def test_a_connection_that_never_delivers_a_first_message_is_a_stall_too():
    """Found by the chaos test: a reconnected market socket that stays open and silent from the
    start left its book awaiting a snapshot for good; the watch is armed from the connect."""
    async with ScriptedServer() as server:
        server.mode = "silent"
        config = fast_config(server.url, ping_idle_s=0.02, ping_reply_timeout_s=0.02, stall_timeout_s=0.2)
        async with ReconnectingWebSocket(config, lambda payload, ns: None) as socket:
            await socket.wait_connected(5)
            await wait_until(lambda: socket.stats.stall_reconnects >= 2 and server.connections >= 3)
            assert socket.stats.disconnect_reasons.get("stalled", 0) >= 2


async def test_a_quiet_stream_that_answers_its_probe_is_not_a_stall():
    async with ScriptedServer() as server:  # echoes: the probe comes back like a venue's answer
        config = fast_config(server.url, stall_timeout_s=0.3, stall_probe_s=0.1)
        async with ReconnectingWebSocket(
            config, lambda payload, ns: None, stall_probe=lambda: b'{"probe":1}'
        ) as socket:
            await socket.wait_connected(5)
            socket.send("hello")  # echoed
            await wait_until(lambda: socket.stats.stall_probes >= 5)
            assert socket.stats.stall_reconnects == 0 and server.connections == 1
            server.mode = "silent"  # now the probe goes unanswered
            await wait_until(lambda: socket.stats.stall_reconnects == 1)
