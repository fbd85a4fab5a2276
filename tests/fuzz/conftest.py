"""The fuzz suite's inputs: real frames, hostile mutations of them, and the shared targets.

Seeds are recorded venue data (``../shared/data``, see its PROVENANCE.md: hftbacktest's live
Binance streams, gocryptotrader's Binance REST and user-data recordings, the Thalex spec's
example objects) plus the Binance user-data frames of tests/venues. Mutations replace values
with what a hostile or broken venue could send (huge exponents, NaN, Infinity, Unicode digits,
negatives, zero, 400 digits, wrong types, deep nesting), truncate, flip bytes or send noise.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from hftkit.datasets import hftbacktest_file, iter_recording, shared_data_dir

FRAME_BUDGET_S = 0.010
"""The spec: no frame may hold the event loop longer than 10 ms."""
RETRIES = 3
"""A slow call is timed again this many times; the fastest counts (the machine is shared, a GC
pause or a neighbour's burst is not the decoder's cost). An input slow every time fails."""

HOSTILE_TEXT = [
    "1e30000000",
    "61837.1e40062000000",
    "1e-30000000",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "\u0663",  # Arabic-Indic three
    "\uff11\uff12",  # full-width 12
    "1\u00b2",  # superscript two: isdigit() but not int()
    "-1",
    "-0.00000001",
    "0",
    "0.00000000",
    "9" * 400,
    "1." + "0" * 400,
    "0." + "0" * 400 + "1",
    "9223372036854775808",
    "",
    " 1",
    "1_000",
    "0x10",
    "1e-7",
    "61837.635",
]
HOSTILE_RAW = [
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1e308",
    b"-1",
    b"0",
    b"-0.0",
    b"9" * 400,
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.30000000000000004",
    b"4.9e-324",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b'"x"',
    b"[1,2,3]",
]
NESTING = [2, 64, 900, 1100, 5_000, 100_000]


def _load_targets() -> ModuleType:
    """tests/fuzz/atheris_targets.py, which pytest does not collect and importlib mode cannot import."""
    path = Path(__file__).with_name("atheris_targets.py")
    spec = importlib.util.spec_from_file_location("hftkit_fuzz_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TARGETS = _load_targets()

# -- seeds ---------------------------------------------------------------------------------


def _recorded_stream_frames(count: int = 3000, per_kind: int = 12) -> dict[str, list[bytes]]:
    frames: dict[str, list[bytes]] = {"depth": [], "trade": [], "bookTicker": []}
    recording = iter_recording(hftbacktest_file("spot", "btcusdt_20240808.gz"))
    for _, body in itertools.islice(recording, count):
        head = body[:48]
        kind = "depth" if b"@depth" in head else "trade" if b'@trade"' in head else "bookTicker"
        known = b"@bookTicker" in head or kind != "bookTicker"
        if known and len(frames[kind]) < per_kind and len(body) < 4096:
            frames[kind].append(body)
    return frames


def _rest_bodies() -> list[bytes]:
    routes = json.loads((shared_data_dir() / "gocryptotrader" / "http.json").read_bytes())["routes"]
    bodies = []
    for path, method in (
        ("/api/v3/order", "GET"),
        ("/api/v3/order", "DELETE"),
        ("/api/v3/openOrders", "GET"),
        ("/api/v3/depth", "GET"),
        ("/api/v3/account", "GET"),
    ):
        bodies.append(orjson.dumps(routes[path][method][0]["data"]))
    info = routes["/api/v3/exchangeInfo"]["GET"][0]["data"]
    bodies.append(orjson.dumps({**info, "symbols": info["symbols"][:2]}))  # all fields, few symbols
    bodies.append(b'{"code":-1121,"msg":"Invalid symbol."}')
    bodies.append(b'{"serverTime":1499827319559}')
    bodies.append(b'{"listenKey":"pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"}')
    return bodies


_TRADE_REPORT = (
    b'{"subscriptionId":0,"event":{"e":"executionReport","E":1795254532128,"s":"BTCUSDT","c":"myOrder1",'
    b'"S":"BUY","o":"LIMIT","f":"GTC","q":"0.00100000","p":"50000.00000000","C":"","x":"TRADE",'
    b'"X":"PARTIALLY_FILLED","r":"NONE","i":28,"l":"0.00040000","z":"0.00040000","L":"50000.00000000",'
    b'"n":"0.00000040","N":"BTC","T":1795254532127,"t":56,"w":true,"m":true,"O":1795254500000}}'
)
_FUTURES_ORDER = (
    b'{"e":"ORDER_TRADE_UPDATE","E":1795254644400,"T":1795254644398,"o":{"s":"BTCUSDT","c":"x-1",'
    b'"S":"BUY","o":"LIMIT","f":"GTC","q":"0.001","p":"50000","ap":"50000","x":"TRADE","X":"FILLED",'
    b'"i":151007482392,"l":"0.001","z":"0.001","L":"50000","N":"USDT","n":"0.01000000",'
    b'"T":1795254644398,"t":1234567,"m":true,"R":false,"ps":"BOTH","rp":"0"}}'
)
_FUTURES_ACCOUNT = (
    b'{"e":"ACCOUNT_UPDATE","E":1795254644401,"T":1795254644398,"a":{"m":"ORDER",'
    b'"B":[{"a":"USDT","wb":"999.99000000","cw":"999.99000000","bc":"0"}],'
    b'"P":[{"s":"BTCUSDT","pa":"-0.001","ep":"50000.0","cr":"0","up":"0.00","ps":"BOTH"}]}}'
)


def _user_frames() -> list[bytes]:
    recorded = (shared_data_dir() / "gocryptotrader" / "wsHandleData.json").read_bytes().splitlines()
    return [line for line in recorded if line.strip()] + [_TRADE_REPORT, _FUTURES_ORDER, _FUTURES_ACCOUNT]


def _thalex_examples() -> dict[str, Any]:
    examples = json.loads((shared_data_dir() / "thalex_spec" / "thalex_spec_examples.json").read_bytes())
    found: dict[str, Any] = {}
    for source in examples["examples"].values():
        for entry in source:
            found.setdefault(entry["path"].rsplit("/", 1)[-1], entry["example"])
    return found


def _thalex_payloads() -> list[bytes]:
    example = _thalex_examples()
    return [
        orjson.dumps(example["Book"]),
        orjson.dumps([example["OrderStatus"]]),
        orjson.dumps([example["Trade"]]),
    ]


def _thalex_frames() -> list[bytes]:
    example = _thalex_examples()
    pushes = {
        "book.BTC-PERPETUAL.none.all.100ms": example["Book"],
        "ticker.BTC-PERPETUAL.100ms": example["Ticker"],
        "session.orders": [example["OrderStatus"]],
        "account.orders": [example["OrderStatus"]],
        "account.trade_history": [example["Trade"]],
        "account.portfolio": [example["PortfolioEntry"]],
        "system": example["SystemEvent"],
    }
    frames = [orjson.dumps({"channel_name": name, "notification": body}) for name, body in pushes.items()]
    frames.append(orjson.dumps({"id": 1, "result": example["OrderStatus"]}))
    frames.append(orjson.dumps({"id": 2, "error": {"code": 3, "message": "order not found"}}))
    return frames


@pytest.fixture(scope="session")
def seeds() -> dict[str, list[bytes]]:
    stream = _recorded_stream_frames()
    return {
        "binance_stream": [*stream["depth"], *stream["trade"], *stream["bookTicker"]],
        "binance_depth": stream["depth"],
        "binance_user_data": _user_frames(),
        "binance_rest_body": _rest_bodies(),
        "binance_rest_headers": [b"12", b"1200", b"0", b"60", b""],
        "thalex_rpc": _thalex_frames(),
        "thalex_notification": _thalex_payloads(),
    }


# -- mutations -----------------------------------------------------------------------------

Path_ = tuple[Any, ...]


def _paths(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    """Every position in a JSON value (containers too: they can be replaced or nested)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _replaced(value: Any, path: Path_, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(value[head], rest, new)
    return copy


def _hostile_value(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    kind = draw(st.sampled_from(["text", "raw", "nest", "text", "raw"]))
    if kind == "text":
        return draw(st.sampled_from(HOSTILE_TEXT))
    if kind == "raw":
        return orjson.Fragment(draw(st.sampled_from(HOSTILE_RAW)))
    depth = draw(st.sampled_from(NESTING))
    return orjson.Fragment(b"[" * depth + b"]" * depth)


@st.composite
def mutated(draw: Callable[[st.SearchStrategy[Any]], Any], frames: list[bytes]) -> bytes:
    """A real frame with hostile values, or cut short, or with flipped bytes, or plain noise."""
    frame = draw(st.sampled_from(frames))
    how = draw(
        st.sampled_from(["values", "values", "values", "values", "truncate", "flip", "noise", "as-is"])
    )
    if how == "as-is":
        return frame
    if how == "noise":
        return draw(st.binary(max_size=256))
    if how == "truncate":
        return frame[: draw(st.integers(0, max(len(frame) - 1, 0)))]
    if how == "flip":
        data = bytearray(frame)
        for _ in range(draw(st.integers(1, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    try:
        tree = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return frame
    positions = list(_paths(tree))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.sampled_from(positions))
        try:
            tree = _replaced(tree, position, _hostile_value(draw))
        except (KeyError, IndexError, TypeError):
            break  # the position lived under a value already replaced
    return orjson.dumps(tree)


# -- timing --------------------------------------------------------------------------------

SLOWEST: dict[str, tuple[float, bytes]] = {}
"""Slowest call per target (after retries), for the end-of-run summary."""


def run_within_budget(name: str, data: bytes) -> None:
    """Run target ``name`` on ``data``: only classified errors, and within the frame budget."""
    target = TARGETS.TARGETS[name]
    elapsed = _timed(target, data)
    for _ in range(RETRIES):
        if elapsed <= FRAME_BUDGET_S:
            break
        elapsed = min(elapsed, _timed(target, data))
    if elapsed > SLOWEST.get(name, (0.0, b""))[0]:
        SLOWEST[name] = (elapsed, data[:80])
    assert elapsed <= FRAME_BUDGET_S, f"{name} took {elapsed * 1e3:.1f} ms on {data[:120]!r}"


def _timed(target: Callable[[bytes], None], data: bytes) -> float:
    started = time.perf_counter()
    TARGETS.run_classified(target, data)
    return time.perf_counter() - started


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SLOWEST:
        terminalreporter.write_sep("-", "fuzz: slowest frame per target (10 ms budget)")
        for name, (elapsed, head) in sorted(SLOWEST.items()):
            terminalreporter.write_line(f"{name:24s} {elapsed * 1e3:7.3f} ms  {head[:60]!r}")


@pytest.fixture(scope="session")
def fuzz() -> Callable[[str, bytes], None]:
    """``fuzz(target_name, data)``: run one input under the suite's rules."""
    return run_within_budget


@pytest.fixture(scope="session")
def mutations(seeds: dict[str, list[bytes]]) -> Callable[[str], st.SearchStrategy[bytes]]:
    """``mutations(target_name)``: the strategy of hostile inputs built from that target's seeds."""
    return lambda name: mutated(seeds[name])
