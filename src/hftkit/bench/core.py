"""``hftkit bench core``: codecs, latency histogram, rate limiter, breaker + retry overhead."""

from __future__ import annotations

from hftkit.bench import core_codec, core_metrics, core_resilience
from hftkit.bench.harness import BenchOptions, BenchResult

PEERS = ("aiolimiter", "prometheus_client")


def run(options: BenchOptions) -> list[BenchResult]:
    return [*core_codec.run(options), *core_metrics.run(options), *core_resilience.run(options)]
