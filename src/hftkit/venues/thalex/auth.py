"""Thalex login tokens: a JWT signed RS512 with the API key's RSA private key.

Written against ``cryptography`` directly (no PyJWT): the token is three base64url parts
and one RSA PKCS#1 v1.5 / SHA-512 signature, and the simulator verifies the same way.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hftkit.core.errors import HftkitError
from hftkit.core.secrets import Secret


class TokenError(HftkitError, ValueError):
    """A login token that is malformed, signed by another key, or too old."""


@dataclass(frozen=True)
class ThalexCredentials:
    """Key id and RSA private key; the PEM is a ``Secret`` (repr, logs and ``asdict`` redact it).

    A plain ``bytes``/``str`` PEM is accepted and wrapped; it is revealed only to sign a login.
    """

    key_id: str
    private_key_pem: Secret[bytes] = field(repr=False)
    account: str | None = None

    def __post_init__(self) -> None:
        pem: Any = self.private_key_pem
        if isinstance(pem, Secret):
            pem = pem.reveal()
        if isinstance(pem, str):
            pem = pem.encode()
        object.__setattr__(self, "private_key_pem", Secret(pem))

    def __reduce__(self) -> Any:
        raise TypeError("credentials are never pickled or written to disk")


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64url_decode(text: bytes) -> bytes:
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TokenError("a Thalex API key must be an RSA private key")
    return key


def make_login_token(credentials: ThalexCredentials, issued_at: float | None = None) -> str:
    """The ``public/login`` token: header ``{"alg":"RS512","kid":..,"typ":"JWT"}``, payload ``{"iat":..}``."""
    header = _b64url(orjson.dumps({"alg": "RS512", "kid": credentials.key_id, "typ": "JWT"}))
    payload = _b64url(orjson.dumps({"iat": time.time() if issued_at is None else issued_at}))
    signing_input = header + b"." + payload
    signature = load_private_key(credentials.private_key_pem.reveal()).sign(
        signing_input, padding.PKCS1v15(), hashes.SHA512()
    )
    return (signing_input + b"." + _b64url(signature)).decode()


def token_key_id(token: str) -> str:
    """The ``kid`` of a token's header, read before verification to find the public key."""
    try:
        header = orjson.loads(_b64url_decode(token.split(".")[0].encode()))
        key_id = header["kid"]
    except Exception as error:
        raise TokenError(f"malformed login token: {error}") from None
    if not isinstance(key_id, str):
        raise TokenError("login token header has no string kid")
    return key_id


def verify_login_token(token: str, public_key_pem: bytes, *, now: float, max_age_s: float = 30.0) -> float:
    """Check signature, algorithm and freshness; return ``iat``. Raises TokenError."""
    parts = token.encode().split(b".")
    if len(parts) != 3:
        raise TokenError("a login token has three dot-separated parts")
    try:
        header = orjson.loads(_b64url_decode(parts[0]))
        payload = orjson.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except Exception as error:
        raise TokenError(f"malformed login token: {error}") from None
    if not isinstance(header, dict) or header.get("alg") != "RS512":
        raise TokenError("login token must be signed RS512")
    public_key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TokenError("registered key is not an RSA public key")
    try:
        public_key.verify(signature, parts[0] + b"." + parts[1], padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        raise TokenError("login token signature does not verify") from None
    issued_at = payload.get("iat") if isinstance(payload, dict) else None
    if not isinstance(issued_at, int | float) or isinstance(issued_at, bool):
        raise TokenError("login token payload has no numeric iat")
    if abs(now - issued_at) > max_age_s:
        raise TokenError(f"login token iat is {now - issued_at:.1f}s away from server time")
    return float(issued_at)


def generate_key_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA key pair (private PKCS#8 PEM, public PEM), for the simulator and tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
