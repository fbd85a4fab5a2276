"""Decoding real and malformed payloads: values, classified kinds, counters, input kinds, no copies."""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.codec import (
    DEFAULT_COUNTERS,
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    Int64,
    NonNegativeInt64,
    TypedDecoder,
    decode_json,
)
from hftkit.core.errors import HftkitError
from hftkit.venues.binance.codec import CombinedStreamMessage, DepthUpdate, TradeEvent

TRADE_FRAME = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
    b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
)
TradeFrame = CombinedStreamMessage[TradeEvent]


class Fill(msgspec.Struct):
    order_id: NonNegativeInt64
    quantity_lots: NonNegativeInt64
    position_lots: Int64


class Plain(msgspec.Struct):
    value: int
    note: str = ""


def buffer_kinds(data: bytes) -> list[Any]:
    """The same bytes as bytes, bytearray, and a memoryview sliced out of a larger receive buffer."""
    receive_buffer = bytearray(b"HEADER" + data + b"TRAILER")
    return [data, bytearray(data), memoryview(receive_buffer)[6 : 6 + len(data)]]


def input_kinds(data: bytes) -> list[Any]:
    """``buffer_kinds`` plus the document as ``str``."""
    return [*buffer_kinds(data), data.decode("utf-8")]


# --- real recorded frames -------------------------------------------------------------------------


def test_every_recorded_trade_frame_decodes_into_the_typed_envelope(recorded_frames):
    decoder = TypedDecoder(TradeFrame)
    assert len(recorded_frames["trade"]) > 100
    for frame in recorded_frames["trade"]:
        message = decoder.decode(frame)
        generic = decode_json(frame)
        assert message.stream == generic["stream"] == "btcusdt@trade"
        assert message.data.trade_id == generic["data"]["t"]
        assert message.data.price == generic["data"]["p"]
        assert message.data.buyer_is_maker is generic["data"]["m"]


def test_every_recorded_depth_frame_decodes_with_all_its_levels(recorded_frames):
    decoder = TypedDecoder(CombinedStreamMessage[DepthUpdate])
    assert len(recorded_frames["depth"]) > 50
    for frame in recorded_frames["depth"]:
        message = decoder.decode(frame)
        generic = decode_json(frame)
        assert [list(level) for level in message.data.bids] == generic["data"]["b"]
        assert [list(level) for level in message.data.asks] == generic["data"]["a"]
        assert message.data.last_update_id == generic["data"]["u"]


@pytest.mark.parametrize("kind_index", range(4), ids=["bytes", "bytearray", "memoryview", "str"])
def test_each_input_kind_decodes_to_the_same_value(kind_index):
    data = input_kinds(TRADE_FRAME)[kind_index]
    expected = TypedDecoder(TradeFrame).decode(TRADE_FRAME)
    assert TypedDecoder(TradeFrame).decode(data) == expected
    assert decode_json(data) == decode_json(TRADE_FRAME)


@pytest.mark.parametrize("kind_index", range(4), ids=["bytes", "bytearray", "memoryview", "str"])
def test_decoding_does_not_copy_the_input(kind_index):
    """A 2 MB frame whose padding the schema ignores: peak allocation stays tiny, so no copy was made."""
    padding = b"x" * 2_000_000
    data = input_kinds(b'{"value":7,"padding":"' + padding + b'"}')[kind_index]
    typed = TypedDecoder(Plain)
    spaced = input_kinds(b'{"value":7}' + b" " * 2_000_000)[kind_index]
    typed.decode(data)
    decode_json(spaced)
    tracemalloc.start()
    try:
        assert typed.decode(data) == Plain(7)
        assert decode_json(spaced) == {"value": 7}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000


def test_a_bytearray_can_be_resized_after_decoding_because_no_view_is_kept():
    buffer = bytearray(TRADE_FRAME)
    TypedDecoder(TradeFrame).decode(memoryview(buffer))
    decode_json(buffer)
    buffer.extend(b" ")  # raises BufferError if an export were still alive
    assert buffer.endswith(b"} ")


