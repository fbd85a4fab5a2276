"""``Simulator``: the whole exchange simulator in-process, started and stopped as one thing.

``async with Simulator(config) as sim:`` builds the venues (a matching engine and accounts
each, the test account funded), starts the Binance-compatible server (spot and USD-M on one
port), the Thalex-compatible server, the market drivers (replay or synthetic) and the local
control endpoint, then hands back every URL (``sim.urls``) and the test credentials
(``sim.credentials``). ``await sim.stop()`` closes the servers and waits for every task it
started, so a test leaves nothing running behind it.

Replay wiring: each recording is read once and fans out to every venue it drives. The USD-M
BTCUSDT recording drives the USD-M venue's BTCUSDT and, folded into 1 USD buckets, Thalex's
BTC-PERPETUAL, so the two venues move together the way the real markets do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from hftkit.core.numbers import Rounding
from hftkit.core.types import Instrument
from hftkit.datasets import DataNotFoundError, hftbacktest_path
from hftkit.sim.config import (
    BINANCE_SPOT,
    BINANCE_USDM,
    CATALOGUE,
    THALEX,
    VENUES,
    InstrumentSpec,
    SimConfig,
    SimConfigError,
    default_config,
    fault_profile,
    synthetic_spec,
)
from hftkit.sim.engine.accounts import Accounts
from hftkit.sim.engine.faults import FaultInjector, FaultProfile
from hftkit.sim.engine.market import (
    BucketSink,
    MarketSink,
    ReplayDriver,
    SyntheticDriver,
    SyntheticMarket,
    SyntheticSettings,
    VenueSink,
    validate_speed,
)
from hftkit.sim.engine.matching import MatchingEngine, SelfTradePrevention
from hftkit.sim.engine.venue import SimVenue

logger = logging.getLogger(__name__)

MarketDriver = ReplayDriver | SyntheticDriver
INDEX_PERIOD_S = 1.0
# Fill ledger entries kept per venue (about 370 bytes each): a run of days at full speed fills
# without end, and no endpoint serves the ledger (the venues' trade histories are their own).
LEDGER_LIMIT = 50_000
CHANGES_KEPT = 1_000  # control-endpoint changes (speed, faults) kept for GET /changes
# How long the simulator counts a client as attached after its last connection closed: a REST
# client that opens a connection per request (no keep-alive) stays attached between requests.
ATTACHED_LINGER_S = 5.0


@dataclass(frozen=True)
class SimCredentials:
    """What a client needs to trade on the simulator (test keys, never real ones)."""

    account: str
    binance_api_key: str
    binance_secret_key: str = field(repr=False)
    thalex_key_id: str
    thalex_private_key_file: str | None
    thalex_public_key_pem: bytes = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "binance_api_key": self.binance_api_key,
            "binance_secret_key": self.binance_secret_key,
            "thalex_key_id": self.thalex_key_id,
            "thalex_private_key_file": self.thalex_private_key_file,
        }


class Simulator:
    """Venues, servers, market drivers and the control endpoint of one simulator run."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        max_passes: int | None = None,
        max_synthetic_operations: int | None = None,
        tls: bool = False,
        ledger_limit: int | None = LEDGER_LIMIT,
        wait_for_clients: bool = True,
    ) -> None:
        self.config = config if config is not None else default_config()
        self.tls = tls  # serve https/wss with a CA made for the run (sim.tls)
        self.tls_files: Any = None
        self.max_passes = max_passes
        self.max_synthetic_operations = max_synthetic_operations
        self.ledger_limit = ledger_limit  # None keeps every fill (a short in-process check may want it)
        # at speed max the drivers run only while a client is attached (``attached``); False for
        # in-process use that reads the venues directly with no client connected
        self.wait_for_clients = wait_for_clients
        self.venues: dict[str, SimVenue] = {}
        self.faults: dict[str, FaultInjector] = {}
        self.fault_profile_names: dict[str, str] = {}
        self.drivers: dict[str, MarketDriver] = {}
        self.venue_drivers: dict[str, list[MarketDriver]] = {}
        self.urls: dict[str, str] = {}
        self.credentials: SimCredentials | None = None
        self.binance_server: Any = None
        self.thalex_server: Any = None
        self.control: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._temporary_dir: Path | None = None
        self._started = False
        self._stopping = False
        self.change_log: list[dict[str, Any]] = []
        self._last_attached = -math.inf
        self._build()

    # construction (no I/O besides the key file) ------------------------------------------------
    def _build(self) -> None:
        config = self.config
        for index, name in enumerate(config.enabled_venues):
            venue_config = config.venues[name]
            accounts = Accounts(fees=venue_config.fees, ledger_limit=self.ledger_limit)
            # Thalex's default self-trade rule cancels the aggressor; Binance's expires the maker.
            prevention = (
                SelfTradePrevention.EXPIRE_TAKER if name == "thalex" else SelfTradePrevention.EXPIRE_MAKER
            )
            venue = SimVenue(name, MatchingEngine(accounts, self_trade_prevention=prevention))
            for symbol in venue_config.symbols:
                venue.add_instrument(self.spec(name, symbol).instrument(name.split("-", 1)[0]))
            for account in config.accounts:
                for asset, amount in account.balances.items():
                    try:
                        accounts.deposit(account.name, asset, accounts.to_units(asset, amount))
                    except (ArithmeticError, ValueError) as error:
                        raise SimConfigError(
                            f"{config.source_file}: accounts.{account.name}.balances.{asset}: {error}"
                        ) from None
            self.venues[name] = venue
            self.faults[name] = FaultInjector(venue_config.faults, seed=config.seed + index)
            self.fault_profile_names[name] = venue_config.fault_profile_name
        self._build_replay()
        self._build_synthetic()

    def spec(self, venue: str, symbol: str) -> InstrumentSpec:
        return CATALOGUE[venue].get(symbol) or synthetic_spec(venue, symbol)

    def _replay_files(self, venue: str, symbol: str) -> list[Path]:
        venue_config = self.config.venues[venue]
        names = venue_config.replay.get(symbol) or self.spec(venue, symbol).recording
        if not names:
            raise SimConfigError(f"{self.config.source_file}: venues.{venue}.replay.{symbol}: no recording")
        files = []
        for name in names:
            path = Path(name)
            if not path.is_absolute() and not path.exists():
                try:
                    path = hftbacktest_path(name)
                except DataNotFoundError as error:
                    raise SimConfigError(
                        f"{self.config.source_file}: venues.{venue}.replay.{symbol}: {error}"
                    ) from None
            if not path.is_file():
                raise SimConfigError(
                    f"{self.config.source_file}: venues.{venue}.replay.{symbol}: recording {name} not found"
                )
            files.append(path)
        return files

    def _replaying(self, venue: str) -> list[str]:
        if venue not in self.venues or self.config.venues[venue].source not in ("replay", "parquet"):
            return []
        return list(self.config.venues[venue].symbols)

    def _build_replay(self) -> None:
        config = self.config
        for symbol in self._replaying(BINANCE_SPOT):
            venue = self.venues[BINANCE_SPOT]
            self._add_replay(
                f"{BINANCE_SPOT}:{symbol}",
                self._replay_files(BINANCE_SPOT, symbol),
                venue.instruments[symbol],
                [VenueSink(venue, symbol)],
                (BINANCE_SPOT,),
            )
        # one USD-M recording drives the USD-M symbol and the Thalex perpetual of the same base
        groups: dict[str, list[tuple[str, str]]] = {}
        for symbol in self._replaying(BINANCE_USDM):
            groups.setdefault(symbol, []).append((BINANCE_USDM, symbol))
        for symbol in self._replaying(THALEX):
            source = self.spec(THALEX, symbol).source_symbol
            if not source:
                raise SimConfigError(
                    f"{config.source_file}: venues.thalex.symbols: {symbol} has no recorded source market"
                )
            groups.setdefault(source, []).append((THALEX, symbol))
        for source, targets in groups.items():
            usdm_spec = CATALOGUE[BINANCE_USDM].get(source)
            fine: Instrument
            if BINANCE_USDM in self.venues and source in self.venues[BINANCE_USDM].instruments:
                fine = self.venues[BINANCE_USDM].instruments[source]
                files = self._replay_files(BINANCE_USDM, source)
            elif usdm_spec is not None:
                fine = usdm_spec.instrument("binance")
                files = [hftbacktest_path(name) for name in usdm_spec.recording]
            else:
                raise SimConfigError(f"{config.source_file}: no USD-M recording of {source}")
            sinks: list[MarketSink] = []
            for venue_name, symbol in targets:
                venue = self.venues[venue_name]
                if venue_name == BINANCE_USDM:
                    sinks.append(VenueSink(venue, symbol))
                else:
                    sinks.append(BucketSink(venue, symbol, fine))
            self._add_replay(
                f"{BINANCE_USDM}:{source}", files, fine, sinks, tuple(dict.fromkeys(v for v, _ in targets))
            )

    def _add_replay(
        self,
        name: str,
        files: list[Path],
        instrument: Instrument,
        sinks: list[MarketSink],
        venues: tuple[str, ...],
    ) -> None:
        driver = ReplayDriver(
            name,
            files,
            instrument,
            sinks,
            speed=self.config.speed,
            loop=self.config.loop,
            max_passes=self.max_passes,
        )
        self.drivers[name] = driver
        for venue in venues:
            self.venue_drivers.setdefault(venue, []).append(driver)

    def _build_synthetic(self) -> None:
        config = self.config
        for index, name in enumerate(VENUES):
            if name not in self.venues or config.venues[name].source != "synthetic":
                continue
            venue = self.venues[name]
            settings: dict[str, SyntheticSettings] = {}
            for symbol, instrument in venue.instruments.items():
                wanted = config.synthetic_for(symbol)
                start_text = wanted.start_price or self.spec(name, symbol).start_price
                try:
                    start = instrument.price_to_ticks(start_text, Rounding.NEAREST)
                    settings[symbol] = SyntheticSettings(
                        start_price=start,
                        levels=wanted.levels,
                        limit_rate=wanted.limit_rate,
                        cancel_rate=wanted.cancel_rate,
                        trade_rate=wanted.trade_rate,
                        move_rate=wanted.move_rate,
                        move_ticks=wanted.move_ticks,
                        min_size=wanted.min_size_lots,
                        max_size=wanted.max_size_lots,
                        max_trade_size=wanted.max_trade_lots,
                    )
                except (ArithmeticError, ValueError) as error:
                    raise SimConfigError(f"{config.source_file}: synthetic.{symbol}: {error}") from None
            seed = config.seed * len(VENUES) + index  # one stream per venue, all fixed by the seed
            market = SyntheticMarket(settings, seed=seed)
            sinks: dict[str, Sequence[MarketSink]] = {
                symbol: [VenueSink(venue, symbol)] for symbol in settings
            }
            driver = SyntheticDriver(
                f"{name}:synthetic",
                market,
                sinks,
                seed=seed,
                speed=config.speed,
                max_operations=self.max_synthetic_operations,
            )
            driver.start_book()
            self.drivers[driver.name] = driver
            self.venue_drivers.setdefault(name, []).append(driver)

    # credentials ------------------------------------------------------------------------------------
    def _make_credentials(self) -> SimCredentials:
        from hftkit.sim.thalex.tokens import generate_key_pair

        wanted = self.config.credentials
        private_file = wanted.thalex_private_key_file
        if wanted.thalex_public_key_file is not None:
            public_pem = Path(wanted.thalex_public_key_file).read_bytes()
        else:
            private_pem, public_pem = generate_key_pair()
            if private_file is None:
                self._temporary_dir = Path(tempfile.mkdtemp(prefix="hftkit-sim-"))
                private_file = str(self._temporary_dir / f"thalex_{wanted.thalex_key_id}.pem")
            path = Path(private_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            path.chmod(0o600)
            path.write_bytes(private_pem)
        return SimCredentials(
            account=wanted.account,
            binance_api_key=wanted.binance_api_key,
            binance_secret_key=wanted.binance_secret_key,
            thalex_key_id=wanted.thalex_key_id,
            thalex_private_key_file=private_file,
            thalex_public_key_pem=public_pem,
        )

    # run ---------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> dict[str, str]:
        """Start servers, drivers and the control endpoint; return ``urls``."""
        if self._started:
            return self.urls
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self.urls

    async def _start(self) -> None:
        from hftkit.sim.control import ControlServer

        config = self.config
        self.credentials = credentials = self._make_credentials()
        host = config.host
        ssl_context = None
        if self.tls:
            from hftkit.sim import tls

            if self._temporary_dir is None:
                self._temporary_dir = Path(tempfile.mkdtemp(prefix="hftkit-sim-"))
            self.tls_files = tls.generate(self._temporary_dir / "tls", (host,))
            ssl_context = tls.server_context(self.tls_files)
        if BINANCE_SPOT in self.venues or BINANCE_USDM in self.venues:
            self.binance_server = _binance_server(self, credentials)
            # both markets share the port, its root /ws being spot's: USD-M's root paths get their
            # own stream host (fstream.binance.com) on a free port, binance_usdm_stream
            both = BINANCE_SPOT in self.venues and BINANCE_USDM in self.venues
            base = await self.binance_server.start(
                host, config.binance_port, usdm_stream_port=0 if both else None, ssl_context=ssl_context
            )
            self.urls.update(_binance_urls(base, self.venues))
        if THALEX in self.venues:
            from hftkit.sim.thalex.server import ThalexApiKey, ThalexSimServer

            self.thalex_server = ThalexSimServer(
                self.venues[THALEX],
                keys=[
                    ThalexApiKey(
                        credentials.thalex_key_id, credentials.thalex_public_key_pem, (credentials.account,)
                    )
                ],
                faults=self.faults[THALEX],
                message_rate=config.venues[THALEX].message_rate,
            )
            self.urls["thalex_ws"] = await self.thalex_server.start(host, config.thalex_port, ssl_context)
            self._spawn(self._index_feed(), "thalex-index")
        self.control = ControlServer(self)
        self.urls["control"] = await self.control.start("127.0.0.1", config.control_port)
        for name, driver in self.drivers.items():
            driver.audience = self.attached if self.wait_for_clients else None
            self._spawn(driver.run(), name)
        if any(isinstance(driver, ReplayDriver) for driver in self.drivers.values()):
            self._spawn(self._backfill_candles(), "backfill-candles")
        logger.info("simulator started: %s", self.urls)

    def attached(self) -> bool:
        """Whether a client is connected to a venue server, or was in the last ``ATTACHED_LINGER_S``.

        The market drivers at speed max run only while this holds (``sim.engine.market._wait``):
        with no one to see it, replaying as fast as possible only burns a core.
        """
        now = time.monotonic()
        servers = (self.binance_server, self.thalex_server)
        if any(server is not None and server.connections() for server in servers):
            self._last_attached = now
            return True
        return now - self._last_attached < ATTACHED_LINGER_S

    async def _backfill_candles(self) -> None:
        """Kline history from the first second: each replayed recording's trades as the minutes
        before now, on the venues that take the recording on its own grid (``sim.backfill``)."""
        from hftkit.sim.engine.backfill import recorded_candles

        for driver in list(self.drivers.values()):
            if not isinstance(driver, ReplayDriver):
                continue
            targets = [sink for sink in driver.sinks if isinstance(sink, VenueSink)]
            if not targets:
                continue
            now = targets[0].venue.engine.clock.time_ns()
            candles = await asyncio.to_thread(recorded_candles, driver.paths, driver.instrument, now)
            for sink in targets:
                added = sink.venue.backfill_candles(sink.symbol, candles)
                logger.info(
                    "%s %s: %d minutes of kline history from the recording",
                    sink.venue.name,
                    sink.symbol,
                    added,
                )

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.create_task(coroutine, name=f"sim:{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("simulator task %s failed", task.get_name(), exc_info=error)

    async def stop(self) -> None:
        """Stop everything this simulator started and wait for it (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for server in (self.control, self.thalex_server, self.binance_server):
            if server is not None:
                try:
                    await server.stop()
                except Exception:
                    logger.exception("simulator: a server failed to stop cleanly")
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None
        logger.info("simulator stopped")

    @property
    def running_tasks(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    async def wait_seeded(self, timeout_s: float = 10.0) -> None:
        """Wait until every venue's every symbol has a two-sided book (replay seeds a few lines in)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.seeded():
            if loop.time() > deadline:
                raise TimeoutError("the simulator's books were not seeded in time")
            await asyncio.sleep(0.01)

    def seeded(self) -> bool:
        for venue in self.venues.values():
            engine = venue.engine
            for symbol in venue.instruments:
                if engine.best_bid(symbol) is None or engine.best_ask(symbol) is None:
                    return False
        return True

    async def _index_feed(self) -> None:
        """Thalex index prices from the perpetual mids, once a second (as the venue publishes)."""
        from hftkit.sim.thalex.wire import underlying_of

        venue = self.venues[THALEX]
        while True:
            for symbol, instrument in venue.instruments.items():
                bid = venue.engine.best_bid(symbol)
                ask = venue.engine.best_ask(symbol)
                if bid is None or ask is None:
                    continue
                mid = (Decimal(bid[0]) + Decimal(ask[0])) / 2 * instrument.tick_size
                self.thalex_server.set_index_price(underlying_of(instrument), mid)
            await asyncio.sleep(INDEX_PERIOD_S)

    # run-time control --------------------------------------------------------------------------------
    def set_faults(self, venue: str, value: str | Mapping[str, Any]) -> FaultProfile:
        """Replace a venue's fault profile: a profile name, or settings on top of the current one.

        Settings may carry ``profile: <name>`` to start from a named profile instead.
        Raises ``KeyError`` for an unknown venue and ``FaultConfigError`` for bad settings.
        """
        injector = self.faults[venue]
        if isinstance(value, Mapping) and "profile" not in value:
            profile = injector.profile.updated(value)
            name = f"{self.fault_profile_names[venue]}+custom"
        else:
            profile, name = fault_profile(value)
        injector.set_profile(profile)
        self.fault_profile_names[venue] = name
        self._log_change("faults", venue, {"profile": name, "settings": profile.as_dict()})
        return profile

    def set_speed(self, venue: str, speed: float) -> list[str]:
        """Set the replay/synthetic speed of every driver feeding ``venue``; return their names."""
        if venue not in self.venues:
            raise KeyError(venue)
        speed = validate_speed(speed)
        drivers = self.venue_drivers.get(venue, [])
        for driver in drivers:
            driver.set_speed(speed)
        self._log_change("speed", venue, {"speed": "max" if speed == float("inf") else speed})
        return [driver.name for driver in drivers]

    def _log_change(self, kind: str, venue: str, details: dict[str, Any]) -> None:
        entry = {"kind": kind, "venue": venue, **details}
        self.change_log.append(entry)
        if len(self.change_log) > CHANGES_KEPT:  # a script flipping faults for hours
            del self.change_log[: len(self.change_log) - CHANGES_KEPT]
        logger.info("simulator change: %s", entry)

    def status(self) -> dict[str, Any]:
        venues: dict[str, Any] = {}
        for name, venue in self.venues.items():
            engine = venue.engine
            symbols = {}
            for symbol in venue.instruments:
                bid = engine.best_bid(symbol)
                ask = engine.best_ask(symbol)
                instrument = venue.instruments[symbol]
                symbols[symbol] = {
                    "update_id": engine.update_id(symbol),
                    "best_bid": None if bid is None else instrument.ticks_to_price(bid[0]),
                    "best_ask": None if ask is None else instrument.ticks_to_price(ask[0]),
                }
            venues[name] = {
                "symbols": symbols,
                "source": self.config.venues[name].source,
                "fault_profile": self.fault_profile_names[name],
                "connections": self._connections(name),
                "listener_errors": venue.listener_errors,
                # history dropped to bound memory: fills past ledger_limit, closed orders past the
                # engine's order_history_limit (no longer found by a query)
                "ledger_evicted": venue.accounts.ledger_evicted,
                "closed_orders_forgotten": engine.closed_forgotten,
                "drivers": [driver.name for driver in self.venue_drivers.get(name, [])],
            }
        return {
            "venues": venues,
            "market": {name: driver.snapshot() for name, driver in self.drivers.items()},
            "urls": self.urls,
            "running_tasks": self.running_tasks,
        }

    async def drop_connections(self, venue: str) -> int:
        """Close every client connection of the server in front of ``venue``, as a network failure
        looks to the clients (they reconnect and resync); returns how many were closed.

        One server serves both Binance markets, so dropping either drops both, as losing the
        route to that host would."""
        if venue not in self.venues:
            raise KeyError(venue)
        server = self.thalex_server if venue == THALEX else self.binance_server
        if server is None:
            return 0
        dropped = int(await server.drop_connections())
        self._log_change("drop_connections", venue, {"dropped": dropped})
        return dropped

    def _connections(self, venue: str) -> Any:
        """Connection figures of the server in front of a venue (the servers keep their own)."""
        if venue == THALEX:
            server = self.thalex_server
            if server is None:
                return None
            figures = dict(server.snapshot())
            figures.pop("faults", None)  # reported under /faults
            return figures
        server = self.binance_server
        if server is None:
            return None
        # one server (one set of sockets) serves both Binance markets
        return {"open": server.open_connections, "internal_errors": server.internal_errors}

    def fault_status(self) -> dict[str, Any]:
        return {
            name: {
                "profile": self.fault_profile_names[name],
                "settings": injector.profile.as_dict(),
                "injected": injector.snapshot(),
            }
            for name, injector in self.faults.items()
        }


# Binance server wiring ---------------------------------------------------------------------------------


def _binance_server(simulator: Simulator, credentials: SimCredentials) -> Any:
    from hftkit.sim.binance.limits import SPOT_LIMITS, USDM_LIMITS
    from hftkit.sim.binance.server import BinanceSimServer

    config = simulator.config
    venues = simulator.venues
    spot_limits = config.venues[BINANCE_SPOT].rate_limits if BINANCE_SPOT in venues else None
    usdm_limits = config.venues[BINANCE_USDM].rate_limits if BINANCE_USDM in venues else None
    return BinanceSimServer(
        venues.get(BINANCE_SPOT),
        venues.get(BINANCE_USDM),
        api_keys={credentials.binance_api_key: credentials.binance_secret_key},
        account_for_key={credentials.binance_api_key: credentials.account},
        faults_spot=simulator.faults.get(BINANCE_SPOT),
        faults_usdm=simulator.faults.get(BINANCE_USDM),
        spot_limits=spot_limits or SPOT_LIMITS,
        usdm_limits=usdm_limits or USDM_LIMITS,
    )


def _binance_urls(base: Mapping[str, str], venues: Mapping[str, SimVenue]) -> dict[str, str]:
    """The server's URLs under ``binance_*`` names, only those of the markets that run."""
    found = {"binance_rest": base["rest"]}
    if BINANCE_SPOT in venues:
        for key in ("spot_rest", "spot_ws", "spot_stream", "spot_ws_api"):
            found[f"binance_{key}"] = base[key]
    if BINANCE_USDM in venues:
        for key in ("usdm_rest", "usdm_ws", "usdm_market_ws", "usdm_private_ws", "usdm_ws_api"):
            found[f"binance_{key}"] = base[key]
        if "usdm_stream" in base:
            found["binance_usdm_stream"] = base["usdm_stream"]
    return found


__all__ = ["SimCredentials", "Simulator"]
