"""InfluxDB line protocol (sans-I/O encoder) and an HTTP sink for 1.x ``/write`` and 2.x/3.x
``/api/v2/write``: precision ns, gzip, behind the ``BatchingWriter`` (batch 1000, flush 2 s).

Why our own encoder: influxdb-client's ``Point`` builds and escapes every name on every point.
Here a :class:`LineSchema` fixes a measurement's field names and types once (escaped once), a
series' tag set is escaped once and cached, and a point costs one ``%``-format. Escaping follows
the spec: measurement ``,`` and space; tag keys, tag values and field keys ``,`` ``=`` and space;
string field values ``"`` and ``\\``. Newlines are refused in every part (InfluxDB cannot store
them) and non-finite floats are refused: each refusal is a :class:`LineProtocolError`, counted by
the caller, never a crash.

An unreachable InfluxDB is the writer's business (retry, breaker, counted drops); a ``400`` (points
InfluxDB refused, e.g. a field type clash) is counted in ``rejected_batches`` and not retried.
"""

from __future__ import annotations

import base64
import gzip
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from hftkit.core.errors import HftkitError

FieldKind = Literal["int", "float", "str", "bool"]

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})


class LineProtocolError(HftkitError, ValueError):
    """A point InfluxDB cannot store (a newline in a name, a non-finite float, no fields)."""


class InfluxWriteError(HftkitError, ConnectionError):
    """InfluxDB answered a write with a retryable error (5xx, 429) or could not be reached."""


def _checked(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a newline")
    if not text:
        raise LineProtocolError(f"{what} is empty")
    return text


def escape_measurement(name: str) -> str:
    return _checked(name, "measurement").translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str) -> str:
    """A tag key, a tag value or a field key."""
    return _checked(name, "tag or field name").translate(_KEY_ESCAPES)


def escape_string_field(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"string field {value[:40]!r} contains a newline")
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def format_field(value: object) -> str:
    """One field value in line protocol: ``12i``, ``1.5``, ``true``, ``"text"``."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field value {value!r} is not finite")
        return repr(value)
    if isinstance(value, str):
        return escape_string_field(value)
    raise LineProtocolError(f"unsupported field type {type(value).__name__}")


def tag_set(tags: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``,k=v,k2=v2`` sorted by key (InfluxDB's preferred order); empty values are left out."""
    items = tags.items() if isinstance(tags, Mapping) else tags
    return "".join(f",{escape_key(key)}={escape_key(value)}" for key, value in sorted(items) if value != "")


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, object],
    timestamp_ns: int | None = None,
) -> str:
    """One point of any shape, as one line with its newline (the general, slower path)."""
    if not fields:
        raise LineProtocolError(f"point of {measurement!r} has no fields")
    body = ",".join(f"{escape_key(key)}={format_field(value)}" for key, value in fields.items())
    stamp = "" if timestamp_ns is None else f" {int(timestamp_ns)}"
    return f"{escape_measurement(measurement)}{tag_set(tags)} {body}{stamp}\n"