def test_target_name_reads_like_the_type_annotation():
    assert TypedDecoder(TradeFrame).target_name == "CombinedStreamMessage[TradeEvent]"
    assert repr(TypedDecoder(Plain)) == "TypedDecoder(Plain)"


def test_decoder_is_callable_like_its_decode_method():
    decoder = TypedDecoder(Plain)
    assert decoder(b'{"value":1}') == decoder.decode(b'{"value":1}') == Plain(1)


# --- malformed input: every kind -----------------------------------------------------------------

DEEP_ARRAYS = b"[" * 10_000
DEEP_BALANCED = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECTS = b'{"a":' * 5_000 + b"1" + b"}" * 5_000

GENERIC_CASES = [
    ("truncated_frame", TRADE_FRAME[:70], CodecErrorKind.TRUNCATED),
    ("empty", b"", CodecErrorKind.TRUNCATED),
    ("open_string", b'{"a":"abc', CodecErrorKind.TRUNCATED),
    ("invalid_character", b'{"a": nope}', CodecErrorKind.SYNTAX),
    ("trailing_content", b"[1] 2", CodecErrorKind.SYNTAX),
    ("bad_escape", b'"\\x"', CodecErrorKind.SYNTAX),
    ("control_character_in_string", b'"a\x01b"', CodecErrorKind.SYNTAX),
    ("nan_literal", b"NaN", CodecErrorKind.SYNTAX),
    ("single_quotes", b"{'a': 1}", CodecErrorKind.SYNTAX),
    ("invalid_utf8_in_value", TRADE_FRAME.replace(b"BTCUSDT", b"BTC\xffUSDT"), CodecErrorKind.UTF8),
    ("invalid_utf8_in_key", b'{"\xfe":1}', CodecErrorKind.UTF8),
    ("overlong_utf8", b'"\xc0\xaf"', CodecErrorKind.UTF8),
    ("truncated_utf8_sequence", b'"\xe2\x82"', CodecErrorKind.UTF8),
    ("lone_high_surrogate_escape", b'"\\ud800x"', CodecErrorKind.UTF8),
    ("lone_low_surrogate_escape", b'"\\udc00"', CodecErrorKind.UTF8),
    ("bad_surrogate_pair", b'"\\ud800\\u0041"', CodecErrorKind.UTF8),
    ("deep_unterminated_arrays", DEEP_ARRAYS, CodecErrorKind.NESTING_DEPTH),
    ("deep_balanced_arrays", DEEP_BALANCED, CodecErrorKind.NESTING_DEPTH),
    ("deep_objects", DEEP_OBJECTS, CodecErrorKind.NESTING_DEPTH),
    ("float_beyond_double", b'{"price":1e400}', CodecErrorKind.NUMBER_OUT_OF_RANGE),
    ("integer_of_5000_digits", b"[" + b"7" * 5000 + b"]", CodecErrorKind.NUMBER_OUT_OF_RANGE),
]


@pytest.mark.parametrize(
    ("data", "kind"), [case[1:] for case in GENERIC_CASES], ids=[c[0] for c in GENERIC_CASES]
)
def test_generic_decode_classifies_malformed_input(data, kind, counters):
    with pytest.raises(CodecError) as caught:
        decode_json(data, counters)
    assert caught.value.kind is kind
    assert counters.counts[kind] == 1
    assert counters.total == 1


@pytest.mark.parametrize(
    ("data", "kind"), [case[1:] for case in GENERIC_CASES], ids=[c[0] for c in GENERIC_CASES]
)
def test_typed_decode_of_a_free_form_field_classifies_the_same_input(data, kind, counters):
    """Wrapped in an envelope whose ``data`` is ``Any``, the failure is the same kind."""
    if not data or data == TRADE_FRAME[:70] or b"BTC\xff" in data:
        frame = data  # already a whole (broken) envelope, or nothing at all
    else:
        frame = b'{"stream":"x","data":' + data + b"}"
    with pytest.raises(CodecError) as caught:
        TypedDecoder(CombinedStreamMessage[Any], counters=counters).decode(frame)
    assert caught.value.kind is kind


