"""The latency model: constants, seeded distributions, and replay of a recorded histogram."""

from __future__ import annotations

import json
import random

import pytest

from hftkit.backtest.config import LatencyLeg, LatencySettings
from hftkit.backtest.latency import (
    ConstantDelay,
    HistogramDelay,
    Lane,
    LatencyConfigError,
    LatencyModel,
    delay_source,
)
from hftkit.metrics import LatencyHistogram, MetricsRegistry
from hftkit.metrics.json_snapshot import snapshot_to_dict


def test_a_seeded_distribution_repeats_and_another_seed_differs():
    leg = LatencyLeg(distribution="lognormal", mean_us=300, sigma=0.5)
    first = [delay_source(leg, seed=1, name="order_entry").draw() for _ in range(1)]
    source_a = delay_source(leg, seed=1, name="order_entry")
    source_b = delay_source(leg, seed=1, name="order_entry")
    source_c = delay_source(leg, seed=2, name="order_entry")
    draws_a = [source_a.draw() for _ in range(2000)]
    assert draws_a == [source_b.draw() for _ in range(2000)]
    assert draws_a != [source_c.draw() for _ in range(2000)]
    assert draws_a[0] == first[0]
    mean = sum(draws_a) / len(draws_a)
    assert 270_000 < mean < 330_000  # the configured mean, in ns
    assert min(draws_a) > 0


def test_legs_draw_from_their_own_streams():
    leg = LatencyLeg(distribution="uniform", low_us=0, high_us=1000)
    entry = delay_source(leg, seed=3, name="order_entry")
    ack = delay_source(leg, seed=3, name="ack")
    assert [entry.draw() for _ in range(5)] != [ack.draw() for _ in range(5)]


def test_a_recorded_histogram_replays_its_own_distribution(tmp_path):
    registry = MetricsRegistry()
    histogram = registry.histogram("order_round_trip_ns", venue="binance_usdm")
    rng = random.Random(0)
    for _ in range(5000):
        histogram.record(rng.choice([100_000, 400_000]))
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(snapshot_to_dict(registry, include_buckets=True)), encoding="utf-8")
    leg = LatencyLeg(
        histogram="metrics.json", metric="order_round_trip_ns", labels={"venue": "binance_usdm"}, scale=0.5
    )
    source = delay_source(leg, seed=1, name="ack", directory=tmp_path)
    draws = [source.draw() for _ in range(4000)]
    low = sum(1 for value in draws if 49_000 < value < 51_000)
    high = sum(1 for value in draws if 199_000 < value < 201_000)
    assert low + high == len(draws)  # every draw lies in a recorded bucket, halved
    assert 0.4 < low / len(draws) < 0.6
    replay = HistogramDelay.from_histogram(histogram, random.Random(1))
    assert all(99_000 < replay.draw() < 403_000 for _ in range(100))  # bucket widths: 512 and 2048 ns


def test_bad_latency_settings_are_refused_with_the_reason(tmp_path):
    with pytest.raises(LatencyConfigError, match="one of"):
        delay_source(LatencyLeg(constant_us=1, distribution="normal"), seed=1, name="ack")
    with pytest.raises(LatencyConfigError, match="std_us"):
        delay_source(LatencyLeg(distribution="normal", mean_us=10), seed=1, name="ack")
    with pytest.raises(LatencyConfigError, match=r"metrics\.json"):
        delay_source(LatencyLeg(histogram="metrics.json"), seed=1, name="ack", directory=tmp_path)
    empty = LatencyHistogram()
    with pytest.raises(LatencyConfigError):
        HistogramDelay.from_histogram(empty, random.Random(1))


def test_a_lane_never_delivers_before_the_previous_delivery():
    draws = iter([500, 10, 10, 800])

    class Scripted:
        def draw(self) -> int:
            return next(draws)

    lane = Lane("market_data", Scripted(), samples=[])
    assert [lane.deliver_at(now) for now in (0, 100, 200, 300)] == [500, 500, 500, 1100]
    assert lane.samples == [500, 10, 10, 800]


def test_the_model_from_settings():
    model = LatencyModel.from_settings(
        LatencySettings(market_data=LatencyLeg(constant_us=200), ack=LatencyLeg(constant_us=1.5)), seed=7
    )
    assert isinstance(model.market_data, ConstantDelay) and model.market_data.draw() == 200_000
    assert model.order_entry.draw() == 0 and model.ack.draw() == 1500
