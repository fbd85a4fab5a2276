"""Headless Chromium over the DevTools protocol, and a PNG decoder, for the report tests.

Kept here (imported by path from the test) rather than in ``src``: only tests drive a browser.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


# PNG ----------------------------------------------------------------------------------------------
def decode_png(data: bytes) -> npt.NDArray[np.uint8]:
    """8-bit RGB/RGBA/grey PNG -> (height, width, channels) array (what Chromium screenshots are)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    position = 8
    idat = bytearray()
    width = height = depth = colour = interlace = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunk = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (depth {depth}, colour type {colour}, interlace {interlace})")
    raw = np.frombuffer(zlib.decompress(bytes(idat)), dtype=np.uint8)
    stride = width * channels
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:  # none
            current = line.copy()
        elif kind == 1:  # sub: a running sum per channel along the row (mod 256 by uint8 overflow)
            current = np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint8).reshape(stride)
        elif kind == 2:  # up
            current = line + previous
        elif kind in (3, 4):  # average, Paeth: sequential along the row (rare in screenshots)
            current = _sequential_row(kind, line, previous, channels)
        else:
            raise ValueError(f"bad PNG filter type {kind}")
        out[y] = current
        previous = current
    return out.reshape(height, width, channels)


def _sequential_row(
    kind: int, line: npt.NDArray[np.uint8], previous: npt.NDArray[np.uint8], channels: int
) -> npt.NDArray[np.uint8]:
    current = [int(value) for value in line]
    above = [int(value) for value in previous]
    for x in range(len(current)):
        a = current[x - channels] if x >= channels else 0
        b = above[x]
        if kind == 3:
            current[x] = (current[x] + ((a + b) >> 1)) & 0xFF
            continue
        c = above[x - channels] if x >= channels else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        current[x] = (current[x] + predictor) & 0xFF
    return np.array(current, dtype=np.uint8)


# DevTools -----------------------------------------------------------------------------------------
@dataclass
class PageReport:
    """What a page did while it loaded: errors, requests that left the machine, a screenshot."""

    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    evaluations: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


class _Session:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            payload = json.loads(message.data)
            future = self._waiting.pop(payload.get("id", -1), None)
            if future is not None:
                future.set_result(payload)
            elif "method" in payload:
                self.events.put_nowait(payload)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self._socket.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _describe_exception(params: dict[str, Any]) -> str:
    details = params.get("exceptionDetails", {})
    description = details.get("exception", {}).get("description") or details.get("text", "")
    return f"{description} at {details.get('url', '')}:{details.get('lineNumber', '')}"


async def load_page(
    chromium: str,
    url: str,
    *,
    ready: str,
    evaluations: dict[str, str],
    width: int = 1280,
    height: int = 3200,
    timeout_s: float = 60.0,
) -> PageReport:
    """Open ``url`` in headless Chromium, wait until the JS expression ``ready`` is true, collect.

    Exceptions (``Runtime.exceptionThrown``), console errors, log errors and every request to a
    scheme other than file/data/blob are recorded; then each of ``evaluations`` is evaluated and
    a PNG screenshot of the viewport is taken.
    """
    report = PageReport()
    with tempfile.TemporaryDirectory(prefix="hftkit-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",  # we run as root in CI
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: a CDN link would fail to load
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: its helper processes end with it
        )
        try:
            address = await asyncio.wait_for(asyncio.to_thread(_browser_address, process), timeout_s)
            async with aiohttp.ClientSession() as http, http.ws_connect(address, max_msg_size=0) as socket:
                session = _Session(socket)
                try:
                    await asyncio.wait_for(
                        _drive(session, url, ready, evaluations, width, height, report), timeout_s
                    )
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(session.call("Browser.close"), 5)
                finally:
                    await session.close()
        finally:
            await asyncio.to_thread(_stop, process)
    return report


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the browser we started and its helpers (its own process group, by the group's id)."""
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers still alive after the browser exited


def _browser_address(process: subprocess.Popen[bytes]) -> str:
    """Read stderr until Chromium announces its DevTools address; then keep draining it."""
    assert process.stderr is not None
    stream = process.stderr
    for line in stream:
        found = _LISTENING.search(line)
        if found:
            threading.Thread(target=_drain_stream, args=(stream,), daemon=True).start()
            return found.group(1).decode()
    raise RuntimeError(f"chromium exited ({process.poll()}) before announcing its DevTools address")


def _drain_stream(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        for _ in stream:
            pass
        stream.close()


async def _drive(
    session: _Session,
    url: str,
    ready: str,
    evaluations: dict[str, str],
    width: int,
    height: int,
    report: PageReport,
) -> None:
    target = (await session.call("Target.createTarget", url="about:blank"))["targetId"]
    page = (await session.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        await session.call(f"{domain}.enable", page)
    await session.call(
        "Emulation.setDeviceMetricsOverride",
        page,
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    await session.call("Page.navigate", page, url=url)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        _drain(session, report)
        result = await session.call(
            "Runtime.evaluate", page, expression=f"Boolean({ready})", returnByValue=True
        )
        if result.get("result", {}).get("value") is True:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the page never became ready ({ready})")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # let late errors (resize handlers, fonts) arrive
    for name, expression in evaluations.items():
        result = await session.call("Runtime.evaluate", page, expression=expression, returnByValue=True)
        report.evaluations[name] = result.get("result", {}).get("value")
    shot = await session.call("Page.captureScreenshot", page, format="png", optimizeForSpeed=True)
    report.screenshot = base64.b64decode(shot["data"])
    _drain(session, report)


def _drain(session: _Session, report: PageReport) -> None:
    while not session.events.empty():
        event = session.events.get_nowait()
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            report.exceptions.append(_describe_exception(params))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [
                str(argument.get("value", argument.get("description", "")))
                for argument in params.get("args", [])
            ]
            report.console_errors.append(" ".join(texts))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            report.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            request_url = params.get("request", {}).get("url", "")
            if not request_url.startswith(("file:", "data:", "blob:", "about:")):
                report.external_requests.append(request_url)


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
