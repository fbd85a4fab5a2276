"""The shared benchmark harness: timing loops, medians, result rows, table and JSON output.

Figures are medians over repeated runs, and each carries the baseline measured in the same
run so a noisy machine shows up as noise in both, not as a regression.
"""

from __future__ import annotations

import gc
import importlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchOptions:
    """How hard to measure. ``quick`` is for smoke runs in tests: fewer and shorter repeats."""

    repeat: int = 7
    min_time_s: float = 0.2
    quick: bool = False

    def scaled(self) -> BenchOptions:
        if self.quick:
            return BenchOptions(repeat=3, min_time_s=0.01, quick=True)
        return self


@dataclass
class BenchResult:
    """One figure. ``ratio`` is baseline_value / value for times (higher = we are faster),
    value / baseline_value for rates; ``target`` is the issue's bound in words."""

    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


LOWER_IS_BETTER_UNITS = frozenset({"ns", "us", "ms", "s", "ns/op", "us/op", "ns/msg", "us/msg"})


def compare(
    name: str,
    value: float,
    unit: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target: str | None = None,
    met: bool | None = None,
    **detail: Any,
) -> BenchResult:
    """Build a result and fill in its ratio against the baseline (>1 means hftkit is better)."""
    ratio = None
    if baseline_value is not None and value:
        if unit in LOWER_IS_BETTER_UNITS or unit.startswith(("ns", "us")):
            ratio = baseline_value / value
        else:
            ratio = value / baseline_value if baseline_value else None
    return BenchResult(name, value, unit, baseline, baseline_value, ratio, target, met, detail)


def time_per_call(function: Callable[[], Any], options: BenchOptions) -> float:
    """Median nanoseconds per call of ``function`` over ``options.repeat`` timed batches."""
    options = options.scaled()
    number = _calibrate(function, options.min_time_s)
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(options.repeat):
            samples.append(_timed_loop(function, number) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def time_per_item(run_batch: Callable[[], int], options: BenchOptions) -> float:
    """Median nanoseconds per item of a batch function that returns how many items it did."""
    options = options.scaled()
    samples = []
    run_batch()  # warm caches and code paths
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(options.repeat):
            start = time.perf_counter_ns()
            items = run_batch()
            elapsed = time.perf_counter_ns() - start
            samples.append(elapsed / max(items, 1))
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


def _timed_loop(function: Callable[[], Any], number: int) -> int:
    iterations = range(number)
    start = time.perf_counter_ns()
    for _ in iterations:
        function()
    return time.perf_counter_ns() - start


def _calibrate(function: Callable[[], Any], min_time_s: float) -> int:
    number = 1
    while True:
        elapsed = _timed_loop(function, number)
        if elapsed >= min_time_s * 1e9 / 4 or number >= 10_000_000:
            return max(1, int(number * (min_time_s * 1e9) / max(elapsed, 1)))
        number *= 4


Workload = Callable[[int], int]
"""Runs ``passes`` rounds of some work and returns how many items (messages, calls) it did."""


def interleaved(workloads: Sequence[Workload], options: BenchOptions) -> list[float]:
    """Median ns per item of each workload, all of them timed in turn within every repeat.

    Interleaving puts a contender and its baselines under the same machine load, so a burst of
    noise moves all of them together instead of skewing one ratio.
    """
    options = options.scaled()
    target_ns = options.min_time_s * 1e9 / 4
    passes = []
    for workload in workloads:  # calibrate (and warm up) each workload
        rounds = 1
        while True:
            start = time.perf_counter_ns()
            workload(rounds)
            elapsed = time.perf_counter_ns() - start
            if elapsed >= target_ns / 8 or rounds >= 1 << 24:
                passes.append(max(1, int(rounds * target_ns / max(elapsed, 1))))
                break
            rounds *= 4
    samples: list[list[float]] = [[] for _ in workloads]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(options.repeat):
            for index, workload in enumerate(workloads):
                start = time.perf_counter_ns()
                items = workload(passes[index])
                samples[index].append((time.perf_counter_ns() - start) / max(items, 1))
    finally:
        if gc_was_enabled:
            gc.enable()
    return [statistics.median(values) for values in samples]


def over_frames(decode: Callable[[bytes], Any], frames: Sequence[bytes]) -> Workload:
    def workload(passes: int) -> int:
        for _ in range(passes):
            for frame in frames:
                decode(frame)
        return passes * len(frames)

    return workload


def repeated(function: Callable[[], Any]) -> Workload:
    def workload(passes: int) -> int:
        for _ in range(passes):
            function()
        return passes

    return workload


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def optional_import(name: str) -> Any | None:
    """Import a peer project if it is installed (``make bench-peers``), else None."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python, hftkit, its hot-path dependencies and any peers measured."""
    from importlib import metadata

    from hftkit.bench import lock
    from hftkit.core.native import NATIVE

    names = ["hftkit", "msgspec", "orjson", "numpy", "uvloop", "picows", "aiohttp", *extra]
    found = {"python": sys.version.split()[0], "machine": f"{platform.machine()} {platform.system()}"}
    # which hot-path loops ran: the C accelerator or their pure-Python twins
    found["hftkit loops"] = "native (C)" if NATIVE is not None else "pure Python"
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    # the set these figures were taken on: the checked-in lock, or what differs from it
    found["lock"] = lock.describe()
    return found


def format_value(value: float, unit: str) -> str:
    if value >= 100:
        return f"{value:,.0f} {unit}"
    if value >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}"