class LineSchema:
    """A measurement with fixed field names and kinds: escaped once, one format per point.

    ``encode(series, values, timestamp_ns)``: ``series`` is the tag values in ``tag_keys``
    order (a tuple, cached after its first escape), ``values`` the field values in field order.
    """

    __slots__ = (
        "_float_positions",
        "_format",
        "_prefixes",
        "_string_positions",
        "fields",
        "measurement",
        "tag_keys",
    )

    def __init__(
        self, measurement: str, tag_keys: Sequence[str], fields: Sequence[tuple[str, FieldKind]]
    ) -> None:
        if not fields:
            raise LineProtocolError(f"schema {measurement!r} has no fields")
        self.measurement = measurement
        self.tag_keys = tuple(tag_keys)
        self.fields = tuple(fields)
        parts = []
        for index, (name, kind) in enumerate(fields):
            placeholder = {"int": "%di", "float": "%r", "str": "%s", "bool": "%s"}.get(kind)
            if placeholder is None:
                raise LineProtocolError(f"unknown field kind {kind!r} (int, float, str, bool)")
            parts.append(("," if index else "") + escape_key(name).replace("%", "%%") + "=" + placeholder)
        self._format = "%s " + "".join(parts) + " %d\n"
        self._float_positions = tuple(i for i, (_, kind) in enumerate(fields) if kind == "float")
        self._string_positions = tuple(i for i, (_, kind) in enumerate(fields) if kind in ("str", "bool"))
        self._prefixes: dict[tuple[str, ...], str] = {}

    def prefix(self, series: tuple[str, ...]) -> str:
        prefix = self._prefixes.get(series)
        if prefix is None:
            if len(series) != len(self.tag_keys):
                raise LineProtocolError(f"{self.measurement}: {len(series)} tag values for {self.tag_keys}")
            prefix = escape_measurement(self.measurement) + tag_set(zip(self.tag_keys, series, strict=True))
            if len(self._prefixes) < 100_000:  # a bounded cache: series are few, but never trust that
                self._prefixes[series] = prefix
        return prefix

    def encode(self, series: tuple[str, ...], values: Sequence[Any], timestamp_ns: int) -> str:
        if self._float_positions or self._string_positions:
            values = self._check(values)
        prefix = self._prefixes.get(series) or self.prefix(series)
        return self._format % (prefix, *values, timestamp_ns)

    def encode_many(self, rows: Iterable[tuple[tuple[str, ...], Sequence[Any], int]]) -> str:
        """Many points as one text (the body of a write)."""
        form = self._format
        prefixes = self._prefixes
        checked = bool(self._float_positions or self._string_positions)
        lines: list[str] = []
        append = lines.append
        for series, values, timestamp_ns in rows:
            if checked:
                values = self._check(values)
            prefix = prefixes.get(series) or self.prefix(series)
            append(form % (prefix, *values, timestamp_ns))
        return "".join(lines)

    def encode_columns(
        self, series: Sequence[tuple[str, ...]], columns: Sequence[Sequence[Any]], timestamps: Sequence[int]
    ) -> tuple[bytes, int]:
        """Many points, column-wise, formatted in Arrow's C++ kernels: ``(body, rejected)``.

        The batch path (the sink encodes each flushed batch here): no Python work per value, so
        it runs at millions of points per second. Rows InfluxDB cannot store (a non-finite
        float, a newline in a string or a tag) are left out and counted in ``rejected``.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        count = len(timestamps)
        if count == 0:
            return b"", 0
        if len(columns) != len(self.fields) or len(series) != count:
            raise LineProtocolError(
                f"{self.measurement}: {len(columns)} columns for {len(self.fields)} fields"
            )
        # one prefix per distinct series (escaped once, cached), mapped to rows in C
        distinct = list(dict.fromkeys(series))
        prefixes: list[str | None] = []
        for key in distinct:
            try:
                prefixes.append(self.prefix(key))
            except LineProtocolError:
                prefixes.append(None)
        if len(distinct) == 1:
            prefix_column: Any = pa.repeat(pa.scalar(prefixes[0], pa.string()), count)
        else:
            position = dict(zip(distinct, range(len(distinct)), strict=True))
            rows = pa.array(list(map(position.__getitem__, series)), pa.int32())
            prefix_column = pc.take(pa.array(prefixes, pa.string()), rows)
        parts: list[Any] = [prefix_column]
        valid = None if prefixes.count(None) == 0 else pc.is_valid(prefix_column)
        string = pa.string()
        for index, ((name, kind), column) in enumerate(zip(self.fields, columns, strict=True)):
            separator = ("," if index else " ") + escape_key(name) + "="
            if kind == "float":
                values = pa.array(column, pa.float64())
                if pc.sum(pc.is_finite(values)).as_py() != count:
                    finite = pc.is_finite(values)
                    valid = finite if valid is None else pc.and_(valid, finite)
                text = values.cast(string)
            elif kind == "int":
                text = pc.binary_join_element_wise(pa.array(column, pa.int64()).cast(string), "i", "")
            elif kind == "bool":
                text = pa.array(column, pa.bool_()).cast(string)
            else:
                raw = pa.array([str(value) for value in column], string)
                clean = pc.invert(pc.match_substring_regex(raw, "[\r\n]"))
                if pc.sum(clean).as_py() != count:
                    valid = clean if valid is None else pc.and_(valid, clean)
                escaped = pc.replace_substring(pc.replace_substring(raw, "\\", "\\\\"), '"', '\\"')
                separator += '"'
                text = pc.binary_join_element_wise(escaped, '"', "")
            parts.extend((separator, text))
        parts.extend((" ", pa.array(timestamps, pa.int64()).cast(string), "\n"))
        lines = pc.binary_join_element_wise(*parts, "")
        rejected = 0
        if valid is not None:
            valid = pc.fill_null(valid, False)
            rejected = count - pc.sum(valid).as_py()
            lines = pc.filter(lines, valid)
            if len(lines) == 0:
                return b"", rejected
        lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        offsets = memoryview(lines.buffers()[1]).cast("i")
        start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
        return lines.buffers()[2].to_pybytes()[start:end], rejected

    def _check(self, values: Sequence[Any]) -> Sequence[Any]:
        for index in self._float_positions:
            value = values[index]
            try:
                finite = value - value == 0  # False for NaN and +-inf; cheaper than isfinite
            except TypeError:
                finite = False
            if not finite or isinstance(value, bool):
                raise LineProtocolError(
                    f"{self.measurement}.{self.fields[index][0]}: {value!r} is not a finite number"
                )
        if self._string_positions:
            values = list(values)
            for index in self._string_positions:
                value = values[index]
                if self.fields[index][1] == "bool":
                    values[index] = "true" if value else "false"
                else:
                    values[index] = escape_string_field(str(value))
        return values


# the measurements hftkit writes (documented in docs/guide.md) ----------------------------------------
TOP_OF_BOOK = LineSchema(
    "top_of_book",
    ("venue", "symbol"),
    (("bid", "float"), ("ask", "float"), ("bid_size", "float"), ("ask_size", "float")),
)
TRADES = LineSchema(
    "trades", ("venue", "symbol", "side"), (("price", "float"), ("size", "float"), ("trade_id", "int"))
)
ORDERS = LineSchema(
    "orders",
    ("venue", "symbol", "side", "status"),
    (("client_order_id", "str"), ("price", "float"), ("quantity", "float"), ("filled", "float")),
)
FILLS = LineSchema(
    "fills",
    ("venue", "symbol", "side", "liquidity"),
    (("client_order_id", "str"), ("price", "float"), ("size", "float"), ("fee", "float")),
)
POSITIONS = LineSchema("positions", ("venue", "symbol"), (("position", "float"), ("average_price", "float")))
PNL = LineSchema(
    "pnl", ("venue", "symbol"), (("realized", "float"), ("unrealized", "float"), ("fees", "float"))
)
LATENCY = LineSchema(
    "latency",
    ("stage", "labels"),
    (
        ("p50_us", "float"),
        ("p90_us", "float"),
        ("p99_us", "float"),
        ("p999_us", "float"),
        ("max_us", "float"),
        ("count", "int"),
    ),
)
MEASUREMENTS = ("top_of_book", "trades", "orders", "fills", "positions", "pnl", "latency")


# the HTTP sink -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InfluxTarget:
    """Where to write: 1.x (``database``, optional user/password) or 2.x/3.x (org, bucket, token)."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "hftkit"
    username: str | None = None
    password: str | None = None
    org: str = ""
    bucket: str = ""
    token: str | None = None
    gzip: bool = True
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("InfluxDB 2.x/3.x writes need org and bucket")
        if self.api == "v1" and not self.database:
            raise ValueError("InfluxDB 1.x writes need a database")

    def write_url(self) -> str:
        base = self.url.rstrip("/")
        if self.api == "v2":
            return f"{base}/api/v2/write?" + urlencode(
                {"org": self.org, "bucket": self.bucket, "precision": "ns"}
            )
        return f"{base}/write?" + urlencode({"db": self.database, "precision": "ns"})

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        if self.token is not None:
            headers["Authorization"] = f"Token {self.token}"
        elif self.username is not None:
            credentials = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        return headers

    def __repr__(self) -> str:  # never print a token or a password
        return (
            f"InfluxTarget(url={self.url!r}, api={self.api!r}, database={self.database!r}, "
            f"bucket={self.bucket!r})"
        )


