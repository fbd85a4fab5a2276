"""The simulator as a server under hostile clients, over real loopback sockets (issue 17, item 13).

Signatures that are not ASCII get Binance's -1022, not a 500; the WebSocket API compares
signatures in constant time; a client that stops reading is dropped and counted; an unmasked
client frame closes the connection with 1002 (RFC 6455 §5.1).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from hftkit.core.clock import REAL_CLOCK
from hftkit.sim.binance import signatures as binance_signatures
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.sim.engine.venue import SimVenue
from hftkit.sim.thalex.server import ThalexSimServer
from hftkit.sim.thalex.wire import default_instruments
from hftkit.sim.websocket import FrameMaskScanner
from hftkit.testing.binance_simulator import API_KEY, API_SECRET, BinanceSimHarness
from hftkit.venues.binance.auth import HmacSigner

SIGNATURE_INVALID = {"code": -1022, "msg": "Signature for this request is not valid."}


@pytest.fixture
async def binance() -> AsyncIterator[BinanceSimHarness]:
    harness = await BinanceSimHarness().start()
    yield harness
    await harness.stop()


# a raw WebSocket client: frames exactly as we write them -----------------------------------------


class RawSocket:
    """A WebSocket client over a plain TCP socket, so a test can send what no library would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str, receive_buffer: int | None = None) -> RawSocket:
        parts = urlsplit(url)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # a small window: the server's sends back up quickly
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {parts.path}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, payload: bytes, *, masked: bool = True, opcode: int = 0x1) -> None:
        self.writer.write(encode_frame(payload, masked=masked, opcode=opcode))

    async def frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return head[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), timeout)

    async def until_close(self, timeout: float = 5.0) -> int:
        """Read frames until the server's Close; return its status code."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == 0x8:
                return struct.unpack("!H", payload[:2])[0]

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True once the server has ended the TCP connection (EOF or reset)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        return True

    def close(self) -> None:
        self.writer.transport.abort()


def encode_frame(payload: bytes, *, masked: bool = True, opcode: int = 0x1) -> bytes:
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def thalex_server(**options: Any) -> ThalexSimServer:
    """A Thalex server with its default instruments; public methods need no login."""
    venue = SimVenue("thalex", MatchingEngine(Accounts(), clock=REAL_CLOCK))
    for instrument in default_instruments():
        venue.add_instrument(instrument)
    return ThalexSimServer(venue, **options)


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# signatures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["%C3%A9" * 32, "%E2%82%AC" + "a" * 63, "%FF%FE"])
async def test_rest_non_ascii_signature_is_minus_1022_not_a_500(binance: BinanceSimHarness, signature: str):
    query = urlencode({"timestamp": binance.server_ms()})
    status, body, _ = await binance.request("GET", f"/api/v3/account?{query}&signature={signature}")
    assert (status, body) == (400, SIGNATURE_INVALID)
    assert binance.server.internal_errors == 0


async def test_rest_raw_utf8_bytes_in_a_body_signature_are_minus_1022(binance: BinanceSimHarness):
    # aiohttp refuses raw non-ASCII bytes in the URL itself; a form body carries them through
    host, port = urlsplit(binance.base).hostname, urlsplit(binance.base).port
    reader, writer = await asyncio.open_connection(host, port)
    body = f"symbol=BTCUSDT&timestamp={binance.server_ms()}&signature=".encode() + "é€".encode() * 10
    writer.write(
        b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: "
        + API_KEY.encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1]) == SIGNATURE_INVALID
    assert binance.server.internal_errors == 0


def _ws_api_request(signature: str) -> bytes:
    params: dict[str, Any] = {"apiKey": API_KEY, "timestamp": int(time.time() * 1000)}
    params["signature"] = signature
    return orjson.dumps({"id": "1", "method": "account.status", "params": params})


async def test_ws_api_non_ascii_signature_is_minus_1022(binance: BinanceSimHarness):
    client = await RawSocket.connect(binance.urls["spot_ws_api"])
    try:
        client.send(_ws_api_request("é" * 64))
        _, payload = await client.frame()
        answer = orjson.loads(payload)
        assert answer["status"] == 400 and answer["error"] == SIGNATURE_INVALID
        assert binance.server.internal_errors == 0
    finally:
        client.close()


async def test_ws_api_compares_signatures_in_constant_time(binance: BinanceSimHarness, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = binance_signatures.hmac.compare_digest  # AttributeError before the fix: no hmac in the module

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(binance_signatures.hmac, "compare_digest", spy)
    params: dict[str, Any] = {"apiKey": API_KEY, "timestamp": binance.server_ms()}
    good = HmacSigner(API_SECRET).sign_websocket_params(params)
    client = await RawSocket.connect(binance.urls["spot_ws_api"])
    try:
        for signature, status in ((good.upper(), 200), ("0" * 64, 400)):
            client.send(
                orjson.dumps(
                    {"id": "x", "method": "account.status", "params": {**params, "signature": signature}}
                )
            )
            _, payload = await client.frame()
            assert orjson.loads(payload)["status"] == status
    finally:
        client.close()
    assert [a for a, _ in compared] == [good.encode(), good.encode()]


# unmasked client frames ---------------------------------------------------------------------------


def test_frame_scanner_follows_boundaries_across_chunks():
    stream = encode_frame(b"x" * 200) + encode_frame(b"y" * 70_000) + encode_frame(b"z", masked=False)
    unmasked_at = len(stream) - 3
    for size in (1, 2, 3, 7, 100, 4096, len(stream)):
        scanner = FrameMaskScanner()
        found, chunk = -1, -1
        for chunk in range(0, len(stream), size):
            offset = scanner.scan(stream[chunk : chunk + size])
            if offset >= 0:
                found = chunk + offset
                break
        # found in the chunk holding the header's second byte (the mask bit), at the frame's start
        # or, when the header began in an earlier chunk, at this chunk's start
        assert chunk <= unmasked_at + 1 < chunk + size, size
        assert found == max(unmasked_at, chunk), size
    assert FrameMaskScanner().scan(encode_frame(b"a" * 300) * 3) == -1


@pytest.mark.parametrize("path", ["spot_ws", "spot_ws_api"])
async def test_binance_server_closes_1002_on_an_unmasked_client_frame(binance: BinanceSimHarness, path: str):
    url = binance.urls[path] + ("/btcusdt@trade" if path == "spot_ws" else "")
    client = await RawSocket.connect(url)
    try:
        # a masked request is served: the refusal below is about the mask, not the request
        request = (
            {"id": 1, "method": "LIST_SUBSCRIPTIONS"} if path == "spot_ws" else {"id": 1, "method": "ping"}
        )
        client.send(orjson.dumps(request))
        _, payload = await client.frame()
        assert orjson.loads(payload)["id"] == 1
        client.send(orjson.dumps({**request, "id": 2}), masked=False)
        assert await client.until_close() == 1002
        assert await client.closed_by_server()
    finally:
        client.close()
    assert binance.server.unmasked_frame_disconnects == 1


async def test_thalex_server_closes_1002_on_an_unmasked_client_frame():
    server = thalex_server()
    url = await server.start("127.0.0.1", 0)
    client = await RawSocket.connect(url)
    try:
        client.send(orjson.dumps({"id": 1, "method": "public/instruments", "params": {}}))
        _, payload = await client.frame()
        assert orjson.loads(payload)["id"] == 1
        client.send(orjson.dumps({"id": 2, "method": "public/instruments", "params": {}}), masked=False)
        assert await client.until_close() == 1002
        assert await client.closed_by_server()
    finally:
        client.close()
        await server.stop()
    assert server.counters["unmasked_frame_disconnects"] == 1


# clients that stop reading ------------------------------------------------------------------------


async def _flood(client: RawSocket, frame: bytes, count: int) -> None:
    """Send ``count`` copies of one request without ever reading an answer."""
    chunk = encode_frame(frame) * 500
    for _ in range(count // 500):
        client.writer.write(chunk)
        with contextlib.suppress(ConnectionError):
            await client.writer.drain()


async def test_binance_ws_api_drops_a_client_that_stops_reading(binance: BinanceSimHarness):
    server = binance.server
    client = await RawSocket.connect(binance.urls["spot_ws_api"], receive_buffer=4096)
    try:
        flood = asyncio.create_task(_flood(client, orjson.dumps({"id": 1, "method": "ping"}), 60_000))
        await eventually(lambda: server.slow_client_disconnects == 1)
        await eventually(lambda: server.open_connections == 0)
        flood.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await flood
    finally:
        client.close()


async def test_thalex_server_drops_a_client_that_stops_reading():
    server = thalex_server(message_rate=1_000_000)
    url = await server.start("127.0.0.1", 0)
    client = await RawSocket.connect(url, receive_buffer=4096)
    try:
        request = orjson.dumps({"id": 1, "method": "public/instruments", "params": {}})
        flood = asyncio.create_task(_flood(client, request, 30_000))
        await eventually(lambda: server.counters["slow_client_disconnects"] == 1)
        assert not server._sessions  # the session and its queued answers are gone
        flood.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await flood
    finally:
        client.close()
        await server.stop()
