"""The simulator's market: replay of real Binance recordings and a seeded synthetic order flow.

Two sources drive the background book of the simulated venues:

* **Replay** of the recorded combined streams in ``shared/data/hftbacktest``. The recording's
  reader (``hftkit.venues.binance.recording.RecordingDecoder``) turns each line into a typed
  message with exact integer ticks and lots (bookTickers are skipped unless asked for: the
  engine derives its own). ``BookSequencer`` applies Binance's ``SequenceRules`` with a replay
  policy (buffer diffs until the inline REST snapshot, drop the stale ones, count a gap and go
  on) and says what to do: seed the book, apply a diff, replay a trade.
  ``MarketSink`` values carry that into a venue: ``VenueSink`` one to one, ``BucketSink``
  through a ``BucketAggregator`` that folds a fine-tick book (Binance USD-M, tick 0.1) into
  a coarse-tick one (Thalex, tick 1) exactly.
* **Synthetic**: ``SyntheticMarket`` draws a random-walk reference price and Poisson limit
  adds, cancels and market trades around it from one seeded ``random.Random``: the same seed
  gives the same operations, whatever the wall clock does.

The cores are sans-I/O. ``ReplayDriver`` and ``SyntheticDriver`` are the thin async shells:
they pace operations against the first timestamp of a pass (no accumulated drift) at a speed
factor that can change at run time, and loop a recording when it ends (the engine's update
ids keep increasing; each pass re-seeds the background from the file's snapshot in one batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Protocol, TypeAlias

import msgspec

from hftkit.book.sync import Continuity, SequenceRules
from hftkit.core.types import Instrument, Side
from hftkit.sim.engine.errors import SimulatorConfigurationError, SimulatorInputError
from hftkit.sim.engine.venue import SimVenue
from hftkit.venues.binance.recording import (
    Levels,
    RecordedDiff,
    RecordedMessage,
    RecordedSnapshot,
    RecordedTrade,
    RecordingDecoder,
    read_recording,
    recorded_rules,
)

logger = logging.getLogger(__name__)

LevelsInput = Iterable[tuple[int, int]]
AS_FAST_AS_POSSIBLE = math.inf
_YIELD_EVERY = 64  # operations between event-loop yields when running as fast as possible


# book sequencing (Binance rules, sans-I/O) --------------------------------------------------


class SeedBook(msgspec.Struct, frozen=True):
    bids: Levels
    asks: Levels


class ApplyDiff(msgspec.Struct, frozen=True):
    bids: Levels
    asks: Levels


class ReplayTrade(msgspec.Struct, frozen=True):
    price: int
    quantity: int
    aggressor: Side


MarketAction = SeedBook | ApplyDiff | ReplayTrade


class BookSequencer:
    """Binance's local-book procedure for one pass over a recording, as actions.

    The rules are the venue's ``SequenceRules`` (``hftkit.book.sync``; spot or futures told by
    the first diff's ``pu``), read with a replay policy: diffs before the inline snapshot are
    buffered; the snapshot seeds the book; diffs older than it are dropped as stale; the first
    later diff must bridge the snapshot and each one after it must follow the last (the rules'
    continuity). A gap cannot be repaired from a recording: it is counted and the diff applied
    anyway. Trades before the snapshot are dropped (there is no book to trade against yet).
    """

    def __init__(self) -> None:
        self.reset()
        self.gaps = 0
        self.dropped_stale = 0
        self.dropped_trades = 0

    def reset(self) -> None:
        """Start a new pass: wait for the snapshot again."""
        self._buffer: list[RecordedDiff] = []
        self._rules: SequenceRules | None = None  # told by the pass's first diff
        self.snapshot_id: int | None = None
        self.last_update_id: int | None = None  # ``u`` of the last applied diff (or the snapshot)

    @property
    def seeded(self) -> bool:
        return self.snapshot_id is not None

    def feed(self, message: RecordedMessage) -> list[MarketAction]:
        if isinstance(message, RecordedDiff):
            if self.snapshot_id is None:
                self._buffer.append(message)
                return []
            action = self._apply(message)
            return [] if action is None else [action]
        if isinstance(message, RecordedTrade):
            if self.snapshot_id is None:
                self.dropped_trades += 1
                return []
            return [ReplayTrade(message.price, message.quantity, message.aggressor)]
        if isinstance(message, RecordedSnapshot):
            if self.snapshot_id is not None:
                return []  # a later snapshot in the same pass: the diffs already keep the book
            self.snapshot_id = message.last_update_id
            actions: list[MarketAction] = [SeedBook(message.bids, message.asks)]
            buffered, self._buffer = self._buffer, []
            for diff in buffered:
                action = self._apply(diff)
                if action is not None:
                    actions.append(action)
            return actions
        return []  # tickers carry nothing the engine does not derive itself

    def _apply(self, diff: RecordedDiff) -> ApplyDiff | None:
        rules = self._rules
        if rules is None:
            rules = self._rules = recorded_rules(diff.previous_update_id)
        last = self.last_update_id
        if last is None:
            snapshot = self.snapshot_id
            assert snapshot is not None
            if diff.last_update_id < snapshot + rules.stale_offset:
                self.dropped_stale += 1
                return None
            bridges = diff.first_update_id <= snapshot + rules.bridge_offset <= diff.last_update_id or (
                # a snapshot taken exactly between two events: the next one links to it by "pu"
                rules.continuity is Continuity.PREVIOUS_ID and diff.previous_update_id == snapshot
            )
            if not bridges:
                self._gap(diff, snapshot)
        else:
            if diff.last_update_id <= last:
                self.dropped_stale += 1
                return None
            continuity = rules.continuity
            if continuity is Continuity.NEXT_FIRST_ID:
                follows = diff.first_update_id == last + 1
            else:
                follows = continuity is Continuity.NONE or diff.previous_update_id == last
            if not follows:
                self._gap(diff, last)
        self.last_update_id = diff.last_update_id
        return ApplyDiff(diff.bids, diff.asks)

    def _gap(self, diff: RecordedDiff, expected_after: int) -> None:
        self.gaps += 1
        logger.warning(
            "recording gap: diff %d..%d does not follow update %d",
            diff.first_update_id,
            diff.last_update_id,
            expected_after,
        )


# sinks: where replayed actions land -----------------------------------------------------------


class MarketSink(Protocol):
    venue: SimVenue
    symbol: str

    def seed(self, bids: Levels, asks: Levels) -> None: ...
    def diff(self, bids: Levels, asks: Levels) -> None: ...
    def trade(self, price: int, quantity: int, aggressor: Side) -> None: ...


class VenueSink:
    """Actions straight into one symbol of a venue (the recording's own grid)."""

    def __init__(self, venue: SimVenue, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol

    def seed(self, bids: Levels, asks: Levels) -> None:
        self.venue.replace_background(self.symbol, bids, asks)

    def diff(self, bids: Levels, asks: Levels) -> None:
        self.venue.apply_depth(self.symbol, bids, asks)

    def trade(self, price: int, quantity: int, aggressor: Side) -> None:
        self.venue.apply_market_trade(self.symbol, price, quantity, aggressor)


def grid_ratio(coarse: Instrument, fine: Instrument) -> tuple[int, int]:
    """(fine ticks per coarse tick, coarse lots per fine lot); both must be whole numbers."""
    ticks = Fraction(coarse.tick_size) / Fraction(fine.tick_size)
    lots = Fraction(fine.lot_size) / Fraction(coarse.lot_size)
    if ticks.denominator != 1 or ticks < 1:
        raise SimulatorConfigurationError(
            f"{coarse.symbol} tick {coarse.tick_size} is not a whole multiple of "
            f"{fine.symbol} tick {fine.tick_size}"
        )
    if lots.denominator != 1:
        raise SimulatorConfigurationError(
            f"{fine.symbol} lot {fine.lot_size} is finer than {coarse.symbol} lot {coarse.lot_size}"
        )
    return int(ticks), int(lots)


class BucketAggregator:
    """A fine-tick book folded into coarse-tick buckets exactly (sans-I/O).

    Bids go to the bucket at or below (floor), asks to the bucket at or above (ceiling), so
    the coarse book is never crossed when the fine one is not, and a bucket never claims a
    better price than its liquidity had. A mirror of the fine levels keeps every bucket's
    running sum, so a diff touches only the buckets of the levels it changes. Sizes are summed
    in fine lots and scaled by a whole factor, so the coarse total equals the fine total.
    """

    def __init__(self, ticks_per_bucket: int, lots_factor: int = 1) -> None:
        if ticks_per_bucket < 1 or lots_factor < 1:
            raise SimulatorConfigurationError("bucket ratios must be whole numbers >= 1")
        self.ticks_per_bucket = ticks_per_bucket
        self.lots_factor = lots_factor
        self.fine_bids: dict[int, int] = {}
        self.fine_asks: dict[int, int] = {}
        self.bucket_bids: dict[int, int] = {}  # coarse price -> sum of fine lots
        self.bucket_asks: dict[int, int] = {}

    def bid_bucket(self, price: int) -> int:
        return price // self.ticks_per_bucket

    def ask_bucket(self, price: int) -> int:
        return -(-price // self.ticks_per_bucket)

    def bucket_of(self, price: int, aggressor: Side) -> int:
        """Coarse price of a trade: a buyer lifted an ask bucket, a seller hit a bid bucket."""
        return self.ask_bucket(price) if aggressor is Side.BUY else self.bid_bucket(price)

    def apply(self, bids: LevelsInput, asks: LevelsInput) -> tuple[Levels, Levels]:
        """Apply absolute fine sizes (0 deletes); return the changed buckets' new coarse sizes."""
        return (
            self._side(bids, self.fine_bids, self.bucket_bids, self.bid_bucket, reverse=True),
            self._side(asks, self.fine_asks, self.bucket_asks, self.ask_bucket, reverse=False),
        )

    def replace(self, bids: LevelsInput, asks: LevelsInput) -> tuple[Levels, Levels]:
        """Start over from a snapshot; return every bucket of the new book."""
        self.fine_bids.clear()
        self.fine_asks.clear()
        self.bucket_bids.clear()
        self.bucket_asks.clear()
        self.apply(bids, asks)
        return self.levels()

    def levels(self) -> tuple[Levels, Levels]:
        """The whole coarse book, best first."""
        factor = self.lots_factor
        return (
            tuple((price, size * factor) for price, size in sorted(self.bucket_bids.items(), reverse=True)),
            tuple((price, size * factor) for price, size in sorted(self.bucket_asks.items())),
        )

    def _side(
        self,
        levels: Iterable[tuple[int, int]],
        fine: dict[int, int],
        buckets: dict[int, int],
        bucket_of: Callable[[int], int],
        *,
        reverse: bool,
    ) -> Levels:
        touched: set[int] = set()
        for price, size in levels:
            old = fine.get(price, 0)
            if size == old:
                continue
            if size:
                fine[price] = size
            else:
                del fine[price]
            bucket = bucket_of(price)
            total = buckets.get(bucket, 0) + size - old
            if total:
                buckets[bucket] = total
            else:
                buckets.pop(bucket, None)
            touched.add(bucket)
        factor = self.lots_factor
        return tuple((bucket, buckets.get(bucket, 0) * factor) for bucket in sorted(touched, reverse=reverse))


class BucketSink:
    """Actions from a fine-grid recording into a coarse-grid venue symbol (Thalex from USD-M)."""

    def __init__(self, venue: SimVenue, symbol: str, fine: Instrument) -> None:
        self.venue = venue
        self.symbol = symbol
        ticks, lots = grid_ratio(venue.instruments[symbol], fine)
        self.aggregator = BucketAggregator(ticks, lots)

    def seed(self, bids: Levels, asks: Levels) -> None:
        coarse_bids, coarse_asks = self.aggregator.replace(bids, asks)
        self.venue.replace_background(self.symbol, coarse_bids, coarse_asks)

    def diff(self, bids: Levels, asks: Levels) -> None:
        coarse_bids, coarse_asks = self.aggregator.apply(bids, asks)
        if coarse_bids or coarse_asks:
            self.venue.apply_depth(self.symbol, coarse_bids, coarse_asks)

    def trade(self, price: int, quantity: int, aggressor: Side) -> None:
        aggregator = self.aggregator
        self.venue.apply_market_trade(
            self.symbol, aggregator.bucket_of(price, aggressor), quantity * aggregator.lots_factor, aggressor
        )


def perform(action: MarketAction, sinks: Sequence[MarketSink]) -> None:
    """Carry one action into every sink."""
    for sink in sinks:
        if isinstance(action, ApplyDiff):
            sink.diff(action.bids, action.asks)
        elif isinstance(action, ReplayTrade):
            sink.trade(action.price, action.quantity, action.aggressor)
        else:
            sink.seed(action.bids, action.asks)


# pacing ----------------------------------------------------------------------------------------


class Pacer:
    """When each timestamped operation is due, at a speed factor, without accumulated drift.

    Due times are computed from an anchor (a wall instant and a data timestamp), never by
    adding sleeps, so lateness does not build up. Changing the speed re-anchors at the
    current position, so the data neither jumps nor stalls.
    """

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = validate_speed(speed)
        self._anchor_data_ns: int | None = None
        self._anchor_mono_ns = 0
        self._last_data_ns = 0

    def restart(self) -> None:
        """A new pass (the data's timestamps start over)."""
        self._anchor_data_ns = None

    def set_speed(self, speed: float, now_mono_ns: int) -> None:
        speed = validate_speed(speed)
        if self._anchor_data_ns is not None:
            self._anchor_data_ns = self._last_data_ns
            self._anchor_mono_ns = now_mono_ns
        self.speed = speed

    def delay_ns(self, data_ns: int, now_mono_ns: int) -> int:
        """Nanoseconds to wait before the operation stamped ``data_ns`` (0 = due now)."""
        self._last_data_ns = data_ns
        if self._anchor_data_ns is None:
            self._anchor_data_ns = data_ns
            self._anchor_mono_ns = now_mono_ns
            return 0
        if self.speed == AS_FAST_AS_POSSIBLE:
            return 0
        due = self._anchor_mono_ns + int((data_ns - self._anchor_data_ns) / self.speed)
        return max(0, due - now_mono_ns)


def validate_speed(speed: float) -> float:
    if isinstance(speed, bool) or not isinstance(speed, int | float) or speed != speed or speed <= 0:
        raise SimulatorConfigurationError(f"speed must be a number > 0 (or 'max'), got {speed!r}")
    return float(speed)


def speed_text(speed: float) -> str | float:
    return "max" if speed == AS_FAST_AS_POSSIBLE else speed


Audience = Callable[[], bool]
"""Whether anyone is attached to the simulator (``Simulator.attached``)."""
AUDIENCE_POLL_S = 0.25  # how often a driver waiting for a client looks again


async def _wait(
    pacer: Pacer, data_ns: int, counter: int, speed_changed: asyncio.Event, audience: Audience | None = None
) -> None:
    """Sleep until ``data_ns`` is due; a speed change wakes the sleeper to recompute (a driver
    paused at a tiny speed would otherwise sleep for years after being resumed).

    At speed max with nobody attached (``audience`` says so), wait for someone instead: running
    as fast as possible for no one is a busy loop that takes a whole core. Paced replays keep
    their clock whoever is there (their cost is the recorded rate's, a few hundred per second).
    """
    delay = pacer.delay_ns(data_ns, time.monotonic_ns())
    if delay <= 0:
        if counter % _YIELD_EVERY == 0:
            if audience is not None and waiting_for_client(pacer, audience):
                await _until_attached(pacer, speed_changed, audience)
            await asyncio.sleep(0)  # let the servers run between bursts
        return
    while delay > 0:
        speed_changed.clear()
        try:
            await asyncio.wait_for(speed_changed.wait(), delay / 1e9)
        except TimeoutError:
            return
        delay = pacer.delay_ns(data_ns, time.monotonic_ns())


# the decoded pass, kept for the next ones ---------------------------------------------------------

# Levels a pass cache holds before it gives up (16 bytes each: 64 MiB). The recorded USD-M
# BTCUSDT day is 445k levels (7 MiB); a recording past the limit is decoded on every pass.
PASS_CACHE_LEVELS = 4_000_000
_SEED, _DIFF = 0, 1


def _pack(levels: Levels) -> array[int]:
    return array("q", chain.from_iterable(levels))


def _unpack(packed: array[int]) -> Levels:
    values = iter(packed)
    return tuple(zip(values, values, strict=True))


CachedAction: TypeAlias = "tuple[int, array[int], array[int]] | ReplayTrade"  # (_SEED or _DIFF, bids, asks)


class PassCache:
    """The actions of one pass over a recording, kept to play the passes after it.

    A looping replay reads the same files every pass, and decoding them (gzip, JSON, decimal
    text to ticks, the sequencing) was a third of the simulator's CPU per message sent at
    speed max. The first pass records what it performed, with each step's data time and the
    number of messages it read; later passes play that back, and add the first pass's counts
    (decode problems, gaps, stale diffs) so that the status reads as if decoded again. Levels
    are packed flat in ``array('q')`` (16 bytes a level: the day above is 7 MiB, where the
    decoded messages take 33 MiB); past ``limit`` levels the cache is dropped for good.
    """

    __slots__ = ("complete", "counts", "levels", "limit", "steps")

    def __init__(self, limit: int = PASS_CACHE_LEVELS) -> None:
        self.limit = limit
        self.steps: list[tuple[int, int, tuple[CachedAction, ...]]] | None = []  # None: gave up
        self.levels = 0
        self.complete = False
        self.counts: dict[str, int] = {}

    def restart(self) -> None:
        """Forget a partly recorded pass (unless the cache has given up)."""
        if self.steps is not None:
            self.steps = []
            self.levels = 0

    @property
    def usable(self) -> bool:
        return self.complete and self.steps is not None

    def record(self, data_ns: int, messages: int, actions: list[MarketAction]) -> None:
        steps = self.steps
        if steps is None:
            return
        cached: list[CachedAction] = []
        for action in actions:
            if isinstance(action, ReplayTrade):
                cached.append(action)
                continue
            self.levels += len(action.bids) + len(action.asks)
            kind = _SEED if isinstance(action, SeedBook) else _DIFF
            cached.append((kind, _pack(action.bids), _pack(action.asks)))
        if self.levels > self.limit:
            self.steps = None
            logger.info("replay cache: more than %d levels, each pass will decode its files", self.limit)
            return
        steps.append((data_ns, messages, tuple(cached)))

    def play(self) -> Iterator[tuple[int, int, list[MarketAction]]]:
        """``(data_ns, messages read, actions)`` of the recorded pass, in order."""
        assert self.steps is not None
        for data_ns, messages, cached in self.steps:
            actions: list[MarketAction] = []
            for action in cached:
                if isinstance(action, ReplayTrade):
                    actions.append(action)
                else:
                    kind, bids, asks = action
                    actions.append((SeedBook if kind == _SEED else ApplyDiff)(_unpack(bids), _unpack(asks)))
            yield data_ns, messages, actions


def waiting_for_client(pacer: Pacer, audience: Audience | None) -> bool:
    """Whether a driver with this pacer and audience is idle, waiting for a client (status)."""
    return audience is not None and pacer.speed == AS_FAST_AS_POSSIBLE and not audience()


async def _until_attached(pacer: Pacer, speed_changed: asyncio.Event, audience: Audience) -> None:
    """Idle (a look every ``AUDIENCE_POLL_S``) until a client attaches or the speed is no longer max."""
    while pacer.speed == AS_FAST_AS_POSSIBLE and not audience():
        speed_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(speed_changed.wait(), AUDIENCE_POLL_S)


# replay driver (async shell) ----------------------------------------------------------------------


@dataclass
class ReplayStatus:
    """Where a replay is, for the control endpoint."""

    name: str
    files: list[str]
    speed: float
    loops: int = 0  # completed passes
    messages: int = 0  # in the current pass
    total_messages: int = 0
    diffs: int = 0
    trades: int = 0
    seeds: int = 0
    data_time_ns: int = 0
    gaps: int = 0
    errors: int = 0  # operations the engine refused (counted, logged once per kind)
    decode_problems: dict[str, int] = field(default_factory=dict)
    running: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "files": self.files,
            "speed": speed_text(self.speed),
            "loops": self.loops,
            "position": self.messages,
            "total_messages": self.total_messages,
            "diffs": self.diffs,
            "trades": self.trades,
            "seeds": self.seeds,
            "data_time_ns": self.data_time_ns,
            "gaps": self.gaps,
            "errors": self.errors,
            "decode_problems": self.decode_problems,
            "running": self.running,
        }


class ReplayDriver:
    """Replays one recording (one or more files, one instrument) into sinks, looping forever."""

    def __init__(
        self,
        name: str,
        paths: Sequence[str | Path],
        instrument: Instrument,
        sinks: Sequence[MarketSink],
        *,
        speed: float = 1.0,
        loop: bool = True,
        max_passes: int | None = None,
    ) -> None:
        if not paths:
            raise SimulatorConfigurationError(f"replay {name}: no recording files")
        for path in paths:
            if not Path(path).is_file():
                raise SimulatorConfigurationError(f"replay {name}: recording {path} not found")
        self.name = name
        self.paths = [Path(path) for path in paths]
        self.instrument = instrument
        self.sinks = list(sinks)
        self.loop = loop
        self.max_passes = max_passes
        self.pacer = Pacer(speed)
        self.speed_changed = asyncio.Event()
        self.decoder = RecordingDecoder(instrument)
        self.sequencer = BookSequencer()
        self.cache = PassCache()
        self.audience: Audience | None = None  # set by the Simulator: at speed max, run only for someone
        self.status = ReplayStatus(name, [str(path) for path in self.paths], self.pacer.speed)
        self._error_kinds: set[str] = set()

    def set_speed(self, speed: float) -> None:
        self.pacer.set_speed(speed, time.monotonic_ns())
        self.status.speed = self.pacer.speed
        self.speed_changed.set()
        logger.info("replay %s: speed set to %s", self.name, speed_text(self.pacer.speed))

    def snapshot(self) -> dict[str, object]:
        status = self.status
        status.gaps = self.sequencer.gaps
        status.decode_problems = {k.value: v for k, v in self.decoder.problems.items() if v}
        return status.as_dict() | {"waiting_for_client": waiting_for_client(self.pacer, self.audience)}

    async def run(self) -> None:
        status = self.status
        status.running = True
        try:
            while True:
                await self.run_pass()
                status.loops += 1
                if not self.loop or (self.max_passes is not None and status.loops >= self.max_passes):
                    return
                logger.info("replay %s: pass %d done, looping", self.name, status.loops)
        finally:
            status.running = False

    async def run_pass(self) -> None:
        """One pass over the files: re-seeds from the snapshot, then diffs and trades in order.

        The first pass decodes the files and fills the pass cache; later ones play the cache.
        """
        status = self.status
        self.sequencer.reset()
        self.pacer.restart()
        status.messages = 0
        cache = self.cache
        cached = cache.usable
        steps = cache.play() if cached else self._decode_pass()
        for step, (data_ns, messages, actions) in enumerate(steps, 1):
            status.messages += messages
            status.total_messages += messages
            status.data_time_ns = data_ns
            await _wait(self.pacer, data_ns, step, self.speed_changed, self.audience)
            for action in actions:
                self._perform(action)
        if cached:
            self._add_counts(cache.counts)

    def _decode_pass(self) -> Iterator[tuple[int, int, list[MarketAction]]]:
        """Decode and sequence the files, recording the steps (and the pass's counts) in the cache."""
        cache = self.cache
        record = None if cache.complete else cache.record
        if record is not None:
            cache.restart()  # a pass cut short (the simulator stopped) left part of one
        before = self._counts()
        sequencer = self.sequencer
        messages = 0
        data_ns = self.status.data_time_ns
        for data_ns, message in read_recording(self.paths, self.decoder):
            messages += 1
            actions = sequencer.feed(message)
            if not actions:
                continue
            if record is not None:
                record(data_ns, messages, actions)
            yield data_ns, messages, actions
            messages = 0
        if messages:  # messages after the last step still count
            if record is not None:
                record(data_ns, messages, [])
            yield data_ns, messages, []
        if not cache.complete:
            after = self._counts()
            cache.counts = {key: after[key] - before.get(key, 0) for key in after}
            cache.complete = True

    def _counts(self) -> dict[str, int]:
        sequencer = self.sequencer
        counts = {f"problem:{kind.value}": count for kind, count in self.decoder.problems.items()}
        counts.update(gaps=sequencer.gaps, stale=sequencer.dropped_stale, trades=sequencer.dropped_trades)
        return counts

    def _add_counts(self, counts: dict[str, int]) -> None:
        sequencer = self.sequencer
        sequencer.gaps += counts.get("gaps", 0)
        sequencer.dropped_stale += counts.get("stale", 0)
        sequencer.dropped_trades += counts.get("trades", 0)
        problems = self.decoder.problems
        for kind in problems:
            problems[kind] += counts.get(f"problem:{kind.value}", 0)

    def _perform(self, action: MarketAction) -> None:
        status = self.status
        try:
            perform(action, self.sinks)
        except SimulatorInputError as error:
            status.errors += 1
            kind = type(action).__name__
            if kind not in self._error_kinds:
                self._error_kinds.add(kind)
                logger.warning("replay %s: %s refused: %s", self.name, kind, error)
            return
        if isinstance(action, ApplyDiff):
            status.diffs += 1
        elif isinstance(action, ReplayTrade):
            status.trades += 1
        else:
            status.seeds += 1


# synthetic order flow (sans-I/O) ---------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSettings:
    """Rates are events per second of data time; sizes are in lots, offsets in ticks."""

    start_price: int  # ticks
    levels: int = 20  # levels kept on each side of the reference
    limit_rate: float = 50.0
    cancel_rate: float = 40.0
    trade_rate: float = 5.0
    move_rate: float = 2.0  # reference-price steps per second (random walk)
    move_ticks: int = 1
    min_size: int = 1
    max_size: int = 100
    max_trade_size: int = 20

    def __post_init__(self) -> None:
        if self.start_price <= self.levels + self.move_ticks:
            raise SimulatorConfigurationError("synthetic start_price must be well above the book depth")
        if self.levels < 1 or self.move_ticks < 1 or not 1 <= self.min_size <= self.max_size:
            raise SimulatorConfigurationError("synthetic levels, move_ticks and sizes must be >= 1")
        if self.move_ticks > self.levels:
            raise SimulatorConfigurationError("synthetic move_ticks must not exceed levels")
        if self.max_trade_size < 1:
            raise SimulatorConfigurationError("synthetic max_trade_size must be >= 1")
        for name in ("limit_rate", "cancel_rate", "trade_rate", "move_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0 or value != value:
                raise SimulatorConfigurationError(f"synthetic {name} must be a number >= 0")
        if self.limit_rate + self.cancel_rate + self.trade_rate + self.move_rate <= 0:
            raise SimulatorConfigurationError("synthetic rates are all zero")


class SyntheticOperation(msgspec.Struct, frozen=True):
    """One generated operation: a depth change (absolute sizes) or a market trade."""

    time_ns: int  # data time since the start
    symbol: str
    action: MarketAction


class _SyntheticBook:
    __slots__ = ("asks", "bids", "reference", "settings", "symbol")

    def __init__(self, symbol: str, settings: SyntheticSettings) -> None:
        self.symbol = symbol
        self.settings = settings
        self.reference = settings.start_price  # best possible bid; asks start one tick above
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}


class SyntheticMarket:
    """Seeded random-walk mid and Poisson order flow for any number of instruments.

    Each instrument's book lives around a reference price ``r``: bids at ``r - k``, asks at
    ``r + 1 + k`` for ``0 <= k < levels``. Events come as one Poisson process per instrument
    (exponential gaps at the summed rate); each is a limit add, a cancel, a market trade at the
    best opposite level, or a reference step (levels that end up on the wrong side of the new
    reference are removed, levels beyond the depth pruned). Neither side is ever emptied: a
    cancel or trade that would take a side's last lot becomes an add, and a step that empties
    a side refills its touch. Every random draw comes from one
    ``random.Random(seed)`` in a fixed order, so a seed fixes the whole sequence.
    """

    def __init__(self, instruments: dict[str, SyntheticSettings], seed: int = 0) -> None:
        if not instruments:
            raise SimulatorConfigurationError("a synthetic market needs at least one instrument")
        self._random = random.Random(seed)
        self._books = {symbol: _SyntheticBook(symbol, settings) for symbol, settings in instruments.items()}
        self._next_ns: dict[str, int] = {}
        self._started = False

    def initial(self) -> list[SyntheticOperation]:
        """The full starting book of every instrument, one seed operation each."""
        operations = []
        draw = self._random
        for symbol, book in self._books.items():
            settings = book.settings
            for k in range(settings.levels):
                book.bids[book.reference - k] = draw.randint(settings.min_size, settings.max_size)
                book.asks[book.reference + 1 + k] = draw.randint(settings.min_size, settings.max_size)
            operations.append(SyntheticOperation(0, symbol, SeedBook(*self._levels(book))))
            self._next_ns[symbol] = self._gap(settings)
        self._started = True
        return operations

    def next(self) -> SyntheticOperation:
        """The next operation in data time (across instruments, earliest first)."""
        if not self._started:
            raise SimulatorInputError("call initial() before next()")
        symbol = min(self._next_ns, key=self._next_ns.__getitem__)
        now = self._next_ns[symbol]
        book = self._books[symbol]
        self._next_ns[symbol] = now + self._gap(book.settings)
        return SyntheticOperation(now, symbol, self._event(book))

    def _gap(self, settings: SyntheticSettings) -> int:
        rate = settings.limit_rate + settings.cancel_rate + settings.trade_rate + settings.move_rate
        return max(1, int(self._random.expovariate(rate) * 1e9))

    def _event(self, book: _SyntheticBook) -> MarketAction:
        settings = book.settings
        draw = self._random
        pick = draw.random() * (
            settings.limit_rate + settings.cancel_rate + settings.trade_rate + settings.move_rate
        )
        is_bid = draw.random() < 0.5
        if pick < settings.limit_rate:
            return self._add(book, is_bid)
        pick -= settings.limit_rate
        if pick < settings.cancel_rate:
            return self._cancel(book, is_bid)
        pick -= settings.cancel_rate
        if pick < settings.trade_rate:
            return self._trade(book, is_bid)
        return self._move(book, is_bid)

    def _add(self, book: _SyntheticBook, is_bid: bool) -> MarketAction:
        settings = book.settings
        draw = self._random
        offset = min(int(draw.expovariate(0.3)), settings.levels - 1)  # closer to the top more often
        size = draw.randint(settings.min_size, settings.max_size)
        if is_bid:
            price = book.reference - offset
            book.bids[price] = book.bids.get(price, 0) + size
            return ApplyDiff(((price, book.bids[price]),), ())
        price = book.reference + 1 + offset
        book.asks[price] = book.asks.get(price, 0) + size
        return ApplyDiff((), ((price, book.asks[price]),))

    def _cancel(self, book: _SyntheticBook, is_bid: bool) -> MarketAction:
        levels = book.bids if is_bid else book.asks
        if not levels or (len(levels) == 1 and next(iter(levels.values())) == 1):
            return self._add(book, is_bid)  # never empty a side: the book stays two-sided
        prices = sorted(levels)
        price = prices[self._random.randrange(len(prices))]
        size = levels[price]
        remaining = self._random.randint(1 if len(levels) == 1 else 0, size - 1)
        if remaining:
            levels[price] = remaining
        else:
            del levels[price]
        change = ((price, remaining),)
        return ApplyDiff(change, ()) if is_bid else ApplyDiff((), change)

    def _trade(self, book: _SyntheticBook, buyer: bool) -> MarketAction:
        makers = book.asks if buyer else book.bids
        price = (min(makers) if buyer else max(makers)) if makers else 0
        last_level = len(makers) == 1
        if not makers or (last_level and makers[price] == 1):
            return self._add(book, not buyer)  # never empty a side
        available = makers[price] - 1 if last_level else makers[price]
        quantity = min(available, self._random.randint(1, book.settings.max_trade_size))
        left = makers[price] - quantity
        if left:
            makers[price] = left
        else:
            del makers[price]
        return ReplayTrade(price, quantity, Side.BUY if buyer else Side.SELL)

    def _move(self, book: _SyntheticBook, up: bool) -> MarketAction:
        settings = book.settings
        step = settings.move_ticks if up else -settings.move_ticks
        book.reference += step
        reference = book.reference
        bid_changes: dict[int, int] = {}
        ask_changes: dict[int, int] = {}
        low = reference - settings.levels + 1
        high = reference + settings.levels
        for price in [p for p in book.bids if p > reference or p < low]:
            del book.bids[price]
            bid_changes[price] = 0
        for price in [p for p in book.asks if p <= reference or p > high]:
            del book.asks[price]
            ask_changes[price] = 0
        # the side the reference moved towards gets fresh levels where the other side left
        draw = self._random
        fresh = (
            range(reference - settings.move_ticks + 1, reference + 1)
            if up
            else range(reference + 1, reference + 1 + settings.move_ticks)
        )
        for price in fresh:
            size = draw.randint(settings.min_size, settings.max_size)
            if up:
                book.bids[price] = size
                bid_changes[price] = size
            else:
                book.asks[price] = size
                ask_changes[price] = size
        # the side the reference moved away from may have lost its last level: refill its touch
        if not book.asks:
            size = draw.randint(settings.min_size, settings.max_size)
            book.asks[reference + 1] = ask_changes[reference + 1] = size
        if not book.bids:
            size = draw.randint(settings.min_size, settings.max_size)
            book.bids[reference] = bid_changes[reference] = size
        return ApplyDiff(tuple(sorted(bid_changes.items(), reverse=True)), tuple(sorted(ask_changes.items())))

    @staticmethod
    def _levels(book: _SyntheticBook) -> tuple[Levels, Levels]:
        return (
            tuple(sorted(book.bids.items(), reverse=True)),
            tuple(sorted(book.asks.items())),
        )

    def book(self, symbol: str) -> tuple[Levels, Levels]:
        """The generator's own view of the background book (bids and asks, best first)."""
        return self._levels(self._books[symbol])


@dataclass
class SyntheticStatus:
    name: str
    symbols: list[str]
    speed: float
    seed: int
    operations: int = 0
    data_time_ns: int = 0
    errors: int = 0
    running: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "synthetic": True,
            "symbols": self.symbols,
            "speed": speed_text(self.speed),
            "seed": self.seed,
            "position": self.operations,
            "loops": 0,
            "data_time_ns": self.data_time_ns,
            "errors": self.errors,
            "running": self.running,
        }


class SyntheticDriver:
    """Runs a ``SyntheticMarket`` into sinks (one per symbol per venue), paced at a speed factor."""

    def __init__(
        self,
        name: str,
        market: SyntheticMarket,
        sinks: dict[str, Sequence[MarketSink]],
        *,
        seed: int,
        speed: float = 1.0,
        max_operations: int | None = None,
    ) -> None:
        self.name = name
        self.market = market
        self.sinks = {symbol: list(targets) for symbol, targets in sinks.items()}
        self.pacer = Pacer(speed)
        self.speed_changed = asyncio.Event()
        self.audience: Audience | None = None  # as ReplayDriver's
        self.max_operations = max_operations
        self.status = SyntheticStatus(name, sorted(sinks), self.pacer.speed, seed)
        self._warned = False

    def set_speed(self, speed: float) -> None:
        self.pacer.set_speed(speed, time.monotonic_ns())
        self.status.speed = self.pacer.speed
        self.speed_changed.set()
        logger.info("synthetic %s: speed set to %s", self.name, speed_text(self.pacer.speed))

    def snapshot(self) -> dict[str, object]:
        return self.status.as_dict() | {"waiting_for_client": waiting_for_client(self.pacer, self.audience)}

    def start_book(self) -> None:
        """Seed every book now (before the servers take connections)."""
        for operation in self.market.initial():
            self._perform(operation)

    async def run(self) -> None:
        status = self.status
        status.running = True
        try:
            while self.max_operations is None or status.operations < self.max_operations:
                operation = self.market.next()
                status.data_time_ns = operation.time_ns
                await _wait(
                    self.pacer, operation.time_ns, status.operations + 1, self.speed_changed, self.audience
                )
                self._perform(operation)
        finally:
            status.running = False

    def _perform(self, operation: SyntheticOperation) -> None:
        self.status.operations += 1
        try:
            perform(operation.action, self.sinks.get(operation.symbol, ()))
        except SimulatorInputError as error:
            self.status.errors += 1
            if not self._warned:
                self._warned = True
                logger.warning("synthetic %s: operation refused: %s", self.name, error)


__all__ = [
    "AS_FAST_AS_POSSIBLE",
    "ApplyDiff",
    "BookSequencer",
    "BucketAggregator",
    "BucketSink",
    "MarketAction",
    "MarketSink",
    "Pacer",
    "ReplayDriver",
    "ReplayTrade",
    "SeedBook",
    "SyntheticDriver",
    "SyntheticMarket",
    "SyntheticOperation",
    "SyntheticSettings",
    "VenueSink",
    "grid_ratio",
    "perform",
    "speed_text",
    "validate_speed",
]
