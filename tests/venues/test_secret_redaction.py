"""Keys, secrets, signatures and private keys never show in repr, str, asdict or logs (issue 17, item 14)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
from collections.abc import AsyncIterator

import pytest

from hftkit.core.secrets import Secret
from hftkit.venues.binance.adapter import BinanceAdapter, BinanceConfig
from hftkit.venues.binance.auth import BinanceCredentials, HmacSigner
from hftkit.venues.binance.build import RequestBuilder
from hftkit.venues.binance.endpoints import Market
from hftkit.venues.binance.rest import BinanceRestClient, RestConfig
from hftkit.venues.thalex.adapter import ThalexAdapter, ThalexConfig
from hftkit.venues.thalex.auth import ThalexCredentials, generate_key_pair, make_login_token, token_key_id

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
PEM = generate_key_pair(1024)[0]
PEM_BODY = PEM.decode().splitlines()[1]  # a line of the key itself, not the BEGIN marker


def leaks(text: str, *extra: str) -> list[str]:
    return [name for name in (API_KEY, SECRET, PEM_BODY, *extra) if name in text]


def binance_credentials() -> BinanceCredentials:
    return BinanceCredentials(API_KEY, SECRET)


def thalex_config() -> ThalexConfig:
    return ThalexConfig(url="ws://127.0.0.1:9/ws/api/v2", credentials=ThalexCredentials("key-1", PEM))


def test_credentials_hold_secrets_yet_sign_as_before():
    credentials = binance_credentials()
    assert isinstance(credentials.api_key, Secret) and isinstance(credentials.secret, Secret)
    assert credentials.api_key.reveal() == API_KEY
    assert HmacSigner(credentials.secret).sign(b"a=1") == HmacSigner(SECRET).sign(b"a=1")
    # already-wrapped values are accepted too, and pickling refuses rather than writes them out
    assert BinanceCredentials(Secret(API_KEY), Secret(SECRET)) == credentials
    with pytest.raises(TypeError):
        pickle.dumps(credentials)
    thalex = ThalexCredentials("key-1", PEM)
    assert isinstance(thalex.private_key_pem, Secret) and thalex.private_key_pem.reveal() == PEM
    assert token_key_id(make_login_token(thalex)) == "key-1"
    assert ThalexCredentials("key-1", PEM.decode()).private_key_pem.reveal() == PEM


def test_repr_str_and_asdict_show_no_key_secret_or_pem():
    credentials = binance_credentials()
    config = thalex_config()
    rest = BinanceRestClient(Market.SPOT, credentials, RestConfig(base_urls=["http://127.0.0.1:9"]))
    shown = [
        repr(credentials),
        str(credentials),
        repr(dataclasses.asdict(credentials)),
        repr(BinanceAdapter(credentials, BinanceConfig())),
        repr(rest),
        repr(vars(rest)),
        repr(config),
        str(config),
        repr(dataclasses.asdict(config)),
        repr(config.credentials),
        repr(ThalexAdapter(config)),
        f"{credentials} {config}",
    ]
    for text in shown:
        assert leaks(text) == [], text


def test_signed_request_repr_hides_signature_and_api_key():
    builder = RequestBuilder(Market.SPOT, binance_credentials())
    request = builder.request("account", {"omitZeroBalances": "true"})
    signature = request.query.rpartition("signature=")[2]
    assert len(signature) == 64
    for text in (repr(request), str(request), request.redacted_url_path):
        assert leaks(text, signature) == [], text
        assert "timestamp=" in text or text.startswith("SignedRequest")  # the rest is still there


class _Venue:
    """A loopback HTTP server that answers every request with one canned raw response."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        writer.write(self.response)
        await writer.drain()
        writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture(
    params=[
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 63\r\n\r\n"
        b'{"code":-1022,"msg":"Signature for this request is not valid."}',
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
        b"",  # the connection closes without an answer
        b"this is not HTTP at all\r\n\r\n",  # issue 17 item 4: wrapped, the signed URL left out
    ],
    ids=["auth-error", "server-error", "no-answer", "malformed-http"],
)
async def failing_venue(request: pytest.FixtureRequest) -> AsyncIterator[_Venue]:
    venue = _Venue(request.param)
    yield venue
    await venue.stop()


async def test_a_logged_failed_signed_request_shows_no_key_secret_or_signature(
    failing_venue: _Venue, caplog: pytest.LogCaptureFixture
):
    url = await failing_venue.start()
    config = RestConfig(base_urls=[url])
    caplog.set_level(logging.DEBUG)
    async with BinanceRestClient(Market.SPOT, binance_credentials(), config) as rest:
        with pytest.raises(Exception) as raised:  # whatever the class: it is logged, then judged
            await rest.call("account", {"omitZeroBalances": "true"})
        logging.getLogger("test").error("signed request failed", exc_info=raised.value)
    (sent,) = failing_venue.requests[:1]
    signature = sent.split(b"signature=", 1)[1][:64].decode()
    text = caplog.text + repr(raised.value) + str(raised.value)
    assert leaks(text, signature) == []
