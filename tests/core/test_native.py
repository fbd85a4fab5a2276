"""The C accelerator against its pure-Python twins: same results, same errors, same state."""

from __future__ import annotations

import os
import random
from functools import partial
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.book import order_book
from hftkit.book.order_book import OrderBook, _apply_side_python, _top_keys_python
from hftkit.core.clock import SimulatedClock
from hftkit.core.native import NATIVE
from hftkit.core.types import Instrument, OrderType, Side
from hftkit.metrics.errors import InvalidMeasurementError
from hftkit.metrics.histogram import HIGHEST_NS, LatencyHistogram
from hftkit.sim.engine import book as sim_book
from hftkit.sim.engine import liquidity, matching
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.matching import MatchingEngine
from hftkit.venues.binance.parse import BinanceParser

if NATIVE is None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("hftkit._native was not built: `pip install -e .` must compile it in CI", pytrace=False)
    pytest.skip(
        "hftkit._native is not built here (no C compiler?); the pure path is tested elsewhere",
        allow_module_level=True,
    )

native = NATIVE

# --------------------------------------------------------------------------------------
# decimal text -> steps


def _parser(tick: str, lot: str, pure: bool) -> BinanceParser:
    parser = BinanceParser(
        Instrument(venue="binance", symbol="X", base="", quote="", tick_size=tick, lot_size=lot)
    )
    if pure:
        parser.levels = parser._levels_python
    return parser


def _outcome(parser: BinanceParser, raw: list[tuple[str, str]]) -> object:
    try:
        return parser.levels(raw)
    except Exception as error:
        return type(error)


decimal_text = st.one_of(
    st.from_regex(r"\A[0-9]{1,22}(\.[0-9]{1,22})?\Z", fullmatch=True),
    st.from_regex(r"\A[-+]?[0-9]{0,5}\.?[0-9]{0,9}([eE][-+]?[0-9]{1,2})?\Z", fullmatch=True),
    st.text(alphabet="0123456789.-+eE٣ x", max_size=12),
    st.sampled_from(
        [
            "0",
            "0.0",
            "00.00000000",
            "1.",
            ".5",
            "",
            "NaN",
            "1e3",
            "61837.63000000",
            "0.05",
            "999999999999999999",
            "9999999999999999999",
            "0.000000000000000001",
            "1e30000000",
            "9223372036854775808",
            "0" * 70 + "1",
            "1." + "0" * 70,
        ]
    ),
    st.from_regex(r"\A[0-9]{60,70}\Z", fullmatch=True),
    st.from_regex(r"\A[0-9]{1,3}\.?[0-9]{0,3}[eE][-+]?[0-9]{2,12}\Z", fullmatch=True),
)


@settings(max_examples=600, deadline=None)
@given(
    grids=st.sampled_from(
        [
            ("0.01", "0.00001"),
            ("0.00000001", "0.00000001"),
            ("0.5", "1"),
            ("0.05", "0.001"),
            ("1", "0.1"),
            ("10", "0.000000000000000001"),
        ]
    ),
    raw=st.lists(st.tuples(decimal_text, decimal_text), max_size=6),
)
def test_convert_levels_matches_the_pure_parser(grids: tuple[str, str], raw: list[tuple[str, str]]) -> None:
    tick, lot = grids
    assert _outcome(_parser(tick, lot, pure=False), raw) == _outcome(_parser(tick, lot, pure=True), raw)


def test_convert_levels_fast_path_values() -> None:
    parser = _parser("0.01", "0.00001", pure=False)
    assert parser.levels([("61837.63000000", "1.50000000"), ("0.01", "0"), ("7", "0.00001")]) == [
        (6183763, 150000),
        (1, 0),
        (700, 1),
    ]
    # a value the fast path leaves alone still converts exactly through the cache
    assert parser.levels([("6.18e4", "1")]) == [(6180000, 100000)]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([("0.00", "1")], "InvalidLevelError"),  # price must be >= one tick
        ([("61837.635", "1")], "OffGridError"),  # finer than the tick
        ([("1", "-1")], "InvalidLevelError"),  # negative size
        ([("abc", "1")], "InvalidDecimalError"),
        ([("1", "2", "3")], "ValueError"),
    ],
)
def test_convert_levels_rejects_like_the_pure_parser(raw: list[tuple[str, ...]], error: str) -> None:
    for pure in (False, True):
        with pytest.raises(Exception) as caught:
            _parser("0.01", "0.00001", pure).levels(raw)  # type: ignore[arg-type]
        assert type(caught.value).__name__ == error


