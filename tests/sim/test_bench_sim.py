"""Smoke test of ``hftkit bench sim``: the suite runs and reports its rows (figures not checked)."""

from __future__ import annotations

from hftkit.bench import sim
from hftkit.bench.harness import BenchOptions


def test_bench_sim_quick_run_reports_throughput_and_latency_rows() -> None:
    results = sim.run(BenchOptions(quick=True))
    names = [result.name for result in results]
    assert any("orders/s" in name for name in names)
    assert any("p50" in name for name in names) and any("p99" in name for name in names)
    push = next(result for result in results if result.name.startswith("simulator stream push: messages/s"))
    assert push.value > 0 and push.detail["frames"] > 0
    cpu = next(result for result in results if result.name.startswith("simulator stream push: simulator CPU"))
    assert cpu.unit == "us/msg" and cpu.value > 0
    assert any(result.name.startswith("simulator idle CPU") for result in results)
    throughput = results[0]
    assert throughput.unit == "orders/s" and throughput.value > 0
    assert throughput.baseline_value is not None and throughput.baseline_value > 0
    assert throughput.ratio is not None
    assert throughput.detail["resting_orders_at_end"] <= len(sim.ACCOUNTS) * sim.MAX_OPEN_PER_ACCOUNT


def test_bench_workload_is_deterministic_and_keeps_the_engine_sound() -> None:
    operations = sim.make_workload(500)
    assert operations == sim.make_workload(500)
    engine = sim.make_engine()
    totals = engine.accounts.totals()
    assert sim.run_engine(engine, operations) >= 500
    assert engine.audit() == []
    assert engine.accounts.totals() == totals
