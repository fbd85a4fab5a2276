"""The simulator's configuration: a typed, frozen ``SimConfig`` loaded from YAML and validated.

Every value is checked at load time and an error names the file and the dotted field
(``sim.yaml: venues.thalex.faults.depth_drop_probability: ...``), so a typo never surfaces as
a crash minutes into a run. Defaults give a complete simulator: the three venues on
ephemeral ports, replaying the recorded BTC and ETH markets at recorded speed, one funded
test account and fixed test credentials.

The instrument catalogue holds the listed markets' real grids, except where the recordings
carry finer sizes than today's order step (BTCUSDT spot depth has sizes to 1e-6 BTC, ETHUSDT
to 1e-5 ETH): the replay must convert every recorded size exactly, so those lots follow the
data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from hftkit.core.errors import HftkitError
from hftkit.core.types import ContractKind, Instrument
from hftkit.sim.binance.limits import SPOT_LIMITS, USDM_LIMITS, RateLimitSettings
from hftkit.sim.engine.accounts import FeeSchedule
from hftkit.sim.engine.faults import PROFILES, FaultConfigError, FaultProfile
from hftkit.sim.engine.market import AS_FAST_AS_POSSIBLE

BINANCE_SPOT = "binance-spot"
BINANCE_USDM = "binance-usdm"
THALEX = "thalex"
VENUES = (BINANCE_SPOT, BINANCE_USDM, THALEX)
SOURCES = ("replay", "synthetic", "parquet")  # parquet: an ``hftkit record`` folder (``recording:``)


class SimConfigError(HftkitError, ValueError):
    """A configuration value the simulator refuses; the message names the file and the field."""


# instrument catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentSpec:
    """One listed market: its grids and where its replayed data comes from."""

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_notional: str = "0"
    kind: ContractKind = ContractKind.SPOT
    start_price: str = "100"  # synthetic start
    recording: tuple[str, ...] = ()  # paths under shared/data/hftbacktest
    source_symbol: str = ""  # Thalex: the USD-M symbol whose recording drives it

    def instrument(self, venue: str) -> Instrument:
        return Instrument(
            venue,
            self.symbol,
            self.base,
            self.quote,
            self.tick_size,
            self.lot_size,
            self.min_notional,
            kind=self.kind,
        )


_PERP = ContractKind.PERPETUAL
CATALOGUE: dict[str, dict[str, InstrumentSpec]] = {
    BINANCE_SPOT: {
        "BTCUSDT": InstrumentSpec(
            "BTCUSDT",
            "BTC",
            "USDT",
            "0.01",
            "0.000001",
            "5",
            start_price="61800",
            recording=("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"),
        ),
        "ETHUSDT": InstrumentSpec(
            "ETHUSDT",
            "ETH",
            "USDT",
            "0.01",
            "0.00001",
            "5",
            start_price="2680",
            recording=("spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"),
        ),
    },
    BINANCE_USDM: {
        "BTCUSDT": InstrumentSpec(
            "BTCUSDT",
            "BTC",
            "USDT",
            "0.1",
            "0.001",
            "100",
            _PERP,
            start_price="61800",
            recording=("usdm/btcusdt_20240808.gz",),
        ),
        "ETHUSDT": InstrumentSpec(
            "ETHUSDT",
            "ETH",
            "USDT",
            "0.01",
            "0.001",
            "20",
            _PERP,
            start_price="2680",
            recording=("usdm/ethusdt_20240808.gz",),
        ),
    },
    THALEX: {
        "BTC-PERPETUAL": InstrumentSpec(
            "BTC-PERPETUAL",
            "BTC",
            "USD",
            "1",
            "0.001",
            kind=_PERP,
            start_price="61800",
            recording=("usdm/btcusdt_20240808.gz",),
            source_symbol="BTCUSDT",
        ),
        "ETH-PERPETUAL": InstrumentSpec(
            "ETH-PERPETUAL",
            "ETH",
            "USD",
            "0.1",
            "0.001",
            kind=_PERP,
            start_price="2680",
            recording=("usdm/ethusdt_20240808.gz",),
            source_symbol="ETHUSDT",
        ),
    },
}
DEFAULT_SYMBOLS: dict[str, tuple[str, ...]] = {venue: tuple(CATALOGUE[venue]) for venue in VENUES}
_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "USD")


def synthetic_spec(venue: str, symbol: str) -> InstrumentSpec:
    """A symbol outside the catalogue (synthetic data only): generic grids from its name."""
    if venue == THALEX:
        base = symbol.split("-", 1)[0]
        return InstrumentSpec(symbol, base, "USD", "0.5", "0.001", kind=_PERP)
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            base = symbol[: -len(quote)]
            kind = ContractKind.SPOT if venue == BINANCE_SPOT else _PERP
            return InstrumentSpec(symbol, base, quote, "0.01", "0.001", kind=kind)
    raise SimConfigError(
        f"cannot tell base and quote of {symbol!r}; use a name ending in {', '.join(_QUOTES)}"
    )


# the typed configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic order flow of one symbol (see ``SyntheticSettings``); prices/sizes as decimals."""

    start_price: str | None = None  # default: the catalogue's start price
    levels: int = 20
    limit_rate: float = 50.0
    cancel_rate: float = 40.0
    trade_rate: float = 5.0
    move_rate: float = 2.0
    move_ticks: int = 1
    min_size_lots: int = 1
    max_size_lots: int = 100
    max_trade_lots: int = 20


