"""The node's typed configuration: one YAML file decoded into frozen msgspec structs.

Why typed and strict: a trading node started from a config with a misspelt risk limit trades
without that limit. So every struct forbids unknown fields, every error names the file, the line
and the field path and suggests the nearest valid key, and a config can be checked without
connecting (``hftkit config check FILE``). Secrets come from the environment (``${VAR}``) into
``Secret`` values that never print and are never written back to disk.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, TypedDict, get_args, get_origin, get_type_hints

import msgspec
import yaml

from hftkit.backtest.config import BacktestOptions, DataSource, LatencySettings, Mode, TimeRange
from hftkit.core.errors import HftkitError
from hftkit.core.secrets import Secret

Environment = Literal["sim", "testnet", "mainnet"]

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_IN_MESSAGE = re.compile(r" - at `\$(.*)`$")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]*)`")


class ConfigError(HftkitError, ValueError):
    """A config that cannot run: where (file, line, field path) and why, in one line."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, path: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.path = path
        where = file or "<config>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {path + ': ' if path else ''}{message}")


class _Where(TypedDict):
    """Where a config mistake is: the keyword arguments of ``ConfigError`` after the message."""

    file: str | None
    line: int | None
    path: str


# the schema ---------------------------------------------------------------------------------------
class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct: immutable, no unknown keys."""


class BinanceVenue(_Strict, frozen=True, tag="binance", tag_field="kind"):
    """A Binance market (spot or USD-M). URLs default to the environment's published endpoints."""

    market: Literal["spot", "usdm"]
    environment: Environment = "sim"
    api_key: Secret[str] | None = None
    api_secret: Secret[str] | None = None
    rest_url: str | None = None
    stream_url: str | None = None
    websocket_api_url: str | None = None
    # new orders and cancels: "rest", or "websocket_api" (one persistent signed session, the
    # venue's low-latency path; REST while that session is down)
    order_transport: Literal["rest", "websocket_api"] = "rest"
    recv_window_ms: int = 5000
    cancel_on_exit: bool = True


class ThalexVenue(_Strict, frozen=True, tag="thalex", tag_field="kind"):
    """Thalex over its JSON-RPC WebSocket; the private key is a PEM (inline secret or a file)."""

    environment: Environment = "sim"
    key_id: str | None = None
    private_key: Secret[str] | None = None
    private_key_file: str | None = None
    account: str | None = None
    url: str | None = None
    cancel_on_disconnect_s: int | None = 6
    cancel_on_exit: bool = True


VenueConfig = BinanceVenue | ThalexVenue


class StrategyConfig(_Strict, frozen=True):
    """A strategy by dotted import path (``package.module:Class``) and its declared params."""

    name: str
    path: str
    params: dict[str, Any] = {}


class InstrumentRisk(_Strict, frozen=True):
    """One instrument's limits, in the trading layer's own terms (``trading.risk.InstrumentLimits``:
    quantities as decimal strings in base units, notionals in quote units)."""

    venue: str
    symbol: str
    limits: dict[str, Any] = {}


class RiskConfig(_Strict, frozen=True):
    """``instruments``: per-instrument limits; ``limits``: ``trading.risk.RiskLimits`` over all."""

    instruments: list[InstrumentRisk] = []
    limits: dict[str, Any] = {}