PointRow = tuple[LineSchema, tuple[str, ...], Sequence[Any], int]
"""(schema, tag values, field values, timestamp ns): what the hot path puts (no formatting there)."""


class InfluxHttpSink:
    """A ``Sink`` of line-protocol text lines and/or :data:`PointRow` tuples: one POST per batch
    (aiohttp, gzip, precision ns). Rows are encoded here, per batch, column-wise."""

    def __init__(self, target: InfluxTarget, *, compress_level: int = 1) -> None:
        self.target = target
        self.compress_level = compress_level
        self._url = target.write_url()
        self._headers = target.headers()
        self._session: Any = None
        self.posts = 0
        self.points = 0
        self.bytes_sent = 0
        self.rejected_batches = 0  # 400: InfluxDB refused points in the batch (not retried)
        self.rejected_points = 0  # rows no InfluxDB can store (non-finite, newline): left out
        self.last_rejection: str | None = None

    async def open(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.target.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def encode(self, batch: Sequence[str | PointRow]) -> bytes:
        """One write's body: text lines as they are, point rows column-wise per schema."""
        lines: list[str] = []
        groups: dict[
            LineSchema, tuple[Sequence[tuple[str, ...]], Sequence[Sequence[Any]], Sequence[int]]
        ] = {}
        if set(map(type, batch)) == {tuple}:  # rows only (the publisher's case): transpose in C
            schemas, all_series, all_values, all_stamps = zip(*batch, strict=True)
            kinds = set(schemas)
            if len(kinds) == 1:
                groups[schemas[0]] = (all_series, all_values, all_stamps)
            else:
                for schema in kinds:
                    chosen = [index for index, item in enumerate(schemas) if item is schema]
                    groups[schema] = (
                        [all_series[i] for i in chosen],
                        [all_values[i] for i in chosen],
                        [all_stamps[i] for i in chosen],
                    )
        else:
            mixed: dict[LineSchema, tuple[list[tuple[str, ...]], list[Sequence[Any]], list[int]]] = {}
            for item in batch:
                if isinstance(item, str):
                    lines.append(item)
                    continue
                schema, series, values, timestamp_ns = item
                group = mixed.get(schema)
                if group is None:
                    group = mixed[schema] = ([], [], [])
                group[0].append(series)
                group[1].append(values)
                group[2].append(timestamp_ns)
            groups.update(mixed)
        parts = ["".join(lines).encode()] if lines else []
        for schema, (group_series, group_rows, stamps) in groups.items():
            try:
                body, rejected = schema.encode_columns(
                    group_series, list(zip(*group_rows, strict=True)), stamps
                )
            except (LineProtocolError, TypeError, ValueError, ArithmeticError) as error:
                body, rejected = b"", len(stamps)
                self.last_rejection = f"{schema.measurement}: {error}"[:300]
            except Exception as error:  # pyarrow's conversion errors (ArrowInvalid is a ValueError)
                body, rejected = b"", len(stamps)
                self.last_rejection = f"{schema.measurement}: {type(error).__name__}: {error}"[:300]
            self.rejected_points += rejected
            if body:
                parts.append(body)
        return b"".join(parts)

    async def write(self, batch: Sequence[str | PointRow]) -> None:
        if not batch:
            return
        if self._session is None:
            await self.open()
        rejected_before = self.rejected_points
        body = self.encode(batch)
        if not body:
            return
        points = len(batch) - (self.rejected_points - rejected_before)
        if self.target.gzip:
            body = gzip.compress(body, self.compress_level)
        import aiohttp

        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as response:
                status = response.status
                text = "" if status < 300 else (await response.text())[:300]
        except (aiohttp.ClientError, OSError) as error:
            raise InfluxWriteError(f"InfluxDB at {self.target.url} unreachable: {error}") from None
        if status < 300:
            self.posts += 1
            self.points += points
            self.bytes_sent += len(body)
            return
        if status in (400, 413, 422):  # bad points: retrying cannot help; count them
            self.rejected_batches += 1
            self.last_rejection = f"{status}: {text}"
            return
        raise InfluxWriteError(f"InfluxDB write failed: {status} {text}")

    def status(self) -> dict[str, Any]:
        return {
            "url": self.target.url,
            "posts": self.posts,
            "points": self.points,
            "bytes_sent": self.bytes_sent,
            "rejected_batches": self.rejected_batches,
            "rejected_points": self.rejected_points,
            "last_rejection": self.last_rejection,
        }


__all__ = [
    "FILLS",
    "LATENCY",
    "MEASUREMENTS",
    "ORDERS",
    "PNL",
    "POSITIONS",
    "TOP_OF_BOOK",
    "TRADES",
    "InfluxHttpSink",
    "InfluxTarget",
    "InfluxWriteError",
    "LineProtocolError",
    "LineSchema",
    "PointRow",
    "encode_point",
    "escape_key",
    "escape_measurement",
    "escape_string_field",
    "format_field",
    "tag_set",
]
