"""The latency model between strategy and venue: three legs, each a seeded source of delays.

* ``market_data``: venue -> strategy for public data (the book and trades the strategy sees are
  this much older than the venue's);
* ``order_entry``: strategy -> venue for every request (place, cancel, amend, queries);
* ``ack``: venue -> strategy for answers and private events (acks, fills, cancels).

Each leg is a constant, a distribution drawn from its own ``random.Random`` (seeded from the
run's seed and the leg's name, so adding a leg never changes another's draws), or a replay of a
``LatencyHistogram`` a live or simulator run recorded: a bucket drawn by its count, then a
value uniform within the bucket. Deliveries on one leg never overtake each other (a socket is
FIFO): ``Lane`` keeps each delivery at or after the previous one.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from hftkit.backtest.config import LatencyLeg, LatencySettings
from hftkit.core.errors import HftkitError
from hftkit.metrics import LatencyHistogram

__all__ = [
    "ConstantDelay",
    "DelaySource",
    "DistributionDelay",
    "HistogramDelay",
    "Lane",
    "LatencyConfigError",
    "LatencyModel",
    "delay_source",
]

_US = 1000


class LatencyConfigError(HftkitError, ValueError):
    """A latency leg that cannot be built (missing parameters, unreadable histogram)."""


class DelaySource(Protocol):
    def draw(self) -> int:
        """The next delay, in integer nanoseconds (>= 0)."""
        ...


class ConstantDelay:
    __slots__ = ("value_ns",)

    def __init__(self, value_ns: int) -> None:
        if value_ns < 0:
            raise LatencyConfigError("a latency is never negative")
        self.value_ns = int(value_ns)

    def draw(self) -> int:
        return self.value_ns


class DistributionDelay:
    """``normal`` (mean, std; clipped at 0), ``lognormal`` (mean, sigma of the log), ``exponential``
    (mean), ``uniform`` (low, high); every parameter in nanoseconds."""

    __slots__ = ("_draw", "kind")

    def __init__(self, kind: str, rng: random.Random, **parameters: float) -> None:
        self.kind = kind
        try:
            if kind == "normal":
                mean, std = parameters["mean_ns"], parameters["std_ns"]
                self._draw = lambda: max(0.0, rng.gauss(mean, std))
            elif kind == "lognormal":
                mean, sigma = parameters["mean_ns"], parameters["sigma"]
                if mean <= 0:
                    raise LatencyConfigError("a lognormal latency needs mean_us > 0")
                mu = math.log(mean) - sigma * sigma / 2  # so that the mean is ``mean``
                self._draw = lambda: rng.lognormvariate(mu, sigma)
            elif kind == "exponential":
                mean = parameters["mean_ns"]
                if mean <= 0:
                    raise LatencyConfigError("an exponential latency needs mean_us > 0")
                self._draw = lambda: rng.expovariate(1.0 / mean)
            elif kind == "uniform":
                low, high = parameters["low_ns"], parameters["high_ns"]
                if not 0 <= low <= high:
                    raise LatencyConfigError("a uniform latency needs 0 <= low_us <= high_us")
                self._draw = lambda: rng.uniform(low, high)
            else:
                raise LatencyConfigError(f"unknown latency distribution {kind!r}")
        except KeyError as missing:
            raise LatencyConfigError(f"a {kind} latency needs {missing.args[0][:-3]}_us") from None

    def draw(self) -> int:
        return int(self._draw())


class HistogramDelay:
    """Replays a recorded histogram: (lower_ns, upper_ns, count) buckets, times ``scale``."""

    __slots__ = ("_bounds", "_cumulative", "_rng", "_scale", "_total")

    def __init__(
        self, buckets: Sequence[tuple[int, int, int]], rng: random.Random, scale: float = 1.0
    ) -> None:
        kept = [(int(lower), int(upper), int(count)) for lower, upper, count in buckets if count > 0]
        if not kept:
            raise LatencyConfigError("a latency histogram to replay needs at least one recorded value")
        cumulative = []
        total = 0
        for _, _, count in kept:
            total += count
            cumulative.append(total)
        self._bounds = [(lower, upper) for lower, upper, _ in kept]
        self._cumulative = cumulative
        self._total = total
        self._rng = rng
        self._scale = scale

    @classmethod
    def from_histogram(
        cls, histogram: LatencyHistogram, rng: random.Random, scale: float = 1.0
    ) -> HistogramDelay:
        return cls(histogram.snapshot().nonzero_buckets(), rng, scale)

    def draw(self) -> int:
        rng = self._rng
        index = bisect.bisect_right(self._cumulative, rng.randrange(self._total))
        lower, upper = self._bounds[index]
        value = lower if lower == upper else rng.randint(lower, upper)
        return int(value * self._scale)


def _histogram_buckets(leg: LatencyLeg, directory: Path) -> list[tuple[int, int, int]]:
    """The buckets of ``leg.metric`` (with ``leg.labels``) in a metrics JSON snapshot file."""
    assert leg.histogram is not None
    path = Path(leg.histogram)
    if not path.is_absolute():
        path = directory / path
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LatencyConfigError(f"latency histogram {path}: {error}") from None
    metrics = document.get("metrics", document) if isinstance(document, dict) else document
    for entry in metrics if isinstance(metrics, list) else []:
        if entry.get("type") != "histogram" or (leg.metric and entry.get("name") != leg.metric):
            continue
        labels = entry.get("labels", {})
        if any(labels.get(key) != value for key, value in leg.labels.items()):
            continue
        buckets = entry.get("buckets")
        if not buckets:
            raise LatencyConfigError(
                f"{path}: histogram {entry.get('name')} has no buckets (export with buckets)"
            )
        return [tuple(bucket) for bucket in buckets]
    raise LatencyConfigError(f"{path}: no histogram {leg.metric or ''} with labels {leg.labels}")


def _rng(seed: int, name: str) -> random.Random:
    return random.Random((seed << 32) ^ zlib.crc32(name.encode()))


def delay_source(leg: LatencyLeg, *, seed: int, name: str, directory: Path = Path()) -> DelaySource:
    """The delay source a config leg describes (zero when it names none)."""
    chosen = [leg.constant_us is not None, leg.distribution is not None, leg.histogram is not None]
    if sum(chosen) > 1:
        raise LatencyConfigError(f"latency.{name}: give one of constant_us, distribution, histogram")
    if leg.histogram is not None:
        return HistogramDelay(_histogram_buckets(leg, directory), _rng(seed, name), leg.scale)
    if leg.distribution is not None:
        parameters = {
            f"{key}_ns": value * _US
            for key, value in (
                ("mean", leg.mean_us),
                ("std", leg.std_us),
                ("low", leg.low_us),
                ("high", leg.high_us),
            )
            if value is not None
        }
        if leg.sigma is not None:
            parameters["sigma"] = leg.sigma
        return DistributionDelay(leg.distribution, _rng(seed, name), **parameters)
    return ConstantDelay(round((leg.constant_us or 0.0) * _US))


class Lane:
    """One FIFO leg: ``deliver_at(now)`` = now + a draw, never before the previous delivery."""

    __slots__ = ("_draw", "_last", "constant", "name", "samples", "source")

    def __init__(self, name: str, source: DelaySource, samples: list[int] | None = None) -> None:
        self.name = name
        self.source = source
        self._draw = source.draw  # bound once: a draw per delivery
        self.samples = samples  # every draw, when the run records latency
        self.constant = source.value_ns if isinstance(source, ConstantDelay) else None
        self._last = 0

    def immediate(self) -> bool:
        """True (a zero delay, recorded) when this leg has no latency: deliver now, in line."""
        if self.constant != 0:
            return False
        if self.samples is not None:
            self.samples.append(0)
        return True

    def deliver_at(self, now_ns: int) -> int:
        constant = self.constant
        delay = constant if constant is not None else self._draw()
        if self.samples is not None:
            self.samples.append(delay)
        due = now_ns + delay
        if due < self._last:
            due = self._last
        self._last = due
        return due


class LatencyModel:
    """The three legs of one run (see the module docstring)."""

    __slots__ = ("ack", "market_data", "order_entry")

    def __init__(self, market_data: DelaySource, order_entry: DelaySource, ack: DelaySource) -> None:
        self.market_data = market_data
        self.order_entry = order_entry
        self.ack = ack

    @classmethod
    def zero(cls) -> LatencyModel:
        return cls(ConstantDelay(0), ConstantDelay(0), ConstantDelay(0))

    @classmethod
    def constant(cls, market_data_ns: int = 0, order_entry_ns: int = 0, ack_ns: int = 0) -> LatencyModel:
        return cls(ConstantDelay(market_data_ns), ConstantDelay(order_entry_ns), ConstantDelay(ack_ns))

    @classmethod
    def from_settings(cls, settings: LatencySettings, *, seed: int, directory: Path = Path()) -> LatencyModel:
        return cls(
            delay_source(settings.market_data, seed=seed, name="market_data", directory=directory),
            delay_source(settings.order_entry, seed=seed, name="order_entry", directory=directory),
            delay_source(settings.ack, seed=seed, name="ack", directory=directory),
        )
