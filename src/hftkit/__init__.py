"""hftkit: a low-latency, asyncio-native trading system.

The package is layered (see docs/architecture.md); a module imports only from the layers
above it: core, codec, metrics, resilience, transport, book, venues, sim, trading,
strategies, storage, bus, app.
"""

__version__ = "0.1.0"
