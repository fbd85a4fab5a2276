"""Smoke test of ``hftkit bench node``: the node and the minimal client trade the same simulator
(its own process) over each order path, stamped the same way, every stage measured."""

from __future__ import annotations

import pytest

from hftkit.bench import node
from hftkit.bench.node_worker import IocOnEveryEvent, IocParams


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_order_path_is_measured_for_the_node_and_the_minimal_client_in_one_run():
    figures = node.measure(1.5, 0.5, 1)
    assert set(figures) == set(node.PATHS)
    for path, measured in figures.items():
        client, hftkit = measured["client"], measured["node"]
        assert client["orders"] > 20 and client["errors"] == 0, (path, client)
        assert hftkit["orders"] > 20 and hftkit["stamped"] > 0.9 * hftkit["orders"], (path, hftkit)
        for stage in ("frame_to_decision", "decision_to_send", "send_to_written"):
            assert 0 < hftkit[f"{stage}_p50_us"] < hftkit["p99_us"] * 10, (path, stage, hftkit)
        assert 0 < hftkit["p50_us"] <= hftkit["p99_us"] <= hftkit["p999_us"]
        assert 0 < client["start_to_first_order_s"] < 60 and 0 < hftkit["start_to_first_order_s"] < 60
    rows = node._rows(figures)
    assert len(rows) == 3 * len(node.PATHS)
    assert all(row.baseline_value and row.ratio for row in rows)


def test_the_node_config_names_the_order_path_and_keeps_keys_out_of_the_file():
    connection = {
        "urls": {
            "binance_rest": "http://127.0.0.1:1",
            "binance_spot_ws_api": "ws://127.0.0.1:1/ws-api/v3",
            "thalex_ws": "ws://127.0.0.1:2/ws/api/v2",
        },
        "credentials": {
            "binance_api_key": "KEY-123",
            "binance_secret_key": "SECRET-456",
            "thalex_key_id": "kid",
            "thalex_private_key_file": "/tmp/key.pem",
        },
    }
    ws_api = node_worker_config("binance_ws_api", connection)
    assert ws_api["venues"]["binance"]["order_transport"] == "websocket_api"
    assert node_worker_config("binance_rest", connection)["venues"]["binance"]["order_transport"] == "rest"
    assert "SECRET-456" not in str(ws_api)
    assert node_worker_config("thalex_ws", connection)["venues"]["thalex"]["url"].endswith("/ws/api/v2")


def node_worker_config(path: str, connection: dict) -> dict:
    from hftkit.bench.node_worker import node_config

    return node_config(path, connection)


def test_the_strategy_answers_each_event_with_one_ioc_while_none_is_in_flight():
    strategy = IocOnEveryEvent(IocParams(venue="v", symbol="S"))
    assert strategy.subscriptions()[0].trades
    assert strategy._order(None) is None