SCHEMA_CASES = [
    ("wrong_type", TRADE_FRAME.replace(b'"t":3735683259', b'"t":"3735683259"'), "$.data.t"),
    ("missing_field", TRADE_FRAME.replace(b',"m":true', b""), "$.data"),
    ("null_for_required", TRADE_FRAME.replace(b'"p":"61837.63000000"', b'"p":null'), "$.data.p"),
    ("array_for_object", b'{"stream":"btcusdt@trade","data":[1,2]}', "$.data"),
    ("top_level_array", b"[]", None),
    ("bool_for_int", TRADE_FRAME.replace(b'"E":1723161255343', b'"E":true'), "$.data.E"),
    ("float_for_int", TRADE_FRAME.replace(b'"E":1723161255343', b'"E":1.5'), "$.data.E"),
]


@pytest.mark.parametrize(
    ("data", "path"), [case[1:] for case in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_wrong_shape_is_a_schema_error_with_its_path(data, path, counters):
    with pytest.raises(CodecError) as caught:
        TypedDecoder(TradeFrame, counters=counters).decode(data)
    error = caught.value
    assert error.kind is CodecErrorKind.SCHEMA
    assert error.target == "CombinedStreamMessage[TradeEvent]"
    if path is not None:
        assert error.path == path
    assert counters.counts[CodecErrorKind.SCHEMA] == 1


def test_error_carries_position_and_an_escaped_excerpt():
    broken = TRADE_FRAME.replace(b"BTCUSDT", b"BTC\xffUSDT")
    with pytest.raises(CodecError) as caught:
        TypedDecoder(TradeFrame, counters=CodecErrorCounters()).decode(broken)
    error = caught.value
    assert error.position == broken.index(b"\xff")
    assert "\\xff" in error.excerpt
    assert len(error.excerpt) < 120
    assert "utf8" in str(error) and "CombinedStreamMessage[TradeEvent]" in str(error)
    assert error.kind is CodecErrorKind.UTF8
    assert isinstance(error, HftkitError) and isinstance(error, ValueError)
    # The chained cause is whatever msgspec itself raised for these bytes (0.22 chains a
    # UnicodeDecodeError, 0.23 a DecodeError): ours is the kind, the position and the excerpt.
    with pytest.raises(Exception) as raw:
        msgspec.json.decode(broken, type=TradeFrame)
    assert type(error.__cause__) is type(raw.value)
    assert str(error.__cause__) == str(raw.value)


def test_syntax_error_position_points_at_the_bad_byte():
    with pytest.raises(CodecError) as caught:
        decode_json(b'{"a": @}', CodecErrorCounters())
    assert caught.value.position == 6
    assert caught.value.excerpt == '{"a": @}'


def test_truncation_position_is_the_end_of_the_input():
    cut = TRADE_FRAME[:70]
    with pytest.raises(CodecError) as caught:
        decode_json(cut, CodecErrorCounters())
    assert caught.value.position == len(cut)
    assert caught.value.excerpt.startswith("...")


def test_invalid_utf8_in_an_ignored_field_does_not_hide_a_truncation(counters):
    with pytest.raises(CodecError) as caught:
        TypedDecoder(Plain, counters=counters).decode(b'{"skipped":"\xff","value":1')
    assert caught.value.kind is CodecErrorKind.TRUNCATED


def test_str_input_with_a_lone_surrogate_is_a_utf8_error():
    with pytest.raises(CodecError) as caught:
        TypedDecoder(Any, counters=CodecErrorCounters()).decode('{"a":"x\ud800"}')
    assert caught.value.kind is CodecErrorKind.UTF8
    assert caught.value.position == 7


def test_injected_counters_leave_the_default_counters_alone():
    before = DEFAULT_COUNTERS.snapshot()
    counters = CodecErrorCounters()
    decoder = TypedDecoder(TradeFrame, counters=counters)
    for data in (b"", b"{", b"[]", b"x"):
        with pytest.raises(CodecError):
            decoder.decode(data)
    assert counters.counts[CodecErrorKind.TRUNCATED] == 2
    assert counters.counts[CodecErrorKind.SCHEMA] == 1
    assert counters.counts[CodecErrorKind.SYNTAX] == 1
    assert DEFAULT_COUNTERS.snapshot() == before


def test_decoders_without_counters_share_the_default_counters():
    before = DEFAULT_COUNTERS.counts[CodecErrorKind.SYNTAX]
    with pytest.raises(CodecError):
        decode_json(b"nope")
    with pytest.raises(CodecError):
        TypedDecoder(Plain).decode(b"nope")
    assert DEFAULT_COUNTERS.counts[CodecErrorKind.SYNTAX] == before + 2


def test_first_error_of_each_kind_is_logged_once(caplog):
    counters = CodecErrorCounters()
    decoder = TypedDecoder(Any, counters=counters)
    with caplog.at_level(logging.WARNING, logger="hftkit.codec"):
        for data in (b"x", b"y", b"", b"z"):
            with pytest.raises(CodecError):
                decoder.decode(data)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "syntax" in messages[0] and "truncated" in messages[1]
    assert counters.counts[CodecErrorKind.SYNTAX] == 3


# --- lossy UTF-8 mode ------------------------------------------------------------------------------


def test_lossy_mode_replaces_invalid_utf8_and_counts_the_replacement(counters):
    broken = TRADE_FRAME.replace(b"BTCUSDT", b"BTC\xffUSDT")
    decoder = TypedDecoder(TradeFrame, replace_invalid_utf8=True, counters=counters)
    for data in buffer_kinds(broken):
        assert decoder.decode(data).data.symbol == "BTC\ufffdUSDT"
    assert counters.utf8_replacements == 3
    assert counters.total == 0


def test_lossy_mode_is_off_by_default_and_never_repairs_syntax(counters):
    with pytest.raises(CodecError):
        TypedDecoder(Any, counters=counters).decode(b'["\xff"]')
    lossy = TypedDecoder(Any, replace_invalid_utf8=True, counters=counters)
    with pytest.raises(CodecError) as caught:
        lossy.decode(b'{"a":\xff}')  # the bad byte is outside a string: not text, not repairable
    assert caught.value.kind is CodecErrorKind.SYNTAX
    with pytest.raises(CodecError) as caught:
        lossy.decode(b'["\xff"')  # replaced, then still truncated
    assert caught.value.kind is CodecErrorKind.TRUNCATED
    assert counters.utf8_replacements == 0


# --- 64-bit integer range --------------------------------------------------------------------------

OVERFLOWING = [2**64, 2**64 + 1, 10**30, -(2**63) - 1, -(10**25)]
FITTING = [2**64 - 1, 2**63, -(2**63), 0, 1_723_161_253_937_085_768]


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30, -(2**63) - 1, -(10**25)])
def test_int64_schema_fields_reject_integers_beyond_64_bits(number, counters):
    data = f'{{"order_id":1,"quantity_lots":1,"position_lots":{number}}}'.encode()
    with pytest.raises(CodecError) as caught:
        TypedDecoder(Fill, counters=counters).decode(data)
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
    assert caught.value.path == "$.position_lots"
    assert counters.counts[CodecErrorKind.NUMBER_OUT_OF_RANGE] == 1


