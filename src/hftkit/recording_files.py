"""The Parquet frame recording: its schema, its folder layout and a time-ordered reader.

Why here and not in ``hftkit.storage``: the simulator, the replay command and the benchmarks
read recordings through :func:`hftkit.datasets.iter_recording`, and those layers sit above
storage. The format is one piece of domain knowledge with one home: the recorder
(``hftkit.storage.recorder``) writes what this module describes, and everything reads it here.

Layout under a recording's root::

    raw/venue=<venue>/symbol=<SYMBOL>/date=<YYYY-MM-DD>/hour=<HH>/part-<first ts ns>-<token>.parquet
    normalized/venue=.../symbol=.../date=.../hour=.../part-....parquet

A raw file holds one row per frame as it came off the socket (or the REST snapshot a book was
seeded from), with its receive time: ``timestamp_ns`` (wall clock, ns), ``sequence`` (the
recorder's arrival order across every instrument, which breaks timestamp ties), ``venue``,
``symbol``, ``stream`` (``depth``, ``trade``, ``bookTicker``, ``snapshot``, a Thalex channel, ...)
and ``payload`` (the bytes). Files are written under a ``.tmp`` name and renamed when complete,
so a ``*.parquet`` file is always whole; the reader never looks at ``*.tmp``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

RAW = "raw"
NORMALIZED = "normalized"
SUFFIX = ".parquet"
TEMPORARY_SUFFIX = ".tmp"
FRAME_COLUMNS = ("timestamp_ns", "sequence", "venue", "symbol", "stream", "payload")
_BATCH_ROWS = 8192


class RecordedFrame(NamedTuple):
    """One recorded frame, as the reader yields it."""

    timestamp_ns: int
    sequence: int
    venue: str
    symbol: str
    stream: str
    payload: bytes


def is_parquet_recording(path: str | Path) -> bool:
    """A ``.parquet`` file, or a folder (a recording root or any partition inside one)."""
    path = Path(path)
    return path.suffix == SUFFIX or path.is_dir()


def partition_value(path: Path, key: str) -> str | None:
    """``venue`` of ``.../venue=binance/...`` -> ``binance`` (None when the path has no such part)."""
    prefix = key + "="
    for part in path.parts:
        if part.startswith(prefix):
            return part[len(prefix) :]
    return None


def frame_files(
    roots: Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
) -> list[Path]:
    """Every complete raw-frame file under ``roots`` (files, recording roots or partition folders)."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            candidates: Iterable[Path] = [root] if root.suffix == SUFFIX else []
        elif root.is_dir():
            base = root / RAW if (root / RAW).is_dir() else root
            candidates = base.rglob("*" + SUFFIX)
        else:
            raise FileNotFoundError(f"no recording at {root}")
        for path in candidates:
            if venue is not None and partition_value(path, "venue") not in (venue, None):
                continue
            if symbol is not None and partition_value(path, "symbol") not in (symbol, None):
                continue
            if NORMALIZED in path.parts:
                continue  # normalized files are events, not frames
            found.append(path)
    return sorted(set(found), key=_order_key)


def _order_key(path: Path) -> tuple[str, str, str]:
    """Files of one stream sort by their partition path, then by the start time in the name."""
    stream = f"{partition_value(path, 'venue')}/{partition_value(path, 'symbol')}"
    return stream, str(path.parent), path.name


def recorded_symbols(root: str | Path, venue: str | None = None) -> dict[str, list[str]]:
    """``{venue: [symbols]}`` that a recording root holds raw frames for."""
    result: dict[str, list[str]] = {}
    for path in frame_files([root], venue=venue):
        name = partition_value(path, "venue") or "?"
        symbol = partition_value(path, "symbol") or "?"
        symbols = result.setdefault(name, [])
        if symbol not in symbols:
            symbols.append(symbol)
    return result


def _read_file(path: Path) -> Iterator[RecordedFrame]:
    import pyarrow.parquet as parquet

    handle = parquet.ParquetFile(path)
    try:
        for batch in handle.iter_batches(batch_size=_BATCH_ROWS, columns=list(FRAME_COLUMNS)):
            columns = [batch.column(index).to_pylist() for index in range(len(FRAME_COLUMNS))]
            yield from map(RecordedFrame._make, zip(*columns, strict=True))
    finally:
        handle.close()


def _read_stream(paths: list[Path]) -> Iterator[RecordedFrame]:
    for path in paths:
        yield from _read_file(path)


def iter_frames(
    roots: Sequence[str | Path],
    *,
    venue: str | None = None,
    symbol: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Iterator[RecordedFrame]:
    """Every recorded frame under ``roots`` in receive order, all instruments merged.

    Each instrument's files are read one after another (one open file per instrument), and the
    instruments are merged by (timestamp, arrival sequence): the order the recorder saw them.
    """
    streams: dict[str, list[Path]] = {}
    for path in frame_files(roots, venue=venue, symbol=symbol):
        key = f"{partition_value(path, 'venue')}/{partition_value(path, 'symbol')}"
        streams.setdefault(key, []).append(path)
    merged = heapq.merge(*(_read_stream(paths) for paths in streams.values()), key=lambda f: (f[0], f[1]))
    for frame in merged:
        if start_ns is not None and frame.timestamp_ns < start_ns:
            continue
        if end_ns is not None and frame.timestamp_ns >= end_ns:
            return
        yield frame


__all__ = [
    "FRAME_COLUMNS",
    "NORMALIZED",
    "RAW",
    "SUFFIX",
    "TEMPORARY_SUFFIX",
    "RecordedFrame",
    "frame_files",
    "is_parquet_recording",
    "iter_frames",
    "partition_value",
    "recorded_symbols",
]
