"""Encoding: orjson generic values with Struct support, the msgspec Encoder, classified failures."""

from __future__ import annotations

import decimal
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.codec import (
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
    Encoder,
    TypedDecoder,
    decode_json,
    encode_json,
)
from hftkit.core.types import OrderType, Side, TimeInForce
from hftkit.venues.binance.codec import CombinedStreamMessage, TradeEvent


class OrderParams(msgspec.Struct, rename="camel"):
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: str
    quantity: str
    new_client_order_id: str
    timestamp: int


class Holder(msgspec.Struct):
    inner: Any


class Opaque:
    """A type neither library knows."""


def order_params(client_id: str = "hft-1") -> OrderParams:
    return OrderParams("BTCUSDT", "BUY", "LIMIT", "GTC", "61837.63", "0.002", client_id, 1723161255342)


def circular_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def circular_dict() -> dict[str, Any]:
    mapping: dict[str, Any] = {"a": {"b": []}}
    mapping["a"]["b"].append(mapping)
    return mapping


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_encode_json_writes_compact_json_that_decodes_back():
    payload = {"id": 7, "method": "order.place", "params": {"symbol": "BTCUSDT", "price": "61837.63"}}
    encoded = encode_json(payload)
    assert encoded == b'{"id":7,"method":"order.place","params":{"symbol":"BTCUSDT","price":"61837.63"}}'
    assert decode_json(encoded) == payload


def test_encode_json_embeds_structs_and_raw_json_and_fragments():
    encoded = encode_json(
        {
            "params": order_params(),
            "raw": msgspec.Raw(b'{"x":[1,2]}'),
            "fragment": orjson.Fragment(b'"constant"'),
            "side": Side.BUY,
        }
    )
    decoded = decode_json(encoded)
    assert decoded["params"]["newClientOrderId"] == "hft-1"
    assert decoded["params"]["timeInForce"] == "GTC"
    assert decoded["raw"] == {"x": [1, 2]}
    assert decoded["fragment"] == "constant"
    assert decoded["side"] == Side.BUY.value
    assert encode_json(order_params()) == msgspec.json.encode(order_params())


def test_encode_json_accepts_orjson_options():
    assert encode_json({"b": 1, "a": 2}, option=orjson.OPT_SORT_KEYS) == b'{"a":2,"b":1}'


def test_enums_of_the_core_types_encode_as_their_values():
    for member in (OrderType.LIMIT, TimeInForce.IOC, Side.SELL):
        assert decode_json(encode_json({"v": member}))["v"] == member.value
        assert decode_json(Encoder().encode({"v": member}))["v"] == member.value


ENCODE_CASES = [
    ("circular_list", circular_list, CodecErrorKind.CIRCULAR_REFERENCE),
    ("circular_dict", circular_dict, CodecErrorKind.CIRCULAR_REFERENCE),
    ("circular_through_struct", lambda: Holder(circular_list()), CodecErrorKind.CIRCULAR_REFERENCE),
    ("deep_nesting", lambda: deep_list(5_000), CodecErrorKind.NESTING_DEPTH),
    ("unsupported_object", Opaque, CodecErrorKind.UNSUPPORTED_TYPE),
    ("unsupported_inside_struct", lambda: {"h": Holder(Opaque())}, CodecErrorKind.UNSUPPORTED_TYPE),
    ("tuple_dict_key", lambda: {(1, 2): 3}, CodecErrorKind.UNSUPPORTED_TYPE),
    ("lone_surrogate", lambda: {"note": "x\ud800"}, CodecErrorKind.UTF8),
    ("lone_surrogate_in_struct", lambda: Holder("x\ud800"), CodecErrorKind.UTF8),
]


@pytest.mark.parametrize(("build", "kind"), [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES])
def test_encode_json_classifies_failures(build, kind, counters):
    value = build()
    with pytest.raises(CodecError) as caught:
        encode_json(value, counters=counters)
    assert caught.value.kind is kind
    assert caught.value.operation is CodecOperation.ENCODE
    assert counters.counts[kind] == 1 and counters.total == 1


@pytest.mark.parametrize(("build", "kind"), [c[1:] for c in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES])
def test_struct_encoder_classifies_the_same_failures(build, kind, counters):
    value = build()
    with pytest.raises(CodecError) as caught:
        Encoder(counters=counters).encode(value)
    assert caught.value.kind is kind
    buffer = bytearray(16)
    with pytest.raises(CodecError) as caught:
        Encoder(counters=counters).encode_into(value, buffer)
    assert caught.value.kind is kind
    assert counters.counts[kind] == 2


