"""Exact decimal <-> integer grid conversion: the rules every price and size goes through."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hftkit.core import ConversionCache, DecimalGrid, InvalidDecimalError, OffGridError, Rounding
from hftkit.core.numbers import decimal_places, format_scaled, parse_decimal

STEPS = ["0.01", "0.00001000", "0.1", "1", "5", "0.5", "0.25", "10", "0.00000001", "2.5"]


def test_real_binance_price_converts_to_ticks_and_back():
    grid = DecimalGrid("0.01000000")
    assert grid.to_steps("61837.63000000") == 6183763
    assert grid.to_text(6183763) == "61837.63"
    assert grid.decimals == 2


def test_quantity_with_trailing_zeros_converts_exactly():
    grid = DecimalGrid("0.00001000")
    assert grid.to_steps("0.00100000") == 100
    assert grid.to_text(100) == "0.00100"


def test_off_grid_value_is_refused_in_exact_mode_with_a_clear_message():
    grid = DecimalGrid("0.01")
    with pytest.raises(OffGridError, match=r"61837\.635"):
        grid.to_steps("61837.635")


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [(Rounding.DOWN, 6183763), (Rounding.UP, 6183764), (Rounding.NEAREST, 6183764)],
)
def test_rounding_modes_bring_off_grid_prices_onto_the_grid(rounding, expected):
    assert DecimalGrid("0.01").to_steps("61837.635", rounding) == expected


def test_non_decimal_step_sizes_such_as_quarter_ticks():
    grid = DecimalGrid("0.25")
    assert grid.to_steps("1.75") == 7
    assert grid.to_text(7) == "1.75"
    with pytest.raises(OffGridError):
        grid.to_steps("1.1")
    assert grid.to_steps("1.1", Rounding.NEAREST) == 4


@pytest.mark.parametrize(
    "bad", ["", " 1", "1 ", "1_000", "nan", "NaN", "inf", "-", ".", "1.2.3", "0x10", "1,5"]
)
def test_malformed_decimal_strings_are_refused(bad):
    with pytest.raises(InvalidDecimalError):
        parse_decimal(bad)


def test_non_string_input_is_refused():
    with pytest.raises(InvalidDecimalError):
        parse_decimal(1.5)  # type: ignore[arg-type]


def test_exponent_form_is_accepted_off_the_hot_path():
    assert parse_decimal("1e-5") == (1, 5)
    assert parse_decimal("2E3") == (2000, 0)


def test_zero_or_negative_step_is_refused():
    with pytest.raises(InvalidDecimalError):
        DecimalGrid("0")
    with pytest.raises(InvalidDecimalError):
        DecimalGrid("-0.01")


def test_decimal_places_ignores_trailing_zeros():
    assert decimal_places("0.01000000") == 2
    assert decimal_places("100") == 0
    assert decimal_places("0") == 0


def test_negative_values_format_and_parse():
    assert format_scaled(-5, 2) == "-0.05"
    assert DecimalGrid("0.01").to_steps("-0.05") == -5


@given(step=st.sampled_from(STEPS), steps=st.integers(min_value=-(10**15), max_value=10**15))
def test_steps_to_text_to_steps_round_trips_exactly(step, steps):
    grid = DecimalGrid(step)
    assert grid.to_steps(grid.to_text(steps)) == steps


@given(
    step=st.sampled_from(STEPS),
    steps=st.integers(min_value=0, max_value=10**12),
    padding=st.integers(min_value=0, max_value=8),
)
def test_any_valid_wire_string_round_trips_to_its_canonical_form(step, steps, padding):
    grid = DecimalGrid(step)
    canonical = grid.to_text(steps)
    wire = canonical + ("0" * padding if "." in canonical else ("." + "0" * padding if padding else ""))
    assert grid.to_steps(wire) == steps
    assert Decimal(grid.to_text(grid.to_steps(wire))) == Decimal(wire)


@given(
    step=st.sampled_from(STEPS),
    value=st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=9),
)
def test_rounding_agrees_with_decimal_arithmetic(step, value):
    grid = DecimalGrid(step)
    text = format(value, "f")
    ratio = value / Decimal(step)
    assert grid.to_steps(text, Rounding.DOWN) == int(ratio.to_integral_value(ROUND_FLOOR))
    assert grid.to_steps(text, Rounding.UP) == int(ratio.to_integral_value(ROUND_CEILING))
    assert grid.to_steps(text, Rounding.NEAREST) == int(ratio.to_integral_value(ROUND_HALF_UP))
    on_grid = ratio == ratio.to_integral_value()
    if on_grid:
        assert grid.to_steps(text) == int(ratio)
    else:
        with pytest.raises(OffGridError):
            grid.to_steps(text)


def test_conversion_cache_memoizes_and_stays_bounded():
    cache = ConversionCache(DecimalGrid("0.01"), capacity=4)
    assert cache("1.00") == 100
    assert cache("1.00") == 100
    assert (cache.hits, cache.misses) == (1, 1)
    for index in range(10):
        cache(f"{index}.01")
    assert len(cache) <= 4


def test_conversion_cache_lookup_is_the_uncounted_hit_path():
    cache = ConversionCache(DecimalGrid("0.01"), capacity=2)
    assert cache.lookup("1.00") is None
    cache("1.00")
    assert cache.lookup("1.00") == 100
    cache("2.00")
    cache("3.00")  # full: cleared, then refilled
    assert cache.lookup("1.00") is None
    assert cache.lookup("3.00") == 300


# --------------------------------------------------------------------------------------
# hostile wire decimals (issue 17 item 6): bounded time, classified errors, int64 steps

HOSTILE_EXPONENTS = ["1e30000000", "61837.1e40062000000", "1e-30000000", "1E+999999999999", "-5e65"]


@pytest.mark.parametrize("text", HOSTILE_EXPONENTS)
def test_exponents_no_venue_sends_are_refused_at_once(text: str) -> None:
    import time

    grid = DecimalGrid("0.01")
    started = time.perf_counter()
    with pytest.raises(InvalidDecimalError, match="exponent"):
        grid.to_steps(text)
    with pytest.raises(InvalidDecimalError, match="exponent"):
        parse_decimal(text)
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    "text", ["0" * 5000 + "1", "1" * 400, "0." + "0" * 400 + "1", "1." + "0" * 100, "9" * 65]
)
def test_decimals_longer_than_any_venue_sends_are_refused(text: str) -> None:
    # 5000 digits used to escape as Python's plain int-conversion ValueError
    for grid in (DecimalGrid("0.01"), DecimalGrid("1")):
        with pytest.raises(InvalidDecimalError, match="longer than"):
            grid.to_steps(text)
    with pytest.raises(InvalidDecimalError, match="longer than"):
        parse_decimal(text)


def test_steps_are_capped_at_the_signed_64_bit_range() -> None:
    from hftkit.core import OutOfRangeError

    grid = DecimalGrid("1")
    assert grid.to_steps("9223372036854775807") == 2**63 - 1
    assert grid.to_steps("-9223372036854775808") == -(2**63)
    for text in ("9223372036854775808", "-9223372036854775809", "1e30", "99999999999999999999.5"):
        with pytest.raises(OutOfRangeError):
            grid.to_steps(text, Rounding.DOWN)
    with pytest.raises(OutOfRangeError):
        DecimalGrid("0.00000001").to_steps("100000000000.00000000")  # 1e19 steps