@dataclass(frozen=True)
class VenueConfig:
    name: str
    enabled: bool = True
    symbols: tuple[str, ...] = ()
    source: str = "replay"
    replay: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # symbol -> files
    faults: FaultProfile = field(default_factory=FaultProfile)
    fault_profile_name: str = "none"
    maker_fee_bp: str = "0"
    taker_fee_bp: str = "0"
    rate_limits: RateLimitSettings | None = None  # Binance markets
    message_rate: int = 50  # Thalex, messages per second per session

    @property
    def fees(self) -> FeeSchedule:
        return FeeSchedule.from_basis_points(self.maker_fee_bp, self.taker_fee_bp)


@dataclass(frozen=True)
class AccountConfig:
    name: str
    balances: Mapping[str, str]  # asset -> decimal text


@dataclass(frozen=True)
class CredentialsConfig:
    binance_api_key: str = "hftkit-sim-api-key-0000000000000000000000000000000000000000000000"
    binance_secret_key: str = "hftkit-sim-secret-key-000000000000000000000000000000000000000000000"
    thalex_key_id: str = "K000000001"
    thalex_public_key_file: str | None = None  # bring your own key pair; else one is generated
    thalex_private_key_file: str | None = None  # where a generated private key is written
    account: str = "trader"  # the account both venues' keys trade for


@dataclass(frozen=True)
class SimConfig:
    host: str = "127.0.0.1"
    binance_port: int = 0
    thalex_port: int = 0
    control_port: int = 0
    speed: float = 1.0  # recording time multiplier; AS_FAST_AS_POSSIBLE for "max"
    seed: int = 0
    loop: bool = True
    venues: Mapping[str, VenueConfig] = field(default_factory=dict)
    accounts: tuple[AccountConfig, ...] = ()
    credentials: CredentialsConfig = CredentialsConfig()
    synthetic: Mapping[str, SyntheticConfig] = field(default_factory=dict)  # symbol -> settings
    source_file: str = "<defaults>"

    @property
    def enabled_venues(self) -> tuple[str, ...]:
        return tuple(name for name in VENUES if name in self.venues and self.venues[name].enabled)

    def synthetic_for(self, symbol: str) -> SyntheticConfig:
        return self.synthetic.get(symbol, SyntheticConfig())

    def with_overrides(self, **changes: Any) -> SimConfig:
        """A copy with top-level fields replaced (used by the command line options)."""
        return replace(self, **changes)


DEFAULT_BALANCES = {
    "USDT": "1000000",
    "USD": "1000000",
    "BTC": "10",
    "ETH": "100",
}


# loading ------------------------------------------------------------------------------------------


