"""Partitioned, rotating Parquet files for the market-data recorder (the blocking side).

Everything here runs on the recorder's one writer thread, never on the event loop. Rows
arrive in batches; each (venue, symbol, date, hour) partition has at most one open file,
written under a ``.tmp`` name and renamed to ``*.parquet`` only once its footer is written
(on the hour, past the size bound, and at stop). A crash leaves at most a ``.tmp`` file that no
reader looks at: a ``*.parquet`` file is always complete and readable.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as parquet

from hftkit.recording_files import NORMALIZED, RAW, SUFFIX, TEMPORARY_SUFFIX

RAW_SCHEMA = pa.schema(
    [
        ("timestamp_ns", pa.int64()),
        ("sequence", pa.int64()),
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("stream", pa.string()),
        ("payload", pa.binary()),
    ]
)

_LEVELS = pa.list_(pa.list_(pa.int64(), 2))  # [[price ticks, size lots], ...] best first
NORMALIZED_SCHEMA = pa.schema(
    [
        ("timestamp_ns", pa.int64()),
        ("sequence", pa.int64()),
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("kind", pa.string()),  # delta, snapshot, top (the book's top after a delta), trade, ticker
        ("first_update_id", pa.int64()),
        ("last_update_id", pa.int64()),  # delta/snapshot; the ticker's update id
        ("previous_update_id", pa.int64()),
        ("bids", _LEVELS),
        ("asks", _LEVELS),
        ("trade_id", pa.int64()),
        ("price", pa.int64()),  # trade price or best bid (ticker), ticks
        ("size", pa.int64()),  # trade size or best bid size, lots
        ("ask_price", pa.int64()),  # ticker only
        ("ask_size", pa.int64()),
        ("aggressor", pa.string()),
        ("event_time_ms", pa.int64()),
    ]
)

SCHEMAS = {RAW: RAW_SCHEMA, NORMALIZED: NORMALIZED_SCHEMA}
_NS_PER_HOUR = 3600 * 1_000_000_000


@dataclass
class _OpenFile:
    writer: parquet.ParquetWriter
    temporary: Path
    final: Path
    hour: int  # hours since the epoch
    rows: int = 0


@dataclass
class FilesStatus:
    files_completed: int = 0
    rows_written: int = 0
    bytes_completed: int = 0
    open_files: int = 0


class PartitionedParquetFiles:
    """Open, append to, rotate and close the partition files of one recording root."""

    def __init__(
        self,
        root: str | Path,
        *,
        rotate_bytes: int = 256 * 1024 * 1024,
        compression: str = "zstd",
        compression_level: int | None = 3,
        row_group_rows: int = 65_536,
    ) -> None:
        self.root = Path(root)
        self.rotate_bytes = rotate_bytes
        self.compression = compression
        self.compression_level = compression_level
        self.row_group_rows = row_group_rows
        self._open: dict[tuple[str, str, str], _OpenFile] = {}
        self._newest_hour = 0
        self.status = FilesStatus()
        self.completed: list[Path] = []

    def write(self, kind: str, table: pa.Table) -> None:
        """Append a table in the kind's schema: split by (venue, symbol, hour) in Arrow, not per row."""
        if table.num_rows == 0:
            return
        hours = pc.divide(table["timestamp_ns"], _NS_PER_HOUR)
        keyed = table.append_column("hour", hours)
        groups = keyed.group_by(["venue", "symbol", "hour"], use_threads=False).aggregate([]).to_pylist()
        for group in groups:
            venue, symbol, hour = group["venue"], group["symbol"], group["hour"]
            if len(groups) == 1:
                part = table
            else:
                mask = pc.and_(
                    pc.and_(pc.equal(keyed["venue"], venue), pc.equal(keyed["symbol"], symbol)),
                    pc.equal(hours, hour),
                )
                part = table.filter(mask)
            if hour > self._newest_hour:
                self._newest_hour = hour
            handle = self._file(kind, venue, symbol, hour, part["timestamp_ns"][0].as_py())
            handle.writer.write_table(part, row_group_size=self.row_group_rows)
            handle.rows += part.num_rows
            self.status.rows_written += part.num_rows
            if handle.temporary.stat().st_size >= self.rotate_bytes:
                self._complete((kind, venue, symbol))
        # on the hour: a stream that has moved on (or gone quiet) gets its old hour closed
        for key, handle in list(self._open.items()):
            if handle.hour < self._newest_hour:
                self._complete(key)

    def _file(self, kind: str, venue: str, symbol: str, hour: int, first_ns: int) -> _OpenFile:
        key = (kind, venue, symbol)
        handle = self._open.get(key)
        if handle is not None and handle.hour != hour:
            self._complete(key)
            handle = None
        if handle is None:
            stamp = time.strftime("%Y-%m-%d/%H", time.gmtime(hour * 3600))
            date, hour_text = stamp.split("/")
            folder = (
                self.root / kind / f"venue={_safe(venue)}" / f"symbol={_safe(symbol)}" / f"date={date}"
            ) / f"hour={hour_text}"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"part-{first_ns:020d}-{secrets.token_hex(4)}{SUFFIX}"
            temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
            writer = parquet.ParquetWriter(
                temporary,
                SCHEMAS[kind],
                compression=self.compression,
                compression_level=self.compression_level,
            )
            handle = self._open[key] = _OpenFile(writer, temporary, final, hour)
            self.status.open_files = len(self._open)
        return handle

    def _complete(self, key: tuple[str, str, str]) -> None:
        handle = self._open.pop(key)
        self.status.open_files = len(self._open)
        handle.writer.close()
        os.replace(handle.temporary, handle.final)  # atomic: the file appears whole or not at all
        self.status.files_completed += 1
        self.status.bytes_completed += handle.final.stat().st_size
        self.completed.append(handle.final)

    def close(self) -> None:
        """Complete every open file (at stop)."""
        errors: list[BaseException] = []
        for key in list(self._open):
            try:
                self._complete(key)
            except Exception as error:  # one bad file does not keep the others open
                errors.append(error)
        if errors:
            raise errors[0]