def test_grid_argument_checks() -> None:
    with pytest.raises(ValueError):
        native.Grid(-1, 1, 0, str)
    with pytest.raises(ValueError):
        native.Grid(2, 0, 0, str)
    with pytest.raises(TypeError):
        native.Grid(2, 1, 0, "not callable")
    with pytest.raises(TypeError):
        native.convert_levels(object(), object(), [])
    grid = native.Grid(2, 1, 1, lambda text: -7)
    assert grid("1.23") == 123
    assert grid("0.00") == -7  # below the minimum: the slow callable decides


# --------------------------------------------------------------------------------------
# book side apply and window refill

EVERYTHING = order_book._EVERYTHING


def _side_state() -> tuple[dict[int, int], list[int]]:
    return {}, []


@settings(max_examples=400, deadline=None)
@given(
    negate=st.booleans(),
    edge_choice=st.sampled_from(["everything", "value", "huge"]),
    edge_value=st.integers(-50, 50),
    start=st.lists(st.integers(1, 60), max_size=30, unique=True),
    levels=st.lists(
        st.tuples(
            st.one_of(st.integers(1, 60), st.integers(2**62, 2**62 + 3), st.integers(2**70, 2**70 + 2)),
            st.one_of(st.just(0), st.integers(1, 5), st.integers(2**64, 2**64 + 1)),
        ),
        max_size=40,
    ),
    window_bounds=st.sampled_from([(0, 10**9), (2, 6), (8, 256)]),
)
def test_apply_side_matches_the_pure_twin(
    negate: bool,
    edge_choice: str,
    edge_value: int,
    start: list[int],
    levels: list[tuple[int, int]],
    window_bounds: tuple[int, int],
) -> None:
    edge = {"everything": EVERYTHING, "value": edge_value, "huge": 2**300}[edge_choice]
    key = (lambda price: -price) if negate else (lambda price: price)
    sizes = {price: 1 for price in start}
    window = sorted(key(price) for price in start if key(price) >= edge)
    results = []
    states = []
    for apply in (native.apply_side, _apply_side_python):
        side_sizes = dict(sizes)
        side_window = list(window)
        try:
            outcome: object = apply(side_sizes, side_window, edge, levels, negate, *window_bounds)
        except Exception as error:
            outcome = type(error)
        results.append(outcome)
        states.append((side_sizes, side_window))
    assert results[0] == results[1]
    assert states[0] == states[1]


def test_apply_side_argument_checks() -> None:
    with pytest.raises(TypeError):
        native.apply_side([], [], 0, [], False, 0, 1)
    with pytest.raises(ValueError):
        native.apply_side({}, [], 0, [(1, 2, 3)], False, 0, 1)
    with pytest.raises(TypeError):
        native.apply_side({}, [], 0, 5, False, 0, 1)


@settings(max_examples=200, deadline=None)
@given(
    prices=st.lists(st.integers(-(2**63) + 1, 2**63 - 1), max_size=80, unique=True),
    count=st.integers(0, 90),
    negate=st.booleans(),
)
def test_top_keys_matches_the_pure_twin(prices: list[int], count: int, negate: bool) -> None:
    sizes = dict.fromkeys(prices, 1)
    assert native.top_keys(sizes, count, negate) == _top_keys_python(sizes, count, negate)


def test_top_keys_defers_non_int64_keys_to_the_pure_path() -> None:
    assert native.top_keys({2**70: 1, 5: 1}, 1, False) is None
    assert order_book._top_keys({2**70: 1, 5: 1}, 1, False) == [2**70]


