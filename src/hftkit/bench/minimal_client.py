"""The baseline of ``hftkit bench node``: the smallest honest Python client of each order path.

What a quant would write by hand to answer every market-data frame with an IOC order: picows
for WebSockets, a raw asyncio protocol with a hand-built HTTP/1.1 request for REST, orjson,
an HMAC or the venue's login token, no book, no risk, no tracker, one order in flight. It runs
in its own process against the same simulator as hftkit's node (``hftkit.bench.node_worker``)
and is stamped the same way: the frame's receipt (``time.monotonic_ns()`` first thing in the
frame callback) to the return of the call that wrote the order's bytes.

Run by ``hftkit.bench.node`` as ``python -m hftkit.bench.minimal_client PATH SECONDS WARMUP``
with the simulator's connection line (JSON) on stdin; prints one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from hftkit.core.secrets import Secret
from hftkit.venues.thalex.auth import ThalexCredentials, make_login_token

SPOT_SYMBOL = "BTCUSDT"
PERPETUAL = "BTC-PERPETUAL"
PRICE_FACTOR = 0.995  # a buy this far under the market is never filled: an IOC that expires


class Figures:
    """One worker's measurements inside the window after the warm-up."""

    def __init__(self) -> None:
        self.samples_ns: list[int] = []
        self.answers = 0
        self.errors = 0
        self.events = 0
        self.measuring = False
        self.first_order_wall_s = 0.0
        self.system_s = 0.0

    def sent(self, written_ns: int, received_ns: int) -> None:
        if not self.first_order_wall_s:
            self.first_order_wall_s = time.time()
        if self.measuring:
            self.samples_ns.append(written_ns - received_ns)

    def as_json(self, cpu_s: float, seconds: float) -> dict[str, Any]:
        return {
            "samples_ns": self.samples_ns,
            "orders": len(self.samples_ns),
            "answers": self.answers,
            "errors": self.errors,
            "events": self.events,
            "cpu_s": cpu_s,
            "seconds": seconds,
            "first_order_wall_s": self.first_order_wall_s,
            "system_s": self.system_s,
        }


class _Socket(WSListener):
    """Frames straight to a callback with their receipt stamp, nothing else."""

    def __init__(self, on_frame: Any) -> None:
        self.on_frame = on_frame
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        received = time.monotonic_ns()
        if frame.msg_type is WSMsgType.TEXT:
            self.on_frame(frame.get_payload_as_bytes(), received)
        elif frame.msg_type is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


def _price_text(price: float, decimals: int) -> str:
    return f"{price * PRICE_FACTOR:.{decimals}f}"


# -- Thalex: JSON-RPC private/insert on the logged-in session that also carries the book -------
async def thalex(connection: dict[str, Any], figures: Figures) -> None:
    credentials = connection["credentials"]
    token = make_login_token(
        ThalexCredentials(
            credentials["thalex_key_id"], Secret(Path(credentials["thalex_private_key_file"]).read_bytes())
        )
    )
    channel = f"book.{PERPETUAL}.none.all.raw"
    ids = itertools.count(10)
    state = {"in_flight": 0, "ready": False, "price": 0.0}
    logged_in = asyncio.get_running_loop().create_future()

    def on_frame(payload: bytes, received: int) -> None:
        message = orjson.loads(payload)
        if "channel_name" not in message:
            answer_id = message.get("id")
            if answer_id == 1:
                if not logged_in.done():
                    logged_in.set_result(message)
            elif answer_id == state["in_flight"]:
                state["in_flight"] = 0
                if figures.measuring:
                    figures.answers += 1
                    if "error" in message:
                        figures.errors += 1
            return
        if figures.measuring:
            figures.events += 1
        notification = message["notification"]
        changes = (
            notification.get("bid_changes") or notification.get("ask_changes") or notification.get("trades")
        )
        if changes:
            state["price"] = changes[0][0]  # a price near the touch: no book is kept
        if state["in_flight"] or not state["ready"] or not state["price"]:
            return
        request_id = next(ids)
        request = orjson.dumps(
            {
                "method": "private/insert",
                "params": {
                    "direction": "buy",
                    "instrument_name": PERPETUAL,
                    "order_type": "limit",
                    "time_in_force": "immediate_or_cancel",
                    "price": round(state["price"] * PRICE_FACTOR),
                    "amount": 0.001,
                    "client_order_id": request_id,
                },
                "id": request_id,
            }
        )
        listener.transport.send(WSMsgType.TEXT, request)  # type: ignore[union-attr]
        written = time.monotonic_ns()
        state["in_flight"] = request_id
        figures.sent(written, received)

    listener = _Socket(on_frame)
    transport, _ = await ws_connect(lambda: listener, connection["urls"]["thalex_ws"])
    try:
        transport.send(
            WSMsgType.TEXT, orjson.dumps({"method": "public/login", "params": {"token": token}, "id": 1})
        )
        answer = await asyncio.wait_for(logged_in, 10)
        if "result" not in answer:
            raise ConnectionError(f"Thalex login refused: {answer}")
        transport.send(
            WSMsgType.TEXT,
            orjson.dumps({"method": "public/subscribe", "params": {"channels": [channel]}, "id": 2}),
        )
        state["ready"] = True
        await _measure(figures)
    finally:
        transport.disconnect()


