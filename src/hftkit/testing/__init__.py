"""What users test their own code with (importable by tests, never by production code).

- ``FakeVenue``: an in-memory ``VenueAdapter`` with books the test sets and scripted failures,
  for strategies, execution and risk without any venue.
- ``ScriptedBinance``: an in-memory Binance reached through the transports an adapter is built
  on (``BinanceAdapter(..., transports=venue.transports)``): the real adapter, no sockets, each
  answer scriptable (errors, stalls, drops, lost events).
- ``ScriptedThalex``: an in-memory Thalex JSON-RPC venue behind the WebSocket transport
  (``ThalexAdapter(config, transports=venue.transports)``): every answer scripted per method
  (results, errors, delays, silence), pushes and drops on demand, every request recorded.
- ``SimulatorHarness``: the whole simulator (``hftkit.sim``) in-process on loopback, with its
  URLs and credentials and its fault profiles.
- ``BinanceSimHarness``: one Binance-compatible simulator server with listed instruments, seeded
  liquidity and funded keys, and requests signed the way Binance clients sign them: for a
  user's own Binance client code (and the simulator's own tests).

Layer: above ``trading`` (it imports trading's venue protocol, the venues and the simulator).
"""

from hftkit.testing.binance import Fault, ScriptedBinance, SymbolSpec
from hftkit.testing.binance_simulator import BinanceSimHarness
from hftkit.testing.fake_venue import FAKE_CAPABILITIES, FailureKind, FakeVenue, RequestKind
from hftkit.testing.simulator import SimulatorHarness, harness_config
from hftkit.testing.thalex import ScriptedThalex

__all__ = [
    "FAKE_CAPABILITIES",
    "BinanceSimHarness",
    "FailureKind",
    "FakeVenue",
    "Fault",
    "RequestKind",
    "ScriptedBinance",
    "ScriptedThalex",
    "SimulatorHarness",
    "SymbolSpec",
    "harness_config",
]