def test_circular_reference_names_where_the_cycle_closes(counters):
    with pytest.raises(CodecError) as caught:
        encode_json({"outer": circular_list()}, counters=counters)
    assert caught.value.path == "$.outer[1]"


def test_orjson_refuses_integers_beyond_64_bits(counters):
    for number in (2**64, -(2**63) - 1, 10**30):
        with pytest.raises(CodecError) as caught:
            encode_json({"id": number}, counters=counters)
        assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
    assert encode_json([2**64 - 1, -(2**63)]) == b"[18446744073709551615,-9223372036854775808]"


def test_struct_encoder_checks_the_integer_range_only_when_asked(counters):
    value = Holder({"ids": [1, 2**64]})
    assert Encoder(counters=counters).encode(value) == b'{"inner":{"ids":[1,18446744073709551616]}}'
    checked = Encoder(check_integer_range=True, counters=counters)
    with pytest.raises(CodecError) as caught:
        checked.encode(value)
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
    assert caught.value.path == "$.inner.ids[1]"
    with pytest.raises(CodecError):
        checked.encode_into(value, bytearray())
    assert checked.encode(Holder({"ids": [2**64 - 1], "name": "1" * 40})) == (
        b'{"inner":{"ids":[18446744073709551615],"name":"' + b"1" * 40 + b'"}}'
    )


def test_an_integer_too_long_to_print_is_still_reported(counters):
    with pytest.raises(CodecError) as caught:
        Encoder(check_integer_range=True, counters=counters).encode([10**5000])
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE
    with pytest.raises(CodecError) as caught:
        encode_json([10**5000], counters=counters)
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE


def test_encode_into_reuses_one_buffer_for_many_orders():
    encoder = Encoder()
    buffer = bytearray(64)
    decoder = TypedDecoder(OrderParams)
    for number in range(50):
        encoder.encode_into(order_params(f"hft-{number}"), buffer)
        assert decoder.decode(buffer) == order_params(f"hft-{number}")
    prefix = bytearray(b'{"id":1,"params":')
    encoder.encode_into(order_params(), prefix, -1)
    assert prefix.startswith(b'{"id":1,"params":{"symbol":"BTCUSDT"')


def test_encoder_keeps_struct_field_order_and_sorts_when_asked():
    assert Encoder().encode({"b": 1, "a": 2}) == b'{"b":1,"a":2}'
    assert Encoder(order="sorted").encode({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


def test_encoder_enc_hook_extends_supported_types():
    encoder = Encoder(enc_hook=lambda value: "opaque" if isinstance(value, Opaque) else None)
    assert encoder.encode([Opaque()]) == b'["opaque"]'


def test_a_decoded_trade_encodes_back_to_the_same_wire_fields():
    frame = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
        b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
    )
    message = TypedDecoder(CombinedStreamMessage[TradeEvent]).decode(frame)
    again = decode_json(encode_json(message))
    original = decode_json(frame)
    assert {key: again["data"][key] for key in original["data"]} == original["data"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_encode_then_decode_is_the_identity_for_json_values(value):
    assert decode_json(encode_json(value)) == value
    assert decode_json(Encoder().encode(value)) == value
    buffer = bytearray()
    Encoder().encode_into(value, buffer)
    assert decode_json(buffer) == value


@given(st.integers())
@settings(max_examples=200, deadline=None)
def test_encode_json_accepts_exactly_the_64_bit_range(number):
    if -(2**63) <= number <= 2**64 - 1:
        assert decode_json(encode_json([number])) == [number]
    else:
        with pytest.raises(CodecError) as caught:
            encode_json([number], counters=CodecErrorCounters())
        assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE


def test_decimal_is_unsupported_by_orjson_but_encoded_as_string_by_msgspec(counters):
    with pytest.raises(CodecError) as caught:
        encode_json({"price": decimal.Decimal("1.5")}, counters=counters)
    assert caught.value.kind is CodecErrorKind.UNSUPPORTED_TYPE
    assert Encoder().encode({"price": decimal.Decimal("1.5")}) == b'{"price":"1.5"}'
