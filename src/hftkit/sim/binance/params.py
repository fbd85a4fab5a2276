"""Binance request parameters: parsing, signature and timestamp checks, typed getters, sans-I/O.

Params come from the query string or an urlencoded body (query wins on a shared name);
each getter raises ``BinanceApiError`` with Binance's exact code and message, so a handler
reads ``params.decimal_steps("price", ...)`` and never formats an error itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import parse_qsl, unquote_plus

from hftkit.core.errors import InvalidDecimalError, OffGridError
from hftkit.core.numbers import DecimalGrid, decimal_places
from hftkit.sim.binance.signatures import hmac_matches, rest_payload

DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_DECIMAL = re.compile(DECIMAL_RANGE)
INTEGER_RANGE = r"^[0-9]{1,20}$"
_INTEGER = re.compile(INTEGER_RANGE)
CLIENT_ID_RANGE = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ID = re.compile(CLIENT_ID_RANGE)
SYMBOL_RANGE = r"^[A-Z0-9-_.]{1,20}$"
_SYMBOL = re.compile(SYMBOL_RANGE)
_API_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# security of an endpoint: no key, API key only (listenKey, historicalTrades), signed
NONE, API_KEY, SIGNED = "NONE", "API_KEY", "SIGNED"
_Choice = TypeVar("_Choice")  # the value type of a Params.choice mapping

UNKNOWN_ERROR = (-1000, "An unknown error occurred while processing the request.")
SEND_STATUS_UNKNOWN = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)
INTERNAL_ERROR = "Internal error; unable to process your request. Please try again."
MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000


class BinanceApiError(Exception):
    """An answer with Binance's JSON error body ``{"code": .., "msg": ..}``.

    ``data`` carries the details some errors add beside code and msg (cancelReplace's
    ``{"cancelResult", "newOrderResult", ...}``), on REST and WebSocket API alike.
    """

    def __init__(
        self,
        code: int,
        message: str,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = dict(headers or {})
        self.data = dict(data) if data is not None else None

    def body(self) -> dict[str, object]:
        if self.data is not None:
            return {"code": self.code, "msg": self.message, "data": self.data}
        return {"code": self.code, "msg": self.message}


def mandatory(name: str) -> BinanceApiError:
    return BinanceApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, legal: str) -> BinanceApiError:
    return BinanceApiError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def not_required(name: str) -> BinanceApiError:
    return BinanceApiError(-1106, f"Parameter '{name}' sent when not required.")


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True) if raw else []


class Params:
    """A request's parameters by name, with Binance-coded typed getters."""

    __slots__ = ("_read", "values")

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self._read: set[str] = set()

    @classmethod
    def from_request(cls, query: str, body: str) -> Params:
        """Merge query string and body; duplicate names inside one of them are -1101."""
        values: dict[str, str] = {}
        for source in (query, body):
            seen: set[str] = set()
            for name, value in parse_pairs(source):
                if name in seen:
                    raise BinanceApiError(-1101, "Duplicate values for a parameter detected.")
                seen.add(name)
                values.setdefault(name, value)  # the query string was read first: it wins
        return cls(values)

    def __contains__(self, name: str) -> bool:
        return name in self.values and self.values[name] != ""

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value else None

    def text(self, name: str) -> str:
        value = self.values.get(name)
        if not value:
            raise mandatory(name)
        return value

    def symbol(self, name: str = "symbol") -> str:
        value = self.text(name)
        if not _SYMBOL.match(value):
            raise illegal(name, SYMBOL_RANGE)
        return value

    def optional_symbol(self, name: str = "symbol") -> str | None:
        return self.symbol(name) if name in self else None

    def choice(self, name: str, allowed: Mapping[str, _Choice], code: int, message: str) -> _Choice:
        value = self.text(name)
        found = allowed.get(value)
        if found is None:
            raise BinanceApiError(code, message)
        return found

    def integer(self, name: str, default: int | None = None) -> int:
        value = self.values.get(name)
        if not value:
            if default is None:
                raise mandatory(name)
            return default
        if not _INTEGER.match(value):
            raise illegal(name, INTEGER_RANGE)
        return int(value)

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name) if name in self else None

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", default)
        if value <= 0:
            raise BinanceApiError(
                -1100, f"Illegal characters found in parameter 'limit'; legal range is '1-{maximum}'."
            )
        return min(value, maximum)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if not value:
            return default
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise illegal(name, "true, false")
        return lowered == "true"

    def client_order_id(self, name: str) -> str | None:
        value = self.values.get(name)
        if not value:
            return None
        if not _CLIENT_ID.match(value):
            raise illegal(name, CLIENT_ID_RANGE)
        return value

    def decimal_steps(
        self,
        name: str,
        grid: DecimalGrid,
        precision: int,
        filter_name: str,
        precision_message: str | None = None,
    ) -> int:
        """A decimal on an instrument grid: bad text -1100, too many decimals -1111, off grid -1013."""
        value = self.text(name)
        if not _DECIMAL.match(value):
            raise illegal(name, DECIMAL_RANGE)
        try:
            if decimal_places(value) > precision:
                raise BinanceApiError(
                    -1111, precision_message or f"Parameter '{name}' has too much precision."
                )
            return grid.to_steps(value)
        except OffGridError:
            raise BinanceApiError(-1013, f"Filter failure: {filter_name}") from None
        except InvalidDecimalError:
            raise illegal(name, DECIMAL_RANGE) from None

    def plain_decimal(self, name: str) -> str:
        value = self.text(name)
        if not _DECIMAL.match(value):
            raise illegal(name, DECIMAL_RANGE)
        return value

    def forbid(self, *names: str) -> None:
        for name in names:
            if name in self:
                raise not_required(name)


