"""Turn msgspec/orjson exceptions into classified ``CodecError``s (error path only, never hot).

The libraries signal most failures through one or two exception types, so the kind comes from
the exception type first and the message second. The message patterns below were checked
against msgspec 0.22 and orjson 3.x (see ``tests/codec/test_classify.py``); anything not
recognised falls back to the broad kind of its exception type, never to "no error".
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson

from hftkit.codec.errors import EXCERPT_RADIUS, CodecError, CodecErrorKind, CodecOperation
from hftkit.codec.integers import WIDE_INTEGER_BOUNDS, PathNode, render_path

_BYTE_POSITION = re.compile(r"\(byte (\d+)\)")
_JSON_PATH = re.compile(r" - at `(\$[^`]*)`")
_CONSTRAINT_BOUND = re.compile(r"Expected `int` [<>]=? (-?\d+)")
_SURROGATE_WORDS = ("surrogate",)
_SURROGATE_ESCAPE_WORDS = ("low surrogate", "high surrogate", "leading surrogate", "trailing surrogate")
_TRUNCATION_WORDS = ("truncated", "unexpected end of data", "zero-length, empty document", "eof while")
_UTF8_WORDS = ("not valid utf-8", "utf-8", "surrogate")


def excerpt(data: Any, position: int | None) -> str | None:
    """A short escaped slice of ``data`` around ``position`` (or its start), safe to put in a log."""
    text: str | memoryview
    try:
        if isinstance(data, str):
            text = data
        else:
            text = memoryview(data).cast("B")
    except (TypeError, ValueError):
        return None
    length = len(text)
    if length == 0:
        return ""
    center = 0 if position is None else max(0, min(position, length))
    start = max(0, center - EXCERPT_RADIUS)
    stop = min(length, center + EXCERPT_RADIUS)
    piece = text[start:stop]
    if isinstance(piece, str):
        rendered = piece.encode("unicode_escape", "backslashreplace").decode("ascii")
    else:
        rendered = repr(bytes(piece))[2:-1]
    prefix = "..." if start > 0 else ""
    suffix = "..." if stop < length else ""
    return f"{prefix}{rendered}{suffix}"


def _utf8_error_position(data: Any) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence (or lone surrogate in a ``str``)."""
    try:
        if isinstance(data, str):
            data.encode("utf-8")
        else:
            bytes(memoryview(data)).decode("utf-8")
    except UnicodeError as exception:
        return getattr(exception, "start", None)
    except (TypeError, ValueError):
        return None
    return None