def test_books_agree_on_a_random_churning_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of inserts/deletes around a moving mid: window trims and refills on both paths."""
    generator = random.Random(7)
    stream = []
    live_bids: set[int] = set()
    live_asks: set[int] = set()
    mid = 100_000
    for step in range(3_000):
        # a random walk with a jump now and then that sweeps through the top of one side
        mid += generator.choice((-150, 150)) if step % 250 == 249 else generator.randint(-3, 3)
        bids = [(price, 0) for price in live_bids if price >= mid]
        asks = [(price, 0) for price in live_asks if price <= mid]
        bids += [(mid - generator.randint(1, 400), generator.choice((0, 0, 1, 2, 50))) for _ in range(12)]
        asks += [(mid + generator.randint(1, 400), generator.choice((0, 0, 1, 2, 50))) for _ in range(12)]
        for levels, live in ((bids, live_bids), (asks, live_asks)):
            for price, size in levels:
                (live.add if size else live.discard)(price)
        stream.append((bids, asks))
    native_book = OrderBook()
    tops = []
    for bids, asks in stream:
        native_book.apply_delta(bids, asks)
        tops.append((native_book.best_bid(), native_book.best_ask()))
    monkeypatch.setattr(order_book, "_apply_side", _apply_side_python)
    monkeypatch.setattr(order_book, "NATIVE", None)
    pure_book = OrderBook()
    for (bids, asks), top in zip(stream, tops, strict=True):
        pure_book.apply_delta(bids, asks)
        assert (pure_book.best_bid(), pure_book.best_ask()) == top
    assert native_book.bids() == pure_book.bids()
    assert native_book.asks() == pure_book.asks()
    assert native_book.window_refills == pure_book.window_refills > 0


# --------------------------------------------------------------------------------------
# raw JSON level arrays -> levels

_level_decoder = msgspec.json.Decoder(list[tuple[str, str]])

json_piece = st.sampled_from([" ", "\n", "", "", "", "\t"])


@st.composite
def raw_level_arrays(draw: st.DrawFn) -> bytes:
    """JSON arrays of levels: mostly plain string pairs, sometimes anything msgspec must judge."""
    levels = draw(st.lists(st.tuples(decimal_text, decimal_text), max_size=5))
    parts = []
    for price, size in levels:
        shape = draw(st.sampled_from(["pair"] * 6 + ["number", "triple", "escaped", "single", "unicode"]))
        gap = draw(json_piece)
        if shape == "pair":
            parts.append(f'[{gap}"{price}"{gap},{draw(json_piece)}"{size}"]')
        elif shape == "number":
            parts.append(f'["{price}", 1.5]')
        elif shape == "triple":
            parts.append(f'["{price}","{size}","0"]')
        elif shape == "escaped":
            parts.append(f'["\\u0031{price}","{size}"]')
        elif shape == "single":
            parts.append(f'["{price}"]')
        else:
            parts.append(f'["{price}","{size}\u00e9"]')
    text = draw(json_piece) + "[" + ",".join(parts) + "]" + draw(json_piece)
    if draw(st.integers(0, 15)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # truncated or otherwise broken JSON
    return text.encode()


def _raw_outcome(convert: object, raw: bytes) -> object:
    try:
        return convert(msgspec.Raw(raw))  # type: ignore[operator]
    except Exception as error:
        return type(error)


@settings(max_examples=600, deadline=None)
@given(
    grids=st.sampled_from([("0.01", "0.00001"), ("0.00000001", "0.00000001"), ("0.05", "0.001")]),
    raw=raw_level_arrays(),
)
def test_raw_levels_match_decoding_then_converting(grids: tuple[str, str], raw: bytes) -> None:
    tick, lot = grids
    parser = _parser(tick, lot, pure=False)
    reference = _parser(tick, lot, pure=True)
    expected = _raw_outcome(lambda data: reference.levels(_level_decoder.decode(data)), raw)
    assert _raw_outcome(parser.raw_levels, raw) == expected
    if native.convert_raw_levels(native.Grid(2, 1, 1, str), native.Grid(5, 1, 0, str), raw) is not None:
        _level_decoder.decode(raw)  # the C scanner accepts only what msgspec accepts too


def test_raw_levels_on_recorded_frames_equal_the_typed_path() -> None:
    from hftkit.bench.book import load_recording

    for market in ("spot", "usdm"):
        recording = load_recording(market, "btcusdt_20240808.gz", limit=300)
        parser = recording.parser
        for frame, update in zip(recording.frames, recording.raw_diffs, strict=True):
            delta = parser.depth_frame(frame)
            assert (delta.bids, delta.asks) == (parser.levels(update.bids), parser.levels(update.asks))
            assert delta.last_update_id == update.last_update_id


# --------------------------------------------------------------------------------------
# token bucket balance


class _Clock:
    def __init__(self) -> None:
        self.ns = 1_000

    def __call__(self) -> int:
        return self.ns


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 50),
    numerator=st.integers(1, 10**6),
    denominator=st.integers(1, 1000),
    start=st.integers(0, 50),
    steps=st.lists(
        st.tuples(
            st.integers(-2_000, 10**10),  # clock step (a simulated clock may step back)
            st.sampled_from(["take", "refill", "reserve"]),
            st.one_of(st.integers(-1, 60), st.just(True), st.just(2.0)),
        ),
        max_size=40,
    ),
)
def test_credits_match_the_pure_twin(
    capacity: int, numerator: int, denominator: int, start: int, steps: list[tuple[int, str, object]]
) -> None:
    from hftkit.resilience.token_bucket import _check_count, _Credits

    unit = denominator * 1_000_000_000
    balances = []
    clocks = []
    for kind in (native.Credits, _Credits):
        clock = _Clock()
        clocks.append(clock)
        check = partial(_check_count, capacity)
        balances.append(
            kind(min(start, capacity) * unit, capacity * unit, numerator, unit, capacity, clock, check)
        )
    for step, operation, n in steps:
        outcomes = []
        for clock, balance in zip(clocks, balances, strict=True):
            clock.ns += step
            try:
                if operation == "take":
                    outcome: object = balance.take(n)
                elif operation == "refill":
                    outcome = balance.refill()
                else:  # an async waiter's reservation: the balance may go negative
                    balance.credits = balance.refill() - unit
                    outcome = balance.credits
            except Exception as error:
                outcome = type(error)
            outcomes.append((outcome, balance.credits, balance.rejected))
        assert outcomes[0] == outcomes[1]


def test_token_bucket_uses_the_native_balance_and_counts_refusals() -> None:
    from hftkit.core.clock import SimulatedClock
    from hftkit.resilience import TokenBucket

    clock = SimulatedClock()
    bucket = TokenBucket(10, 2, clock)
    assert type(bucket._core) is native.Credits
    assert bucket.try_acquire() and bucket.try_acquire(1) and not bucket.try_acquire()
    assert bucket.rejected == 1
    clock.advance(100_000_000)
    assert bucket.try_acquire()
    with pytest.raises(ValueError):
        bucket.try_acquire(0)
    # a balance that could leave int64 keeps exact Python integers
    assert type(TokenBucket(1e6, 10**12, clock)._core) is not native.Credits


def test_credits_stay_exact_when_reservations_leave_int64() -> None:
    from hftkit.resilience.token_bucket import _check_count, _Credits

    unit = 10**9
    capacity = 4 * 10**9  # max credits 4e18: three full reservations leave int64
    balances = []
    clocks = []
    for kind in (native.Credits, _Credits):
        clock = _Clock()
        clocks.append(clock)
        balances.append(
            kind(0, capacity * unit, 10**9, unit, capacity, clock, partial(_check_count, capacity))
        )
    lowest = 0
    for step in [0, 0, 0, 5, 10**9, 10**10, 10**10, -(10**9), 3 * 10**10, 10**11]:
        seen = []
        for clock, balance in zip(clocks, balances, strict=True):
            clock.ns += step
            if step == 0:
                balance.credits = balance.refill() - capacity * unit
            seen.append((balance.take(1), balance.refill(), balance.credits, balance.rejected))
            lowest = min(lowest, balance.credits)
        assert seen[0] == seen[1]
    assert lowest < -(2**63)  # the balance did leave int64
    assert balances[0].credits == capacity * unit - unit  # back in int64 after the last take


# --------------------------------------------------------------------------------------
# JSON numbers (floats) -> steps, the Thalex path

thalex_grids = st.sampled_from(
    [("1", "0.001"), ("0.1", "0.01"), ("0.5", "0.00001"), ("25", "1"), ("0.0001", "0.1")]
)
json_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=200_000).map(lambda value: round(value, 4)),
    st.integers(0, 10**7).map(lambda steps: steps * 0.1),
    st.integers(0, 10**6).map(float),
    st.sampled_from([0.0, -0.0, 1e-5, 0.3, 61800.0, 17.06, 1e15, 1e16, 2.5e-7, -61800.0]),
)


def _number_outcome(convert: object, value: float) -> object:
    try:
        return convert(value)  # type: ignore[operator]
    except Exception as error:
        return type(error)


@settings(max_examples=800, deadline=None)
@given(grids=thalex_grids, value=json_numbers)
def test_float_conversion_matches_number_to_steps(grids: tuple[str, str], value: float) -> None:
    from hftkit.venues.thalex.codec import number_to_steps

    tick, lot = grids
    instrument = Instrument(venue="thalex", symbol="X", base="", quote="", tick_size=tick, lot_size=lot)
    for grid, price in ((instrument.ticks, True), (instrument.lots, False)):
        slow = partial(number_to_steps, instrument, price=price)
        fast = native.Grid(grid.decimals, grid.step_units, -(1 << 63), slow)
        assert _number_outcome(fast, value) == _number_outcome(slow, value)


@settings(max_examples=200, deadline=None)
@given(
    grids=thalex_grids,
    rows=st.lists(st.tuples(json_numbers, json_numbers, json_numbers), max_size=8),
)
def test_thalex_book_levels_match_the_pure_codec(
    grids: tuple[str, str], rows: list[tuple[float, float, float]]
) -> None:
    from hftkit.venues.thalex import codec as thalex_codec

    tick, lot = grids
    instrument = Instrument(venue="thalex", symbol="X", base="", quote="", tick_size=tick, lot_size=lot)

    def levels(data: list[tuple[float, float, float]]) -> object:
        return thalex_codec.ThalexCodec("thalex", {"X": instrument})._levels(instrument, data)

    native_levels = _number_outcome(levels, rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(thalex_codec, "NATIVE", None)
        assert _number_outcome(levels, rows) == native_levels


# --------------------------------------------------------------------------------------
# hostile decimals (issue 17 item 6): C and twin refuse the same texts, with the same class

HOSTILE_DECIMALS = [
    "0" * 70 + "1",  # C's fast path counts significant digits only: it used to accept this
    "1." + "0" * 70,
    "1" * 400,
    "1e30000000",
    "61837.1e40062000000",
    "1e-30000000",
    "9223372036854775808",
    "92233720368547758.08",
    "1e30",
]


def test_native_length_bound_is_the_twins() -> None:
    from hftkit.core.numbers import MAX_DECIMAL_LENGTH

    assert native.MAX_DECIMAL_LENGTH == MAX_DECIMAL_LENGTH


@pytest.mark.parametrize("text", HOSTILE_DECIMALS)
def test_hostile_decimals_fail_alike_and_fast_on_every_path(text: str) -> None:
    import time

    from hftkit.core.errors import InvalidDecimalError, OffGridError, OutOfRangeError

    classified = (InvalidDecimalError, OutOfRangeError, OffGridError)  # off-grid: cents on a 1 grid

    for tick, lot in (("0.01", "0.00001"), ("1", "1")):
        started = time.perf_counter()
        outcomes = [
            _outcome(_parser(tick, lot, pure=False), [(text, "1")]),
            _outcome(_parser(tick, lot, pure=True), [(text, "1")]),
            _outcome(_parser(tick, lot, pure=False), [("1", text)]),
            _outcome(_parser(tick, lot, pure=True), [("1", text)]),
        ]
        raw = b'[["%s","1"],["1","%s"]]' % (text.encode(), text.encode())
        try:
            _parser(tick, lot, pure=False).raw_levels(msgspec.Raw(raw))
            outcomes.append(list)
        except Exception as error:
            outcomes.append(type(error))
        assert time.perf_counter() - started < 0.05
        assert all(outcome in classified for outcome in outcomes), outcomes


# --------------------------------------------------------------------------------------
# latency histogram record


def _histogram_pair() -> tuple[LatencyHistogram, LatencyHistogram]:
    native_histogram, pure = LatencyHistogram(), LatencyHistogram()
    assert isinstance(native_histogram.record, partial)  # the C record where it is built
    pure.record = pure.record_python
    return native_histogram, pure


def _figures(histogram: LatencyHistogram) -> tuple[object, ...]:
    snapshot = histogram.snapshot()
    return (
        snapshot.counts.tolist(),
        snapshot.total,
        snapshot.minimum,
        snapshot.maximum,
        histogram.underflow_count,
        histogram.overflow_count,
        histogram.rejected_count,
    )


_EDGES = [1, 2, 255, 256, 257, 511, 512, 2**31, 2**40, HIGHEST_NS - 1, HIGHEST_NS, HIGHEST_NS + 1]
_ODD: list[object] = [0, -1, -(2**70), 2**70, 3.7, 1e12, True, np.int64(1234), np.float32(5.5)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-(2**66), 2**66), st.sampled_from(_EDGES + _ODD)), max_size=60))
def test_histogram_record_matches_the_pure_twin(values: list[object]) -> None:
    native_histogram, pure = _histogram_pair()
    for value in values:
        native_histogram.record(value)  # type: ignore[arg-type]
        pure.record(value)  # type: ignore[arg-type]
    assert _figures(native_histogram) == _figures(pure)
    assert all(type(extreme) is int for extreme in native_histogram._extremes + pure._extremes)


def test_histogram_record_refuses_junk_alike_and_keeps_recording_after_reset_and_merge() -> None:
    native_histogram, pure = _histogram_pair()
    for histogram in (native_histogram, pure):
        for junk in (float("nan"), float("inf"), "12", None):
            with pytest.raises(InvalidMeasurementError):
                histogram.record(junk)  # type: ignore[arg-type]
        assert histogram.rejected_count == 4
        histogram.record(5_000)
        histogram.reset()  # in place: the C record still writes into the histogram's lists
        histogram.record(7_000)
        other = LatencyHistogram()
        other.record(9_000)
        histogram.merge(other)
        histogram.record(11_000)
    assert _figures(native_histogram) == _figures(pure)
    assert native_histogram.snapshot().count == 3 and native_histogram.minimum == 7_000


def test_histogram_totals_beyond_int64_go_to_the_pure_path_and_stay_exact() -> None:
    native_histogram, pure = _histogram_pair()
    for histogram in (native_histogram, pure):
        histogram._extremes[0] = 2**63 - 10  # a total about to leave int64 (centuries of waiting)
        histogram.record(1_000)
        histogram.record(1_000)
    assert native_histogram.total == pure.total == 2**63 - 10 + 2_000


# --------------------------------------------------------------------------------------
# the simulator's replayed depth: background levels and the change batch's sizes


def _sim_engine() -> MatchingEngine:
    engine = MatchingEngine(Accounts(default_decimals=2), clock=SimulatedClock())
    engine.add_instrument(Instrument("sim", "X", "B", "Q", "1", "1"))
    for name in ("a", "b"):
        engine.accounts.deposit(name, "Q", 10**12)
        engine.accounts.deposit(name, "B", 10**10)
    return engine


def _sim_state(engine: MatchingEngine) -> object:
    book = engine._books["X"]
    return [
        (
            side.keys,
            {
                price: (
                    level.background,
                    level.tail,
                    level.own,
                    [(order.order_id, order.gap) for order in level.queue],
                )
                for price, level in side.levels.items()
            },
        )
        for side in (book.bids, book.asks)
    ]


def _sim_outcome(result: object) -> object:
    book_update = getattr(result, "book_update", None)
    return (
        [
            (
                execution.order.order_id,
                execution.trade_id,
                execution.price,
                execution.quantity,
                execution.filled,
            )
            for execution in getattr(result, "executions", [])
        ],
        [
            (trade.price, trade.quantity, trade.buy_order_id, trade.sell_order_id)
            for trade in getattr(result, "trades", [])
        ],
        None if book_update is None else (book_update.update_id, book_update.bids, book_update.asks),
    )


def _sim_flow(seed: int) -> list[tuple[object, ...]]:
    """Diffs around a wandering mid (new, grown, shrunk and emptied levels, now and then one that
    crosses), replayed trades, and orders of ours resting in the queues and leaving them."""
    generator = random.Random(seed)
    mid = 1_000
    flow: list[tuple[object, ...]] = []
    for step in range(2_500):
        mid += generator.randint(-2, 2)
        roll = generator.random()
        if roll < 0.6:
            width = generator.choice((1, 2, 3, 8))
            bids = [
                (
                    mid - generator.randint(-1 if step % 40 == 0 else 1, 30),
                    generator.choice((0, 0, 1, 3, 7, 20)),
                )
                for _ in range(generator.randint(0, width))
            ]
            asks = [
                (
                    mid + generator.randint(-1 if step % 55 == 0 else 1, 30),
                    generator.choice((0, 0, 1, 3, 7, 20)),
                )
                for _ in range(generator.randint(0, width))
            ]
            flow.append(("depth", bids, asks))
        elif roll < 0.75:
            flow.append(
                (
                    "trade",
                    mid + generator.randint(-4, 4),
                    generator.randint(1, 12),
                    generator.choice((Side.BUY, Side.SELL)),
                )
            )
        elif roll < 0.92:
            side = generator.choice((Side.BUY, Side.SELL))
            price = mid - generator.randint(1, 6) if side is Side.BUY else mid + generator.randint(1, 6)
            flow.append(("place", generator.choice(("a", "b")), side, price, generator.randint(1, 5)))
        else:
            flow.append(("cancel", generator.choice(("a", "b")), generator.randint(1, 400)))
    return flow


def _run_sim_flow(engine: MatchingEngine, flow: list[tuple[object, ...]]) -> list[object]:
    outcomes: list[object] = []
    for step in flow:
        kind = step[0]
        if kind == "depth":
            outcome = engine.apply_depth("X", step[1], step[2])  # type: ignore[arg-type]
        elif kind == "trade":
            outcome = engine.apply_market_trade("X", step[1], step[2], step[3])  # type: ignore[arg-type]
        elif kind == "place":
            outcome = engine.place(step[1], "X", step[2], OrderType.LIMIT_MAKER, step[4], step[3])  # type: ignore[arg-type]
        else:
            outcome = engine.cancel(step[1], "X", order_id=step[2])  # type: ignore[arg-type]
        outcomes.append((_sim_outcome(outcome), _sim_state(engine)))
    assert engine.audit() == []
    return outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replayed_depth_agrees_with_the_pure_twin(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every result and the whole book after every step, on both paths; the flow reaches each
    level the C loop leaves to Python (queued orders, crossings) many times."""
    flow = _sim_flow(seed)
    handed = 0
    set_levels = liquidity.BackgroundLiquidity._set_levels

    def counting(self: liquidity.BackgroundLiquidity, *arguments: Any) -> None:
        nonlocal handed
        handed += 1
        set_levels(self, *arguments)

    monkeypatch.setattr(liquidity.BackgroundLiquidity, "_set_levels", counting)
    native_outcomes = _run_sim_flow(_sim_engine(), flow)
    assert handed > 50
    monkeypatch.setattr(liquidity, "_SET_BACKGROUND", None)
    monkeypatch.setattr(matching, "changed_sizes", sim_book._changed_sizes)
    assert _run_sim_flow(_sim_engine(), flow) == native_outcomes