class MetricsConfig(_Strict, frozen=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


class DashboardConfig(_Strict, frozen=True):
    enabled: bool = True
    refresh_per_s: float = 1.0  # each render costs milliseconds of the loop (rich)


class LoggingConfig(_Strict, frozen=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class RuntimeConfig(_Strict, frozen=True):
    """Options a latency-sensitive Python process needs."""

    uvloop: bool = True
    gc_freeze: bool = True
    gc_thresholds: tuple[int, int, int] | None = None
    cpu_affinity: list[int] | None = None


class SimulatedFees(_Strict, frozen=True):
    """A simulated venue's fee schedule in basis points (negative maker fee: a rebate)."""

    maker_bp: str = "0"
    taker_bp: str = "0"


class SimulatorConfig(_Strict, frozen=True):
    """The in-process simulator an ``environment: sim`` venue trades against; ``fees`` by venue name."""

    speed: float = 1.0
    seed: int = 7
    faults: str = "none"
    fees: dict[str, SimulatedFees] = {}


class RecorderConfig(_Strict, frozen=True):
    """Market data to Parquet (``hftkit.storage.recorder``): ``hftkit record`` always records,
    a node only with ``enabled``. ``instruments``: symbols per venue to record beyond what the
    strategies trade (``hftkit record`` with no strategies records exactly these)."""

    enabled: bool = False
    directory: str = "recordings"  # relative to the config file's folder
    raw: bool = True  # the frames as received, with receive times (replayable)
    normalized: bool = True  # book deltas/snapshots, trades, tickers in ticks and lots
    rotate_mb: int = 256  # a file past this size is completed (files also rotate on the hour)
    flush_interval_s: float = 1.0
    buffer_rows: int = 1_000_000
    overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    writer: Literal["process", "thread"] = "process"  # where Arrow/zstd/disk work runs
    normalized_depth: Literal["top", "deltas"] = "top"  # book changes as the new top, or every level
    instruments: dict[str, list[str]] = {}


InfluxMeasurement = Literal["top_of_book", "trades", "orders", "fills", "positions", "pnl", "latency"]


class InfluxConfig(_Strict, frozen=True):
    """Time series to InfluxDB (``hftkit.storage.influx``): 1.x (``api: v1``, ``database``) or
    2.x/3.x (``api: v2``, ``org``, ``bucket``, ``token``); what is written is ``measurements``."""

    enabled: bool = False
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "hftkit"
    username: str | None = None
    password: Secret[str] | None = None
    org: str = ""
    bucket: str = ""
    token: Secret[str] | None = None
    gzip: bool = True
    batch_size: int = 1000
    flush_interval_s: float = 2.0
    buffer_points: int = 100_000
    timeout_s: float = 5.0
    measurements: list[InfluxMeasurement] = msgspec.field(
        default_factory=lambda: list(get_args(InfluxMeasurement))
    )
    top_of_book_interval_ms: int = 100
    snapshot_interval_s: float = 10.0


class JournalConfig(_Strict, frozen=True):
    """The event journal (``hftkit.storage.journal``): orders, fills, positions, risk events,
    signals; read back on restart. ``sqlite``: one file per node at ``path`` (relative to the
    config's folder); ``postgres``: one table shared by the nodes at ``dsn``."""

    enabled: bool = False
    node_id: str = "node"
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "state/{node_id}.journal.sqlite"
    synchronous: Literal["full", "normal"] = "full"  # sqlite: fsync per commit (full) or not
    dsn: Secret[str] | None = None  # postgres, e.g. ${HFTKIT_JOURNAL_DSN}
    table: str = "hftkit_journal"
    batch_size: int = 1000
    flush_interval_s: float = 0.05
    buffer_records: int = 1_000_000
    id_prefix: str = "hk"  # client order ids: <id_prefix><node hash>s<session>-<n>


class FirmRiskConfig(_Strict, frozen=True):
    """The risk node's firm-wide limits (``hftkit risk``): past any of them it trips every node's
    kill switch through the bus. ``max_loss``: realized + unrealized PnL summed over every node,
    per quote asset (decimal string, quote units); ``max_position``: net position per base asset
    over every node and venue (decimal string, base units); ``max_report_age_s``: a node silent
    longer than this is reported stale, and trips the switch with ``trip_on_stale``."""

    max_loss: dict[str, str] = {}
    max_position: dict[str, str] = {}
    max_report_age_s: float = 5.0
    trip_on_stale: bool = False


class BusConfig(_Strict, frozen=True):
    """The message bus (``hftkit.bus``): ``in_process`` (the default: one process) or ``redis``
    (Redis Streams at ``url``, for several processes or hosts; streams
    ``hftkit:<kind>:<venue>:<symbol>``). ``node_id`` names this node on the bus (its consumer
    groups and its reports). A feed node (``hftkit feed``) publishes the books of ``publish``
    (symbols per venue) with a snapshot every ``snapshot_interval_s``; a strategy node with
    ``market_data: bus`` builds its books from them; every node with the bus enabled reports
    positions/PnL every ``report_interval_s`` and obeys the firm-wide kill switch."""

    enabled: bool = False
    backend: Literal["in_process", "redis"] = "in_process"  # embedded default; redis: several
    url: str = "redis://127.0.0.1:6379/0"
    node_id: str = "node"
    maxlen: int = 100_000  # entries kept per stream (XADD MAXLEN ~)
    buffer_messages: int = 100_000  # publish buffer while Redis is unreachable (oldest dropped)
    block_ms: int = 100  # XREADGROUP BLOCK: also bounds how late a node sees the kill switch
    claim_idle_ms: int = 1000  # pending entries idle this long are taken over from a dead consumer
    snapshot_interval_s: float = 1.0
    report_interval_s: float = 1.0
    publish: dict[str, list[str]] = {}
    # a trading node also publishes its order updates, fills, positions and balances
    # (``hftkit:order|fill|position|balance:<venue>:<symbol or asset>``), for audit and tools
    publish_account: bool = False
    risk: FirmRiskConfig = FirmRiskConfig()


class NodeConfig(_Strict, frozen=True):
    """Everything a node runs with; ``live: true`` (or ``--live``) confirms mainnet trading."""

    venues: dict[str, VenueConfig]
    strategies: list[StrategyConfig] = []
    risk: RiskConfig = RiskConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    logging: LoggingConfig = LoggingConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    recorder: RecorderConfig = RecorderConfig()
    influx: InfluxConfig = InfluxConfig()
    journal: JournalConfig = JournalConfig()
    bus: BusConfig = BusConfig()
    # where the books come from: the venue's own streams, or a feed node on the bus (orders
    # always go straight to the venue)
    market_data: Literal["venue", "bus"] = "venue"
    live: bool = False
    seconds: float | None = None
    # simulated execution (hftkit.backtest): ``paper`` matches orders in process against the live
    # books; ``backtest`` replays ``data`` over ``range`` on a simulated clock
    environment: Mode = "venue"
    data: list[DataSource] = []
    range: TimeRange | None = None
    latency: LatencySettings = LatencySettings()
    backtest: BacktestOptions = BacktestOptions()

    def environments(self) -> set[str]:
        return {venue.environment for venue in self.venues.values()}


# YAML with line numbers -------------------------------------------------------------------------
class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key and sequence item by path."""


def _load_with_lines(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    lines: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(error, 'problem', None) or error}",
            file=file,
            line=None if mark is None else mark.line + 1,
        ) from None
    if root is None:
        raise ConfigError("the file is empty", file=file)

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> Any:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = (
                    _LineLoader(text).construct_object(key_node)
                    if not isinstance(key_node, yaml.ScalarNode)
                    else key_node.value
                )
                lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = walk(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, (*path, index)) for index, item in enumerate(node.value)]
        loader = _LineLoader("")
        return loader.construct_object(node, deep=True)

    return walk(root, ()), lines


def _substitute(value: Any, path: tuple[Any, ...], file: str, lines: Mapping[tuple[Any, ...], int]) -> Any:
    """``${VAR}`` / ``${VAR:-default}`` in every string, from the environment; missing is an error."""
    if isinstance(value, dict):
        return {key: _substitute(item, (*path, key), file, lines) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, (*path, index), file, lines) for index, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(found: re.Match[str]) -> str:
        name, default = found.group(1), found.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set",
            file=file,
            line=lines.get(path),
            path=_render_path(path),
        )

    return _ENV_REFERENCE.sub(replace, value)


def _render_path(path: tuple[Any, ...] | list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _parse_message_path(message: str) -> tuple[str, list[Any]]:
    """msgspec's ``... - at `$.a.b[0]` `` -> (message without the suffix, ["a", "b", 0])."""
    found = _PATH_IN_MESSAGE.search(message)
    if not found:
        return message, []
    parts: list[Any] = []
    # a dict value's path stops at ``[...]`` (msgspec does not render keys): keep what precedes it
    for token in re.findall(r"\.([^.\[]+)|\[(\d+)\]", found.group(1).split("[...]", 1)[0]):
        if token[0]:
            parts.append(token[0])
        else:
            parts.append(int(token[1]))
    return message[: found.start()], parts


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Secret or get_origin(kind) is Secret:
        if not isinstance(value, str):
            raise TypeError("a secret must be a string")
        return Secret(value)
    raise NotImplementedError


def _fields_at(model: Any, path: list[Any]) -> list[str]:
    """The valid keys at ``path`` inside ``model`` (for 'did you mean'), best effort."""
    current: Any = model
    for part in path:
        current = _child_type(current, part)
        if current is None:
            return []
    return _field_names(current)


def _child_type(kind: Any, key: Any) -> Any:
    origin = get_origin(kind)
    if origin in (list, tuple) and get_args(kind):
        return get_args(kind)[0]
    if origin is dict and get_args(kind):
        return get_args(kind)[1]
    if origin is not None and type(None) in get_args(kind):
        return _child_type(next(arg for arg in get_args(kind) if arg is not type(None)), key)
    hints = _type_hints(kind)
    return hints.get(key)


def _type_hints(kind: Any) -> dict[str, Any]:
    if isinstance(kind, type) and (issubclass(kind, msgspec.Struct) or dataclasses.is_dataclass(kind)):
        try:
            return get_type_hints(kind)
        except Exception:
            return {}
    return {}


def _field_names(kind: Any) -> list[str]:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return list(kind.__struct_fields__)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return [field.name for field in dataclasses.fields(kind)]
    if get_origin(kind) is not None:  # a union of venue kinds: every member's fields
        names: list[str] = []
        for arg in get_args(kind):
            names.extend(_field_names(arg))
        return sorted(set(names))
    return []


def suggest(word: str, choices: list[str]) -> str:
    """`` (did you mean `x`?)`` for the nearest valid key, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _line_for(lines: Mapping[tuple[Any, ...], int], path: list[Any]) -> int | None:
    for cut in range(len(path), -1, -1):
        line = lines.get(tuple(path[:cut]))
        if line is not None:
            return line
    return None


def convert(
    data: Any,
    model: Any,
    *,
    file: str,
    lines: Mapping[tuple[Any, ...], int],
    prefix: tuple[Any, ...] = (),
) -> Any:
    """Decode plain data into ``model`` (struct or dataclass); errors become one-line ConfigErrors."""
    if dataclasses.is_dataclass(model) and isinstance(data, dict):
        # msgspec ignores unknown keys of a dataclass: check them here like a struct's
        known = {field.name for field in dataclasses.fields(model)}
        for key in data:
            if key not in known:
                key_path = (*prefix, key)
                raise ConfigError(
                    f"unknown field `{key}`{suggest(str(key), sorted(known))}",
                    file=file,
                    line=lines.get(key_path),
                    path=_render_path(key_path),
                )
    try:
        return msgspec.convert(data, model, dec_hook=_decode_hook)
    except msgspec.ValidationError as error:
        message, parts = _parse_message_path(str(error))
        unknown = _UNKNOWN_FIELD.match(message)
        if unknown:
            name = unknown.group(1)
            hint = suggest(name, _fields_at(model, parts))
            path = [*prefix, *parts, name]
            raise ConfigError(
                f"unknown field `{name}`{hint}",
                file=file,
                line=_line_for(lines, path),
                path=_render_path(path),
            ) from None
        path = [*prefix, *parts]
        raise ConfigError(
            message.rstrip(". ") or "invalid value",
            file=file,
            line=_line_for(lines, path),
            path=_render_path(path),
        ) from None


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    """A decoded config and where it came from (for line numbers in later checks)."""

    node: NodeConfig
    file: str
    lines: dict[tuple[Any, ...], int]
    directory: Path


def load_text(text: str, file: str = "<config>", directory: Path | None = None) -> LoadedConfig:
    data, lines = _load_with_lines(text, file)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (venues:, strategies:, ...)", file=file, line=1)
    data = _substitute(data, (), file, lines)
    venues = data.get("venues")
    if isinstance(venues, dict):
        # msgspec does not name dict keys in its error paths: check each venue under its own name
        for name, venue in venues.items():
            convert(venue, VenueConfig, file=file, lines=lines, prefix=("venues", name))
    node = convert(data, NodeConfig, file=file, lines=lines)
    loaded = LoadedConfig(node, file, lines, directory or Path.cwd())
    check(loaded)
    return loaded


def load(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read, substitute and decode a config file; raises ``ConfigError`` (one line) on any problem."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the config: {error.strerror or error}", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("the config is not UTF-8 text", file=file) from None
    return load_text(text, file, Path(file).resolve().parent)


# checks that span fields ------------------------------------------------------------------------
def check(loaded: LoadedConfig, *, live: bool = False) -> None:
    """Cross-field rules: credentials per environment, names, risk and confirmation for mainnet."""
    node, file, lines = loaded.node, loaded.file, loaded.lines
    if not node.venues:
        raise ConfigError(
            "at least one venue is needed", file=file, line=lines.get(("venues",)), path="venues"
        )
    for name, venue in node.venues.items():
        if venue.environment == "sim":
            continue
        where: _Where = {"file": file, "line": lines.get(("venues", name)), "path": f"venues.{name}"}
        if isinstance(venue, BinanceVenue) and (venue.api_key is None or venue.api_secret is None):
            raise ConfigError(f"{venue.environment} needs api_key and api_secret (use ${{ENV_VAR}})", **where)
        if isinstance(venue, ThalexVenue) and (
            venue.key_id is None or (venue.private_key is None and venue.private_key_file is None)
        ):
            raise ConfigError(
                f"{venue.environment} needs key_id and private_key (or private_key_file)", **where
            )
    _check_simulated(loaded)
    _check_storage(loaded)
    _check_journal(loaded)
    _check_bus(loaded)
    names = [strategy.name for strategy in node.strategies]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f"strategy names must be unique: {', '.join(duplicates)}", file=file, path="strategies"
        )
    for index, item in enumerate(node.risk.instruments):
        if item.venue not in node.venues:
            path = ("risk", "instruments", index, "venue")
            raise ConfigError(
                f"no venue named `{item.venue}`{suggest(item.venue, list(node.venues))}",
                file=file,
                line=lines.get(path),
                path=_render_path(path),
            )


def _check_simulated(loaded: LoadedConfig) -> None:
    """A backtest needs data, on configured venues; data and range mean nothing elsewhere."""
    node, file, lines = loaded.node, loaded.file, loaded.lines
    if node.environment != "backtest":
        if node.data or node.range is not None:
            raise ConfigError(
                "`data` and `range` are for `environment: backtest`",
                file=file,
                line=lines.get(("data",)) or lines.get(("range",)),
                path="environment",
            )
        return
    if not node.data:
        raise ConfigError("a backtest needs `data`: recordings per venue and symbol", file=file, path="data")
    for index, source in enumerate(node.data):
        if source.venue not in node.venues:
            path = ("data", index, "venue")
            raise ConfigError(
                f"no venue named `{source.venue}`{suggest(source.venue, list(node.venues))}",
                file=file,
                line=lines.get(path),
                path=_render_path(path),
            )


def _check_journal(loaded: LoadedConfig) -> None:
    """The journal's section: a usable node id and id prefix, sizes, a DSN for PostgreSQL."""
    journal, file, lines = loaded.node.journal, loaded.file, loaded.lines

    def fail(message: str, key: str) -> ConfigError:
        path = ("journal", key)
        return ConfigError(message, file=file, line=_line_for(lines, list(path)), path=_render_path(path))

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", journal.node_id):
        raise fail(f"letters, digits, `_`, `.` and `-` only (1-64), got {journal.node_id!r}", "node_id")
    if not re.fullmatch(r"[A-Za-z0-9]{1,6}", journal.id_prefix):
        raise fail(
            f"1-6 letters or digits (client order ids are short), got {journal.id_prefix!r}", "id_prefix"
        )
    for key in ("batch_size", "buffer_records"):
        if getattr(journal, key) < 1:
            raise fail(f"must be at least 1, got {getattr(journal, key)}", key)
    if journal.batch_size > journal.buffer_records:
        raise fail(
            f"batch_size {journal.batch_size} is larger than buffer_records {journal.buffer_records}",
            "batch_size",
        )
    if journal.flush_interval_s <= 0:
        raise fail("must be positive seconds", "flush_interval_s")
    if journal.enabled and journal.backend == "postgres" and journal.dsn is None:
        raise fail("the postgres backend needs a dsn (use ${ENV_VAR})", "dsn")


def _check_bus(loaded: LoadedConfig) -> None:
    """The bus section: a usable node id and URL, sizes, known venues; ``market_data: bus`` needs it."""
    node, file, lines = loaded.node, loaded.file, loaded.lines
    bus = node.bus

    def fail(message: str, *path: Any) -> ConfigError:
        return ConfigError(message, file=file, line=_line_for(lines, list(path)), path=_render_path(path))

    check_bus_section(bus, fail)
    for venue, symbols in bus.publish.items():
        if venue not in node.venues:
            hint = suggest(venue, list(node.venues))
            raise fail(f"no venue named `{venue}`{hint}", "bus", "publish", venue)
        for symbol in symbols:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", symbol):
                raise fail(f"symbol {symbol!r} cannot be a stream name part", "bus", "publish", venue)
    if node.market_data == "bus" and not bus.enabled:
        raise fail("`market_data: bus` needs the bus: set bus.enabled: true", "market_data")


def check_bus_section(bus: BusConfig, fail: Any) -> None:
    """Rules of the ``bus:`` section alone (shared with the risk node's config)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", bus.node_id):
        raise fail(f"letters, digits, `_`, `.` and `-` only (1-64), got {bus.node_id!r}", "bus", "node_id")
    if bus.backend == "redis" and not bus.url.startswith(("redis://", "rediss://", "unix://")):
        raise fail(f"expected a redis://, rediss:// or unix:// URL, got {bus.url!r}", "bus", "url")
    for key in ("maxlen", "buffer_messages", "block_ms", "claim_idle_ms"):
        if getattr(bus, key) < 1:
            raise fail(f"must be at least 1, got {getattr(bus, key)}", "bus", key)
    for key in ("snapshot_interval_s", "report_interval_s"):
        if getattr(bus, key) <= 0:
            raise fail("must be positive seconds", "bus", key)
    if bus.risk.max_report_age_s <= 0:
        raise fail("must be positive seconds", "bus", "risk", "max_report_age_s")
    for key in ("max_loss", "max_position"):
        for asset, text in getattr(bus.risk, key).items():
            try:
                value = Decimal(text)
            except (InvalidOperation, TypeError):
                raise fail(f"expected a decimal string, got {text!r}", "bus", "risk", key, asset) from None
            if not value.is_finite() or value <= 0:
                raise fail(f"must be a positive amount, got {text!r}", "bus", "risk", key, asset)


class RiskNodeConfig(_Strict, frozen=True):
    """``hftkit risk --config FILE``: the firm-wide risk node needs only the bus (with its
    ``risk`` limits), metrics and logging."""

    bus: BusConfig
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    seconds: float | None = None


def load_risk_node(path: str | os.PathLike[str]) -> RiskNodeConfig:
    """Read and check a risk node's config; ``ConfigError`` (one line) on any problem."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the config: {error.strerror or error}", file=file) from None
    data, lines = _load_with_lines(text, file)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (bus:, metrics:, ...)", file=file, line=1)
    data = _substitute(data, (), file, lines)
    config: RiskNodeConfig = convert(data, RiskNodeConfig, file=file, lines=lines)

    def fail(message: str, *where: Any) -> ConfigError:
        return ConfigError(message, file=file, line=_line_for(lines, list(where)), path=_render_path(where))

    check_bus_section(config.bus, fail)
    if not config.bus.enabled:
        raise fail("the risk node works on the bus: set bus.enabled: true", "bus", "enabled")
    return config


def _check_storage(loaded: LoadedConfig) -> None:
    """The recorder's and InfluxDB's sections: positive sizes, known venues, v2 credentials."""
    node, file, lines = loaded.node, loaded.file, loaded.lines

    def fail(message: str, *path: Any) -> ConfigError:
        return ConfigError(message, file=file, line=_line_for(lines, list(path)), path=_render_path(path))

    recorder, influx = node.recorder, node.influx
    if not (recorder.raw or recorder.normalized):
        raise fail("record `raw`, `normalized` or both", "recorder", "raw")
    for key in ("rotate_mb", "buffer_rows"):
        if getattr(recorder, key) < 1:
            raise fail(f"must be at least 1, got {getattr(recorder, key)}", "recorder", key)
    if recorder.flush_interval_s <= 0:
        raise fail("must be positive seconds", "recorder", "flush_interval_s")
    for venue in recorder.instruments:
        if venue not in node.venues:
            hint = suggest(venue, list(node.venues))
            raise fail(f"no venue named `{venue}`{hint}", "recorder", "instruments", venue)
    for key in ("batch_size", "buffer_points"):
        if getattr(influx, key) < 1:
            raise fail(f"must be at least 1, got {getattr(influx, key)}", "influx", key)
    if influx.batch_size > influx.buffer_points:
        raise fail(
            f"batch_size {influx.batch_size} is larger than buffer_points {influx.buffer_points}",
            "influx",
            "batch_size",
        )
    for key in ("flush_interval_s", "timeout_s", "snapshot_interval_s"):
        if getattr(influx, key) <= 0:
            raise fail("must be positive seconds", "influx", key)
    if influx.top_of_book_interval_ms < 0:
        raise fail("must be 0 (every change) or more milliseconds", "influx", "top_of_book_interval_ms")
    v2_ready = influx.org and influx.bucket and influx.token is not None
    if influx.enabled and influx.api == "v2" and not v2_ready:
        message = "InfluxDB 2.x/3.x (`api: v2`) needs org, bucket and token (use ${ENV_VAR})"
        raise fail(message, "influx", "api")
    if not influx.url.startswith(("http://", "https://")):
        raise fail(f"expected an http(s):// URL, got {influx.url!r}", "influx", "url")


def check_live(loaded: LoadedConfig, *, live_flag: bool) -> None:
    """Mainnet trades real money: it needs risk limits for every venue and an explicit yes."""
    node = loaded.node
    mainnet = sorted(name for name, venue in node.venues.items() if venue.environment == "mainnet")
    if not mainnet:
        return
    limited = {item.venue for item in node.risk.instruments if item.limits.get("max_position") is not None}
    unlimited = [name for name in mainnet if name not in limited]
    if unlimited:
        raise ConfigError(
            f"mainnet venue(s) {', '.join(unlimited)} have no risk limits: set risk.instruments "
            "with max_position for each instrument traded there",
            file=loaded.file,
            path="risk.instruments",
        )
    if not (node.live or live_flag):
        raise ConfigError(
            f"mainnet venue(s) {', '.join(mainnet)} need an explicit confirmation: "
            "pass --live or set live: true",
            file=loaded.file,
            path="live",
        )


def instrument_limits(loaded: LoadedConfig) -> dict[tuple[str, str], Any]:
    """``risk.instruments`` as ``InstrumentLimits`` by (venue, symbol), checked like the schema."""
    from hftkit.trading.risk import InstrumentLimits, RiskConfigError

    result: dict[tuple[str, str], Any] = {}
    for index, item in enumerate(loaded.node.risk.instruments):
        prefix = ("risk", "instruments", index, "limits")
        try:
            result[(item.venue, item.symbol)] = convert(
                dict(item.limits), InstrumentLimits, file=loaded.file, lines=loaded.lines, prefix=prefix
            )
        except RiskConfigError as error:
            raise ConfigError(
                str(error), file=loaded.file, line=loaded.lines.get(prefix), path=_render_path(prefix)
            ) from None
    return result


def risk_limits(loaded: LoadedConfig) -> Any:
    """``risk.limits`` as ``RiskLimits`` (all instruments; the kill switch's drawdown)."""
    from hftkit.trading.risk import RiskConfigError, RiskLimits

    prefix = ("risk", "limits")
    try:
        return convert(
            dict(loaded.node.risk.limits), RiskLimits, file=loaded.file, lines=loaded.lines, prefix=prefix
        )
    except RiskConfigError as error:
        raise ConfigError(
            str(error), file=loaded.file, line=loaded.lines.get(prefix), path="risk.limits"
        ) from None


# strategies by import path --------------------------------------------------------------------------
@contextmanager
def _import_path(directory: Path) -> Iterator[None]:
    """A strategy file beside the config imports like a module: its folder joins sys.path."""
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def strategy_class(loaded: LoadedConfig, index: int) -> type:
    """Import ``package.module:Class`` of strategy ``index``; it must subclass ``Strategy``."""
    from hftkit.trading.strategy import Strategy

    config = loaded.node.strategies[index]
    path = ("strategies", index, "path")
    where: _Where = {"file": loaded.file, "line": loaded.lines.get(path), "path": _render_path(path)}
    module_name, _, class_name = config.path.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"`{config.path}` is not `package.module:Class`", **where)
    with _import_path(loaded.directory):
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(f"cannot import `{module_name}`: {error}", **where) from None
        except Exception as error:  # the user's module raised while importing
            raise ConfigError(
                f"importing `{module_name}` raised {type(error).__name__}: {error}", **where
            ) from None
    found = getattr(module, class_name, None)
    if found is None:
        names = [name for name in vars(module) if not name.startswith("_")]
        raise ConfigError(f"`{module_name}` has no `{class_name}`{suggest(class_name, names)}", **where)
    if not (isinstance(found, type) and issubclass(found, Strategy)):
        raise ConfigError(f"`{config.path}` is not a hftkit Strategy subclass", **where)
    return found


def strategy_params(loaded: LoadedConfig, index: int, cls: type) -> Any:
    """The strategy's declared ``config_type`` built from ``params`` (None when it declares none)."""
    config = loaded.node.strategies[index]
    config_type = getattr(cls, "config_type", None)
    prefix = ("strategies", index, "params")
    if config_type is None:
        if config.params:
            first = next(iter(config.params))
            raise ConfigError(
                f"{cls.__name__} declares no config_type, so it takes no params",
                file=loaded.file,
                line=loaded.lines.get((*prefix, first)),
                path=_render_path((*prefix, first)),
            )
        return None
    return convert(dict(config.params), config_type, file=loaded.file, lines=loaded.lines, prefix=prefix)


def build_strategies(loaded: LoadedConfig) -> list[Any]:
    """Every configured strategy, constructed as ``Class(params, name=name)``."""
    built = []
    for index, config in enumerate(loaded.node.strategies):
        cls = strategy_class(loaded, index)
        params = strategy_params(loaded, index, cls)
        try:
            built.append(cls(name=config.name) if params is None else cls(params, name=config.name))
        except (TypeError, ValueError) as error:
            path = ("strategies", index)
            raise ConfigError(
                f"{cls.__name__} refused its params: {error}",
                file=loaded.file,
                line=loaded.lines.get(path),
                path=_render_path(path),
            ) from None
    return built


__all__ = [
    "BinanceVenue",
    "BusConfig",
    "ConfigError",
    "DashboardConfig",
    "FirmRiskConfig",
    "InfluxConfig",
    "InstrumentRisk",
    "LoadedConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NodeConfig",
    "RecorderConfig",
    "RiskConfig",
    "RiskNodeConfig",
    "RuntimeConfig",
    "SimulatedFees",
    "SimulatorConfig",
    "StrategyConfig",
    "ThalexVenue",
    "build_strategies",
    "check",
    "check_live",
    "convert",
    "instrument_limits",
    "load",
    "load_risk_node",
    "load_text",
    "risk_limits",
    "strategy_class",
    "strategy_params",
]