@pytest.mark.parametrize("number", [2**63 - 1, -(2**63), 0, 1_723_161_253_937_085_768])
def test_int64_schema_fields_accept_the_whole_int64_range(number):
    data = f'{{"order_id":1,"quantity_lots":1,"position_lots":{number}}}'.encode()
    assert TypedDecoder(Fill).decode(data).position_lots == number


def test_a_negative_non_negative_field_is_a_schema_error_not_an_overflow(counters):
    decoder = TypedDecoder(Fill, counters=counters)
    with pytest.raises(CodecError) as caught:
        decoder.decode(b'{"order_id":1,"quantity_lots":-1,"position_lots":1}')
    assert caught.value.kind is CodecErrorKind.SCHEMA  # ">= 0" is a rule of the field, not an overflow
    with pytest.raises(CodecError) as caught:
        decoder.decode(b'{"order_id":1,"quantity_lots":9223372036854775808,"position_lots":1}')
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE


@pytest.mark.parametrize("number", OVERFLOWING)
@pytest.mark.parametrize("kind_index", range(4), ids=["bytes", "bytearray", "memoryview", "str"])
def test_integer_range_check_rejects_wide_ints_in_plain_int_schemas(number, kind_index, counters):
    data = input_kinds(TRADE_FRAME.replace(b'"t":3735683259', f'"t":{number}'.encode()))[kind_index]
    with pytest.raises(CodecError) as caught:
        TypedDecoder(TradeFrame, check_integer_range=True, counters=counters).decode(data)
    error = caught.value
    assert error.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
    assert error.path == "$.data.t"
    assert error.position == TRADE_FRAME.index(b'"t":') + 4
    assert counters.counts[CodecErrorKind.NUMBER_OUT_OF_RANGE] == 1