def _orjson_opinion(data: Any) -> str | None:
    """orjson's message for the same input: it names surrogate errors that msgspec calls truncation."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exception:
        return str(exception.msg).lower()
    except (TypeError, ValueError):
        return None
    return None


def classify_decode_error(exception: BaseException, data: Any, target: str | None) -> CodecError:
    """Build the ``CodecError`` for a failed decode of ``data`` into ``target`` (a type name)."""
    message = str(exception)
    lowered = message.lower()
    position: int | None = None
    path: str | None = None
    if isinstance(exception, RecursionError):
        kind = CodecErrorKind.NESTING_DEPTH
    elif isinstance(exception, UnicodeError):
        kind = CodecErrorKind.UTF8
        position = _utf8_error_position(data)
    elif isinstance(exception, msgspec.ValidationError):
        kind, path = _classify_validation(message)
    elif isinstance(exception, orjson.JSONDecodeError):
        kind = _classify_orjson_decode(str(exception.msg).lower())
        position = exception.pos
    else:  # msgspec.DecodeError and anything a hook raised
        kind = _classify_syntax(lowered, data)
        found = _BYTE_POSITION.search(message)
        if found:
            position = int(found.group(1))
        elif kind is CodecErrorKind.UTF8:
            position = _utf8_error_position(data)
    if kind is CodecErrorKind.TRUNCATED and position is None:
        position = _length(data)
    return CodecError(
        kind,
        CodecOperation.DECODE,
        message,
        position=position,
        excerpt=excerpt(data, position),
        path=path,
        target=target,
    )


def _classify_validation(message: str) -> tuple[CodecErrorKind, str | None]:
    found_path = _JSON_PATH.search(message)
    path = found_path.group(1) if found_path else None
    if message.startswith("Number out of range") or "Integer value out of range" in message:
        return CodecErrorKind.NUMBER_OUT_OF_RANGE, path
    bound = _CONSTRAINT_BOUND.search(message)
    if bound and int(bound.group(1)) in WIDE_INTEGER_BOUNDS:
        return CodecErrorKind.NUMBER_OUT_OF_RANGE, path
    return CodecErrorKind.SCHEMA, path


def _classify_syntax(lowered: str, data: Any) -> CodecErrorKind:
    if any(word in lowered for word in _SURROGATE_WORDS) or "utf-8" in lowered:
        return CodecErrorKind.UTF8
    if any(word in lowered for word in _TRUNCATION_WORDS):
        # msgspec reports a high surrogate escape without its low half as truncation; orjson names it.
        opinion = _orjson_opinion(data)
        if opinion is not None and any(word in opinion for word in _SURROGATE_ESCAPE_WORDS):
            return CodecErrorKind.UTF8
        return CodecErrorKind.TRUNCATED
    if "recursion" in lowered or "depth" in lowered or "nesting" in lowered:
        return CodecErrorKind.NESTING_DEPTH
    return CodecErrorKind.SYNTAX


def _classify_orjson_decode(lowered: str) -> CodecErrorKind:
    if "depth limit" in lowered or "recursion" in lowered:
        return CodecErrorKind.NESTING_DEPTH
    if any(word in lowered for word in _UTF8_WORDS):
        return CodecErrorKind.UTF8
    if any(word in lowered for word in _TRUNCATION_WORDS):
        return CodecErrorKind.TRUNCATED
    if "infinity" in lowered or "out of range" in lowered:
        return CodecErrorKind.NUMBER_OUT_OF_RANGE
    return CodecErrorKind.SYNTAX


def classify_encode_error(exception: BaseException, value: Any) -> CodecError:
    """Build the ``CodecError`` for a failed encode of ``value``.

    Both libraries report a cycle and plain deep nesting with the same recursion error, so a
    cycle search over ``value`` (iterative, error path only) tells the two apart.
    """
    cause = exception.__cause__
    if isinstance(exception, orjson.JSONEncodeError) and isinstance(cause, Exception):
        # orjson wraps what ``default`` raised (e.g. msgspec encoding a nested Struct): that is the story.
        exception = cause
    message = str(exception)
    lowered = message.lower()
    if isinstance(exception, RecursionError) or _is_recursion_message(message):
        kind = (
            CodecErrorKind.CIRCULAR_REFERENCE
            if find_cycle(value) is not None
            else CodecErrorKind.NESTING_DEPTH
        )
    elif isinstance(exception, UnicodeError) or "utf-8" in lowered or "surrogate" in lowered:
        kind = CodecErrorKind.UTF8
    elif "64-bit" in lowered or "out of range" in lowered or "integer string conversion" in lowered:
        kind = CodecErrorKind.NUMBER_OUT_OF_RANGE
    else:
        kind = CodecErrorKind.UNSUPPORTED_TYPE
    path = find_cycle(value) if kind is CodecErrorKind.CIRCULAR_REFERENCE else None
    return CodecError(kind, CodecOperation.ENCODE, message, path=path, target=type(value).__name__)


def _is_recursion_message(message: str) -> bool:
    return "recursion" in message.lower()


def find_cycle(value: Any) -> str | None:
    """JSON path of the first container that contains itself (through any chain), or None.

    Iterative depth-first search with an explicit "on the current path" set, so a 100 000-deep
    acyclic value is walked without recursion and reported as acyclic. Paths are kept as linked
    steps and only spelled out for the answer, so the walk stays linear in the value's size.
    """
    on_path: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[Any, PathNode, bool]] = [(value, None, False)]
    while stack:
        item, node, leaving = stack.pop()
        identity = id(item)
        if leaving:
            on_path.discard(identity)
            done.add(identity)
            continue
        children = _children(item)
        if children is None or identity in done:
            continue
        if identity in on_path:
            return render_path(node)
        on_path.add(identity)
        stack.append((item, node, True))
        for child, step in children:
            if id(child) in on_path:
                return render_path((node, step))
            stack.append((child, (node, step), False))
    return None


def _children(item: Any) -> list[tuple[Any, str]] | None:
    if isinstance(item, dict):
        return [(child, f".{key}") for key, child in item.items()]
    if isinstance(item, (list, tuple)):
        return [(child, f"[{index}]") for index, child in enumerate(item)]
    if isinstance(item, (set, frozenset)):
        return [(child, "[*]") for child in item]
    if isinstance(item, msgspec.Struct):
        return [(getattr(item, name), f".{name}") for name in type(item).__struct_fields__]
    return None


def _length(data: Any) -> int | None:
    try:
        return len(data) if isinstance(data, str) else memoryview(data).nbytes
    except (TypeError, ValueError):
        return None
