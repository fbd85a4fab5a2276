"""Codec errors: one exception type with a ``kind``, and per-kind counters.

A feed handler catches ``CodecError``, reads its ``kind`` and carries on; the counters let an
operator see *which* kind of garbage a venue sends without parsing log lines.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, NoReturn

from hftkit.core.errors import HftkitError

LOGGER = logging.getLogger("hftkit.codec")

EXCERPT_RADIUS = 24
"""Characters of input shown on each side of an error position (kept short: logs are not dumps)."""


class CodecErrorKind(enum.Enum):
    """Why a payload could not be decoded or a value could not be encoded."""

    SYNTAX = "syntax"
    """Not JSON: an invalid character, a bad escape, trailing content."""
    TRUNCATED = "truncated"
    """JSON that stops early (empty input, a frame cut short): a transport problem more than a venue one."""
    UTF8 = "utf8"
    """Text that is not valid Unicode: invalid UTF-8 bytes or a lone UTF-16 surrogate."""
    SCHEMA = "schema"
    """Valid JSON of the wrong shape: a wrong type, a missing field, a violated constraint."""
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    """An integer beyond the 64-bit range (see ``hftkit.codec.integers``) or a float beyond a double."""
    NESTING_DEPTH = "nesting_depth"
    """Arrays/objects nested deeper than the codec supports."""
    CIRCULAR_REFERENCE = "circular_reference"
    """A value that contains itself (encoding only)."""
    UNSUPPORTED_TYPE = "unsupported_type"
    """A value with no JSON form, or a dict key that cannot become a JSON string (encoding only)."""


class CodecOperation(enum.Enum):
    DECODE = "decode"
    ENCODE = "encode"


class CodecError(HftkitError, ValueError):
    """A payload that could not be decoded, or a value that could not be encoded.

    ``detail`` is the underlying library's message; ``position`` is a byte offset (character
    offset for ``str`` input) when the library reports one; ``excerpt`` is a short, escaped slice
    of the input around it, safe to log; ``path`` is a JSON path such as ``$.data.E`` when known.
    """

    def __init__(
        self,
        kind: CodecErrorKind,
        operation: CodecOperation,
        detail: str,
        *,
        position: int | None = None,
        excerpt: str | None = None,
        path: str | None = None,
        target: str | None = None,
    ) -> None:
        self.kind = kind
        self.operation = operation
        self.detail = detail
        self.position = position
        self.excerpt = excerpt
        self.path = path
        self.target = target
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.operation.value} failed ({self.kind.value})"]
        if self.target:
            parts.append(f" as {self.target}")
        parts.append(f": {self.detail}")
        if self.path and self.path not in self.detail:
            parts.append(f" at {self.path}")
        if self.position is not None:
            parts.append(f" [position {self.position}]")
        if self.excerpt is not None:
            parts.append(f" near `{self.excerpt}`")
        return "".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_codec_error, (self.kind, self.operation, self.detail, self.__dict__.copy()))


def _rebuild_codec_error(
    kind: CodecErrorKind, operation: CodecOperation, detail: str, state: dict[str, Any]
) -> CodecError:
    return CodecError(
        kind,
        operation,
        detail,
        position=state.get("position"),
        excerpt=state.get("excerpt"),
        path=state.get("path"),
        target=state.get("target"),
    )


class CodecErrorCounters:
    """How many codec errors of each kind were seen, as plain ints (cheap to bump, easy to export).

    ``utf8_replacements`` counts payloads decoded in the opt-in lossy mode after invalid UTF-8 was
    replaced with U+FFFD: data was altered, so it is visible even though no error was raised.
    """

    __slots__ = ("counts", "utf8_replacements")

    def __init__(self) -> None:
        self.counts: dict[CodecErrorKind, int] = dict.fromkeys(CodecErrorKind, 0)
        self.utf8_replacements = 0

    def record(self, error: CodecError) -> bool:
        """Count ``error``; return True when it is the first of its kind (the caller logs it once)."""
        previous = self.counts[error.kind]
        self.counts[error.kind] = previous + 1
        return previous == 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def snapshot(self) -> dict[str, int]:
        """Counts keyed by kind name, plus ``utf8_replacements``: a plain dict for exporters."""
        result = {kind.value: count for kind, count in self.counts.items()}
        result["utf8_replacements"] = self.utf8_replacements
        return result

    def reset(self) -> None:
        for kind in self.counts:
            self.counts[kind] = 0
        self.utf8_replacements = 0

    def __repr__(self) -> str:
        nonzero = {kind.value: count for kind, count in self.counts.items() if count}
        return f"CodecErrorCounters({nonzero}, utf8_replacements={self.utf8_replacements})"


DEFAULT_COUNTERS = CodecErrorCounters()
"""Counters used by every codec object that is not given its own."""


def raise_counted(error: CodecError, counters: CodecErrorCounters, cause: BaseException | None) -> NoReturn:
    """Count ``error``, log the first of its kind, and raise it (chained to ``cause``)."""
    if counters.record(error):
        LOGGER.warning("first codec error of kind %s: %s", error.kind.value, error)
    raise error from cause
