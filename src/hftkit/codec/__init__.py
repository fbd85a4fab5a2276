"""JSON codecs for the hot path: typed decoding, generic encode/decode, classified errors, fragments.

Venue codecs decode frames with a ``TypedDecoder`` into their msgspec Structs; everything that
goes wrong becomes a ``CodecError`` whose ``kind`` is counted in ``CodecErrorCounters``.
"""

from hftkit.codec.classify import classify_decode_error, classify_encode_error, find_cycle
from hftkit.codec.decode import DECODE_FAILURES, Buffer, TypedDecoder, decode_json
from hftkit.codec.encode import Encoder, encode_json
from hftkit.codec.errors import (
    DEFAULT_COUNTERS,
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
)
from hftkit.codec.fragments import (
    DuplicateMemberError,
    FragmentCache,
    FragmentCacheStats,
    JsonFragment,
    ObjectMembers,
)
from hftkit.codec.integers import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    Int64,
    NonNegativeInt64,
    find_out_of_range_integer,
    may_contain_wide_integer,
)

__all__ = [
    "DECODE_FAILURES",
    "DEFAULT_COUNTERS",
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "Buffer",
    "CodecError",
    "CodecErrorCounters",
    "CodecErrorKind",
    "CodecOperation",
    "DuplicateMemberError",
    "Encoder",
    "FragmentCache",
    "FragmentCacheStats",
    "Int64",
    "JsonFragment",
    "NonNegativeInt64",
    "ObjectMembers",
    "TypedDecoder",
    "classify_decode_error",
    "classify_encode_error",
    "decode_json",
    "encode_json",
    "find_cycle",
    "find_out_of_range_integer",
    "may_contain_wide_integer",
]
