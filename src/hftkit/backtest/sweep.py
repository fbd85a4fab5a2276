"""Parameter sweeps: one backtest per point of a grid, on local cores or a Dask cluster.

A grid file names a base node config and, per dotted path into it, the values to try::

    base: backtest_maker.yaml              # relative to the grid file
    parameters:                            # the points are every combination, in this order
      strategies.maker.params.gamma: [0.05, 0.1, 0.2]   # a list item by its `name` or its index
      latency.order_entry.constant_us: [100, 500]
      backtest.seed: [1, 2]

Each point's config is the base with those values set, checked like any node config before any
point runs (a misspelt path fails the sweep at once, with the point and the file's line). Points
run in worker processes (``ProcessPoolExecutor``, one per core by default) or, given a scheduler
address, on a Dask ``distributed`` cluster: the engine users who outgrow one machine already run,
not a home-made scheduler. Workers return only the summary, never the frames.

The table has one row per point in grid order (whatever order the points finish in): ``point``,
one column per parameter, ``error`` (empty when the point ran) and the summary flattened into
dotted columns (``inventory.max``). The same grid gives the same table, byte for byte, from
either executor: rows are ordered by point and every figure comes from the simulated run.

The node config format belongs to the app layer, above this one: the caller hands ``run_sweep``
a ``PlanLoader`` that checks a point's config text and builds its plan
(``hftkit.app.backtest_plan.NODE_CONFIG_LOADER``; ``hftkit.app.backtest_plan.run_sweep`` binds it).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import yaml

from hftkit.core.bounded import LruMap
from hftkit.core.errors import HftkitError

if TYPE_CHECKING:
    from hftkit.backtest.runner import BacktestPlan

__all__ = [
    "GridError",
    "PlanLoader",
    "SweepGrid",
    "SweepPoint",
    "SweepResult",
    "apply_overrides",
    "load_grid",
    "run_point",
    "run_sweep",
]

#: the columns printed first (when the summary has them); the Parquet table has every column
HEADLINE = ("pnl_net", "pnl_gross", "fees", "sharpe", "max_drawdown", "fills", "fill_ratio", "volume")


class GridError(HftkitError, ValueError):
    """A grid that cannot run (its file, its base config, a path or a point), in one line."""


class PlanLoader(Protocol):
    """One point's config text -> its plan; the config format is the caller's (the app layer's).

    Sent to worker processes with each point: an instance of a module-level class pickles by
    reference, and its module is preloaded into the fork server."""

    def check(self, text: str, file: str, directory: Path) -> str | None:
        """Why the config cannot run (one line), or None when it can."""
        ...

    def plan(self, text: str, file: str, directory: Path) -> BacktestPlan:
        """The runnable plan of a config that passed ``check``."""
        ...


@dataclass(frozen=True)
class SweepPoint:
    """One point: its number in grid order and its values (parameter path -> value)."""

    index: int
    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class SweepGrid:
    """A grid file, read: the base config's data, where it lives, and the parameter lists."""

    file: str
    base_file: str
    base: Mapping[str, Any]
    parameters: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def directory(self) -> Path:
        return Path(self.base_file).resolve().parent

    def points(self) -> list[SweepPoint]:
        """Every combination, the last parameter varying fastest (``itertools.product`` order)."""
        names = [name for name, _ in self.parameters]
        return [
            SweepPoint(index, tuple(zip(names, values, strict=True)))
            for index, values in enumerate(itertools.product(*(values for _, values in self.parameters)))
        ]


# the grid file ------------------------------------------------------------------------------------
def load_grid(path: str | os.PathLike[str]) -> SweepGrid:
    """Read and check a grid file and its base config; raises ``GridError`` naming what is wrong."""
    file = os.fspath(path)
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except OSError as error:
        raise GridError(f"{file}: cannot read the grid: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise GridError(f"{file}: not YAML: {error}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise GridError(f"{file}: the grid must be a mapping with `base:` and `parameters:`")
    unknown = sorted(set(data) - {"base", "parameters"})
    if unknown:
        raise GridError(
            f"{file}: unknown key(s) {', '.join(map(str, unknown))}; a grid has base and parameters"
        )
    base = data.get("base")
    if not isinstance(base, str) or not base:
        raise GridError(f"{file}: `base:` must name the node config every point starts from")
    base_file = base if os.path.isabs(base) else os.path.join(os.path.dirname(os.path.abspath(file)), base)
    try:
        base_data = yaml.safe_load(Path(base_file).read_text(encoding="utf-8"))
    except OSError as error:
        raise GridError(f"{file}: base config {base_file}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise GridError(f"{file}: base config {base_file} is not YAML: {error}".replace("\n", " ")) from None
    if not isinstance(base_data, dict):
        raise GridError(f"{file}: base config {base_file} is not a mapping")
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise GridError(f"{file}: `parameters:` must map dotted config paths to lists of values")
    checked: list[tuple[str, tuple[Any, ...]]] = []
    for name, values in parameters.items():
        if not isinstance(name, str) or not name or any(not part for part in name.split(".")):
            raise GridError(f"{file}: parameters: {name!r} is not a dotted path (like backtest.seed)")
        if not isinstance(values, list) or not values:
            raise GridError(f"{file}: parameters: {name}: give a non-empty list of values")
        checked.append((name, tuple(values)))
    return SweepGrid(file, base_file, base_data, tuple(checked))


def apply_overrides(config: Mapping[str, Any], values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A deep copy of ``config`` with each dotted path set; a list item is found by index or name.

    A missing last key is added (a strategy param the base leaves at its default); a missing
    intermediate mapping is created; anything else that does not exist is a ``GridError``.
    """
    result: dict[str, Any] = json.loads(json.dumps(config, default=str))  # deep copy, plain types
    for path, value in values:
        parts = path.split(".")
        node: Any = result
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                index = _list_index(node, part, path, where)
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise GridError(f"parameter {path}: {'.'.join(parts[:depth])} is a value, not a section")
    return result


def _list_index(items: list[Any], part: str, path: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(items) <= index < len(items):
            raise GridError(
                f"parameter {path}: {where}: index out of range (the list has {len(items)} items)"
            )
        return index
    names = [item.get("name") for item in items if isinstance(item, dict)]
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return index
    raise GridError(
        f"parameter {path}: {where}: no item named {part!r} (names: {', '.join(map(str, names))})"
    )


def point_config_text(grid: SweepGrid, point: SweepPoint) -> str:
    """The YAML text of one point's node config."""
    return yaml.safe_dump(apply_overrides(grid.base, point.values), sort_keys=False, allow_unicode=True)


def check_points(grid: SweepGrid, loader: PlanLoader) -> None:
    """Decode every point's config as a node config before anything runs (cheap, and it names
    the point and the path of a mistake instead of failing half-way through a long sweep)."""
    for point in grid.points():
        error = loader.check(point_config_text(grid, point), _point_file(grid, point), grid.directory)
        if error is not None:
            raise GridError(f"{grid.file}: point {point.index} ({_describe(point)}): {error}")


def _point_file(grid: SweepGrid, point: SweepPoint) -> str:
    return f"{grid.base_file}[point {point.index}]"


def _describe(point: SweepPoint) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in point.values)


# one point ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointTask:
    """What a worker needs for one point: plain data, so it pickles to a process or a Dask worker."""

    index: int
    values: tuple[tuple[str, Any], ...]
    config_text: str
    config_file: str
    directory: str
    loader: PlanLoader


def run_point(task: PointTask) -> dict[str, Any]:
    """Run one point's backtest; return its row (the error instead of the summary if it failed).

    A failing point is a row with ``error`` set, never a lost sweep: the other points still run.
    """
    row: dict[str, Any] = {"point": task.index}
    row.update(dict(task.values))
    try:
        from hftkit.backtest.runner import run_plan

        plan = task.loader.plan(task.config_text, task.config_file, Path(task.directory))
        plan.sources = [_cached_source(plan, source) for source in plan.sources]
        result = run_plan(plan)
    except Exception as error:  # a point's failure is data for the table (classified by type)
        row["error"] = f"{type(error).__name__}: {error}".replace("\n", " ")
        return row
    row["error"] = ""
    for key, value in flatten_summary(result.summary).items():
        row[f"summary.{key}" if key in row else key] = value  # a parameter keeps its own column
    return row


#: recordings read by this process, by what was read: the points of a sweep usually share their
#: data, and reading a day of depth costs more than many short backtests (bounded: each holds
#: the events in memory)
_SOURCES: LruMap[bytes, Any] = LruMap(4)


def _cached_source(plan: Any, source: Any) -> Any:
    """``source`` loaded, from this process's cache when an earlier point read the same thing.

    Shared safely: loaded events are tuples the run reads and never changes (a test runs one
    point twice in one process and compares the rows)."""
    from hftkit.backtest.config import DataSource
    from hftkit.backtest.data import load_source, parse_time

    if not isinstance(source, DataSource):
        return source
    instrument = next(
        (
            instrument
            for setup in plan.venues
            if setup.name == source.venue
            for instrument in setup.instruments
            if instrument.symbol == source.symbol
        ),
        None,
    )
    if instrument is None:
        return source  # the runner reports it, in its own words
    until = parse_time(plan.time_range.end, "end")
    key = msgspec.json.encode([source, str(plan.directory), until, repr(instrument)])
    loaded = _SOURCES.touch(key)
    if loaded is None:
        loaded = load_source(source, instrument, plan.directory, until)
        _SOURCES[key] = loaded
    return loaded


def flatten_summary(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys (``inventory.max``), in the summary's own order."""
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_summary(value, f"{name}."))
        else:
            flat[name] = value
    return flat


# the sweep ----------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """The table (rows in point order), the parameter names and how many points failed."""

    rows: list[dict[str, Any]]
    parameters: list[str]

    @property
    def failures(self) -> int:
        return sum(1 for row in self.rows if row.get("error"))

    def columns(self) -> list[str]:
        """``point``, the parameters, ``error``, then every summary key in first-seen order."""
        columns = ["point", *self.parameters, "error"]
        seen = set(columns)
        for row in self.rows:
            for key in row:
                if key not in seen:
                    seen.add(key)
                    columns.append(key)
        return columns

    def to_arrow(self) -> Any:
        import pyarrow as pa

        arrays = {column: _column([row.get(column) for row in self.rows]) for column in self.columns()}
        return pa.table(arrays)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the table (zstd); atomically, so a reader never sees half a file."""
        import pyarrow.parquet as pq

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        pq.write_table(self.to_arrow(), temporary, compression="zstd")
        os.replace(temporary, target)
        return target


def _column(values: list[Any]) -> Any:
    """A typed Arrow column; values Arrow cannot type together (a list beside a number, a string
    beside a number) become their JSON text, so a heterogeneous parameter still fits one column."""
    import pyarrow as pa

    if any(isinstance(value, (list, dict)) for value in values):
        values = [None if value is None else json.dumps(value, sort_keys=True) for value in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if value is None else json.dumps(value, default=str) for value in values])


def default_workers() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_sweep(
    grid: SweepGrid | str | os.PathLike[str],
    *,
    loader: PlanLoader,
    workers: int | None = None,
    scheduler: str | Any | None = None,
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
) -> SweepResult:
    """Run every point of ``grid``: on ``workers`` local processes (default: one per core), or on
    the Dask cluster at ``scheduler`` (an address like ``tcp://host:8786`` or a ``Client``).

    ``progress(row, done, total)`` is called as each point finishes (in finishing order);
    ``loader`` reads each point's config (see ``PlanLoader``).
    """
    if not isinstance(grid, SweepGrid):
        grid = load_grid(grid)
    check_points(grid, loader)
    tasks = [
        PointTask(
            point.index,
            point.values,
            point_config_text(grid, point),
            _point_file(grid, point),
            str(grid.directory),
            loader,
        )
        for point in grid.points()
    ]
    if scheduler is not None:
        rows = _run_on_dask(tasks, scheduler, progress)
    else:
        rows = _run_locally(tasks, workers or default_workers(), progress)
    rows.sort(key=lambda row: row["point"])
    return SweepResult(rows, [name for name, _ in grid.parameters])


def _run_locally(
    tasks: Sequence[PointTask], workers: int, progress: Callable[[dict[str, Any], int, int], None] | None
) -> list[dict[str, Any]]:
    """Worker processes from a fork server that has imported the backtest once: each worker
    starts in milliseconds and inherits no threads or sockets from the caller."""
    if workers <= 1 or len(tasks) <= 1:
        return list(_report(((task, _call(run_point, task)) for task in tasks), len(tasks), progress))
    context = multiprocessing.get_context("forkserver")
    # the loader's module too (the app's config reader): each worker then starts with it imported
    loader_module = type(tasks[0].loader).__module__
    context.set_forkserver_preload(["hftkit.backtest.sweep", "hftkit.backtest.runner", loader_module])
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(run_point, task): task for task in tasks}
        finished = ((futures[future], _outcome(future)) for future in as_completed(futures))
        return list(_report(finished, len(tasks), progress))


def _run_on_dask(
    tasks: Sequence[PointTask],
    scheduler: str | Any,
    progress: Callable[[dict[str, Any], int, int], None] | None,
) -> list[dict[str, Any]]:
    from distributed import Client
    from distributed import as_completed as dask_as_completed

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler, set_as_default=False)
    try:
        # pure=False: every submission is a new run under a fresh key (never a cached answer)
        futures = dict(zip(client.map(run_point, list(tasks), pure=False), tasks, strict=True))
        finished = (
            (futures[future], _outcome(future))
            for future in dask_as_completed(list(futures), loop=client.loop)
        )
        return list(_report(finished, len(tasks), progress))
    finally:
        if client is not scheduler:
            client.close()


def _call(function: Callable[[PointTask], dict[str, Any]], task: PointTask) -> dict[str, Any] | BaseException:
    try:
        return function(task)
    except Exception as error:
        return error


def _outcome(future: Any) -> dict[str, Any] | BaseException:
    """A finished future's row, or the exception that lost it (a worker that died, say)."""
    try:
        return future.result()
    except Exception as error:
        return error


def _report(
    finished: Iterable[tuple[PointTask, dict[str, Any] | BaseException]],
    total: int,
    progress: Callable[[dict[str, Any], int, int], None] | None,
) -> Iterator[dict[str, Any]]:
    for done, (task, outcome) in enumerate(finished, start=1):
        if isinstance(outcome, BaseException):  # lost with its worker: the point still gets a row
            row = {"point": task.index, **dict(task.values)}
            row["error"] = f"{type(outcome).__name__}: {outcome}".replace("\n", " ")
        else:
            row = outcome
        if progress is not None:
            progress(row, done, total)
        yield row


def headline_columns(result: SweepResult) -> list[str]:
    """The columns worth printing: point, parameters, the headline figures present, error."""
    present = set(result.columns())
    return ["point", *result.parameters, *(name for name in HEADLINE if name in present), "error"]
