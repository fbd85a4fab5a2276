"""Secret values (API keys, HMAC secrets, private keys) that never show themselves.

A ``Secret`` prints, logs, pickles and compares as a redacted form; only ``reveal()`` gives the
value, and only the code that signs calls it. Leaking a key through ``repr()`` in a traceback,
a log line or ``dataclasses.asdict`` is the commonest way keys escape a trading system.
"""

from __future__ import annotations

import hmac
from typing import Any, Generic, NoReturn, TypeVar

T = TypeVar("T", str, bytes)

REDACTED = "**********"


class Secret(Generic[T]):
    """A str or bytes value that shows only a redacted form (with a short hint of its length)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, (str, bytes)):
            raise TypeError(f"a secret is str or bytes, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> T:
        """The value itself: call only where it is used (signing, login), never to show it."""
        value: T = object.__getattribute__(self, "_value")
        return value

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self.reveal())

    def __len__(self) -> int:
        return len(self.reveal())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other.reveal()
        value = self.reveal()
        if type(other) is not type(value):
            return NotImplemented
        # constant time: equality of secrets must not leak a prefix through timing
        return hmac.compare_digest(value, other)

    def __hash__(self) -> int:
        return hash((Secret, self.reveal()))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is never pickled or written to disk")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret[T]:
        return self

    def __copy__(self) -> Secret[T]:
        return self


def reveal(value: str | bytes | Secret[Any]) -> Any:
    """The plain value of a secret or of a plain str/bytes (callers accept either)."""
    return value.reveal() if isinstance(value, Secret) else value


__all__ = ["REDACTED", "Secret", "reveal"]
