"""The Thalex-compatible simulator: JSON-RPC over WebSocket over the engine."""
