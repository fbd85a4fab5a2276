"""The 64-bit integer range, and how codecs enforce it.

msgspec decodes JSON integers of any size exactly into Python ints, so nothing is lost in
Python; the range matters where ints leave Python (numpy int64 columns, SQLite, the venue).
Two ways to enforce it:

* in the schema, for free: annotate wire fields with ``Int64`` / ``NonNegativeInt64`` and msgspec
  checks the bound while parsing; a violation is classified ``NUMBER_OUT_OF_RANGE`` (msgspec
  constraints must themselves fit in an int64, so there is no unsigned 64-bit alias);
* for schemas with plain ``int`` fields, ``check_integer_range=True`` on a decoder: a cheap scan
  of the raw bytes for a run of 19+ digits, and only on a hit an exact walk of the decoded value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

WIDE_INTEGER_BOUNDS = frozenset({INT64_MIN, INT64_MAX})
"""Constraint bounds that mean "64-bit overflow" rather than a business rule when violated."""

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
"""A signed 64-bit integer field: ids, timestamps, sequence numbers, signed lots."""
NonNegativeInt64 = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
"""A non-negative 64-bit field; a negative value is a schema error, a too-large one an overflow."""

_DIGIT_MASK = bytes(ord("0") if chr(code).isdigit() and code < 128 else ord(" ") for code in range(256))
_DIGIT_RUN = b"0" * 19


def may_contain_wide_integer(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds a run of 19+ ASCII digits: the only way to spell an out-of-range int.

    A false positive (a long digit run inside a string, a 19-digit nanosecond timestamp) only costs
    an exact check; there are no false negatives.
    """
    return _DIGIT_RUN in data.translate(_DIGIT_MASK)


def describe_integer(number: int) -> str:
    """The integer itself, or its size when Python refuses to spell it (over 4300 digits)."""
    try:
        return str(number)
    except ValueError:
        return f"<a {number.bit_length()}-bit integer>"


PathNode = tuple[Any, str] | None
"""A JSON path as linked steps ``(parent, ".name" | "[3]")``: O(1) to extend, spelled out on demand."""


def render_path(node: PathNode) -> str:
    """``$.data.bids[3]`` from linked steps."""
    steps: list[str] = []
    while node is not None:
        node, step = node
        steps.append(step)
    return "$" + "".join(reversed(steps))


def find_out_of_range_integer(value: Any) -> tuple[str, int] | None:
    """The JSON path and value of an int outside ``[INT64_MIN, UINT64_MAX]`` in ``value``.

    That range is what orjson (and most venues' int64/uint64 fields) can carry. Walks dicts
    (keys and values), lists, tuples, sets, msgspec Structs (by wire name) and dataclasses,
    iteratively so that deep values cannot exhaust the stack.
    """
    for node, item in _walk(value):
        if isinstance(item, int) and not INT64_MIN <= item <= UINT64_MAX:
            return render_path(node), item
    return None


def _walk(root: Any) -> Iterator[tuple[PathNode, Any]]:
    stack: list[tuple[PathNode, Any]] = [(None, root)]
    seen: set[int] = set()
    while stack:
        node, item = stack.pop()
        yield node, item
        if isinstance(item, (str, bytes, int, float)) or item is None:
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            for key, child in item.items():
                yield (node, ".<key>"), key
                stack.append(((node, f".{key}"), child))
        elif isinstance(item, (list, tuple)):
            stack.extend(((node, f"[{index}]"), child) for index, child in enumerate(item))
        elif isinstance(item, (set, frozenset)):
            stack.extend(((node, "[*]"), child) for child in item)
        elif isinstance(item, msgspec.Struct):
            names = type(item).__struct_encode_fields__
            for attribute, name in zip(type(item).__struct_fields__, names, strict=True):
                stack.append(((node, f".{name}"), getattr(item, attribute)))
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for field in dataclasses.fields(item):
                stack.append(((node, f".{field.name}"), getattr(item, field.name)))