# batches -> Arrow tables (the writer thread or the writer process: never the event loop) ------------

# a Binance combined-stream envelope: {"stream":"<symbol lower>@<kind>[@<speed>]","data":...}
_ENVELOPE = r'^\{"stream":"(?P<symbol>[A-Za-z0-9_.-]+)@(?P<stream>[A-Za-z0-9_]+)'
DELTA, TRADE, TICKER, TOP = 0, 1, 2, 3  # normalized row kinds (each kind's positional fields follow)
_DELTA_FIELDS: tuple[str, ...] = (
    "venue",
    "symbol",
    "bids",
    "asks",
    "first_update_id",
    "last_update_id",
    "previous_update_id",
)
_DELTA_FIELDS += ("is_snapshot", "event_time_ms", "receive_ns")
_TRADE_FIELDS = ("venue", "symbol", "trade_id", "price", "size", "aggressor", "event_time_ms", "receive_ns")
_TICKER_FIELDS: tuple[str, ...] = (
    "venue",
    "symbol",
    "update_id",
    "bid_price",
    "bid_size",
    "ask_price",
    "ask_size",
)
_TICKER_FIELDS += ("event_time_ms", "receive_ns")


def raw_table(rows: Sequence[tuple[Any, ...]]) -> tuple[pa.Table, int]:
    """``(timestamp_ns, sequence, venue, symbol|None, stream|None, payload)`` rows -> (table, unparsed).

    A row without symbol/stream is a Binance combined-stream frame: both are read from its
    envelope here, in Arrow; a frame without one (a probe's answer) is left out and counted.
    """
    stamps, sequences, venues, symbols, streams, payloads = zip(*rows, strict=True)
    payload = pa.array(payloads, pa.binary())
    symbol = pa.array(symbols, pa.string())
    stream = pa.array(streams, pa.string())
    if symbol.null_count:
        envelope = pc.extract_regex(pc.binary_slice(payload, 0, 96), _ENVELOPE)
        symbol = pc.coalesce(symbol, pc.utf8_upper(pc.cast(pc.struct_field(envelope, "symbol"), pa.string())))
        stream = pc.coalesce(stream, pc.cast(pc.struct_field(envelope, "stream"), pa.string()))
    table = pa.Table.from_arrays(
        [
            pa.array(stamps, pa.int64()),
            pa.array(sequences, pa.int64()),
            pa.array(venues, pa.string()),
            symbol,
            stream,
            payload,
        ],
        schema=RAW_SCHEMA,
    )
    unparsed = symbol.null_count
    if unparsed:
        table = table.filter(pc.is_valid(symbol))
    return table, unparsed


