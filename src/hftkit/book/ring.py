"""Fixed-capacity ring buffers of typed numpy columns, for time series on the hot path.

Storage is one numpy array per column (struct of arrays), so a column of the latest items is a
plain contiguous ndarray view whenever the items do not straddle the physical end of the
buffer. The scalar ``append`` is generated per schema (as ``collections.namedtuple`` does) and
writes Python ints/floats through ``memoryview`` objects of the columns: no numpy scalar is
created per field and no loop over the columns runs per item.

Views and copies: ``latest``/``since``/``read_from`` return a :class:`RingWindow`. When the
requested items are contiguous in memory its columns are read-only views (``copied`` is
False) that see later overwrites of the same slots, so copy them (``window.copy()``) to keep
them past the next ``capacity - len(window)`` appends. When the items wrap around the end of the
buffer the columns are fresh copies (``copied`` is True). :class:`LockedRingBuffer` always
copies, because another thread may overwrite the slots as soon as the lock is released.
"""

from __future__ import annotations

import keyword
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from hftkit.core.errors import HftkitError

__all__ = [
    "Column",
    "LockedRingBuffer",
    "OutOfOrderError",
    "RingBuffer",
    "RingWindow",
    "SchemaError",
]

# memoryview item formats that accept plain Python ints/floats on assignment; other dtypes
# (float16, datetime64, ...) fall back to numpy item assignment.
_MEMORYVIEW_FORMATS = frozenset("bBhHiIlLqQfd?")


class SchemaError(HftkitError, ValueError):
    """A column spec or a bulk input that does not fit the buffer's schema."""


class OutOfOrderError(HftkitError, ValueError):
    """A timestamp older than the newest one already stored: the time column must not go back."""


class Column(NamedTuple):
    """One typed column of a ring buffer schema."""

    name: str
    dtype: DTypeLike


class RingWindow:
    """The latest items of a ring buffer: one equally long ndarray per column, oldest first.

    Column arrays are reached as ``window["price"]`` or ``window.price``. ``copied`` says whether
    they are copies (safe to keep) or read-only views into the ring (see the module docstring).
    A view window slices a column only when it is asked for, so building one is O(1).
    """

    __slots__ = ("_length", "_sources", "_start", "copied", "first_sequence")

    def __init__(
        self,
        sources: Mapping[str, np.ndarray],
        copied: bool,
        first_sequence: int,
        *,
        start: int = 0,
        length: int | None = None,
    ) -> None:
        self._sources = sources
        self._start = start
        if length is None:
            length = len(next(iter(sources.values()))) - start if sources else 0
        self._length = length
        self.copied = copied
        self.first_sequence = first_sequence

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, name: str) -> np.ndarray:
        return self._sources[name][self._start : self._start + self._length]

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(self._sources)

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Every column, by name."""
        return {name: self[name] for name in self._sources}

    @property
    def next_sequence(self) -> int:
        """Sequence number of the item after the last one in this window."""
        return self.first_sequence + self._length

    def copy(self) -> RingWindow:
        """Detach from the ring: a window whose arrays no later append can change."""
        if self.copied:
            return self
        return RingWindow({name: self[name].copy() for name in self._sources}, True, self.first_sequence)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Iterate items as tuples of Python values (for tests and reports, not the hot path)."""
        return zip(*(self[name].tolist() for name in self._sources), strict=True)

    def __repr__(self) -> str:
        return f"RingWindow(len={self._length}, copied={self.copied}, columns={list(self._sources)})"


