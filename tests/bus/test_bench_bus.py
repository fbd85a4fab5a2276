"""The bus benchmark suite runs end to end in smoke mode and reports every figure."""

from __future__ import annotations

import pytest

from hftkit.bench import bus as bus_suite
from hftkit.bench.harness import BenchOptions


@pytest.mark.slow
@pytest.mark.service
def test_bus_suite_smoke_run_reports_every_figure(redis_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HFTKIT_BENCH_REDIS_URL", redis_server.url)
    results = bus_suite.run(BenchOptions(quick=True))
    by_name = {result.name: result for result in results}
    assert set(by_name) == {
        "in-process bus: cost added per delta (publish -> handler)",
        "Redis Streams: publish -> consume latency p50 (consumer in another process)",
        "Redis Streams: publish -> consume latency p99",
        "Redis Streams: publish -> consume p50, consumer on the publisher's loop, one at a time",
        "Redis Streams: deltas/s, one stream, pipelined XADD",
    }
    for result in results:
        assert result.value > 0 and result.target and result.met is not None, result
    rate = by_name["Redis Streams: deltas/s, one stream, pipelined XADD"]
    assert rate.unit == "msg/s" and rate.detail["dropped"] == 0
    assert by_name[
        "Redis Streams: publish -> consume latency p50 (consumer in another process)"
    ].baseline_value
