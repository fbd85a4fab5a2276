"""The REST client against a raw HTTP server that answers what a venue on a bad day (or a tampering
proxy) might: every answer to an order must end as a result or a classified error, never as a plain
exception, and never carry the signed request (replayable within recvWindow) in a message."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator

import pytest

from hftkit.core.types import Instrument, Side
from hftkit.venues.base import OrderOutcomeUnknownError, OrderRequest, RateLimitedError, VenueError
from hftkit.venues.binance.auth import BinanceCredentials
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import BinanceRestClient, RestConfig

MAX_RETRY_AFTER_S = 3 * 24 * 3600  # Binance: IP bans scale from 2 minutes to 3 days

CREDENTIALS = BinanceCredentials("test-api-key", "test-secret")
INSTRUMENT = Instrument("binance", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")
ORDER_BODY = (
    b'{"symbol":"BTCUSDT","orderId":7,"clientOrderId":"c1","price":"50000.00","origQty":"0.00100",'
    b'"executedQty":"0","status":"NEW","timeInForce":"GTC","type":"LIMIT","side":"BUY"}'
)


class RawServer:
    """Answers every request with the next scripted raw HTTP response, byte for byte."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                writer.write(self.answers.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def response(status: str, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with RawServer() as running:
        yield running


@pytest.fixture
async def client(server: RawServer) -> AsyncIterator[BinanceRestClient]:
    config = RestConfig(base_urls=[server.url], order_timeout_s=1.0, query_timeout_s=1.0, max_attempts=1)
    async with BinanceRestClient(Market.SPOT, CREDENTIALS, config) as rest:
        yield rest


def buy() -> OrderRequest:
    return OrderRequest(client_order_id="c1", symbol="BTCUSDT", side=Side.BUY, quantity=100, price=5_000_000)


def assert_no_signature(error: BaseException) -> None:
    """Neither the message, nor the repr, nor anything chained to it shows the signed query."""
    text = "".join(traceback.format_exception(error)) + repr(error)
    for attribute in vars(error).values():
        text += repr(attribute)
    assert "signature" not in text and "test-secret" not in text, text


@pytest.mark.parametrize("weight", ["9" * 5000, "\u00b2", "\u0661\u0662", "-1", "1e3", " 12"])
async def test_a_placed_order_survives_any_usage_weight_header(
    server: RawServer, client: BinanceRestClient, weight: str
) -> None:
    server.answers.append(response("200 OK", ORDER_BODY, f"X-MBX-USED-WEIGHT-1M: {weight}"))
    placed = await client.new_order(INSTRUMENT, buy())
    assert placed.client_order_id == "c1" and placed.status == "NEW"


async def test_a_sane_usage_weight_header_still_corrects_the_limiter(
    server: RawServer, client: BinanceRestClient
) -> None:
    server.answers.append(response("200 OK", ORDER_BODY, "X-MBX-USED-WEIGHT-1M: 777"))
    await client.new_order(INSTRUMENT, buy())
    assert client.used_weight() >= 777


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("inf", 10.0),  # not finite: ignored, the configured default applies
        ("nan", 10.0),
        ("-inf", 10.0),
        ("1e10", MAX_RETRY_AFTER_S),  # centuries: clamped to the longest ban Binance gives
        ("1" + "0" * 400, 10.0),  # no number of seconds is written like this: ignored
        ("30", 30.0),
    ],
)
async def test_retry_after_is_finite_and_bounded(
    server: RawServer, client: BinanceRestClient, retry_after: str, expected: float
) -> None:
    body = b'{"code":-1003,"msg":"Too many requests"}'
    server.answers.append(response("429 Too Many Requests", body, f"Retry-After: {retry_after}"))
    with pytest.raises(RateLimitedError) as raised:
        await client.new_order(INSTRUMENT, buy())
    assert raised.value.retry_after_s == expected
    assert client.limiter.time_until_available({"x-mbx-used-weight-1m": 1}) <= expected + 1


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTX/9.9 what\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n{}",  # a header aiohttp refuses
        b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"symbol":',  # cut short
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a broken chunk
    ],
)
async def test_a_malformed_response_to_an_order_is_outcome_unknown_and_hides_the_signed_url(
    server: RawServer, client: BinanceRestClient, raw: bytes
) -> None:
    server.answers.append(raw)
    with pytest.raises(OrderOutcomeUnknownError) as raised:
        await client.new_order(INSTRUMENT, buy())
    assert raised.value.client_order_id == "c1"
    assert server.requests and b"signature=" in server.requests[0]  # it was signed, and it left
    assert_no_signature(raised.value)


@pytest.mark.parametrize("body", [b"<html>gateway</html>", b'{"symbol":"BTCUSDT"}', b"[" * 100_000])
async def test_an_undecodable_2xx_to_an_order_is_outcome_unknown_not_a_reject(
    server: RawServer, client: BinanceRestClient, body: bytes
) -> None:
    server.answers.append(response("200 OK", body))
    with pytest.raises(OrderOutcomeUnknownError) as raised:
        await client.new_order(INSTRUMENT, buy())
    assert raised.value.client_order_id == "c1"
    assert client.stats.malformed_responses == 1


async def test_an_undecodable_2xx_to_a_cancel_is_outcome_unknown(
    server: RawServer, client: BinanceRestClient
) -> None:
    server.answers.append(response("200 OK", b"not json"))
    with pytest.raises(OrderOutcomeUnknownError):
        await client.cancel_order(INSTRUMENT, "c1")


async def test_a_malformed_response_to_a_query_is_a_classified_venue_error(
    server: RawServer, client: BinanceRestClient
) -> None:
    server.answers.append(b"HTTX/9.9 what\r\n\r\n")
    with pytest.raises(VenueError) as raised:
        await client.query_order(INSTRUMENT, "c1")
    assert_no_signature(raised.value)