class RingBuffer:
    """A fixed-capacity FIFO of typed rows that overwrites its oldest rows when full.

    ``append(*values)`` takes one value per column in schema order (keywords work too) and is
    O(1); ``extend(*arrays)`` appends columns in bulk. With a ``time_column`` the buffer
    enforces non-decreasing timestamps (raising :class:`OutOfOrderError`, counted in
    ``rejected``) so ``since(timestamp_ns)`` can binary-search the time column.

    Every appended row gets a sequence number (0, 1, 2, ... over the buffer's life);
    ``read_from(sequence)`` lets a consumer pick up exactly where it stopped and learn how many
    rows it missed because they were overwritten.
    """

    def __init__(
        self,
        capacity: int,
        columns: Sequence[tuple[str, DTypeLike]],
        *,
        time_column: str | None = None,
    ) -> None:
        if not isinstance(capacity, int) or capacity <= 0:
            raise SchemaError(f"capacity must be a positive int, got {capacity!r}")
        if not columns:
            raise SchemaError("a ring buffer needs at least one column")
        names: list[str] = []
        dtypes: list[np.dtype] = []
        for spec in columns:
            name, dtype = spec
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise SchemaError(f"column name {name!r} is not a Python identifier")
            if name.startswith("_") or name == "self":
                raise SchemaError(f"column name {name!r} is reserved")
            if name in names:
                raise SchemaError(f"duplicate column {name!r}")
            resolved = np.dtype(dtype)
            if resolved.hasobject or resolved.fields is not None or resolved.subdtype is not None:
                raise SchemaError(f"column {name!r}: dtype {resolved} is not a plain scalar type")
            names.append(name)
            dtypes.append(resolved)
        if time_column is not None:
            if time_column not in names:
                raise SchemaError(f"time column {time_column!r} is not one of the columns {names}")
            if dtypes[names.index(time_column)].kind not in "iu":
                raise SchemaError(f"time column {time_column!r} must be an integer (ns) column")
        self._capacity = capacity
        self._names = tuple(names)
        self._dtypes = tuple(dtypes)
        self._arrays = tuple(np.zeros(capacity, dtype=dtype) for dtype in dtypes)
        self._readonly: dict[str, np.ndarray] = {}
        for name, array in zip(names, self._arrays, strict=True):
            view = array.view()
            view.flags.writeable = False  # slices of it are read-only too
            self._readonly[name] = view
        self._time_column = time_column
        self._time_index = names.index(time_column) if time_column is not None else -1
        self._head = 0  # physical index of the next write
        self._total = 0
        self._floor = 0  # sequence of the first row not discarded by clear()
        self._cleared = 0
        self._rejected = 0
        self._last_time: int = np.iinfo(np.int64).min if time_column is not None else 0
        self._append_fast = types.MethodType(self._build_append(), self)
        # per-instance generated append, as namedtuple generates its class
        self.append = self._append_fast  # type: ignore[method-assign]

    # schema -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def column_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        return dict(zip(self._names, self._dtypes, strict=True))

    @property
    def time_column(self) -> str | None:
        return self._time_column

    # counters -----------------------------------------------------------------------------
    def __len__(self) -> int:
        held = self._total - self._floor
        return held if held < self._capacity else self._capacity

    @property
    def total_appended(self) -> int:
        """Rows accepted over the buffer's life (the next row's sequence number)."""
        return self._total

    @property
    def dropped(self) -> int:
        """Rows accepted but no longer held: overwritten, or skipped by an oversize ``extend``."""
        return self._total - self._cleared - len(self)

    @property
    def cleared(self) -> int:
        """Rows discarded by ``clear()``."""
        return self._cleared

    @property
    def rejected(self) -> int:
        """Rows refused because their timestamp went backwards."""
        return self._rejected

    @property
    def oldest_sequence(self) -> int:
        return self._total - len(self)

    @property
    def last_timestamp(self) -> int | None:
        return self._last_time if self._total and self._time_column is not None else None

    # writes -------------------------------------------------------------------------------
    def _build_append(self) -> Callable[..., None]:
        """Generate ``append`` for this schema: straight-line code, one store per column."""
        namespace: dict[str, Any] = {"_reject": self._reject_out_of_order}
        stores = []
        for position, (name, array) in enumerate(zip(self._names, self._arrays, strict=True)):
            # numpy's stubs declare ndarray.__buffer__ only for Python >= 3.12; it is a buffer on 3.11 too
            view = memoryview(array)  # type: ignore[arg-type,unused-ignore]
            namespace[f"_w{position}"] = view if view.format in _MEMORYVIEW_FORMATS else array
            stores.append(f"    _w{position}[_slot] = {name}")
        parameters = ", ".join(self._names)
        time_check = ""
        time_store = ""
        if self._time_column is not None:
            time_check = (
                f"    if {self._time_column} < self._last_time:\n        _reject({self._time_column})\n"
            )
            time_store = f"    self._last_time = {self._time_column}\n"
        source = (
            f"def append(self, {parameters}):\n"
            "    _slot = self._head\n"
            f"{time_check}"
            + "\n".join(stores)
            + "\n"
            + time_store
            + "    _slot += 1\n"
            + f"    self._head = 0 if _slot == {self._capacity} else _slot\n"
            + "    self._total += 1\n"
        )
        exec(compile(source, f"<RingBuffer.append {parameters}>", "exec"), namespace)
        function: Callable[..., None] = namespace["append"]
        function.__doc__ = RingBuffer.append.__doc__
        return function

    def _reject_out_of_order(self, timestamp: int) -> None:
        self._rejected += 1
        raise OutOfOrderError(
            f"{self._time_column}={timestamp} is older than the newest stored {self._last_time}"
        )

    def append(self, *values: Any) -> None:  # replaced per instance by the generated version
        """Append one row: one value per column, in schema order (keywords by column name)."""
        self._append_fast(*values)

    def extend(self, *arrays: ArrayLike, **named: ArrayLike) -> int:
        """Append equally long columns in bulk (positional in schema order, or by name).

        Returns the number of rows appended. When more rows than the capacity arrive, only the
        last ``capacity`` are stored and the rest count as dropped.
        """
        columns = self._resolve_columns(arrays, named)
        count = len(columns[0])
        if count == 0:
            return 0
        if self._time_index >= 0:
            times = columns[self._time_index]
            if times[0] < self._last_time or (count > 1 and bool(np.any(times[1:] < times[:-1]))):
                self._rejected += count
                raise OutOfOrderError(f"{self._time_column} values in extend() go backwards")
        capacity = self._capacity
        keep = count if count < capacity else capacity
        start = self._head if count < capacity else (self._head + count) % capacity
        first_part = min(keep, capacity - start)
        for array, values in zip(self._arrays, columns, strict=True):
            tail = values[count - keep :]
            array[start : start + first_part] = tail[:first_part]
            if first_part < keep:
                array[: keep - first_part] = tail[first_part:]
        self._head = (self._head + count) % capacity
        self._total += count
        if self._time_index >= 0:
            self._last_time = int(columns[self._time_index][-1])
        return count

    def _resolve_columns(
        self, arrays: tuple[ArrayLike, ...], named: Mapping[str, ArrayLike]
    ) -> list[np.ndarray]:
        if arrays and named:
            raise SchemaError("pass the columns either all by position or all by name")
        if named:
            unknown = set(named) - set(self._names)
            missing = [name for name in self._names if name not in named]
            if unknown or missing:
                raise SchemaError(f"extend(): unknown columns {sorted(unknown)}, missing {missing}")
            arrays = tuple(named[name] for name in self._names)
        if len(arrays) != len(self._names):
            raise SchemaError(f"extend() needs {len(self._names)} columns {self._names}, got {len(arrays)}")
        resolved: list[np.ndarray] = []
        length = -1
        for name, dtype, values in zip(self._names, self._dtypes, arrays, strict=True):
            array = np.asarray(values)
            if array.ndim != 1:
                raise SchemaError(f"column {name!r} must be one-dimensional, got shape {array.shape}")
            if length < 0:
                length = len(array)
            elif len(array) != length:
                raise SchemaError(f"column {name!r} has {len(array)} rows, expected {length}")
            resolved.append(_cast_column(name, array, dtype))
        return resolved

    def clear(self) -> None:
        """Forget the held rows. Sequence numbers, counters and the time floor carry on."""
        self._cleared += len(self)
        self._floor = self._total

    # reads --------------------------------------------------------------------------------
    def latest(self, count: int | None = None) -> RingWindow:
        """The newest ``count`` rows (all held rows when None), oldest first."""
        held = len(self)
        if count is None or count > held:
            count = held
        elif count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        return self._window(count)

    def since(self, timestamp_ns: int) -> RingWindow:
        """Rows whose time column is >= ``timestamp_ns`` (a binary search, O(log n))."""
        if self._time_index < 0:
            raise SchemaError("since() needs a ring buffer with a time_column")
        held = len(self)
        if held == 0:
            return self._window(0)
        times = self._arrays[self._time_index]
        end = self._head if self._head else self._capacity
        start = end - held
        if start >= 0:
            position = int(np.searchsorted(times[start:end], timestamp_ns, side="left"))
            return self._window(held - position)
        older = times[start + self._capacity :]
        newer = times[:end]
        if older[-1] >= timestamp_ns:
            position = int(np.searchsorted(older, timestamp_ns, side="left"))
        else:
            position = len(older) + int(np.searchsorted(newer, timestamp_ns, side="left"))
        return self._window(held - position)

    def read_from(self, sequence: int) -> tuple[RingWindow, int]:
        """Rows with sequence number >= ``sequence`` and how many were missed (overwritten).

        A consumer keeps ``window.next_sequence`` and passes it next time: it then sees every
        row once, or learns exactly how many it lost to overwrites.
        """
        if sequence < 0:
            raise ValueError(f"sequence must be >= 0, got {sequence}")
        oldest = self._total - len(self)
        missed = oldest - sequence if sequence < oldest else 0
        count = self._total - max(sequence, oldest)
        return self._window(max(count, 0)), missed

    def last(self) -> tuple[Any, ...] | None:
        """The newest row as Python values, or None when empty."""
        if len(self) == 0:
            return None
        index = (self._head - 1) % self._capacity
        return tuple(array[index].item() for array in self._arrays)

    def _window(self, count: int) -> RingWindow:
        first_sequence = self._total - count
        end = self._head if self._head else self._capacity
        start = end - count
        if start >= 0:
            return RingWindow(self._readonly, False, first_sequence, start=start, length=count)
        wrapped_start = start + self._capacity
        columns = {
            name: np.concatenate((array[wrapped_start:], array[:end]))
            for name, array in zip(self._names, self._arrays, strict=True)
        }
        return RingWindow(columns, True, first_sequence)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(len={len(self)}, capacity={self._capacity}, "
            f"appended={self._total}, dropped={self.dropped}, columns={list(self._names)})"
        )