# -- Binance: market data from the combined stream, orders by REST or the WebSocket API --------
def _signed(secret: bytes, params: dict[str, str]) -> str:
    query = urllib.parse.urlencode(params)
    return query + "&signature=" + hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()


def _stream_price(message: dict[str, Any]) -> float | None:
    data = message.get("data") or {}
    if "p" in data:
        return float(data["p"])
    bids = data.get("b")
    return float(bids[0][0]) if bids else None


class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: answers counted by their header block."""

    def __init__(self, on_answer: Any) -> None:
        self.on_answer = on_answer
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length_at = head.find(b"content-length:")
            length = int(head[length_at + 15 :].split(b"\r\n", 1)[0]) if length_at >= 0 else 0
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            status = int(self.buffer[9:12])
            self.buffer = self.buffer[end:]
            self.on_answer(status)


async def binance(connection: dict[str, Any], figures: Figures, *, websocket_api: bool) -> None:
    credentials = connection["credentials"]
    api_key, secret = credentials["binance_api_key"], credentials["binance_secret_key"].encode()
    rest = connection["urls"]["binance_rest"]
    parsed = urllib.parse.urlsplit(rest)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    state = {"in_flight": False}
    ids = itertools.count(1)
    sender: dict[str, Any] = {}

    def answered(ok: bool) -> None:
        state["in_flight"] = False
        if figures.measuring:
            figures.answers += 1
            if not ok:
                figures.errors += 1

    def on_market(payload: bytes, received: int) -> None:
        if figures.measuring:
            figures.events += 1
        if state["in_flight"] or "send" not in sender:
            return
        price = _stream_price(orjson.loads(payload))
        if price is None:
            return
        sender["send"](_price_text(price, 2), next(ids))
        written = time.monotonic_ns()
        state["in_flight"] = True
        figures.sent(written, received)

    def order_params(price: str, number: int) -> dict[str, str]:
        return {
            "symbol": SPOT_SYMBOL,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "IOC",
            "quantity": "0.001",
            "price": price,
            "newClientOrderId": f"min{number}",
            "timestamp": str(time.time_ns() // 1_000_000),
        }

    closers: list[Any] = []
    if websocket_api:

        def on_api(payload: bytes, received: int) -> None:
            answered(b'"status":200' in payload)

        api = _Socket(on_api)
        api_transport, _ = await ws_connect(lambda: api, connection["urls"]["binance_spot_ws_api"])
        closers.append(api_transport.disconnect)

        def send_ws(price: str, number: int) -> None:
            params = order_params(price, number)
            params["apiKey"] = api_key
            ordered = dict(sorted(params.items()))
            payload = "&".join(f"{key}={value}" for key, value in ordered.items())
            ordered["signature"] = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
            api_transport.send(
                WSMsgType.TEXT, orjson.dumps({"id": number, "method": "order.place", "params": ordered})
            )

        sender["send"] = send_ws
    else:
        loop = asyncio.get_running_loop()
        http_transport, _ = await loop.create_connection(
            lambda: _Http(lambda status: answered(status == 200)), host, port
        )
        closers.append(http_transport.close)
        header = f"Host: {host}:{port}\r\nX-MBX-APIKEY: {api_key}\r\nContent-Length: 0\r\n\r\n".encode()

        def send_rest(price: str, number: int) -> None:
            query = _signed(secret, order_params(price, number))
            http_transport.write(b"POST /api/v3/order?" + query.encode() + b" HTTP/1.1\r\n" + header)

        sender["send"] = send_rest

    market = _Socket(on_market)
    stream_url = "ws" + rest.removeprefix("http") + "/stream?streams=btcusdt@trade/btcusdt@depth@100ms"
    market_transport, _ = await ws_connect(lambda: market, stream_url)
    closers.append(market_transport.disconnect)
    try:
        await _measure(figures)
    finally:
        for close in closers:
            close()


async def _measure(figures: Figures) -> None:
    await asyncio.sleep(WARMUP_S)
    figures.measuring = True
    await asyncio.sleep(SECONDS)
    figures.measuring = False


SECONDS = 5.0
WARMUP_S = 1.0


def main() -> None:
    global SECONDS, WARMUP_S
    path, SECONDS, WARMUP_S = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    connection = json.loads(sys.stdin.readline())
    figures = Figures()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        pass
    workers = {
        "thalex_ws": lambda: thalex(connection, figures),
        "binance_rest": lambda: binance(connection, figures, websocket_api=False),
        "binance_ws_api": lambda: binance(connection, figures, websocket_api=True),
    }

    async def timed() -> tuple[float, float]:
        task = asyncio.ensure_future(workers[path]())
        while not figures.measuring and not task.done():
            await asyncio.sleep(0.001)
        started, started_times = time.process_time(), os.times()
        await task
        return time.process_time() - started, os.times().system - started_times.system

    cpu_s, system_s = asyncio.run(timed())
    figures.system_s = system_s
    sys.stdout.write(json.dumps(figures.as_json(cpu_s, SECONDS)) + "\n")


if __name__ == "__main__":
    main()