def split_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature`` param from a raw urlencoded string: (rest, signature)."""
    if "signature=" not in raw:
        return raw, None
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


def check_api_key(api_key: str | None, secrets: Mapping[str, str]) -> str:
    """The secret of a known key; -2014 for an absent/malformed key, -2015 for an unknown one."""
    if not api_key or not _API_KEY.match(api_key):
        raise BinanceApiError(-2014, "API-key format invalid.", 401)
    secret = secrets.get(api_key)
    if secret is None:
        raise BinanceApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    return secret


def verify_signature(secret: str, query: str, body: str) -> None:
    """HMAC over query + body exactly as sent; failing that, over their URL-decoded form (§1.1)."""
    query_rest, query_signature = split_signature(query)
    body_rest, body_signature = split_signature(body)
    signature = query_signature if query_signature is not None else body_signature
    if not signature:
        raise mandatory("signature")
    signature = unquote_plus(signature)
    if hmac_matches(secret, rest_payload(query_rest, body_rest), signature):
        return
    if hmac_matches(secret, rest_payload(unquote_plus(query_rest), unquote_plus(body_rest)), signature):
        return
    raise BinanceApiError(-1022, "Signature for this request is not valid.")


def check_timestamp(params: Params, server_ms: int) -> None:
    """Binance's rule: ``timestamp < server + 1000`` and ``server - timestamp <= recvWindow``."""
    raw = params.get("timestamp")
    if raw is None:
        raise mandatory("timestamp")
    if not _INTEGER.match(raw):
        raise illegal("timestamp", INTEGER_RANGE)
    timestamp = int(raw)
    if timestamp > 100_000_000_000_000:  # microseconds
        timestamp //= 1000
    window_text = params.get("recvWindow")
    recv_window = DEFAULT_RECV_WINDOW_MS
    if window_text is not None:
        if not _DECIMAL.match(window_text):
            raise illegal("recvWindow", DECIMAL_RANGE)
        window = float(window_text)
        if window > MAX_RECV_WINDOW_MS:
            raise BinanceApiError(-1131, "recvWindow must be less than 60000")
        recv_window = int(window)
    if timestamp >= server_ms + 1000:
        raise BinanceApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - timestamp > recv_window:
        raise BinanceApiError(-1021, "Timestamp for this request is outside of the recvWindow.")


__all__ = [
    "BinanceApiError",
    "Params",
    "check_api_key",
    "check_timestamp",
    "illegal",
    "mandatory",
    "not_required",
    "split_signature",
    "verify_signature",
]
