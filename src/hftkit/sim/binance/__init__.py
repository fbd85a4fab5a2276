"""The Binance-compatible simulator: REST, WebSocket API and streams over the engine."""
