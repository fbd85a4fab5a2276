"""The book benchmark suite runs end to end in smoke mode and reports every figure."""

from __future__ import annotations

from hftkit.bench import book as book_suite
from hftkit.bench.harness import BenchOptions


def test_book_suite_smoke_run_reports_every_figure():
    results = book_suite.run(BenchOptions(quick=True))
    by_name = {result.name: result for result in results}
    expected = {
        "book apply + top read, spot btcusdt": "level updates/s",
        "decode + sync + apply + top, spot btcusdt": "msg/s",
        "best bid read, spot btcusdt": "ns",
        "best ask read, spot btcusdt": "ns",
        "depth 10 -> 5,000 levels/side slowdown, spot btcusdt": "x",
    }
    for name, unit in expected.items():
        assert name in by_name, sorted(by_name)
        result = by_name[name]
        assert result.unit == unit and result.value > 0
        assert result.target and result.met is not None
    for name in expected:
        if by_name[name].baseline is not None:
            assert by_name[name].baseline_value > 0 and by_name[name].ratio > 0
    depth = by_name["depth 10 -> 5,000 levels/side slowdown, spot btcusdt"].detail
    assert depth["deep_ns_per_level"] > 0 and depth["shallow_ns_per_level"] > 0
    assert book_suite.PEERS == ("sortedcontainers", "order-book", "nautilus_trader")


def test_recording_loader_keeps_only_diffs_after_the_snapshot():
    recording = book_suite.load_recording("spot", "btcusdt_20240808.gz", limit=50)
    first = recording.raw_diffs[0]
    snapshot_id = recording.snapshot.last_update_id
    assert first.first_update_id <= snapshot_id + 1 <= first.last_update_id
    assert len(recording.diffs) == len(recording.frames) == 50
    assert recording.level_updates == sum(len(b) + len(a) for b, a in recording.diffs)
