"""``hftkit sim`` as a subprocess: the first stdout line has every URL, SIGTERM exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hftkit.app.sim_cli import build_config
from hftkit.datasets import shared_data_dir
from hftkit.sim.config import BINANCE_SPOT, BINANCE_USDM, THALEX, SimConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sim.yaml"


def launch(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hftkit.app.sim_cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def _recordings() -> None:
    shared_data_dir()  # the recordings are required: a missing shared/data fails with where it looked


@pytest.mark.timeout(60)
def test_first_line_has_urls_and_credentials_and_sigterm_exits_cleanly() -> None:
    process = launch("--venues", "binance-spot,thalex", "--symbols", "BTC", "--speed", "5", "--seed", "3")
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        urls, credentials = first["urls"], first["credentials"]
        assert {"binance_rest", "binance_spot_stream", "binance_spot_ws_api", "thalex_ws", "control"} <= set(
            urls
        )
        assert credentials["binance_api_key"] and credentials["binance_secret_key"]
        assert Path(credentials["thalex_private_key_file"]).read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
        status = get_json(urls["control"] + "/status")
        assert isinstance(status, dict) and set(status["venues"]) == {BINANCE_SPOT, THALEX}
        depth = get_json(urls["binance_rest"] + "/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert isinstance(depth, dict) and depth["lastUpdateId"] >= 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert not Path(credentials["thalex_private_key_file"]).exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.timeout(60)
def test_seconds_option_stops_the_simulator_by_itself() -> None:
    process = launch("--venues", "thalex", "--synthetic", "--seconds", "0.5", "--speed", "max")
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "thalex_ws" in json.loads(stdout.splitlines()[0])["urls"]


def test_a_configuration_error_exits_2_naming_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("venues:\n  thalex:\n    message_rate: -5\n")
    process = launch("--config", str(path), "--seconds", "0")
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stdout == ""
    assert f"{path}: venues.thalex.message_rate" in stderr


def test_command_line_options_override_the_file_field_by_field() -> None:
    config = build_config(
        EXAMPLE,
        port=0,
        control_port=0,
        venues=["binance-usdm,thalex"],
        symbols=["ETH"],
        source="synthetic",
        speed="3x",
        seed=9,
        faults="flaky",
    )
    assert config.enabled_venues == (BINANCE_USDM, THALEX)
    assert config.venues[BINANCE_USDM].symbols == ("ETHUSDT",)
    assert config.venues[THALEX].symbols == ("ETH-PERPETUAL",)
    assert config.venues[THALEX].message_rate == 50  # kept from the file
    assert config.venues[BINANCE_USDM].fees.taker_ppm == 500  # kept from the file
    assert all(config.venues[name].source == "synthetic" for name in config.enabled_venues)
    assert config.venues[BINANCE_USDM].fault_profile_name == "flaky"  # replaces the file's setting
    assert (config.speed, config.seed) == (3.0, 9)
    with pytest.raises(SimConfigError, match=r"venues\.mars"):
        build_config(None, venues=["mars"])
