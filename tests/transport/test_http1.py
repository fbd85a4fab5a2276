"""The lean HTTP/1.1 order connection: its parser against well-formed and hostile answers, and
the pool against a real aiohttp server on loopback (keep-alive, refill, timeout, bad peer)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from hftkit.transport.http import ConnectionLostError, HttpResponse, RequestTimeoutError, TransportError
from hftkit.transport.http1 import HttpProtocolError, LeanHttpPool, ResponseParser


def test_content_length_responses_split_anywhere_come_out_whole_and_in_order() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-MBX-USED-WEIGHT-1M: 7\r\n\r\nhello"
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"
    )
    for cut in range(1, len(wire)):
        parser = ResponseParser()
        responses = parser.feed(wire[:cut]) + parser.feed(wire[cut:])
        assert [(r.status, r.body) for r in responses] == [(200, b"hello"), (400, b"{}")]
        assert responses[0].headers.get("X-Mbx-Used-Weight-1m") == "7"  # any case, as aiohttp's
        assert responses[0].keep_alive


def test_chunked_bodies_with_extensions_and_trailers() -> None:
    parser = ResponseParser()
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    )
    (response,) = [item for byte in wire for item in parser.feed(bytes([byte]))]
    assert response.body == b'{"a":1}'


def test_connection_close_and_http_1_0_are_not_kept_alive() -> None:
    closed = ResponseParser().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    old = ResponseParser().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not closed[0].keep_alive and not old[0].keep_alive


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 999 Nope\r\n\r\n", "out of range"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "without Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "out of bounds"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "out of bounds"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "not followed by CRLF"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000, "header block over"),
    ],
)
def test_a_broken_or_hostile_answer_is_a_protocol_error_not_a_crash(wire: bytes, why: str) -> None:
    with pytest.raises(HttpProtocolError, match=why):
        ResponseParser().feed(wire)


def test_a_huge_chunked_body_is_refused_at_its_bound() -> None:
    parser = ResponseParser(max_body_bytes=10)
    with pytest.raises(HttpProtocolError, match="chunked body over"):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n")


class Server:
    """An aiohttp server whose handler the test sets; counts connections it accepted."""

    def __init__(self) -> None:
        self.handler = self.ok
        self.peers: set[object] = set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def ok(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"path": request.path_qs, "key": request.headers.get("X-Key")})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def server():
    running = Server()
    await running.start()
    yield running
    await running.stop()


async def send(pool: LeanHttpPool, request: bytes) -> HttpResponse | TransportError:
    answered: asyncio.Future[HttpResponse | TransportError] = asyncio.get_running_loop().create_future()
    assert pool.write_now(request, answered.set_result)
    return await asyncio.wait_for(answered, 5)


async def test_requests_reuse_warm_connections_and_carry_their_headers(server: Server) -> None:
    pool = LeanHttpPool(server.url, size=2)
    await pool.open()
    try:
        request = pool.request_bytes("POST", "/api/v3/order?symbol=BTCUSDT&signature=abc", {"X-Key": "k"})
        for _ in range(10):
            answer = await send(pool, request)
            assert isinstance(answer, HttpResponse) and answer.status == 200
            assert answer.body == b'{"path": "/api/v3/order?symbol=BTCUSDT&signature=abc", "key": "k"}'
        assert pool.stats_connects == 2 and len(server.peers) <= 2  # keep-alive: no new connections
    finally:
        await pool.close()


async def test_every_connection_busy_means_not_now_and_nothing_written(server: Server) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="late")

    server.handler = slow
    pool = LeanHttpPool(server.url, size=1)
    await pool.open()
    try:
        answered: asyncio.Future[HttpResponse | TransportError] = asyncio.get_running_loop().create_future()
        assert pool.write_now(pool.request_bytes("GET", "/a", {}), answered.set_result)
        assert not pool.write_now(pool.request_bytes("GET", "/b", {}), lambda answer: None)
        release.set()
        assert isinstance(await answered, HttpResponse)
        assert pool.stats_requests == 1
    finally:
        await pool.close()


async def test_a_request_without_an_answer_in_time_fails_as_a_timeout_and_the_pool_refills(
    server: Server,
) -> None:
    give_up = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(give_up.wait(), 30)
        return web.Response()

    server.handler = hang
    pool = LeanHttpPool(server.url, size=1, request_timeout_s=0.2)
    await pool.open()
    try:
        answer = await send(pool, pool.request_bytes("GET", "/x", {}))
        assert isinstance(answer, RequestTimeoutError) and answer.maybe_sent
        server.handler = server.ok
        for _ in range(100):  # the poisoned connection is replaced in the background
            if pool.idle_connections:
                break
            await asyncio.sleep(0.01)
        assert isinstance(await send(pool, pool.request_bytes("GET", "/y", {})), HttpResponse)
        assert pool.stats_timeouts == 1 and pool.stats_connects == 2
    finally:
        give_up.set()
        await pool.close()


async def test_a_peer_that_answers_garbage_loses_the_connection_and_the_request_is_unknown() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HELLO THERE\r\n\r\n")
        await writer.drain()

    raw = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = raw.sockets[0].getsockname()[1]
    pool = LeanHttpPool(f"http://127.0.0.1:{port}", size=1)
    await pool.open()
    try:
        answer = await send(pool, pool.request_bytes("GET", "/", {}))
        assert isinstance(answer, ConnectionLostError) and isinstance(answer, HttpProtocolError)
        assert pool.stats_protocol_errors == 1
    finally:
        await pool.close()
        raw.close()


async def test_an_unreachable_origin_opens_nothing_and_writes_nothing() -> None:
    pool = LeanHttpPool("http://127.0.0.1:1", size=2, connect_timeout_s=0.5)
    await pool.open()
    try:
        assert pool.idle_connections == 0
        assert not pool.write_now(b"GET / HTTP/1.1\r\n\r\n", lambda answer: None)
    finally:
        await pool.close()