def _cast_column(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a bulk column to the schema dtype, refusing lossy kinds and out-of-range ints."""
    if array.dtype == dtype:
        return array
    lossless_to_float = dtype.kind == "f" and array.dtype.kind in "iub"
    if array.size and not np.can_cast(array.dtype, dtype, casting="same_kind") and not lossless_to_float:
        raise SchemaError(f"column {name!r}: cannot store {array.dtype} values as {dtype}")
    if dtype.kind in "iu" and array.size and array.dtype.kind in "iu":
        limits = np.iinfo(dtype)
        if int(array.min()) < limits.min or int(array.max()) > limits.max:
            raise SchemaError(f"column {name!r}: values outside the range of {dtype}")
    return array.astype(dtype)


class LockedRingBuffer(RingBuffer):
    """A ring buffer shared between threads: one lock around every operation.

    For handing rows from a producer thread (a socket reader, a recorder) to a consumer on
    another thread. Reads always return copies, since the producer may overwrite the slots as
    soon as the lock is released; a consumer polls ``read_from(window.next_sequence)``.
    """

    def __init__(
        self,
        capacity: int,
        columns: Sequence[tuple[str, DTypeLike]],
        *,
        time_column: str | None = None,
    ) -> None:
        super().__init__(capacity, columns, time_column=time_column)
        self._lock = threading.Lock()
        self.append = self._append_locked  # type: ignore[method-assign]  # the generated append, locked

    def _append_locked(self, *values: Any, **named: Any) -> None:
        with self._lock:
            self._append_fast(*values, **named)

    def extend(self, *arrays: ArrayLike, **named: ArrayLike) -> int:
        with self._lock:
            return super().extend(*arrays, **named)

    def clear(self) -> None:
        with self._lock:
            super().clear()

    def latest(self, count: int | None = None) -> RingWindow:
        with self._lock:
            return super().latest(count).copy()

    def since(self, timestamp_ns: int) -> RingWindow:
        with self._lock:
            return super().since(timestamp_ns).copy()

    def read_from(self, sequence: int) -> tuple[RingWindow, int]:
        with self._lock:
            window, missed = super().read_from(sequence)
            return window.copy(), missed

    def last(self) -> tuple[Any, ...] | None:
        with self._lock:
            return super().last()
