"""``hftkit sim --tls``: https/wss with a CA made for the run; clients trusting the CA connect."""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path

import aiohttp
import pytest

from hftkit.app.sim_cli import build_config, serve
from hftkit.datasets import shared_data_dir
from hftkit.sim import tls
from hftkit.sim.config import config_from_mapping
from hftkit.sim.runner import Simulator
from hftkit.testing.binance_simulator import SYMBOL, BinanceSimHarness


async def test_binance_server_over_tls_with_the_generated_ca(tmp_path: Path):
    files = tls.generate(tmp_path, ("127.0.0.1",))
    assert files.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    assert files.key_file.stat().st_mode & 0o077 == 0  # the key is the owner's only
    harness = BinanceSimHarness()
    harness.urls = await harness.server.start(ssl_context=tls.server_context(files))
    try:
        assert harness.urls["rest"].startswith("https://") and harness.urls["spot_ws"].startswith("wss://")
        trusting = aiohttp.TCPConnector(ssl=tls.client_context(files))
        async with aiohttp.ClientSession(connector=trusting) as session:
            async with session.get(
                f"{harness.urls['rest']}/api/v3/depth?symbol={SYMBOL}&limit=5"
            ) as response:
                assert response.status == 200 and (await response.json())["bids"]
            async with session.ws_connect(f"{harness.urls['ws']}/ws") as socket:
                await socket.send_str('{"method":"LIST_SUBSCRIPTIONS","id":1}')
                assert (await socket.receive_json(timeout=3)) == {"result": [], "id": 1}
        async with aiohttp.ClientSession() as untrusting:  # the system store does not know the run's CA
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await untrusting.get(f"{harness.urls['rest']}/api/v3/ping")
    finally:
        await harness.server.stop()


async def test_simulator_with_tls_serves_every_venue_over_tls_and_removes_the_files():
    shared_data_dir()
    config = config_from_mapping({"speed": 10, "source": "synthetic"})
    simulator = Simulator(config, tls=True)
    async with simulator:
        urls = simulator.urls
        assert urls["binance_rest"].startswith("https://") and urls["thalex_ws"].startswith("wss://")
        assert urls["binance_usdm_stream"].startswith("wss://") and urls["control"].startswith("http://")
        files = simulator.tls_files
        assert files is not None and files.ca_file.exists()
        context = ssl.create_default_context(cafile=str(files.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            async with session.get(urls["binance_rest"] + "/fapi/v1/ping") as response:
                assert response.status == 200
            async with session.ws_connect(urls["thalex_ws"]) as socket:
                assert not socket.closed
    assert not files.ca_file.exists()


async def test_serve_prints_the_ca_file_in_the_first_line():
    shared_data_dir()
    config = build_config(venues=["binance-spot"], source="synthetic")
    out = io.StringIO()
    assert await serve(config, 0.2, out, tls=True) == 0
    line = json.loads(out.getvalue().splitlines()[0])
    assert line["ca_file"].endswith("ca.pem") and line["urls"]["binance_rest"].startswith("https://")
