"""Thalex: JSON-RPC over one WebSocket (perpetuals, futures, options)."""
