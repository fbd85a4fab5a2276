"""Encoding: orjson for generic values, msgspec for Structs, every failure classified and counted.

Neither library refuses NaN or infinity: both write ``null``. hftkit puts prices and quantities
on the wire as decimal strings built from integer ticks, so a float never reaches an order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec
import orjson

from hftkit.codec.classify import classify_encode_error
from hftkit.codec.errors import (
    DEFAULT_COUNTERS,
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
    raise_counted,
)
from hftkit.codec.integers import describe_integer, find_out_of_range_integer, may_contain_wide_integer

ENCODE_FAILURES: tuple[type[BaseException], ...] = (TypeError, ValueError, RecursionError, OverflowError)
"""What orjson and msgspec raise for values they cannot encode (``JSONEncodeError`` is a TypeError)."""

_STRUCT_ENCODER = msgspec.json.Encoder()


def _orjson_default(value: Any) -> Any:
    """Let orjson embed msgspec Structs and ``msgspec.Raw`` as pre-encoded fragments."""
    if isinstance(value, msgspec.Struct):
        return orjson.Fragment(_STRUCT_ENCODER.encode(value))
    if isinstance(value, msgspec.Raw):
        return orjson.Fragment(bytes(value))
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_json(value: Any, *, option: int = 0, counters: CodecErrorCounters | None = None) -> bytes:
    """Encode ``value`` (dicts, lists, scalars, Structs, ``orjson.Fragment``) to compact JSON bytes.

    ``option`` takes orjson flags (e.g. ``orjson.OPT_SORT_KEYS``). Integers must fit in 64 bits
    (orjson's limit); Structs nested inside follow msgspec's rules.
    """
    try:
        return orjson.dumps(value, default=_orjson_default, option=option)
    except ENCODE_FAILURES as exception:
        return raise_counted(
            classify_encode_error(exception, value),
            DEFAULT_COUNTERS if counters is None else counters,
            exception,
        )


class Encoder:
    """A reusable msgspec JSON encoder for Structs and builtins, with a buffer-reusing hot path.

    ``encode_into`` writes into a caller-owned ``bytearray`` (resized as needed), so steady-state
    order encoding allocates nothing. ``check_integer_range`` refuses ints beyond 64 bits, which
    msgspec would otherwise write (venues reject or, worse, truncate them).
    """

    __slots__ = ("_check_integer_range", "_encode", "_encode_into", "counters")

    def __init__(
        self,
        *,
        enc_hook: Callable[[Any], Any] | None = None,
        order: Literal["deterministic", "sorted"] | None = None,
        check_integer_range: bool = False,
        counters: CodecErrorCounters | None = None,
    ) -> None:
        encoder = msgspec.json.Encoder(enc_hook=enc_hook, order=order)
        self._encode = encoder.encode
        self._encode_into = encoder.encode_into
        self._check_integer_range = check_integer_range
        self.counters = DEFAULT_COUNTERS if counters is None else counters

    def encode(self, value: Any) -> bytes:
        """Encode ``value`` to new bytes; raise a counted ``CodecError`` when it cannot be encoded."""
        try:
            encoded = self._encode(value)
        except ENCODE_FAILURES as exception:
            return raise_counted(classify_encode_error(exception, value), self.counters, exception)
        if self._check_integer_range and may_contain_wide_integer(encoded):
            self._verify_integer_range(value)
        return encoded

    def encode_into(self, value: Any, buffer: bytearray, offset: int = 0) -> None:
        """Write ``value`` into ``buffer`` from ``offset`` on; the buffer is truncated/grown to fit.

        ``offset=-1`` appends. On failure the buffer's content past ``offset`` is unspecified.
        """
        try:
            self._encode_into(value, buffer, offset)
        except ENCODE_FAILURES as exception:
            raise_counted(classify_encode_error(exception, value), self.counters, exception)
        if self._check_integer_range and may_contain_wide_integer(buffer):
            self._verify_integer_range(value)

    def _verify_integer_range(self, value: Any) -> None:
        found = find_out_of_range_integer(value)
        if found is None:
            return
        path, number = found
        error = CodecError(
            CodecErrorKind.NUMBER_OUT_OF_RANGE,
            CodecOperation.ENCODE,
            f"integer {describe_integer(number)} is outside the 64-bit range",
            path=path,
            target=type(value).__name__,
        )
        raise_counted(error, self.counters, None)
