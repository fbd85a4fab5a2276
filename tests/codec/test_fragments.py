"""Fragments spliced into payloads stay valid JSON; the cache is a bounded LRU with a TTL."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftkit.codec import (
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    DuplicateMemberError,
    Encoder,
    FragmentCache,
    JsonFragment,
    ObjectMembers,
    decode_json,
    encode_json,
)
from hftkit.core.clock import SimulatedClock

SECOND = 1_000_000_000
ORDER_CONSTANTS = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}


class Subscription(msgspec.Struct):
    id: int
    params: msgspec.Raw


def order_changes(number: int) -> dict[str, Any]:
    return {
        "price": "61837.63",
        "quantity": "0.002",
        "newClientOrderId": f"hft-{number}",
        "timestamp": number,
    }


# --- splicing --------------------------------------------------------------------------------------


def test_object_members_render_a_valid_object_with_constants_first():
    members = ObjectMembers(ORDER_CONSTANTS)
    assert members.members == b'"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC"'
    rendered = members.render(order_changes(7))
    assert rendered.startswith(b'{"symbol":"BTCUSDT"')
    assert decode_json(rendered) == {**ORDER_CONSTANTS, **order_changes(7)}
    assert isinstance(rendered, bytes)


def test_object_members_with_nothing_on_one_side():
    assert decode_json(ObjectMembers(ORDER_CONSTANTS).render({})) == ORDER_CONSTANTS
    assert ObjectMembers({}).render({"a": 1}) == b'{"a":1}'
    assert ObjectMembers({}).render({}) == b"{}"


def test_object_members_render_structs_and_any_mapping():
    members = ObjectMembers({"method": "order.place"})
    rendered = members.render(MappingProxyType({"params": Subscription(id=1, params=msgspec.Raw(b"[]"))}))
    assert decode_json(rendered) == {"method": "order.place", "params": {"id": 1, "params": []}}


def test_object_members_refuse_a_duplicate_key():
    with pytest.raises(DuplicateMemberError, match="symbol"):
        ObjectMembers(ORDER_CONSTANTS).render({"symbol": "ETHUSDT", "price": "1"})


def test_object_members_classify_what_cannot_be_encoded(counters):
    with pytest.raises(CodecError) as caught:
        ObjectMembers({"bad": object()}, counters)
    assert caught.value.kind is CodecErrorKind.UNSUPPORTED_TYPE
    with pytest.raises(CodecError) as caught:
        ObjectMembers(ORDER_CONSTANTS).render({"id": 2**64}, counters)
    assert caught.value.kind is CodecErrorKind.NUMBER_OUT_OF_RANGE


def test_json_fragment_splices_through_orjson_and_through_msgspec():
    params = JsonFragment.from_value({"streams": ["btcusdt@trade", "btcusdt@depth@100ms"]})
    via_orjson = encode_json({"method": "SUBSCRIBE", "params": params.fragment, "id": 1})
    assert decode_json(via_orjson) == {
        "method": "SUBSCRIBE",
        "params": {"streams": ["btcusdt@trade", "btcusdt@depth@100ms"]},
        "id": 1,
    }
    via_msgspec = Encoder().encode(Subscription(id=2, params=params.raw))
    assert decode_json(via_msgspec)["params"] == {"streams": ["btcusdt@trade", "btcusdt@depth@100ms"]}
    assert params.size == len(params.json)


def test_json_fragment_from_json_refuses_invalid_json(counters):
    assert JsonFragment.from_json('{"a": [1, 2]}').json == b'{"a": [1, 2]}'
    assert JsonFragment.from_json(bytearray(b"[1]")) == JsonFragment(b"[1]")
    for broken, kind in ((b'{"a":', CodecErrorKind.TRUNCATED), (b"{a}", CodecErrorKind.SYNTAX)):
        with pytest.raises(CodecError) as caught:
            JsonFragment.from_json(broken, counters)
        assert caught.value.kind is kind
    assert counters.total == 2


@given(
    st.dictionaries(st.text(max_size=8), st.integers(-(2**63), 2**63) | st.text(max_size=8), max_size=6),
    st.dictionaries(st.text(max_size=8), st.booleans() | st.none() | st.text(max_size=8), max_size=6),
)
@settings(max_examples=200, deadline=None)
def test_any_splice_of_disjoint_members_decodes_to_their_union(constant, changing):
    members = ObjectMembers(constant)
    if not members.keys.isdisjoint(changing):
        with pytest.raises(DuplicateMemberError):
            members.render(changing)
        return
    assert decode_json(members.render(changing)) == {**constant, **changing}


# --- the cache -------------------------------------------------------------------------------------


def test_cache_counts_hits_and_misses_and_returns_the_stored_piece():
    cache = FragmentCache(max_entries=4)
    assert cache.get("order:BTCUSDT") is None
    stored = cache.put_members("order:BTCUSDT", ORDER_CONSTANTS)
    assert cache.get("order:BTCUSDT") is stored
    assert cache.object_members("order:BTCUSDT", lambda: pytest.fail("must not rebuild")) is stored
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.size, stats.evictions) == (2, 1, 1, 0)
    assert stats.hit_ratio == pytest.approx(2 / 3)
    assert stats.total_bytes == len(stored.members)


def test_cache_builds_on_a_miss_only():
    cache = FragmentCache(max_entries=4)
    calls: list[int] = []

    def build() -> dict[str, Any]:
        calls.append(1)
        return {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}

    first = cache.fragment(("subscribe", "btcusdt"), build)
    second = cache.fragment(("subscribe", "btcusdt"), build)
    assert first is second and len(calls) == 1
    assert decode_json(first.json)["params"] == ["btcusdt@trade"]


def test_cache_evicts_the_least_recently_used_piece():
    cache = FragmentCache(max_entries=3)
    for name in ("a", "b", "c"):
        cache.put_value(name, {"name": name})
    cache.get("a")  # "b" is now the least recently used
    cache.put_value("d", {"name": "d"})
    assert "b" not in cache and all(name in cache for name in ("a", "c", "d"))
    assert cache.stats.evictions == 1
    assert len(cache) == 3


def test_replacing_a_key_neither_grows_the_cache_nor_counts_an_eviction():
    cache = FragmentCache(max_entries=2)
    cache.put_json("a", b"[1]")
    cache.put_json("a", b"[1,2,3]")
    assert len(cache) == 1 and cache.stats.evictions == 0
    assert cache.stats.total_bytes == len(b"[1,2,3]")


def test_pieces_expire_after_the_ttl_even_when_used():
    clock = SimulatedClock()
    cache = FragmentCache(max_entries=8, ttl_ns=10 * SECOND, clock=clock)
    cache.put_value("listen-key", {"listenKey": "abc"})
    clock.advance(9 * SECOND)
    assert cache.get("listen-key") is not None  # a hit does not extend the TTL
    assert "listen-key" in cache
    clock.advance(1 * SECOND)
    assert "listen-key" not in cache
    assert cache.get("listen-key") is None
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.expirations, stats.size, stats.total_bytes) == (1, 1, 1, 0, 0)


def test_purge_expired_drops_only_stale_pieces():
    clock = SimulatedClock()
    cache = FragmentCache(max_entries=8, ttl_ns=5 * SECOND, clock=clock)
    cache.put_value("old", 1)
    clock.advance(3 * SECOND)
    cache.put_value("new", 2)
    clock.advance(2 * SECOND)
    assert cache.purge_expired() == 1
    assert "old" not in cache and "new" in cache
    assert cache.stats.expirations == 1
    assert FragmentCache().purge_expired() == 0


def test_invalidate_and_clear():
    cache = FragmentCache(max_entries=8)
    cache.put_value("a", 1)
    cache.put_value("b", 2)
    assert cache.invalidate("a") is True and cache.invalidate("a") is False
    cache.clear()
    assert len(cache) == 0 and cache.stats.total_bytes == 0 and cache.stats.evictions == 0


def test_asking_for_the_wrong_shape_of_piece_is_a_type_error():
    cache = FragmentCache()
    cache.put_value("value", [1])
    cache.put_members("members", {"a": 1})
    with pytest.raises(TypeError, match="ObjectMembers"):
        cache.object_members("value", dict)
    with pytest.raises(TypeError, match="JsonFragment"):
        cache.fragment("members", list)


def test_invalid_json_never_enters_the_cache():
    cache = FragmentCache(counters=CodecErrorCounters())
    with pytest.raises(CodecError):
        cache.put_json("bad", b'{"a":}')
    assert "bad" not in cache and len(cache) == 0


def test_cache_rejects_meaningless_bounds():
    with pytest.raises(ValueError, match="max_entries"):
        FragmentCache(max_entries=0)
    with pytest.raises(ValueError, match="ttl_ns"):
        FragmentCache(ttl_ns=0)


operations = st.lists(
    st.tuples(st.sampled_from(["put", "get", "advance", "invalidate"]), st.integers(0, 12)),
    max_size=80,
)


@given(st.integers(1, 6), st.sampled_from([None, 3, 10]), operations)
@settings(max_examples=200, deadline=None)
def test_cache_matches_an_lru_model_and_never_exceeds_its_bound(max_entries, ttl_seconds, steps):
    clock = SimulatedClock()
    ttl_ns = None if ttl_seconds is None else ttl_seconds * SECOND
    cache = FragmentCache(max_entries=max_entries, ttl_ns=ttl_ns, clock=clock)
    model: OrderedDict[int, tuple[bytes, int]] = OrderedDict()  # key -> (json, stored_at)
    hits = misses = 0
    for operation, number in steps:
        now = clock.monotonic_ns()
        if operation == "put":
            model.pop(number, None)
            model[number] = (encode_json([number]), now)
            while len(model) > max_entries:
                model.popitem(last=False)
            cache.put_value(number, [number])
        elif operation == "get":
            entry = model.get(number)
            fresh = entry is not None and (ttl_ns is None or now - entry[1] < ttl_ns)
            piece = cache.get(number)
            if fresh:
                hits += 1
                model.move_to_end(number)
                assert isinstance(piece, JsonFragment) and piece.json == entry[0]
            else:
                misses += 1
                model.pop(number, None)
                assert piece is None
        elif operation == "advance":
            clock.advance(number * SECOND // 4)
        else:
            assert cache.invalidate(number) is (number in model)
            model.pop(number, None)
        assert len(cache) <= max_entries
        assert len(cache) == len(model)
    stats = cache.stats
    assert (stats.hits, stats.misses) == (hits, misses)
    assert stats.total_bytes == sum(len(json) for json, _ in model.values())
