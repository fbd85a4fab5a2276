"""The codec benchmark runs end to end on the real recording (a smoke run: no speed assertions)."""

from __future__ import annotations

import math

import pytest

from hftkit.bench import core_codec
from hftkit.bench.harness import BenchOptions, BenchResult

EXPECTED_ROWS = {
    "codec.decode.trade.typed",
    "codec.decode.trade.typed_vs_orjson",
    "codec.decode.depth.typed",
    "codec.decode.depth.typed_vs_orjson",
    "codec.encode.order.orjson",
    "codec.encode.order.members_splice",
    "codec.encode.order.struct_encode_into",
    "codec.fragment.cache_hit",
    "codec.fragment.subscribe_100_streams",
}


@pytest.fixture(scope="module")
def results() -> list[BenchResult]:
    return core_codec.run(BenchOptions(quick=True))


def test_quick_run_reports_every_row_with_positive_figures(results):
    by_name = {result.name: result for result in results}
    assert set(by_name) == EXPECTED_ROWS
    assert len(results) == len(EXPECTED_ROWS)
    for result in results:
        assert result.value > 0 and math.isfinite(result.value), result
        assert result.baseline and result.baseline_value and result.baseline_value > 0, result
        assert result.ratio == result.baseline_value / result.value


def test_decode_rows_carry_targets_and_a_verdict_computed_from_the_ratio(results):
    by_name = {result.name: result for result in results}
    trade = by_name["codec.decode.trade.typed"]
    depth = by_name["codec.decode.depth.typed"]
    assert trade.baseline == depth.baseline == "json.loads"
    assert trade.target == ">= 5x json.loads" and depth.target == ">= 2x json.loads"
    assert trade.met is (trade.ratio >= 5) and depth.met is (depth.ratio >= 2)
    assert trade.detail["messages"] > 100 and depth.detail["messages"] > 50
    assert by_name["codec.decode.trade.typed_vs_orjson"].met is None
