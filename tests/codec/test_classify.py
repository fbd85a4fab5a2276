"""Classification against the libraries' real exceptions, errors and counters, helpers."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.codec import (
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
    classify_decode_error,
    classify_encode_error,
    find_cycle,
    find_out_of_range_integer,
    may_contain_wide_integer,
)
from hftkit.codec.classify import excerpt
from hftkit.codec.integers import describe_integer


def orjson_failure(data: Any) -> orjson.JSONDecodeError:
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(data)
    return caught.value


ORJSON_CASES = [
    ("truncated", b'{"a":[1,2', CodecErrorKind.TRUNCATED),
    ("empty", b"", CodecErrorKind.TRUNCATED),
    ("invalid_character", b'{"a": x}', CodecErrorKind.SYNTAX),
    ("trailing", b"[1] 2", CodecErrorKind.SYNTAX),
    ("invalid_utf8", b'"\xff"', CodecErrorKind.UTF8),
    ("lone_surrogate", b'"\\ud800x"', CodecErrorKind.UTF8),
    ("depth", b"[" * 2000 + b"]" * 2000, CodecErrorKind.NESTING_DEPTH),
    ("infinite_float", b"1e400", CodecErrorKind.NUMBER_OUT_OF_RANGE),
]


@pytest.mark.parametrize(("data", "kind"), [c[1:] for c in ORJSON_CASES], ids=[c[0] for c in ORJSON_CASES])
def test_orjson_decode_errors_are_classified_too(data, kind):
    """Code that decodes with orjson directly can still report a classified error."""
    error = classify_decode_error(orjson_failure(data), data, "Any")
    assert error.kind is kind
    assert error.operation is CodecOperation.DECODE


def test_an_unrecognised_exception_message_falls_back_to_the_broad_kind():
    decode = classify_decode_error(ValueError("something new"), b"{}", None)
    assert decode.kind is CodecErrorKind.SYNTAX
    encode = classify_encode_error(TypeError("something new"), object())
    assert encode.kind is CodecErrorKind.UNSUPPORTED_TYPE


def test_error_message_names_operation_kind_target_path_and_excerpt():
    error = CodecError(
        CodecErrorKind.SCHEMA,
        CodecOperation.DECODE,
        "Expected `int`, got `str`",
        position=3,
        excerpt='{"a":"x"}',
        path="$.a",
        target="Order",
    )
    text = str(error)
    assert text.startswith("decode failed (schema) as Order: Expected `int`, got `str`")
    assert "at $.a" in text and "[position 3]" in text and '{"a":"x"}' in text


def test_codec_error_survives_pickling():
    error = CodecError(CodecErrorKind.UTF8, CodecOperation.DECODE, "bad", position=4, excerpt="ab", path="$")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.operation, copy.detail, copy.position, copy.excerpt, copy.path) == (
        CodecErrorKind.UTF8,
        CodecOperation.DECODE,
        "bad",
        4,
        "ab",
        "$",
    )
    assert str(copy) == str(error)


def test_counters_count_per_kind_and_report_the_first_of_each():
    counters = CodecErrorCounters()
    syntax = CodecError(CodecErrorKind.SYNTAX, CodecOperation.DECODE, "x")
    utf8 = CodecError(CodecErrorKind.UTF8, CodecOperation.DECODE, "x")
    assert counters.record(syntax) is True
    assert counters.record(syntax) is False
    assert counters.record(utf8) is True
    counters.utf8_replacements += 2
    assert counters.total == 3
    snapshot = counters.snapshot()
    assert snapshot["syntax"] == 2 and snapshot["utf8"] == 1 and snapshot["utf8_replacements"] == 2
    assert set(snapshot) == {kind.value for kind in CodecErrorKind} | {"utf8_replacements"}
    assert "syntax" in repr(counters)
    counters.reset()
    assert counters.total == 0 and counters.utf8_replacements == 0
    assert counters.record(syntax) is True


def test_excerpt_is_short_escaped_and_marks_elisions():
    data = b"A" * 100 + b"\x00\xff\n" + b"B" * 100
    text = excerpt(data, 100)
    assert text.startswith("...") and text.endswith("...")
    assert "\\x00\\xff\\n" in text
    assert len(text) < 80
    assert excerpt("short \u00e9", None) == "short \\xe9"
    assert excerpt(memoryview(b"abc"), 99) == "abc"
    assert excerpt(b"", 0) == ""
    assert excerpt(12345, 0) is None


def test_find_cycle_tells_cycles_from_shared_and_deep_values():
    shared = [1, 2]
    assert find_cycle({"a": shared, "b": shared, "c": (shared, shared)}) is None
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert find_cycle(deep) is None
    looped: dict[str, Any] = {"x": [{"y": None}]}
    looped["x"][0]["y"] = looped
    assert find_cycle(looped) == "$.x[0].y"
    self_list: list[Any] = []
    self_list.append(self_list)
    assert find_cycle(self_list) == "$[0]"


def test_describe_integer_spells_what_python_can_and_sizes_the_rest():
    assert describe_integer(-(2**64)) == "-18446744073709551616"
    assert describe_integer(10**5000) == "<a 16610-bit integer>"


def test_find_out_of_range_integer_walks_keys_values_and_containers():
    assert find_out_of_range_integer({"a": [1, (2, {3})], 4: True}) is None
    assert find_out_of_range_integer({"a": [1, (2, {2**64})]}) == ("$.a[1][1][*]", 2**64)
    assert find_out_of_range_integer({2**70: "key"}) == ("$.<key>", 2**70)
    assert find_out_of_range_integer(-(2**63) - 1) == ("$", -(2**63) - 1)


@given(st.integers(), st.text(max_size=30), st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_digit_run_scan_never_misses_an_out_of_range_integer(number, before, after):
    data = orjson.dumps({"before": before, "after": after})[:-1] + b',"n":' + str(number).encode() + b"}"
    if not -(2**63) <= number <= 2**64 - 1:
        assert may_contain_wide_integer(data)
        assert may_contain_wide_integer(bytearray(data))


def test_digit_run_scan_is_quiet_on_recorded_binance_frames(recorded_frames):
    """Millisecond timestamps and 11-digit ids never trigger the exact walk on Binance spot traffic."""
    frames = recorded_frames["trade"] + recorded_frames["depth"] + recorded_frames["bookTicker"]
    assert not any(may_contain_wide_integer(frame) for frame in frames)
