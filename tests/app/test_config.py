"""The node config: strict typed decode, one-line errors with file:line and path, secrets, guards."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hftkit.app import config
from hftkit.app.cli import app
from hftkit.app.venues import build_remote_adapters
from hftkit.core.secrets import Secret

RUNNER = CliRunner()

SIM = """
venues:
  usdm:
    kind: binance
    market: usdm
  thalex:
    kind: thalex
"""

MAINNET = """
venues:
  usdm:
    kind: binance
    market: usdm
    environment: mainnet
    api_key: ${HK_KEY}
    api_secret: ${HK_SECRET}
"""

MAINNET_LIMITS = """
risk:
  instruments:
    - venue: usdm
      symbol: BTCUSDT
      limits: {max_position: "0.01"}
"""


def write(tmp_path: Path, text: str, name: str = "node.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def check(path: str, *extra: str) -> tuple[int, str]:
    result = RUNNER.invoke(app, ["config", "check", path, *extra])
    return result.exit_code, result.output


def test_a_minimal_sim_config_decodes_with_defaults(tmp_path):
    loaded = config.load(write(tmp_path, SIM))
    assert set(loaded.node.venues) == {"usdm", "thalex"}
    assert isinstance(loaded.node.venues["usdm"], config.BinanceVenue)
    assert loaded.node.venues["thalex"].environment == "sim"
    assert loaded.node.metrics.host == "127.0.0.1"


def test_unknown_field_names_file_line_path_and_the_nearest_key(tmp_path):
    path = write(tmp_path, SIM.replace("market: usdm", "market: usdm\n    enviroment: testnet"))
    code, output = check(path)
    assert code == 2
    assert (
        f"{path}:6: venues.usdm.enviroment: unknown field `enviroment` (did you mean `environment`?)"
        in output
    )
    assert len(output.strip().splitlines()) == 1


def test_unknown_top_level_and_nested_fields(tmp_path):
    nested = "metrics:\n  enabled: true\n  prot: 1\n" + SIM
    with pytest.raises(
        config.ConfigError, match=r"node.yaml:3: metrics.prot: unknown field .*did you mean `port`"
    ):
        config.load(write(tmp_path, nested))
    top = SIM + "strategys: []\n"
    with pytest.raises(config.ConfigError, match=r"node.yaml:8: strategys: unknown field .*`strategies`"):
        config.load(write(tmp_path, top))


def test_wrong_type_is_one_line_with_its_path(tmp_path):
    code, output = check(write(tmp_path, SIM + "metrics:\n  port: nine\n"))
    assert code == 2 and "metrics.port: Expected `int`, got `str`" in output and ":9:" in output


def test_a_missing_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("HK_KEY", raising=False)
    monkeypatch.setenv("HK_SECRET", "s")
    code, output = check(write(tmp_path, MAINNET + MAINNET_LIMITS), "--live")
    assert code == 2 and "venues.usdm.api_key: environment variable HK_KEY is not set" in output
    assert ":7:" in output


def test_mainnet_needs_limits_and_a_confirmation(tmp_path, monkeypatch):
    monkeypatch.setenv("HK_KEY", "key-value-123")
    monkeypatch.setenv("HK_SECRET", "secret-value-456")
    code, output = check(write(tmp_path, MAINNET), "--live")
    assert code == 2 and "no risk limits" in output
    code, output = check(write(tmp_path, MAINNET + MAINNET_LIMITS))
    assert code == 2 and "explicit confirmation: pass --live or set live: true" in output
    code, output = check(write(tmp_path, MAINNET + MAINNET_LIMITS), "--live")
    assert code == 0, output
    code, output = check(write(tmp_path, MAINNET + MAINNET_LIMITS + "live: true\n"))
    assert code == 0, output
    assert "secret-value-456" not in output and "key-value-123" not in output


def test_secrets_stay_redacted_in_the_decoded_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HK_KEY", "key-value-123")
    monkeypatch.setenv("HK_SECRET", "secret-value-456")
    loaded = config.load(write(tmp_path, MAINNET + MAINNET_LIMITS))
    venue = loaded.node.venues["usdm"]
    assert isinstance(venue.api_secret, Secret) and venue.api_secret.reveal() == "secret-value-456"
    assert "secret-value-456" not in repr(loaded.node) and "key-value-123" not in repr(loaded.node)


def test_testnet_config_builds_adapters_aimed_at_the_published_testnet_urls(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "thalex.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    monkeypatch.setenv("HK_KEY", "k")
    monkeypatch.setenv("HK_SECRET", "s")
    text = """
    venues:
      spot:
        kind: binance
        market: spot
        environment: testnet
        api_key: ${HK_KEY}
        api_secret: ${HK_SECRET}
      usdm:
        kind: binance
        market: usdm
        environment: testnet
        api_key: ${HK_KEY}
        api_secret: ${HK_SECRET}
      thalex:
        kind: thalex
        environment: testnet
        key_id: K1
        private_key_file: thalex.pem
    """
    adapters = build_remote_adapters(config.load(write(tmp_path, text)))
    spot, usdm, thalex = adapters["spot"], adapters["usdm"], adapters["thalex"]
    assert list(spot.config.rest.base_urls) == ["https://testnet.binance.vision"]  # type: ignore[attr-defined]
    assert list(spot.config.streams.base_urls) == ["wss://stream.testnet.binance.vision"]  # type: ignore[attr-defined]
    assert list(spot.config.user_stream.websocket_api_urls) == [  # type: ignore[attr-defined]
        "wss://ws-api.testnet.binance.vision/ws-api/v3"
    ]
    assert list(usdm.config.rest.base_urls) == ["https://testnet.binancefuture.com"]  # type: ignore[attr-defined]
    assert list(usdm.config.streams.base_urls) == ["wss://fstream.binancefuture.com"]  # type: ignore[attr-defined]
    assert thalex.config.url == "wss://testnet.thalex.com/ws/api/v2"  # type: ignore[attr-defined]
    assert [adapter.name for adapter in adapters.values()] == ["spot", "usdm", "thalex"]


def test_a_url_override_wins_over_the_published_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HK_KEY", "k")
    monkeypatch.setenv("HK_SECRET", "s")
    text = MAINNET + "    rest_url: https://gateway.example.invalid\n"
    adapters = build_remote_adapters(config.load(write(tmp_path, text)))
    assert list(adapters["usdm"].config.rest.base_urls) == ["https://gateway.example.invalid"]  # type: ignore[attr-defined]


STRATEGY_FILE = """
import msgspec
from hftkit.trading.strategy import Strategy, Subscription


class EdgeParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    symbol: str
    edge_ticks: int = 3


class EdgeQuoter(Strategy):
    config_type = EdgeParams

    def __init__(self, params, name="edge"):
        super().__init__(name)
        self.params = params

    def subscriptions(self):
        return [Subscription(self.params.venue, (self.params.symbol,))]
"""


def test_a_strategy_in_a_file_beside_the_config_loads_with_validated_params(tmp_path):
    (tmp_path / "edge_strategy.py").write_text(STRATEGY_FILE, encoding="utf-8")
    text = (
        SIM
        + """
strategies:
  - name: edge
    path: edge_strategy:EdgeQuoter
    params:
      venue: thalex
      symbol: BTC-PERPETUAL
      edge_ticks: 4
"""
    )
    loaded = config.load(write(tmp_path, text))
    (strategy,) = config.build_strategies(loaded)
    assert type(strategy).__name__ == "EdgeQuoter" and strategy.params.edge_ticks == 4
    assert strategy.name == "edge"

    bad = text.replace("edge_ticks: 4", "edge_tiks: 4")
    with pytest.raises(
        config.ConfigError, match=r"node.yaml:15: strategies\[0\].params.edge_tiks: .*edge_ticks"
    ):
        config.build_strategies(config.load(write(tmp_path, bad)))
    wrong_class = text.replace("EdgeQuoter", "EdgeQuotr")
    with pytest.raises(config.ConfigError, match=r"has no `EdgeQuotr` .did you mean `EdgeQuoter`"):
        config.build_strategies(config.load(write(tmp_path, wrong_class)))
    missing = text.replace("edge_strategy:", "no_such_module:")
    with pytest.raises(config.ConfigError, match="cannot import `no_such_module`"):
        config.build_strategies(config.load(write(tmp_path, missing)))


def test_built_in_strategies_declare_their_params():
    from hftkit.strategies import CrossVenueHedger, MarketMaker

    assert MarketMaker.config_type.__name__ == "MarketMakerConfig"
    assert CrossVenueHedger.config_type.__name__ == "HedgerConfig"


def test_params_refused_by_the_strategy_s_own_checks_are_config_errors(tmp_path):
    text = (
        SIM
        + """
strategies:
  - name: mm
    path: hftkit.strategies.market_maker:MarketMaker
    params: {venue: thalex, symbol: BTC-PERPETUAL, size_per_level: 0, max_position: 1}
"""
    )
    with pytest.raises(config.ConfigError, match="size_per_level must be an integer >= 1"):
        config.build_strategies(config.load(write(tmp_path, text)))


def test_invalid_yaml_and_empty_files_are_refused_with_a_line(tmp_path):
    with pytest.raises(config.ConfigError, match=r"node.yaml:3: not valid YAML"):
        config.load(write(tmp_path, "venues:\n  a: [1, 2\n  b: 3\n"))
    with pytest.raises(config.ConfigError, match="empty"):
        config.load(write(tmp_path, ""))
    with pytest.raises(config.ConfigError, match="cannot read the config"):
        config.load(tmp_path / "absent.yaml")


def test_init_writes_a_config_and_strategy_that_check_cleanly(tmp_path):
    result = RUNNER.invoke(app, ["init", str(tmp_path / "bot")])
    assert result.exit_code == 0, result.output
    code, output = check(str(tmp_path / "bot" / "node.yaml"))
    assert code == 0, output
    again = RUNNER.invoke(app, ["init", str(tmp_path / "bot")])
    assert again.exit_code == 2


def test_risk_limits_use_the_trading_layer_s_own_types(tmp_path):
    from hftkit.trading.risk import InstrumentLimits, RiskLimits

    text = (
        SIM
        + """
risk:
  instruments:
    - venue: thalex
      symbol: BTC-PERPETUAL
      limits: {max_position: "0.01", max_book_age_ms: 1500}
  limits: {max_drawdown: 100}
"""
    )
    loaded = config.load(write(tmp_path, text))
    limits = config.instrument_limits(loaded)[("thalex", "BTC-PERPETUAL")]
    assert isinstance(limits, InstrumentLimits) and limits.max_position == "0.01"
    assert isinstance(config.risk_limits(loaded), RiskLimits)
    bad = text.replace("max_book_age_ms: 1500", "max_book_age: 1500")
    with pytest.raises(
        config.ConfigError, match=r":13: risk.instruments\[0\].limits.max_book_age: .*max_book_age_ms"
    ):
        config.instrument_limits(config.load(write(tmp_path, bad)))
    negative = text.replace("max_book_age_ms: 1500", "max_book_age_ms: -1")
    with pytest.raises(config.ConfigError, match="max_book_age_ms must be a positive integer"):
        config.instrument_limits(config.load(write(tmp_path, negative)))
