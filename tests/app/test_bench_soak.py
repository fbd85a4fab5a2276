"""Smoke test of ``hftkit bench soak --quick``: simulator and node run as processes, RSS is sampled."""

from __future__ import annotations

import pytest

from hftkit.bench import soak
from hftkit.bench.harness import BenchOptions


def test_slope_of_samples_is_in_mib_per_minute():
    assert soak.slope_per_minute([(0.0, 100.0), (30.0, 100.5), (60.0, 101.0)]) == pytest.approx(1.0)
    assert soak.slope_per_minute([(0.0, 5.0)]) == 0.0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_soak_quick_run_samples_the_node_and_the_simulator_separately():
    results = soak.run(BenchOptions(quick=True))
    by_name = {result.name.split(" (")[0]: result for result in results}
    warm = by_name["soak: node RSS after warm-up"]
    assert warm.unit == "MiB" and warm.value > 10  # a Python process with the node loaded
    node, sim = warm.detail["node"], warm.detail["sim"]
    assert node["samples"] >= 10 and sim["samples"] >= 10  # one a second over ~20 s
    assert sim["warm_mib"] > 10 and sim["warm_mib"] != node["warm_mib"]  # two processes
    growth = by_name["soak: node RSS growth after warm-up"]
    assert growth.target is not None and growth.met is not None
    summary = warm.detail["summary"]
    assert summary["orders_sent"] > 0 and summary["passed"] and summary["exit_code"] == 0, summary


def test_node_config_aims_both_venues_at_the_simulator_and_keeps_keys_out_of_the_file():
    connection = {
        "urls": {
            "binance_rest": "http://127.0.0.1:1",
            "binance_usdm_ws_api": "ws://127.0.0.1:1/ws-fapi/v1",
            "thalex_ws": "ws://127.0.0.1:2/ws/api/v2",
        },
        "credentials": {
            "binance_api_key": "KEY-123",
            "binance_secret_key": "SECRET-456",
            "thalex_key_id": "kid",
            "thalex_private_key_file": "/tmp/key.pem",
        },
    }
    config = soak.node_config(connection)
    venues = config["venues"]
    assert venues["binance_usdm"]["stream_url"] == "ws://127.0.0.1:1"
    assert venues["thalex"]["url"] == "ws://127.0.0.1:2/ws/api/v2"
    assert {venue["environment"] for venue in venues.values()} == {"testnet"}
    assert "KEY-123" not in repr(config) and "SECRET-456" not in repr(config)
    assert "simulator" not in config and config["strategies"]
