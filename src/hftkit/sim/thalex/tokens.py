"""Thalex ``public/login`` tokens as the simulated venue checks them, written from the venue's docs.

A login token is a JWT (RFC 7519) in compact form, ``header.payload.signature``, each part
base64url without padding. The header names the algorithm ``RS512`` and the API key id
``kid``; the payload carries ``iat``, the issue time in Unix seconds (an int or a float: the
official client sends a float). The signature is RSASSA-PKCS1-v1_5 with SHA-512 (RFC 7518
§3.3) over the ASCII ``header.payload``, made with the key's RSA private key; the venue holds
the public key registered under ``kid`` and refuses a token whose ``iat`` is too far from its
clock. This module does not use the client's token code (``hftkit.venues.thalex.auth``), so a
bug in how the client builds a token makes the simulator refuse the login, as the venue would.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hftkit.core.errors import HftkitError

ALGORITHM = "RS512"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class LoginTokenError(HftkitError, ValueError):
    """A login token the simulated venue refuses: malformed, badly signed, unknown key or stale."""


def _decode_part(part: str) -> bytes:
    """One base64url part of a compact JWT (the padding the format leaves out restored)."""
    if not _BASE64URL.fullmatch(part):
        raise LoginTokenError("a login token part is not base64url")
    try:
        return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise LoginTokenError(f"malformed login token part: {error}") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_decode_part(part))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoginTokenError(f"login token {what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise LoginTokenError(f"login token {what} is not a JSON object")
    return value


def _parts(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise LoginTokenError("a login token has three dot-separated parts")
    return parts[0], parts[1], parts[2]


def key_id_of(token: str) -> str:
    """The ``kid`` of a token's header: read before verifying, to find the registered public key."""
    header = _json_object(_parts(token)[0], "header")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise LoginTokenError("login token header has no key id (kid)")
    return key_id


def verify(token: str, public_key_pem: bytes, *, now: float, max_age_s: float) -> float:
    """Check the algorithm, the RS512 signature and the ``iat`` freshness; return ``iat``."""
    header_part, payload_part, signature_part = _parts(token)
    header = _json_object(header_part, "header")
    if header.get("alg") != ALGORITHM:
        raise LoginTokenError(f"login token must be signed {ALGORITHM}, not {header.get('alg')!r}")
    payload = _json_object(payload_part, "payload")
    signature = _decode_part(signature_part)
    public_key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise LoginTokenError("the registered key is not an RSA public key")
    signed = f"{header_part}.{payload_part}".encode("ascii", "replace")
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        raise LoginTokenError("login token signature does not verify") from None
    issued_at = payload.get("iat")
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        raise LoginTokenError("login token payload has no numeric iat")
    if abs(now - issued_at) > max_age_s:
        raise LoginTokenError(f"login token iat is {now - issued_at:.1f}s away from the venue's clock")
    return float(issued_at)


def generate_key_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA key pair (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM) for a sim API key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


__all__ = ["ALGORITHM", "LoginTokenError", "generate_key_pair", "key_id_of", "verify"]
