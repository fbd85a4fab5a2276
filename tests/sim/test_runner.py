"""The in-process Simulator: venues, servers, drivers, credentials; clean start and stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest

from hftkit.datasets import shared_data_dir
from hftkit.sim.config import (
    BINANCE_SPOT,
    BINANCE_USDM,
    THALEX,
    SimConfigError,
    config_from_mapping,
    load_config,
)
from hftkit.sim.runner import Simulator
from hftkit.venues.thalex.auth import ThalexCredentials, make_login_token

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sim.yaml"


@pytest.fixture(autouse=True)
def _recordings() -> None:
    shared_data_dir()  # required: fails with where it looked


def sim_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("sim:") and not task.done()]


async def test_all_venues_start_on_ephemeral_ports_answer_and_stop_without_leftover_tasks() -> None:
    config = config_from_mapping({"speed": 10})
    async with Simulator(config) as sim:
        await sim.wait_seeded()
        urls = sim.urls
        ports = {urls["binance_rest"].rsplit(":", 1)[1], urls["control"].rsplit(":", 1)[1]}
        ports.add(urls["thalex_ws"].split(":")[2].split("/")[0])
        assert len(ports) == 3 and "0" not in ports
        assert {"binance_spot_stream", "binance_usdm_ws", "binance_spot_ws_api", "thalex_ws"} <= set(urls)
        assert set(sim.venues) == {BINANCE_SPOT, BINANCE_USDM, THALEX}
        assert set(sim.drivers) == {
            "binance-spot:BTCUSDT",
            "binance-spot:ETHUSDT",
            "binance-usdm:BTCUSDT",
            "binance-usdm:ETHUSDT",
        }
        async with aiohttp.ClientSession() as session:
            for path in ("/api/v3/depth?symbol=BTCUSDT&limit=5", "/fapi/v1/depth?symbol=ETHUSDT&limit=5"):
                async with session.get(urls["binance_rest"] + path) as response:
                    assert response.status == 200
                    depth = await response.json()
                    assert depth["bids"] and depth["asks"]
                    assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])
            assert sim.credentials is not None
            key_file = Path(str(sim.credentials.thalex_private_key_file))
            token = make_login_token(ThalexCredentials(sim.credentials.thalex_key_id, key_file.read_bytes()))
            async with session.ws_connect(urls["thalex_ws"]) as ws:
                await ws.send_str(
                    orjson.dumps({"method": "public/login", "params": {"token": token}, "id": 1}).decode()
                )
                login = orjson.loads((await ws.receive()).data)
                assert login == {"id": 1, "result": {"account_number": "trader"}}
                await ws.send_str(
                    '{"method":"public/book","params":{"instrument_name":"BTC-PERPETUAL"},"id":2}'
                )
                book = orjson.loads((await ws.receive()).data)["result"]
                assert book["bids"] and book["asks"]
        assert sim_tasks()
    assert sim.running_tasks == 0
    assert not sim_tasks()
    assert not key_file.exists()  # the generated key lived in a temporary folder


async def test_thalex_perpetual_moves_with_the_usdm_market_it_is_folded_from() -> None:
    config = config_from_mapping({"venues": [BINANCE_USDM, THALEX], "symbols": ["BTC"], "speed": 20})
    async with Simulator(config) as sim:
        await sim.wait_seeded()
        seen = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            usdm = sim.venues[BINANCE_USDM].engine
            thalex = sim.venues[THALEX].engine
            usdm_bid, usdm_ask = usdm.best_bid("BTCUSDT"), usdm.best_ask("BTCUSDT")
            thalex_bid, thalex_ask = thalex.best_bid("BTC-PERPETUAL"), thalex.best_ask("BTC-PERPETUAL")
            assert usdm_bid and usdm_ask and thalex_bid and thalex_ask
            # 0.1-USD ticks against 1-USD buckets: the touch agrees within a couple of dollars
            assert abs(usdm_bid[0] / 10 - thalex_bid[0]) <= 3
            assert abs(usdm_ask[0] / 10 - thalex_ask[0]) <= 3
            seen += 1
        assert seen == 20
        assert sim.drivers["binance-usdm:BTCUSDT"].snapshot()["trades"] > 0


def test_synthetic_venues_start_from_the_same_books_for_the_same_seed() -> None:
    def books(seed: int) -> list[object]:
        config = config_from_mapping({"source": "synthetic", "seed": seed, "venues": [BINANCE_SPOT, THALEX]})
        sim = Simulator(config)
        return [venue.depth(symbol) for venue in sim.venues.values() for symbol in venue.instruments]

    assert books(5) == books(5)
    assert books(5) != books(6)


async def test_synthetic_market_at_speed_max_runs_for_a_client_and_counts_its_operations() -> None:
    config = config_from_mapping({"source": "synthetic", "seed": 1, "venues": [BINANCE_SPOT], "speed": "max"})
    async with Simulator(config, max_synthetic_operations=2_000) as sim:
        driver = sim.drivers["binance-spot:synthetic"]
        await asyncio.sleep(0.3)
        # nobody attached: at speed max the driver waits instead of spinning a core
        assert driver.snapshot()["waiting_for_client"] is True
        assert int(str(driver.snapshot()["position"])) < 2_000
        async with aiohttp.ClientSession() as session:  # keep-alive: attached while open
            async with session.get(f"{sim.urls['binance_spot_rest']}/ping") as response:
                assert response.status == 200
            for _ in range(300):
                if not driver.snapshot()["running"] and driver.snapshot()["position"] >= 2_000:
                    break
                await asyncio.sleep(0.01)
        status = sim.status()
        assert status["market"]["binance-spot:synthetic"]["position"] >= 2_000
        symbols = status["venues"][BINANCE_SPOT]["symbols"]
        assert sum(symbol["update_id"] for symbol in symbols.values()) > 1_500


async def test_a_bound_port_fails_start_and_leaves_nothing_running() -> None:
    blocker = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        config = config_from_mapping({"venues": [THALEX], "ports": {"thalex": port}, "speed": "max"})
        sim = Simulator(config)
        with pytest.raises(OSError):
            await sim.start()
        assert sim.running_tasks == 0 and not sim_tasks()
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_speed_and_faults_change_at_run_time_and_are_logged() -> None:
    config = config_from_mapping({"venues": [BINANCE_SPOT], "symbols": ["BTCUSDT"], "speed": 1})
    async with Simulator(config) as sim:
        assert sim.set_speed(BINANCE_SPOT, 50.0) == ["binance-spot:BTCUSDT"]
        assert sim.drivers["binance-spot:BTCUSDT"].snapshot()["speed"] == 50.0
        profile = sim.set_faults(BINANCE_SPOT, "hostile")
        assert sim.faults[BINANCE_SPOT].profile == profile
        sim.set_faults(BINANCE_SPOT, {"http_error_probability": 0.5})
        assert sim.faults[BINANCE_SPOT].profile.http_error_probability == 0.5
        assert sim.faults[BINANCE_SPOT].profile.disconnect_every_s == profile.disconnect_every_s
        assert [entry["kind"] for entry in sim.change_log] == ["speed", "faults", "faults"]
        with pytest.raises(ValueError, match="probability"):
            sim.set_faults(BINANCE_SPOT, {"http_error_probability": 3})
        with pytest.raises(KeyError):
            sim.set_speed("nowhere", 2.0)


# configuration ---------------------------------------------------------------------------------


def test_the_example_configuration_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.enabled_venues == (BINANCE_SPOT, BINANCE_USDM, THALEX)
    assert config.venues[BINANCE_USDM].faults.request_latency_s == 0.001
    assert config.venues[THALEX].fees.maker_ppm == -100
    assert config.seed == 42


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("speed: fast-ish\n", "speed"),
        ("venues:\n  kraken: {}\n", "venues.kraken"),
        ("venues:\n  thalex:\n    faults: chaotic\n", "venues.thalex.faults"),
        ("venues:\n  thalex:\n    faults: {depth_drop_probability: 2}\n", "venues.thalex.faults"),
        ("venues:\n  binance-spot:\n    fees: {maker_bp: '0.001'}\n", "venues.binance-spot.fees"),
        ("venues:\n  binance-spot:\n    symbols: [DOGEUSDT]\n", "venues.binance-spot.symbols"),
        (
            "venues:\n  binance-usdm:\n    rate_limits: {request_weight: -1}\n",
            "venues.binance-usdm.rate_limits",
        ),
        ("ports: {binance: 70000}\n", "ports.binance"),
        ("accounts:\n  - name: a\n    balances: {USDT: lots}\n", "accounts[0].balances.USDT"),
        ("credentials: {account: nobody}\n", "credentials.account"),
        ("synthetic:\n  BTCUSDT: {levels: 0}\n", "synthetic.BTCUSDT.levels"),
        ("colour: blue\n", "colour"),
    ],
)
def test_configuration_errors_name_the_file_and_the_field(tmp_path: Path, document: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(document)
    with pytest.raises(SimConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: {field}")


def test_synthetic_symbols_outside_the_catalogue_get_generic_grids() -> None:
    config = config_from_mapping(
        {
            "source": "synthetic",
            "venues": {BINANCE_SPOT: {"symbols": ["SOLUSDT"]}, THALEX: {"symbols": ["SOL-PERPETUAL"]}},
            "synthetic": {"SOLUSDT": {"start_price": "150"}, "SOL-PERPETUAL": {"start_price": "150"}},
        }
    )
    sim = Simulator(config)
    assert sim.venues[BINANCE_SPOT].engine.best_bid("SOLUSDT") is not None
    assert sim.venues[THALEX].instruments["SOL-PERPETUAL"].quote == "USD"
