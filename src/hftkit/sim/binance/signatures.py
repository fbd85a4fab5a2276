"""Binance request signatures as the simulated venue checks them, written from the venue's docs.

* HMAC-SHA256 keys: ``signature = hex(HMAC_SHA256(secretKey, totalParams))``, hex compared
  case-insensitively. Over REST ``totalParams`` is the query string followed by the body, as
  sent; over the WebSocket API it is every param but ``signature``, sorted by name, joined
  ``name=value&...`` (booleans written ``true``/``false``).
* Ed25519 keys (WebSocket API): the signature is the base64 Ed25519 signature of the same
  sorted-params payload.

This module does not use the client's signer (``hftkit.venues.binance.auth``): were the
client to sign the wrong bytes, the simulator refuses the request with -1022 as the venue would.
``sign_hmac`` exists for the simulator's own test harness (``binance.testing``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def sign_hmac(secret: str, payload: str) -> str:
    """The lowercase hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def hmac_matches(secret: str, payload: str, signature: str) -> bool:
    """Constant-time check of a hex HMAC-SHA256 signature, case-insensitive as Binance accepts.

    Compared as bytes: ``compare_digest`` refuses a str with non-ASCII characters, and a
    signature is whatever the client sent.
    """
    expected = sign_hmac(secret, payload).encode()
    return hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace"))


def rest_payload(query: str, body: str) -> str:
    """What a REST request signs: the query string and the body exactly as sent, concatenated."""
    return query + body


def websocket_payload(params: Mapping[str, Any]) -> str:
    """What a WebSocket API request signs: every param but ``signature``, sorted by name."""
    return "&".join(
        f"{name}={_payload_value(value)}" for name, value in sorted(params.items()) if name != "signature"
    )


def _payload_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def ed25519_matches(public_key: Ed25519PublicKey, payload: str, signature: str) -> bool:
    """An Ed25519 signature (base64, as Binance takes it) over the payload."""
    try:
        public_key.verify(base64.b64decode(signature, validate=True), payload.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


__all__ = ["ed25519_matches", "hmac_matches", "rest_payload", "sign_hmac", "websocket_payload"]
