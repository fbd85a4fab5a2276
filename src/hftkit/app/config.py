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
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import msgspec
import yaml

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


# the schema ---------------------------------------------------------------------------------------
class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config struct: immutable, no unknown keys."""


class BinanceVenue(_Strict, tag="binance", tag_field="kind"):
    """A Binance market (spot or USD-M). URLs default to the environment's published endpoints."""

    market: Literal["spot", "usdm"]
    environment: Environment = "sim"
    api_key: Secret[str] | None = None
    api_secret: Secret[str] | None = None
    rest_url: str | None = None
    stream_url: str | None = None
    websocket_api_url: str | None = None
    recv_window_ms: int = 5000
    cancel_on_exit: bool = True


class ThalexVenue(_Strict, tag="thalex", tag_field="kind"):
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
    refresh_per_s: float = 4.0


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
    live: bool = False
    seconds: float | None = None

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
                path = (*prefix, key)
                raise ConfigError(
                    f"unknown field `{key}`{suggest(str(key), sorted(known))}",
                    file=file,
                    line=lines.get(path),
                    path=_render_path(path),
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
        where = {"file": file, "line": lines.get(("venues", name)), "path": f"venues.{name}"}
        if isinstance(venue, BinanceVenue) and (venue.api_key is None or venue.api_secret is None):
            raise ConfigError(f"{venue.environment} needs api_key and api_secret (use ${{ENV_VAR}})", **where)
        if isinstance(venue, ThalexVenue) and (
            venue.key_id is None or (venue.private_key is None and venue.private_key_file is None)
        ):
            raise ConfigError(
                f"{venue.environment} needs key_id and private_key (or private_key_file)", **where
            )
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
    where = {"file": loaded.file, "line": loaded.lines.get(path), "path": _render_path(path)}
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
    "ConfigError",
    "DashboardConfig",
    "InstrumentRisk",
    "LoadedConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NodeConfig",
    "RiskConfig",
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
    "load_text",
    "risk_limits",
    "strategy_class",
    "strategy_params",
]
