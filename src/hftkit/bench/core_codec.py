"""``hftkit bench core`` (codec part): typed decode of real Binance frames, order encoding, fragments.

The frames are the first lines of a real recorded spot session, decoded whole, as received
(the ``{"stream":..,"data":{..}}`` envelope). Baselines run on the same bytes in the same run.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import orjson

from hftkit.bench.harness import BenchOptions, BenchResult, compare, interleaved, over_frames, repeated
from hftkit.codec import Encoder, FragmentCache, ObjectMembers, TypedDecoder, encode_json
from hftkit.datasets import hftbacktest_file, iter_recording
from hftkit.venues.binance.codec import CombinedStreamMessage, DepthUpdate, TradeEvent
from hftkit.venues.binance.recording import DEPTH, TRADE, line_kind

PEERS: tuple[str, ...] = ()

RECORDING = ("spot", "btcusdt_20240808.gz")
SAMPLE_LINES = 2000
TRADE_TARGET_RATIO = 5.0
DEPTH_TARGET_RATIO = 2.0


class OrderPlaceParams(msgspec.Struct, rename="camel"):
    """The params of a WebSocket API ``order.place`` (spot), as ccxt.pro sends them."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    price: str
    quantity: str
    new_client_order_id: str
    new_order_resp_type: str
    recv_window: int
    timestamp: int
    api_key: str
    signature: str


ORDER_CONSTANTS: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "newOrderRespType": "ACK",
    "recvWindow": 5000,
    "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
}


def order_changes(number: int) -> dict[str, Any]:
    """The members that change from one order to the next."""
    return {
        "price": "61837.63000000",
        "quantity": "0.00200000",
        "newClientOrderId": f"hftkit-{number:012d}",
        "timestamp": 1723161255342 + number,
        "signature": "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    }


def load_frames(lines: int = SAMPLE_LINES) -> tuple[list[bytes], list[bytes]]:
    """Trade frames and depthUpdate frames among the first ``lines`` of the recording."""
    trades: list[bytes] = []
    depths: list[bytes] = []
    for _, body in itertools.islice(iter_recording(hftbacktest_file(*RECORDING)), lines):
        kind = line_kind(body)
        if kind is TRADE:
            trades.append(body)
        elif kind is DEPTH:
            depths.append(body)
    return trades, depths


def _decode_rows(
    label: str, target: Any, frames: list[bytes], ratio_target: float, options: BenchOptions
) -> list[BenchResult]:
    decoder = TypedDecoder(target)
    typed, stdlib, fast_generic = interleaved(
        [over_frames(decode, frames) for decode in (decoder.decode, json.loads, orjson.loads)], options
    )
    detail: dict[str, Any] = {
        "messages": len(frames),
        "mean_bytes": round(sum(map(len, frames)) / max(len(frames), 1), 1),
        "decoder": decoder.target_name,
        "recording": "/".join(RECORDING),
    }
    ratio = stdlib / typed
    return [
        compare(
            f"codec.decode.{label}.typed",
            typed,
            "ns/msg",
            baseline="json.loads",
            baseline_value=stdlib,
            target=f">= {ratio_target:g}x json.loads",
            met=ratio >= ratio_target,
            **detail,
        ),
        compare(
            f"codec.decode.{label}.typed_vs_orjson",
            typed,
            "ns/msg",
            baseline="orjson.loads (untyped dicts)",
            baseline_value=fast_generic,
            **detail,
        ),
    ]


def _encode_rows(options: BenchOptions) -> list[BenchResult]:
    full_order = {**ORDER_CONSTANTS, **order_changes(1)}
    payload = {"id": "4a1b2c", "method": "order.place", "params": full_order}
    members = ObjectMembers(ORDER_CONSTANTS)
    changes = order_changes(1)
    struct_order = msgspec.convert(full_order, OrderPlaceParams)
    encoder = Encoder()
    buffer = bytearray(512)
    orjson_ns, stdlib_ns, splice_ns, whole_params_ns, struct_ns, stdlib_params_ns = interleaved(
        [
            repeated(lambda: encode_json(payload)),
            repeated(lambda: json.dumps(payload, separators=(",", ":")).encode()),
            repeated(lambda: members.render(changes)),
            repeated(lambda: encode_json(full_order)),
            repeated(lambda: encoder.encode_into(struct_order, buffer)),
            repeated(lambda: json.dumps(full_order, separators=(",", ":")).encode()),
        ],
        options,
    )
    return [
        compare(
            "codec.encode.order.orjson",
            orjson_ns,
            "ns/op",
            baseline="json.dumps(...).encode()",
            baseline_value=stdlib_ns,
            bytes=len(encode_json(payload)),
        ),
        compare(
            "codec.encode.order.members_splice",
            splice_ns,
            "ns/op",
            baseline="encode_json(whole params dict)",
            baseline_value=whole_params_ns,
            constant_bytes=len(members.members),
        ),
        compare(
            "codec.encode.order.struct_encode_into",
            struct_ns,
            "ns/op",
            baseline="json.dumps(...).encode()",
            baseline_value=stdlib_params_ns,
        ),
    ]


SUBSCRIBED_BASES = (
    *("btc", "eth", "bnb", "sol", "xrp", "doge", "ada", "trx", "avax", "link", "dot", "matic", "ltc"),
    *("bch", "near", "uni", "apt", "arb", "op", "atom", "fil", "etc", "xlm", "icp", "inj"),
)
STREAM_KINDS = ("trade", "depth@100ms", "bookTicker", "aggTrade")


def _fragment_rows(options: BenchOptions) -> list[BenchResult]:
    cache = FragmentCache(max_entries=256)
    small = {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth@100ms"], "id": 1}
    key = ("subscribe", "btcusdt")
    cache.put_value(key, small)

    # Resubscribing after a reconnect: same 100 streams, new request id.
    streams = [f"{base}usdt@{kind}" for base in SUBSCRIBED_BASES for kind in STREAM_KINDS]
    streams_key = ("streams", "all")

    def build_streams() -> list[str]:
        return streams

    def spliced() -> bytes:
        params = cache.fragment(streams_key, build_streams)
        return encode_json({"method": "SUBSCRIBE", "params": params.fragment, "id": 2})

    hit_ns, small_fresh_ns, splice_ns, large_fresh_ns = interleaved(
        [
            repeated(lambda: cache.get(key)),
            repeated(lambda: orjson.dumps(small)),
            repeated(spliced),
            repeated(lambda: orjson.dumps({"method": "SUBSCRIBE", "params": streams, "id": 2})),
        ],
        options,
    )
    stats = cache.stats
    return [
        compare(
            "codec.fragment.cache_hit",
            hit_ns,
            "ns/op",
            baseline="orjson.dumps (2-stream SUBSCRIBE afresh)",
            baseline_value=small_fresh_ns,
            hits=stats.hits,
            misses=stats.misses,
        ),
        compare(
            "codec.fragment.subscribe_100_streams",
            splice_ns,
            "ns/op",
            baseline="orjson.dumps (whole message afresh)",
            baseline_value=large_fresh_ns,
            bytes=len(spliced()),
        ),
    ]


def run(options: BenchOptions) -> list[BenchResult]:
    trades, depths = load_frames()
    return [
        *_decode_rows("trade", CombinedStreamMessage[TradeEvent], trades, TRADE_TARGET_RATIO, options),
        *_decode_rows("depth", CombinedStreamMessage[DepthUpdate], depths, DEPTH_TARGET_RATIO, options),
        *_encode_rows(options),
        *_fragment_rows(options),
    ]