def _odd_depth(levels: list[tuple[object, ...]]) -> object:
    engine = _sim_engine()
    engine.apply_depth("X", [(99, 4), (100, 1)], [(105, 2)])
    try:
        engine.apply_depth("X", levels, [(104, 3)])  # type: ignore[arg-type]
    except Exception as error:
        return type(error), _sim_state(engine)
    return _sim_state(engine)


@pytest.mark.parametrize(
    "levels",
    [
        [(100, 5), (True, 5), (98, 1)],  # a bool: not an int to the C loop
        [(100, 5), (2**70, 5)],  # beyond int64
        [(100, 5), (101, -1)],  # refused with the classified error
        [(100, 5), (0, 3)],
        [(100, 5), (101,)],  # not a pair
        [(100, 5), [101, 2]],  # a list pair is a pair
        [(100, 5), (100, 5), (100, 0), (100, 0)],  # unchanged, then emptied, then absent
    ],
)
def test_replayed_depth_leaves_odd_levels_to_python(
    levels: list[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C loop stops before any level it does not take; Python sets or refuses it, alike."""
    native_outcome = _odd_depth(levels)
    monkeypatch.setattr(liquidity, "_SET_BACKGROUND", None)
    monkeypatch.setattr(matching, "changed_sizes", sim_book._changed_sizes)
    assert _odd_depth(levels) == native_outcome


def test_changed_sizes_matches_the_pure_twin() -> None:
    engine = _sim_engine()
    engine.apply_depth("X", [(99, 4), (100, 1)], [])
    levels = engine._books["X"].bids.levels
    for descending in (True, False):
        changed = {98, 99, 100}
        assert native.changed_sizes(changed, levels, descending) == sim_book._changed_sizes(
            changed, levels, descending
        )
    with pytest.raises(TypeError):
        native.changed_sizes({1}, [], True)  # type: ignore[arg-type]