class _Reader:
    """Typed reads from a YAML mapping; every error names the file and the dotted path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SimConfigError:
        return SimConfigError(f"{self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, got {key!r}")
        return value

    def only(self, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            where = f"{path}.{unknown[0]}" if path else unknown[0]
            raise self.fail(where, f"unknown field; known: {', '.join(sorted(known))}")

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str | None) -> str | None:
        value = data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{path}{key}", f"expected text, got {type(value).__name__}")
        return str(value)

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path}{key}", f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(f"{path}{key}", f"must lie in {low}..{high}, got {value}")
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
            raise self.fail(f"{path}{key}", f"expected a number >= 0, got {value!r}")
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}{key}", f"expected true or false, got {value!r}")
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise self.fail(path, f"expected a list of names, got {value!r}")
        return tuple(value)


def parse_speed(value: Any) -> float:
    """``"max"``/``"inf"``/0 -> as fast as possible; else a factor > 0 (1 = recorded speed)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("max", "inf", "fast", "asap"):
            return AS_FAST_AS_POSSIBLE
        try:
            value = float(text.removesuffix("x"))
        except ValueError:
            raise ValueError(f"speed must be a number or 'max', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise ValueError(f"speed must be a number >= 0 or 'max', got {value!r}")
    if value == 0 or math.isinf(value):
        return AS_FAST_AS_POSSIBLE
    return float(value)


def fault_profile(value: Any) -> tuple[FaultProfile, str]:
    """A profile from a name, or a mapping of settings (optionally on top of ``profile: <name>``)."""
    if value is None:
        return PROFILES["none"], "none"
    if isinstance(value, str):
        if value not in PROFILES:
            raise FaultConfigError(f"unknown fault profile {value!r}; known: {', '.join(PROFILES)}")
        return PROFILES[value], value
    if isinstance(value, Mapping):
        settings = dict(value)
        base_name = settings.pop("profile", "none")
        if not isinstance(base_name, str) or base_name not in PROFILES:
            raise FaultConfigError(f"unknown fault profile {base_name!r}; known: {', '.join(PROFILES)}")
        if not settings:
            return PROFILES[base_name], base_name
        return PROFILES[base_name].updated(settings), f"{base_name}+custom"
    raise FaultConfigError(f"faults must be a profile name or a mapping of settings, got {value!r}")


def _venue(reader: _Reader, name: str, data: Mapping[str, Any], defaults: Mapping[str, Any]) -> VenueConfig:
    path = f"venues.{name}."
    data = {**defaults, **data}
    reader.only(
        data,
        f"venues.{name}",
        {"enabled", "symbols", "source", "replay", "faults", "fees", "rate_limits", "message_rate"}
        | {"recording", "recorded_venue"},
    )
    symbols = reader.strings(data.get("symbols", list(DEFAULT_SYMBOLS[name])), f"{path}symbols")
    source = reader.string(data, "source", path, "replay")
    if source not in SOURCES:
        raise reader.fail(f"{path}source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
    replay: dict[str, tuple[str, ...]] = {}
    for symbol, files in reader.mapping(data.get("replay"), f"{path}replay").items():
        replay[symbol] = reader.strings(files, f"{path}replay.{symbol}")
    if source == "parquet":
        replay.update(_parquet_replay(reader, name, data, symbols))
    elif "recording" in data or "recorded_venue" in data:
        raise reader.fail(f"{path}recording", "recording is for source: parquet")
    for symbol in symbols:
        if source == "replay" and symbol not in CATALOGUE[name] and symbol not in replay:
            raise reader.fail(
                f"{path}symbols",
                f"{symbol} has no recording; recorded: {', '.join(CATALOGUE[name])} "
                "(or use source: synthetic)",
            )
    if name == THALEX and replay:
        raise reader.fail(f"{path}replay", "Thalex is driven by the binance-usdm recordings")
    try:
        faults, profile_name = fault_profile(data.get("faults"))
    except FaultConfigError as error:
        raise reader.fail(f"{path}faults", str(error)) from None
    fees = reader.mapping(data.get("fees"), f"{path}fees")
    reader.only(fees, f"{path}fees", {"maker_bp", "taker_bp"})
    maker = reader.string(fees, "maker_bp", f"{path}fees.", "0")
    taker = reader.string(fees, "taker_bp", f"{path}fees.", "0")
    try:
        FeeSchedule.from_basis_points(maker or "0", taker or "0")
    except (HftkitError, ArithmeticError, ValueError) as error:
        raise reader.fail(f"{path}fees", f"invalid fee: {error}") from None
    limits: RateLimitSettings | None = None
    raw_limits = reader.mapping(data.get("rate_limits"), f"{path}rate_limits")
    if name != THALEX:
        base = SPOT_LIMITS if name == BINANCE_SPOT else USDM_LIMITS
        limits = _rate_limits(reader, raw_limits, f"{path}rate_limits", base)
    elif raw_limits:
        raise reader.fail(f"{path}rate_limits", "Thalex limits are set with message_rate")
    message_rate = reader.integer(data, "message_rate", path, 50, 1, 1_000_000)
    return VenueConfig(
        name=name,
        enabled=reader.boolean(data, "enabled", path, True),
        symbols=symbols,
        source=source,
        replay=replay,
        faults=faults,
        fault_profile_name=profile_name,
        maker_fee_bp=maker or "0",
        taker_fee_bp=taker or "0",
        rate_limits=limits,
        message_rate=message_rate,
    )


def _parquet_replay(
    reader: _Reader, name: str, data: Mapping[str, Any], symbols: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """``source: parquet``: each symbol's raw-frame files in an ``hftkit record`` folder."""
    from hftkit.recording_files import frame_files, recorded_symbols

    path = f"venues.{name}."
    if name == THALEX:
        raise reader.fail(f"{path}source", "Thalex is driven by the binance-usdm recordings")
    root = reader.string(data, "recording", path, None)
    if not root:
        raise reader.fail(
            f"{path}recording", "source: parquet needs recording: FOLDER (an hftkit record directory)"
        )
    if not Path(root).is_dir():
        raise reader.fail(f"{path}recording", f"{root} is not a folder")
    held = recorded_symbols(root)
    recorded_venue = reader.string(data, "recorded_venue", path, None)
    replay: dict[str, tuple[str, ...]] = {}
    for symbol in symbols:
        venues = [venue for venue, names in held.items() if symbol in names]
        if recorded_venue is not None:
            venues = [venue for venue in venues if venue == recorded_venue]
        if len(venues) != 1:
            what = "no" if not venues else "several"
            raise reader.fail(
                f"{path}recording",
                f"{what} recorded venue holds {symbol} in {root} (recorded: {held or 'nothing'}); "
                "set recorded_venue",
            )
        replay[symbol] = tuple(str(file) for file in frame_files([root], venue=venues[0], symbol=symbol))
    return replay


def _rate_limits(
    reader: _Reader, data: Mapping[str, Any], path: str, base: RateLimitSettings
) -> RateLimitSettings:
    known = {item.name for item in fields(RateLimitSettings)}
    reader.only(data, path, known)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "order_windows":
            windows = []
            if not isinstance(value, list):
                raise reader.fail(f"{path}.{key}", "expected a list of [seconds, limit] pairs")
            for item in value:
                if (
                    not isinstance(item, list | tuple)
                    or len(item) != 2
                    or not all(isinstance(part, int) and not isinstance(part, bool) for part in item)
                ):
                    raise reader.fail(f"{path}.{key}", f"expected [seconds, limit], got {item!r}")
                windows.append((item[0], item[1]))
            values[key] = tuple(windows)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise reader.fail(f"{path}.{key}", f"expected a number, got {value!r}")
        else:
            values[key] = value
    try:
        return replace(base, **values)
    except (ValueError, TypeError) as error:
        raise reader.fail(path, str(error)) from None


def _synthetic(reader: _Reader, symbol: str, data: Mapping[str, Any]) -> SyntheticConfig:
    path = f"synthetic.{symbol}."
    reader.only(data, f"synthetic.{symbol}", {item.name for item in fields(SyntheticConfig)})
    defaults = SyntheticConfig()
    values: dict[str, Any] = {"start_price": reader.string(data, "start_price", path, None)}
    for item in fields(SyntheticConfig):
        if item.name == "start_price":
            continue
        default = getattr(defaults, item.name)
        if isinstance(default, int):
            values[item.name] = reader.integer(data, item.name, path, default, 1, 10**9)
        else:
            values[item.name] = reader.number(data, item.name, path, default)
    return SyntheticConfig(**values)


def config_from_mapping(data: Any, source: str = "<mapping>") -> SimConfig:
    """Validate a parsed YAML document into a ``SimConfig``."""
    reader = _Reader(source)
    data = reader.mapping(data, "(top level)")
    reader.only(
        data,
        "",
        {"host", "ports", "venues", "symbols", "source", "speed", "seed", "loop", "faults"}
        | {"accounts", "credentials", "synthetic"},
    )
    host = reader.string(data, "host", "", "127.0.0.1") or "127.0.0.1"
    ports = reader.mapping(data.get("ports"), "ports")
    reader.only(ports, "ports", {"binance", "thalex", "control"})
    port_values = {
        key: reader.integer(ports, key, "ports.", 0, 0, 65535) for key in ("binance", "thalex", "control")
    }
    try:
        speed = parse_speed(data.get("speed", 1.0))
    except ValueError as error:
        raise reader.fail("speed", str(error)) from None
    seed = reader.integer(data, "seed", "", 0, 0, 2**63 - 1)
    loop = reader.boolean(data, "loop", "", True)

    # top-level defaults that apply to every venue unless the venue says otherwise
    shared: dict[str, Any] = {}
    if "source" in data:
        shared["source"] = data["source"]
    if "faults" in data:
        shared["faults"] = data["faults"]
    venues_data = data.get("venues")
    venues: dict[str, VenueConfig] = {}
    if isinstance(venues_data, list | str):
        names = reader.strings(venues_data, "venues")
        venues_data = {name: {} for name in names}
        listed_only = True
    else:
        venues_data = reader.mapping(venues_data, "venues") if venues_data is not None else None
        listed_only = False
    if venues_data is None:
        venues_data = {name: {} for name in VENUES}
    for name in venues_data:
        if name not in VENUES:
            raise reader.fail(f"venues.{name}", f"unknown venue; known: {', '.join(VENUES)}")
    top_symbols = data.get("symbols")
    for name in VENUES:
        if name not in venues_data:
            if listed_only or venues_data:
                venues[name] = VenueConfig(name=name, enabled=False)
            continue
        venue_data = reader.mapping(venues_data[name], f"venues.{name}")
        defaults = dict(shared)
        if top_symbols is not None:
            chosen = venue_symbols(name, reader.strings(top_symbols, "symbols"))
            if chosen:
                defaults["symbols"] = list(chosen)
        venues[name] = _venue(reader, name, venue_data, defaults)
    if not any(venue.enabled for venue in venues.values()):
        raise reader.fail("venues", "no venue is enabled")

    accounts: list[AccountConfig] = []
    raw_accounts = data.get("accounts")
    if raw_accounts is None:
        accounts.append(AccountConfig("trader", dict(DEFAULT_BALANCES)))
    else:
        if not isinstance(raw_accounts, list) or not raw_accounts:
            raise reader.fail("accounts", "expected a non-empty list of {name, balances}")
        for index, item in enumerate(raw_accounts):
            path = f"accounts[{index}]"
            item = reader.mapping(item, path)
            reader.only(item, path, {"name", "balances"})
            name = reader.string(item, "name", f"{path}.", None)
            if not name:
                raise reader.fail(f"{path}.name", "an account needs a name")
            balances: dict[str, str] = {}
            for asset, amount in reader.mapping(item.get("balances"), f"{path}.balances").items():
                text = reader.string({asset: amount}, asset, f"{path}.balances.", None)
                try:
                    if text is None or float(text) < 0:
                        raise ValueError
                except ValueError:
                    raise reader.fail(
                        f"{path}.balances.{asset}", f"expected an amount >= 0, got {amount!r}"
                    ) from None
                balances[asset] = text
            accounts.append(AccountConfig(name, balances))

    raw_credentials = reader.mapping(data.get("credentials"), "credentials")
    reader.only(raw_credentials, "credentials", {"binance", "thalex", "account"})
    binance = reader.mapping(raw_credentials.get("binance"), "credentials.binance")
    reader.only(binance, "credentials.binance", {"api_key", "secret_key"})
    thalex = reader.mapping(raw_credentials.get("thalex"), "credentials.thalex")
    reader.only(thalex, "credentials.thalex", {"key_id", "public_key_file", "private_key_file"})
    defaults_credentials = CredentialsConfig()
    credentials = CredentialsConfig(
        binance_api_key=reader.string(
            binance, "api_key", "credentials.binance.", defaults_credentials.binance_api_key
        )
        or defaults_credentials.binance_api_key,
        binance_secret_key=reader.string(
            binance, "secret_key", "credentials.binance.", defaults_credentials.binance_secret_key
        )
        or defaults_credentials.binance_secret_key,
        thalex_key_id=reader.string(
            thalex, "key_id", "credentials.thalex.", defaults_credentials.thalex_key_id
        )
        or defaults_credentials.thalex_key_id,
        thalex_public_key_file=reader.string(thalex, "public_key_file", "credentials.thalex.", None),
        thalex_private_key_file=reader.string(thalex, "private_key_file", "credentials.thalex.", None),
        account=reader.string(raw_credentials, "account", "credentials.", accounts[0].name)
        or accounts[0].name,
    )
    if (
        credentials.thalex_public_key_file is not None
        and not Path(credentials.thalex_public_key_file).is_file()
    ):
        raise reader.fail(
            "credentials.thalex.public_key_file", f"{credentials.thalex_public_key_file} not found"
        )
    if credentials.account not in {account.name for account in accounts}:
        raise reader.fail("credentials.account", f"{credentials.account!r} is not one of the accounts")

    synthetic = {
        symbol: _synthetic(reader, symbol, reader.mapping(settings, f"synthetic.{symbol}"))
        for symbol, settings in reader.mapping(data.get("synthetic"), "synthetic").items()
    }
    return SimConfig(
        host=host,
        binance_port=port_values["binance"],
        thalex_port=port_values["thalex"],
        control_port=port_values["control"],
        speed=speed,
        seed=seed,
        loop=loop,
        venues=venues,
        accounts=tuple(accounts),
        credentials=credentials,
        synthetic=synthetic,
        source_file=source,
    )


def venue_symbols(venue: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The symbols of a venue among names given for all venues at once (``--symbols``).

    ``BTC-PERPETUAL`` is a Thalex name, ``BTCUSDT`` a Binance one; a bare asset (``BTC``) means
    every listed market of that base on every venue. Empty: nothing applies (keep the defaults).
    """
    chosen: list[str] = []
    for symbol in wanted:
        if symbol.isalpha() and symbol.upper() == symbol and len(symbol) <= 5:
            chosen.extend(spec.symbol for spec in CATALOGUE[venue].values() if spec.base == symbol)
        elif ("-" in symbol) == (venue == THALEX):
            chosen.append(symbol)
    return tuple(dict.fromkeys(chosen))


def load_config(path: str | Path) -> SimConfig:
    """Read and validate a YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SimConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SimConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_mapping(data or {}, str(path))


def default_config() -> SimConfig:
    return config_from_mapping({}, "<defaults>")


__all__ = [
    "BINANCE_SPOT",
    "BINANCE_USDM",
    "CATALOGUE",
    "THALEX",
    "VENUES",
    "AccountConfig",
    "CredentialsConfig",
    "InstrumentSpec",
    "SimConfig",
    "SimConfigError",
    "SyntheticConfig",
    "VenueConfig",
    "config_from_mapping",
    "default_config",
    "fault_profile",
    "load_config",
    "parse_speed",
    "synthetic_spec",
    "venue_symbols",
]
