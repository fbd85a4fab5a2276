"""The control endpoint: status, fault profiles changed at run time (counters move), replay speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hftkit.datasets import shared_data_dir
from hftkit.sim.config import BINANCE_SPOT, THALEX, config_from_mapping
from hftkit.sim.control import ControlServer
from hftkit.sim.runner import Simulator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    shared_data_dir()  # the recordings are required: a missing shared/data fails with where it looked
    config = config_from_mapping({"venues": [BINANCE_SPOT, THALEX], "symbols": ["BTC"], "speed": 5})
    async with Simulator(config) as running:
        await running.wait_seeded()
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def test_status_lists_venues_symbols_update_ids_connections_and_replay_positions(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, "GET", sim.urls["control"] + "/status")
    assert status == 200
    assert set(body["venues"]) == {BINANCE_SPOT, THALEX}
    btc = body["venues"][BINANCE_SPOT]["symbols"]["BTCUSDT"]
    assert btc["update_id"] >= 1 and btc["best_bid"] < btc["best_ask"]
    assert body["venues"][THALEX]["connections"]["sessions"] == 0
    assert "open" in body["venues"][BINANCE_SPOT]["connections"]
    replay = body["market"]["binance-spot:BTCUSDT"]
    assert replay["loops"] == 0 and replay["position"] > 0 and replay["speed"] == 5.0
    assert body["market"]["binance-usdm:BTCUSDT"]["seeds"] == 1  # drives Thalex with USD-M BTCUSDT
    assert body["urls"] == sim.urls


async def test_a_fault_profile_changed_at_run_time_takes_effect_and_its_counters_move(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    control = sim.urls["control"]
    depth = sim.urls["binance_rest"] + "/api/v3/depth?symbol=BTCUSDT&limit=5"
    async with http.get(depth) as response:
        assert response.status == 200
    status, body = await call(
        http, "PUT", f"{control}/faults/{BINANCE_SPOT}", json={"http_error_probability": 1.0}
    )
    assert status == 200 and body["settings"]["http_error_probability"] == 1.0
    statuses = []
    for _ in range(3):
        async with http.get(depth) as response:
            statuses.append(response.status)
    assert all(code >= 500 for code in statuses)
    status, faults = await call(http, "GET", control + "/faults")
    assert faults[BINANCE_SPOT]["injected"]["http_error"] == 3
    assert faults[THALEX]["injected"]["http_error"] == 0
    assert faults[BINANCE_SPOT]["profile"] == "none+custom"
    status, body = await call(http, "POST", f"{control}/faults/{BINANCE_SPOT}", json="none")
    assert status == 200 and body["profile"] == "none"
    async with http.get(depth) as response:
        assert response.status == 200
    status, changes = await call(http, "GET", control + "/changes")
    assert [change["kind"] for change in changes] == ["faults", "faults"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"depth_drop_probability": 2}, "probability"),
        ({"no_such_setting": 1}, "unknown fault settings"),
        ("chaotic", "unknown fault profile"),
        ({"request_latency_s": "slow"}, "must be a number"),
        ([1, 2], "expected a profile name"),
    ],
)
async def test_bad_fault_settings_are_refused_with_400_and_change_nothing(
    sim: Simulator, http: aiohttp.ClientSession, body: Any, message: str
) -> None:
    before = sim.faults[THALEX].profile
    status, answer = await call(http, "PUT", f"{sim.urls['control']}/faults/{THALEX}", json=body)
    assert status == 400 and message in answer["error"]
    assert sim.faults[THALEX].profile is before


async def test_not_json_and_unknown_venues_are_refused(sim: Simulator, http: aiohttp.ClientSession) -> None:
    control = sim.urls["control"]
    status, answer = await call(http, "PUT", f"{control}/faults/{THALEX}", data=b"{nope")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = await call(http, "PUT", f"{control}/faults/kraken", json="none")
    assert status == 404 and "kraken" in answer["error"]
    status, answer = await call(http, "POST", f"{control}/replay/kraken/speed", json={"speed": 2})
    assert status == 404


async def test_replay_speed_changes_for_every_driver_of_a_venue(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    control = sim.urls["control"]
    status, body = await call(http, "POST", f"{control}/replay/{THALEX}/speed", json={"speed": 25})
    assert status == 200 and body["drivers"] == ["binance-usdm:BTCUSDT"]
    assert sim.drivers["binance-usdm:BTCUSDT"].snapshot()["speed"] == 25.0
    assert sim.drivers["binance-spot:BTCUSDT"].snapshot()["speed"] == 5.0
    status, body = await call(http, "POST", f"{control}/replay/{BINANCE_SPOT}/speed", json={"speed": "max"})
    assert status == 200 and body["speed"] == "max"
    for bad in ({"speed": -1}, {"speed": "quick"}, {}):
        status, answer = await call(http, "POST", f"{control}/replay/{BINANCE_SPOT}/speed", json=bad)
        assert status == 400 and answer["error"], bad
    assert sim.drivers["binance-spot:BTCUSDT"].snapshot()["speed"] == "max"


async def test_the_control_endpoint_refuses_to_bind_beyond_loopback(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await ControlServer(sim).start("0.0.0.0", 0)


async def test_dropping_a_venue_s_connections_closes_them_and_clients_see_it(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(sim.urls["thalex_ws"]) as client:
        await asyncio.sleep(0.05)
        assert sim.thalex_server.snapshot()["sessions"] == 1
        status, body = await call(http, "POST", sim.urls["control"] + "/connections/thalex/drop")
        assert status == 200 and body == {"venue": "thalex", "dropped": 1}
        message = await asyncio.wait_for(client.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    for _ in range(100):
        if sim.thalex_server.snapshot()["sessions"] == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.thalex_server.snapshot()["sessions"] == 0
    status, body = await call(http, "POST", sim.urls["control"] + "/connections/nowhere/drop")
    assert status == 404
    assert sim.change_log[-1]["kind"] == "drop_connections"