@pytest.mark.parametrize("number", FITTING)
def test_integer_range_check_accepts_the_int64_and_uint64_range(number, counters):
    frame = TRADE_FRAME.replace(b'"t":3735683259', f'"t":{number}'.encode())
    message = TypedDecoder(TradeFrame, check_integer_range=True, counters=counters).decode(frame)
    assert message.data.trade_id == number
    assert counters.total == 0


def test_integer_range_check_passes_long_digit_runs_that_are_not_wide_ints(counters):
    frame = TRADE_FRAME.replace(b'"s":"BTCUSDT"', b'"s":"123456789012345678901234567890"')
    frame = frame.replace(b'"E":1723161255343', b'"E":18446744073709551615')
    message = TypedDecoder(TradeFrame, check_integer_range=True, counters=counters).decode(frame)
    assert message.data.event_time == 2**64 - 1
    assert counters.total == 0


def test_without_the_check_plain_ints_decode_exactly_at_any_size():
    frame = TRADE_FRAME.replace(b'"t":3735683259', b'"t":123456789012345678901234567890')
    assert TypedDecoder(TradeFrame).decode(frame).data.trade_id == 123456789012345678901234567890
    assert decode_json(frame)["data"]["t"] == 123456789012345678901234567890  # exact, never a float


def test_generic_decoder_with_range_check_finds_wide_ints_in_nested_values(counters):
    decoder = TypedDecoder(Any, check_integer_range=True, counters=counters)
    assert decoder.decode(b'{"a":[1,{"b":18446744073709551615}]}') == {"a": [1, {"b": 2**64 - 1}]}
    with pytest.raises(CodecError) as caught:
        decoder.decode(b'{"a":[1,{"b":18446744073709551616}]}')
    assert caught.value.path == "$.a[1].b"


# --- properties ------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_generic_decode_inverts_msgspec_encoding_for_every_input_kind(value):
    encoded = msgspec.json.encode(value)
    for data in input_kinds(encoded):
        assert decode_json(data) == value


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_either_decode_or_raise_a_classified_error(data):
    counters = CodecErrorCounters()
    for decoder in (TypedDecoder(Any, counters=counters), TypedDecoder(TradeFrame, counters=counters)):
        try:
            decoder.decode(data)
        except CodecError as error:
            assert isinstance(error.kind, CodecErrorKind)
    assert counters.utf8_replacements == 0


@given(st.integers())
@settings(max_examples=200, deadline=None)
def test_range_check_agrees_with_the_64_bit_bounds_for_any_integer(number):
    frame = f'{{"value":{number},"note":"n"}}'.encode()
    decoder = TypedDecoder(Plain, check_integer_range=True, counters=CodecErrorCounters())
    if -(2**63) <= number <= 2**64 - 1:
        assert decoder.decode(frame).value == number
    else:
        with pytest.raises(CodecError) as caught:
            decoder.decode(frame)
        assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
