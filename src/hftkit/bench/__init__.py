"""Benchmark suites, run through ``hftkit bench <suite>``.

Each suite is a module ``hftkit.bench.<suite>`` with ``run(options) -> list[BenchResult]``.
Baselines measured in the same run sit beside each figure; peers (cryptofeed, Nautilus,
ccxt, aiolimiter ...) are used when importable (``make bench-peers``), never required.
"""