def normalized_table(rows: Sequence[tuple[Any, ...]], wall_offset_ns: int) -> pa.Table:
    """``(timestamp_ns|None, sequence, kind, event fields)`` rows -> table; a missing timestamp
    is the event's monotonic receive time plus ``wall_offset_ns``."""
    columns: list[list[Any]] = [[] for _ in NORMALIZED_SCHEMA]
    (stamp, sequence, venue, symbol, kind, first, last, previous, bids, asks) = columns[:10]
    (trade_id, price, size, ask_price, ask_size, aggressor, event_time) = columns[10:]
    nothing = None
    for timestamp_ns, number, code, fields in rows:
        sequence.append(number)
        venue.append(fields[0])
        symbol.append(fields[1])
        if code == DELTA:
            _, _, delta_bids, delta_asks, first_id, last_id, previous_id, is_snapshot, time_ms, receive = (
                fields
            )
            kind.append("snapshot" if is_snapshot else "delta")
            for column, value in (
                (first, first_id),
                (last, last_id),
                (previous, previous_id),
                (bids, delta_bids),
                (asks, delta_asks),
            ):
                column.append(value)
            for column in (trade_id, price, size, ask_price, ask_size, aggressor):
                column.append(nothing)
        elif code == TRADE:
            _, _, identifier, trade_price, trade_size, side, time_ms, receive = fields
            kind.append("trade")
            for column in (first, last, previous, bids, asks, ask_price, ask_size):
                column.append(nothing)
            trade_id.append(identifier)
            price.append(trade_price)
            size.append(trade_size)
            aggressor.append(side if isinstance(side, str) else side.value)
        else:
            _, _, update_id, bid_price, bid_size, top_ask, top_ask_size, time_ms, receive = fields[:9]
            kind.append("ticker" if code == TICKER else "top")
            for column in (first, previous, bids, asks, trade_id, aggressor):
                column.append(nothing)
            last.append(update_id)
            price.append(bid_price)
            size.append(bid_size)
            ask_price.append(top_ask)
            ask_size.append(top_ask_size)
        event_time.append(time_ms)
        stamp.append(timestamp_ns if timestamp_ns is not None else receive + wall_offset_ns)
    return pa.Table.from_arrays(
        [pa.array(column, field.type) for column, field in zip(columns, NORMALIZED_SCHEMA, strict=True)],
        schema=NORMALIZED_SCHEMA,
    )


class RecordingFiles:
    """The blocking side of a recording: batches in, partition files out (thread or process)."""

    def __init__(self, root: str | Path, wall_offset_ns: int, **options: Any) -> None:
        self.files = PartitionedParquetFiles(root, **options)
        self.wall_offset_ns = wall_offset_ns
        self.unparsed_frames = 0

    def write(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if kind == RAW:
            table, unparsed = raw_table(rows)
            self.unparsed_frames += unparsed
        else:
            table = normalized_table(rows, self.wall_offset_ns)
        self.files.write(kind, table)

    def close(self) -> None:
        self.files.close()

    def warm_up(self) -> None:
        """Run the Arrow kernels once on a tiny batch: their first use costs up to a second."""
        raw_table([(0, 0, "v", None, None, b'{"stream":"x@trade","data":{}}')])
        normalized_table([(0, 0, DELTA, ("v", "s", [(1, 1)], [], -1, -1, -1, False, 0, 0))], 0)

    def status(self) -> dict[str, int]:
        status = self.files.status
        return {
            "files_completed": status.files_completed,
            "bytes_completed": status.bytes_completed,
            "rows_written": status.rows_written,
            "open_files": status.open_files,
            "unparsed_frames": self.unparsed_frames,
        }


def event_fields(event: Any) -> tuple[int, tuple[Any, ...]]:
    """A normalized event as (kind, its fields in the order the table builder reads them)."""
    kind = type(event).__name__
    names = _DELTA_FIELDS if kind == "BookDelta" else _TRADE_FIELDS if kind == "Trade" else _TICKER_FIELDS
    code = {"BookDelta": DELTA, "Trade": TRADE, "BookTop": TOP}.get(kind, TICKER)
    return code, tuple(getattr(event, name) for name in names)


def mapping_fields(event: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """An event that crossed to the writer process as a mapping (msgspec encodes Structs so)."""
    if "is_snapshot" in event:
        return DELTA, tuple(event.get(name) for name in _DELTA_FIELDS)
    if "trade_id" in event:
        return TRADE, tuple(event.get(name) for name in _TRADE_FIELDS)
    return TOP if "top" in event else TICKER, tuple(event.get(name) for name in _TICKER_FIELDS)


def _safe(name: str) -> str:
    """A partition value that cannot escape its folder."""
    return name.replace("/", "_").replace("\\", "_").replace("..", "_") or "_"


__all__ = [
    "NORMALIZED_SCHEMA",
    "RAW_SCHEMA",
    "SCHEMAS",
    "FilesStatus",
    "PartitionedParquetFiles",
    "RecordingFiles",
    "event_fields",
    "mapping_fields",
    "normalized_table",
    "raw_table",
]
