"""Decoding: venue payloads straight into typed values, every failure classified and counted.

Input may be ``bytes``, ``bytearray``, ``memoryview`` (any contiguous buffer) or ``str``; msgspec
reads buffers in place, so a frame sliced out of a receive buffer is decoded without a copy.

Generic decoding (``decode_json``) also uses msgspec rather than orjson: both run at the same
speed on recorded Binance frames, but orjson turns integers beyond 64 bits into floats without
a word, which would silently alter data; msgspec keeps them exact.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, cast

import msgspec

from hftkit.codec.classify import classify_decode_error, excerpt
from hftkit.codec.errors import (
    DEFAULT_COUNTERS,
    CodecError,
    CodecErrorCounters,
    CodecErrorKind,
    CodecOperation,
    raise_counted,
)
from hftkit.codec.integers import describe_integer, find_out_of_range_integer, may_contain_wide_integer

T = TypeVar("T")

Buffer = bytes | bytearray | memoryview | str
"""What a decoder accepts: any contiguous bytes-like object or a ``str``."""

DECODE_FAILURES: tuple[type[BaseException], ...] = (msgspec.DecodeError, UnicodeError, RecursionError)
"""Exceptions msgspec raises for bad input (``ValidationError`` is a ``DecodeError``).

``RecursionError`` is how msgspec refuses JSON nested deeper than the interpreter's stack: catch
this tuple around every raw ``msgspec`` decode a venue reaches, never the two msgspec types alone,
and ``classify_decode_error`` names it ``NESTING_DEPTH``."""


@functools.lru_cache(maxsize=256)
def _msgspec_decoder(target: Any, strict: bool, dec_hook: Callable[[type, Any], Any] | None) -> Any:
    """One ``msgspec.json.Decoder`` per target type: building one walks the whole schema."""
    return msgspec.json.Decoder(target, strict=strict, dec_hook=dec_hook)


_QUALIFIED_NAME = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def _type_name(target: Any) -> str:
    """``CombinedStreamMessage[TradeEvent]`` rather than the fully qualified spelling."""
    if isinstance(target, type):
        return target.__name__
    return _QUALIFIED_NAME.sub(r"\1", str(target))


class TypedDecoder(Generic[T]):
    """Decode JSON into ``target`` (a Struct, a generic like ``CombinedStreamMessage[TradeEvent]``,
    ``list[...]``, ``Any``...) with validation; raise a counted ``CodecError`` on bad input.

    ``strict=False`` lets msgspec coerce strings to numbers where the schema asks for numbers.
    ``replace_invalid_utf8`` is the explicit lossy mode: a payload with invalid UTF-8 is decoded
    with U+FFFD in place of the bad bytes (counted in ``counters.utf8_replacements``) instead of
    failing. ``check_integer_range`` rejects ints outside ``[-2**63, 2**64-1]`` in schemas that use
    plain ``int`` (where int64 suffices, ``hftkit.codec.Int64`` in the schema does it for free).
    """

    __slots__ = (
        "_check_integer_range",
        "_decode",
        "_replace_invalid_utf8",
        "counters",
        "decode",
        "target",
        "target_name",
    )

    def __init__(
        self,
        target: type[T] | Any,
        *,
        strict: bool = True,
        replace_invalid_utf8: bool = False,
        check_integer_range: bool = False,
        counters: CodecErrorCounters | None = None,
        dec_hook: Callable[[type, Any], Any] | None = None,
    ) -> None:
        self.target = target
        self.target_name = _type_name(target)
        self.counters = DEFAULT_COUNTERS if counters is None else counters
        self._decode: Callable[[Buffer], T] = _msgspec_decoder(
            cast("Hashable", target), strict, dec_hook
        ).decode
        self._replace_invalid_utf8 = replace_invalid_utf8
        self._check_integer_range = check_integer_range
        self.decode: Callable[[Buffer], T] = self._build_decode()
        """Decode one JSON document; raise ``CodecError`` (counted) when it is not a valid ``target``."""

    def _build_decode(self) -> Callable[[Buffer], T]:
        """A closure over everything the hot path touches: no attribute lookups per frame."""
        decode = self._decode
        recover = self._recover_or_raise
        failures = DECODE_FAILURES
        if not self._check_integer_range:

            def decode_frame(data: Buffer) -> T:
                try:
                    return decode(data)
                except failures as exception:
                    return recover(exception, data)

            return decode_frame
        verify = self._verify_integer_range

        def decode_and_check_frame(data: Buffer) -> T:
            try:
                value = decode(data)
            except failures as exception:
                return recover(exception, data)
            verify(value, data)
            return value

        return decode_and_check_frame

    def __call__(self, data: Buffer) -> T:
        return self.decode(data)

    def _recover_or_raise(self, exception: BaseException, data: Buffer) -> T:
        error = classify_decode_error(exception, data, self.target_name)
        if error.kind is CodecErrorKind.UTF8 and self._replace_invalid_utf8 and not isinstance(data, str):
            text = bytes(memoryview(data)).decode("utf-8", "replace")
            try:
                value = self._decode(text)
            except DECODE_FAILURES as retry_exception:
                return raise_counted(
                    classify_decode_error(retry_exception, text, self.target_name),
                    self.counters,
                    retry_exception,
                )
            self.counters.utf8_replacements += 1
            if self._check_integer_range:
                self._verify_integer_range(value, text)
            return value
        return raise_counted(error, self.counters, exception)

    def _verify_integer_range(self, value: Any, data: Buffer) -> None:
        if isinstance(data, (bytes, bytearray)) and not may_contain_wide_integer(data):
            return
        found = find_out_of_range_integer(value)
        if found is None:
            return
        path, number = found
        position = _find_number(data, number)
        error = CodecError(
            CodecErrorKind.NUMBER_OUT_OF_RANGE,
            CodecOperation.DECODE,
            f"integer {describe_integer(number)} is outside the 64-bit range",
            position=position,
            excerpt=excerpt(data, position),
            path=path,
            target=self.target_name,
        )
        raise_counted(error, self.counters, None)

    def __repr__(self) -> str:
        return f"TypedDecoder({self.target_name})"


def _find_number(data: Buffer, number: int) -> int | None:
    spelled = describe_integer(number)
    if isinstance(data, str):
        found = data.find(spelled)
    else:
        found = bytes(memoryview(data)).find(spelled.encode("ascii"))
    return found if found >= 0 else None


_GENERIC: TypedDecoder[Any] = TypedDecoder(Any)


def decode_json(data: Buffer, counters: CodecErrorCounters | None = None) -> Any:
    """Decode any JSON value into dicts, lists, str, int (exact, any size), float, bool and None.

    For options (lossy UTF-8, integer range) build a ``TypedDecoder(Any, ...)`` once and reuse it.
    """
    if counters is None:
        return _GENERIC.decode(data)
    try:
        return _GENERIC._decode(data)
    except DECODE_FAILURES as exception:
        return raise_counted(classify_decode_error(exception, data, "Any"), counters, exception)
