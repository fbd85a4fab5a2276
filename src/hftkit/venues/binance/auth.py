"""Binance request signing (HMAC-SHA256), sans-I/O.

REST: the signature covers the query string and the body exactly as sent, concatenated.
WebSocket API: it covers the params sorted by name, joined ``k=v&k=v``. The keyed HMAC is
prepared once and copied per request, which halves the cost of a signature.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hftkit.core.secrets import Secret, reveal


@dataclass(frozen=True)
class BinanceCredentials:
    """API key and HMAC secret, both held as ``Secret``: repr, logs and ``asdict`` show neither.

    Plain strings are accepted and wrapped, so callers that pass ``str`` keep working; the
    values come out (``.reveal()``) only where a request is signed or its key header is set.
    """

    api_key: Secret[str]
    secret: Secret[str]

    def __init__(self, api_key: str | Secret[str], secret: str | Secret[str]) -> None:
        object.__setattr__(self, "api_key", Secret(api_key))
        object.__setattr__(self, "secret", Secret(secret))
        if not self.api_key or not self.secret:
            raise ValueError("Binance credentials need both an API key and a secret")

    def __reduce__(self) -> Any:
        raise TypeError("credentials are never pickled or written to disk")


class HmacSigner:
    """Signs payloads with one secret; ``sign(b"a=1&b=2") -> hex digest``."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str | Secret[str]) -> None:
        self._keyed = hmac.new(reveal(secret).encode(), digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "HmacSigner(<keyed>)"

    def sign(self, payload: bytes) -> str:
        digest = self._keyed.copy()
        digest.update(payload)
        return digest.hexdigest()

    def sign_rest(self, query: str, body: str = "") -> str:
        """Signature of a REST request: over ``query + body`` exactly as they go on the wire."""
        return self.sign((query + body).encode())

    def verify_rest(self, query: str, body: str, signature: str) -> bool:
        """Constant-time check of a REST signature (case-insensitive hex, as Binance accepts).

        Compared as bytes: ``compare_digest`` raises on a str with non-ASCII characters, and a
        signature is whatever the client sent.
        """
        expected = self.sign_rest(query, body).encode()
        return hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace"))

    def sign_websocket_params(self, params: Mapping[str, object]) -> str:
        """Signature of a WebSocket API request: params except ``signature``, sorted by name."""
        payload = "&".join(
            f"{name}={_websocket_value(value)}"
            for name, value in sorted(params.items())
            if name != "signature"
        )
        return self.sign(payload.encode())


def _websocket_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
